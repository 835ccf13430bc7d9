//! The Responses dialect's answer and stream events built as
//! `serde_json::Value`s and serialized, as the encoders did before they
//! wrote the bytes themselves: kept by the tests as the oracle the
//! hand-written bytes must equal.

use super::ingress::{ResponsesOptions, id_suffix, response_id};
use super::response_object::RESPONSE_DEFAULTS;
use crate::ingress::sse_event;
use serde_json::{Map, Value, json};
use staunch_core::{ErrorKind, FinishReason, LlmError, StreamEvent, Usage};

/// A usage object as the Responses API writes it.
fn usage_json(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total(),
    })
}

/// A Response's status and `incomplete_details` for a finish reason.
pub(super) fn status(reason: &FinishReason) -> (&'static str, Value) {
    match reason {
        FinishReason::Length => ("incomplete", json!({"reason": "max_output_tokens"})),
        FinishReason::ContentFilter => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// The Response object: the fields every SDK's model requires, the
/// request's settings (`options`), then the answer's own.
#[allow(clippy::too_many_arguments)]
pub(super) fn response_json(
    id: &str,
    created_at: u64,
    model: &str,
    status: &str,
    incomplete_details: Value,
    error: Value,
    output: Vec<Value>,
    usage: Option<&Usage>,
    options: &ResponsesOptions,
) -> Value {
    let mut r = Map::new();
    // Defaults for a request that was not read here (fixed JSON text,
    // which always parses).
    for (k, json) in RESPONSE_DEFAULTS {
        r.insert(
            k.to_owned(),
            serde_json::from_slice(json).unwrap_or(Value::Null),
        );
    }
    for (k, v) in options.echo() {
        r.insert(k.clone(), v.clone());
    }
    for (k, v) in [
        ("id", json!(id)),
        ("object", json!("response")),
        ("created_at", json!(created_at)),
        ("status", json!(status)),
        ("background", json!(false)),
        ("error", error),
        ("incomplete_details", incomplete_details),
        ("model", json!(model)),
        ("output", Value::Array(output)),
        ("previous_response_id", Value::Null),
        ("store", json!(false)),
        ("usage", usage.map_or(Value::Null, usage_json)),
    ] {
        r.insert(k.to_owned(), v);
    }
    Value::Object(r)
}

/// An `output_text` content part.
pub(super) fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

pub(super) fn message_item(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

pub(super) fn call_item(
    id: &str,
    status: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "call_id": call_id,
           "name": name, "arguments": arguments})
}

/// One output item of a streamed answer.
#[derive(Debug)]
enum Item {
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        /// The neutral call index.
        index: u32,
    },
}

/// Writes a streamed answer as the Responses API's typed events, the way
/// the official SDKs read them: `response.created`, `response.in_progress`,
/// then per output item `response.output_item.added`, its deltas
/// (`response.content_part.added` and `response.output_text.delta` for
/// text, `response.function_call_arguments.delta` for a call), its `.done`
/// events and `response.output_item.done`; at the end
/// `response.completed` (or `response.incomplete`) with the whole Response.
/// Every event is `event: <type>` with `type` and a `sequence_number`
/// counting from 0 in its data. A failure after the commit point is a
/// `response.failed` event, and nothing follows it.
#[derive(Debug)]
pub(super) struct ValueStreamEncoder {
    id: String,
    model: String,
    created_at: u64,
    options: ResponsesOptions,
    pub(super) sequence: u64,
    started: bool,
    items: Vec<Item>,
    /// The item whose deltas are being written.
    open: Option<usize>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    /// A terminal event went out.
    ended: bool,
}

impl ValueStreamEncoder {
    /// An encoder for a response `id` (`resp_…`; another id is prefixed)
    /// from `model`, repeating the request's settings from `options`.
    pub(super) fn new(
        id: impl Into<String>,
        model: impl Into<String>,
        created_at: u64,
        options: ResponsesOptions,
    ) -> Self {
        ValueStreamEncoder {
            id: response_id(&id.into()),
            model: model.into(),
            created_at,
            options,
            sequence: 0,
            started: false,
            items: Vec::new(),
            open: None,
            usage: None,
            finish: None,
            ended: false,
        }
    }

    /// Writes one event with its type and sequence number.
    pub(super) fn emit(&mut self, out: &mut Vec<u8>, kind: &str, data: Value) {
        let mut data = match data {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        data.insert("type".into(), json!(kind));
        data.insert("sequence_number".into(), json!(self.sequence));
        self.sequence += 1;
        out.extend_from_slice(&sse_event(Some(kind), &Value::Object(data)));
    }

    /// The items so far, as a Response lists them.
    fn output(&self, done_status: &str) -> Vec<Value> {
        self.items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let status = if self.open == Some(i) {
                    done_status
                } else {
                    "completed"
                };
                self.item_json(item, status, true)
            })
            .collect()
    }

    fn item_json(&self, item: &Item, status: &str, with_content: bool) -> Value {
        match item {
            Item::Message { id, text } => {
                let content = if with_content {
                    vec![text_part(text)]
                } else {
                    Vec::new()
                };
                message_item(id, status, content)
            }
            Item::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            } => call_item(id, status, call_id, name, arguments),
        }
    }

    fn response(&self, status: &str, details: Value, error: Value, output: Vec<Value>) -> Value {
        let usage = if status == "in_progress" {
            None
        } else {
            self.usage.as_ref()
        };
        response_json(
            &self.id,
            self.created_at,
            &self.model,
            status,
            details,
            error,
            output,
            usage,
            &self.options,
        )
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.response("in_progress", Value::Null, Value::Null, Vec::new());
        self.emit(out, "response.created", json!({"response": response}));
        self.emit(out, "response.in_progress", json!({"response": response}));
    }

    /// Ends the open item: its `.done` events.
    fn close(&mut self, out: &mut Vec<u8>) {
        let Some(at) = self.open.take() else {
            return;
        };
        let Some(item) = self.items.get(at) else {
            return;
        };
        let done = self.item_json(item, "completed", true);
        let events: Vec<(&str, Value)> = match item {
            Item::Message { id, text } => vec![
                (
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": at, "content_index": 0,
                           "text": text, "logprobs": []}),
                ),
                (
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": at, "content_index": 0,
                           "part": text_part(text)}),
                ),
            ],
            Item::Call {
                id,
                name,
                arguments,
                ..
            } => vec![(
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": at, "name": name, "arguments": arguments}),
            )],
        };
        for (kind, data) in events {
            self.emit(out, kind, data);
        }
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": at, "item": done}),
        );
    }

    /// Opens a new item and announces it.
    fn open(&mut self, out: &mut Vec<u8>, item: Item) -> usize {
        self.close(out);
        let at = self.items.len();
        let added = self.item_json(&item, "in_progress", false);
        let message = match &item {
            Item::Message { id, .. } => Some(id.clone()),
            Item::Call { .. } => None,
        };
        self.items.push(item);
        self.open = Some(at);
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": at, "item": added}),
        );
        if let Some(id) = message {
            self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": id, "output_index": at, "content_index": 0, "part": text_part("")}),
            );
        }
        at
    }

    fn item_id(&self, prefix: &str) -> String {
        format!("{prefix}_{}_{}", id_suffix(&self.id), self.items.len())
    }

    /// The bytes of one event (possibly none, possibly several SSE events).
    pub(super) fn encode(&mut self, event: &StreamEvent) -> Vec<u8> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        match event {
            StreamEvent::TextDelta(text) if !text.is_empty() => {
                self.start(&mut out);
                let open_message = self
                    .open
                    .filter(|&at| matches!(self.items.get(at), Some(Item::Message { .. })));
                let at = match open_message {
                    Some(at) => at,
                    None => {
                        let id = self.item_id("msg");
                        self.open(
                            &mut out,
                            Item::Message {
                                id,
                                text: String::new(),
                            },
                        )
                    }
                };
                let Some(Item::Message { id, text: so_far }) = self.items.get_mut(at) else {
                    return out;
                };
                so_far.push_str(text);
                let data = json!({"item_id": id, "output_index": at, "content_index": 0,
                                  "delta": text, "logprobs": []});
                self.emit(&mut out, "response.output_text.delta", data);
            }
            StreamEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                self.start(&mut out);
                let known = self
                    .items
                    .iter()
                    .position(|item| matches!(item, Item::Call { index: i, .. } if i == index));
                let at = match known {
                    Some(at) => at,
                    None => {
                        let item_id = self.item_id("fc");
                        let call_id = id
                            .clone()
                            .unwrap_or_else(|| format!("call_{}_{index}", id_suffix(&self.id)));
                        self.open(
                            &mut out,
                            Item::Call {
                                id: item_id,
                                call_id,
                                name: name.clone().unwrap_or_default(),
                                arguments: String::new(),
                                index: *index,
                            },
                        )
                    }
                };
                if arguments.is_empty() {
                    return out;
                }
                let Some(Item::Call {
                    id,
                    arguments: so_far,
                    ..
                }) = self.items.get_mut(at)
                else {
                    return out;
                };
                so_far.push_str(arguments);
                let data = json!({"item_id": id, "output_index": at, "delta": arguments});
                self.emit(&mut out, "response.function_call_arguments.delta", data);
            }
            StreamEvent::Usage(usage) => self.usage = Some(*usage),
            StreamEvent::Finish(reason) => self.finish = Some(reason.clone()),
            _ => {}
        }
        out
    }

    /// The end of a complete stream: the open item closed, then
    /// `response.completed` (`response.incomplete` for a token limit or a
    /// content filter) with the whole Response and its usage.
    pub(super) fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        self.start(&mut out);
        self.close(&mut out);
        self.ended = true;
        let (status, details) = status(self.finish.as_ref().unwrap_or(&FinishReason::Stop));
        let response = self.response(status, details, Value::Null, self.output("completed"));
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(&mut out, kind, json!({"response": response}));
        out
    }

    /// A failure after the commit point: `response.failed`, whose Response
    /// has `status: "failed"`, the error and the output so far. Nothing
    /// follows it, so no client takes the stream for complete.
    pub(super) fn error(&mut self, error: &LlmError) -> Vec<u8> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        self.start(&mut out);
        self.ended = true;
        let code = match error.kind {
            ErrorKind::RateLimited | ErrorKind::QuotaExhausted => "rate_limit_exceeded",
            ErrorKind::ContentFiltered => "invalid_prompt",
            _ => "server_error",
        };
        let error = json!({"code": code, "message": error.to_string()});
        let response = self.response("failed", Value::Null, error, self.output("incomplete"));
        self.emit(&mut out, "response.failed", json!({"response": response}));
        out
    }
}
