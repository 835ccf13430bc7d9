//! The ingress side of the Anthropic dialect: a Messages request from a
//! client read into the neutral model, and a neutral answer written back in
//! the shape the official SDKs parse.

use crate::openai::ingress::field;
use crate::openai::wire::IngressError;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use staunch_core::{
    ChatRequest, ChatResponse, Content, ContentPart, Dialect, Extras, FinishReason, Message, Role,
    ToolCall, ToolChoice, ToolDefinition,
};
use std::sync::Arc;

/// A Messages request read from a client.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Decoded {
    /// The neutral request; fields only Anthropic understands are in its
    /// Anthropic extras.
    pub request: ChatRequest,
    /// The client asked for a stream (`stream: true`).
    pub stream: bool,
}

#[derive(Deserialize)]
struct InRequest {
    model: String,
    messages: Vec<InMessage>,
    max_tokens: u32,
    #[serde(default)]
    system: Option<InContent>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    tools: Option<Vec<InTool>>,
    #[serde(default)]
    tool_choice: Option<InChoice>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum InRole {
    User,
    Assistant,
}

#[derive(Deserialize)]
struct InMessage {
    role: InRole,
    content: InContent,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InContent {
    Text(String),
    Blocks(Vec<Map<String, Value>>),
}

#[derive(Deserialize)]
struct InTool {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    input_schema: Option<Value>,
}

#[derive(Deserialize)]
struct InChoice {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

/// Reads a Messages request body into the neutral model: the top-level
/// `system`, user and assistant turns with their blocks (text, images,
/// `tool_use` as tool calls, `tool_result` as tool messages, any other block
/// kept as an Anthropic-only part), tools and tool choice; any other field
/// is kept as an Anthropic extra. Never panics; a bad body is an
/// [`IngressError`] naming what is wrong.
///
/// ```
/// use staunch_providers::anthropic::wire::decode_request;
/// let body = br#"{"model": "claude-sonnet-4-5", "max_tokens": 256, "system": "Be brief.",
///   "messages": [{"role": "user", "content": "Weather in Paris?"},
///                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
///                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "21 C"}]}]}"#;
/// let decoded = decode_request(body).unwrap();
/// let messages = &decoded.request.messages;
/// assert_eq!(messages[2].tool_calls[0].id, "toolu_1");
/// assert_eq!(messages[3].tool_call_id.as_deref(), Some("toolu_1"));
/// ```
pub fn decode_request(body: &[u8]) -> Result<Decoded, IngressError> {
    let raw: InRequest = IngressError::parse(body)?;
    if raw.messages.is_empty() {
        return Err(field("messages", "at least one message is required"));
    }
    let mut messages = Vec::with_capacity(raw.messages.len() + 1);
    match raw.system {
        None => {}
        Some(InContent::Text(text)) => messages.push(Message::system(text)),
        Some(InContent::Blocks(blocks)) => {
            let text: String = blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n\n");
            messages.push(Message::system(text));
        }
    }
    for (i, m) in raw.messages.into_iter().enumerate() {
        turn(i, m, &mut messages)?;
    }
    let tools: Vec<ToolDefinition> = raw
        .tools
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let schema = t
                .input_schema
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            let mut tool = ToolDefinition::new(t.name, schema);
            tool.description = t.description;
            tool
        })
        .collect();
    let mut request = ChatRequest::new(raw.model, messages)
        .with_tools(tools)
        .with_max_tokens(raw.max_tokens);
    request.temperature = raw.temperature;
    request.top_p = raw.top_p;
    request.stop = raw.stop_sequences.unwrap_or_default().into();
    if let Some(choice) = raw.tool_choice {
        request.tool_choice = Some(match (choice.kind.as_str(), choice.name) {
            ("auto", _) => ToolChoice::Auto,
            ("any", _) => ToolChoice::Required,
            ("none", _) => ToolChoice::None,
            ("tool", Some(name)) => ToolChoice::Tool(name),
            ("tool", None) => return Err(field("tool_choice.name", "missing")),
            (other, _) => {
                return Err(field(
                    "tool_choice.type",
                    format!("expected auto, any, tool or none, not {other:?}"),
                ));
            }
        });
        request.parallel_tool_calls = choice.disable_parallel_tool_use.map(|d| !d);
    }
    let mut extras = Extras::default();
    extras.set(Dialect::Anthropic, raw.rest);
    request.extra = Arc::new(extras);
    Ok(Decoded {
        request,
        stream: raw.stream.unwrap_or(false),
    })
}

/// One turn: a user turn's `tool_result` blocks become tool messages (first,
/// as Anthropic orders them), the rest a user message; an assistant turn's
/// `tool_use` blocks become its tool calls.
fn turn(i: usize, m: InMessage, out: &mut Vec<Message>) -> Result<(), IngressError> {
    let blocks = match m.content {
        InContent::Text(text) => {
            out.push(match m.role {
                InRole::User => Message::user(text),
                InRole::Assistant => Message::assistant(text),
            });
            return Ok(());
        }
        InContent::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for (j, mut b) in blocks.into_iter().enumerate() {
        let at = |name: &str| format!("messages[{i}].content[{j}].{name}");
        let text_of = |b: &Map<String, Value>, name: &str| {
            b.get(name).and_then(Value::as_str).map(str::to_owned)
        };
        match b.get("type").and_then(Value::as_str).unwrap_or_default() {
            "text" => match b.remove("text") {
                Some(Value::String(text)) => parts.push(ContentPart::Text { text }),
                _ => return Err(field(at("text"), "a text block needs a string `text`")),
            },
            "image" => parts.push(
                image(&b)
                    .ok_or_else(|| field(at("source"), "an image needs a base64 or url source"))?,
            ),
            "tool_use" => {
                let id = text_of(&b, "id").ok_or_else(|| field(at("id"), "missing"))?;
                let name = text_of(&b, "name").ok_or_else(|| field(at("name"), "missing"))?;
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(ToolCall::new(id, name, input.to_string()));
            }
            "tool_result" => {
                let id = text_of(&b, "tool_use_id")
                    .ok_or_else(|| field(at("tool_use_id"), "missing"))?;
                let content = match b.remove("content") {
                    None | Some(Value::Null) => Content::default(),
                    Some(Value::String(text)) => Content::Text(text),
                    Some(Value::Array(items)) => Content::Parts(
                        items
                            .into_iter()
                            .filter_map(|item| match item {
                                Value::Object(map) => Some(map),
                                _ => None,
                            })
                            .map(|map| match map.get("type").and_then(Value::as_str) {
                                Some("text") => ContentPart::text(
                                    map.get("text").and_then(Value::as_str).unwrap_or_default(),
                                ),
                                Some("image") => image(&map).unwrap_or(ContentPart::Opaque {
                                    dialect: Dialect::Anthropic,
                                    part: Value::Object(map),
                                }),
                                _ => ContentPart::Opaque {
                                    dialect: Dialect::Anthropic,
                                    part: Value::Object(map),
                                },
                            })
                            .collect(),
                    ),
                    Some(_) => {
                        return Err(field(at("content"), "expected a string or blocks"));
                    }
                };
                let mut result = Message::tool_result(id, content);
                result.is_error = b.get("is_error").and_then(Value::as_bool).unwrap_or(false);
                out.push(result);
            }
            "" => return Err(field(at("type"), "every block needs a type")),
            _ => parts.push(ContentPart::Opaque {
                dialect: Dialect::Anthropic,
                part: Value::Object(b),
            }),
        }
    }
    let role = match m.role {
        InRole::User => Role::User,
        InRole::Assistant => Role::Assistant,
    };
    if parts.is_empty() && calls.is_empty() {
        return Ok(()); // A user turn of tool results only.
    }
    let content = match parts.as_slice() {
        [ContentPart::Text { text }] => Content::Text(text.clone()),
        _ => Content::Parts(parts),
    };
    let mut message = Message::new(role, content);
    message.tool_calls = calls;
    out.push(message);
    Ok(())
}

fn image(block: &Map<String, Value>) -> Option<ContentPart> {
    let source = block.get("source")?;
    let text = |name: &str| source.get(name).and_then(Value::as_str);
    match text("type")? {
        "base64" => Some(ContentPart::image_base64(
            text("media_type")?,
            text("data")?,
        )),
        "url" => Some(ContentPart::image_url(text("url")?)),
        _ => None,
    }
}

/// Writes `response` as a Messages answer: text and `tool_use` blocks, the
/// stop reason and the usage, with `model` the model that actually answered.
/// Fails when a tool call's arguments are not a JSON object (an answer from
/// another dialect that Anthropic clients could not read).
pub fn encode_response(response: &ChatResponse) -> Result<Vec<u8>, IngressError> {
    use crate::json::{push_json_str, push_u64};
    // Every tool call's arguments as an object first: a call that has none
    // fails the answer before anything is written.
    let inputs = response
        .message
        .tool_calls
        .iter()
        .map(|call| {
            crate::ingress::object_arguments(call).map_err(|why| field("tool_calls.arguments", why))
        })
        .collect::<Result<Vec<Value>, IngressError>>()?;
    let text = response.text();
    let id = if response.id.is_empty() {
        "msg_staunch"
    } else {
        &response.id
    };
    let model = response.answered_model();
    let stop_reason = match &response.finish_reason {
        FinishReason::Other(other) => other.as_str(),
        reason => stop_reason(reason),
    };
    // Written straight into one buffer, its keys as fixed text in the
    // order serde writes the message's fields (sorted), so the bytes are
    // those of the message serialized through serde; only what the answer
    // carries is escaped. Sized for the fixed text (about 220 bytes), what
    // is carried over and an eighth more for escapes.
    let calls = &response.message.tool_calls;
    let carried =
        text.len() + id.len() + model.len() + stop_reason.len() + crate::json::calls_len(calls, 64);
    let mut out = Vec::with_capacity(256 + carried + carried / 8);
    out.extend_from_slice(b"{\"content\":[");
    if !text.is_empty() {
        out.extend_from_slice(b"{\"text\":");
        push_json_str(&mut out, &text);
        out.extend_from_slice(b",\"type\":\"text\"}");
    }
    for (i, (call, input)) in calls.iter().zip(&inputs).enumerate() {
        if i > 0 || !text.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        push_json_str(&mut out, &call.id);
        out.extend_from_slice(b",\"input\":");
        // A JSON value written into a vector can't fail.
        let _ = serde_json::to_writer(&mut out, input);
        out.extend_from_slice(b",\"name\":");
        push_json_str(&mut out, &call.name);
        out.extend_from_slice(b",\"type\":\"tool_use\"}");
    }
    out.extend_from_slice(b"],\"id\":");
    push_json_str(&mut out, id);
    out.extend_from_slice(b",\"model\":");
    push_json_str(&mut out, model);
    out.extend_from_slice(b",\"role\":\"assistant\",\"stop_reason\":");
    push_json_str(&mut out, stop_reason);
    out.extend_from_slice(b",\"stop_sequence\":null,\"type\":\"message\",\"usage\":");
    let usage = UsageOut::from(&response.usage);
    out.extend_from_slice(b"{\"cache_read_input_tokens\":");
    push_u64(&mut out, usage.cache_read_input_tokens);
    out.extend_from_slice(b",\"input_tokens\":");
    push_u64(&mut out, usage.input_tokens);
    out.extend_from_slice(b",\"output_tokens\":");
    push_u64(&mut out, usage.output_tokens);
    out.extend_from_slice(b"}}");
    Ok(out)
}

#[derive(serde::Serialize)]
struct UsageOut {
    cache_read_input_tokens: u64,
    input_tokens: u64,
    output_tokens: u64,
}

impl From<&staunch_core::Usage> for UsageOut {
    fn from(usage: &staunch_core::Usage) -> Self {
        UsageOut {
            cache_read_input_tokens: usage.cached_input_tokens,
            input_tokens: usage.input_tokens.saturating_sub(usage.cached_input_tokens),
            output_tokens: usage.output_tokens,
        }
    }
}

/// A finish reason as Messages names it; reasons it has no name for are
/// `end_turn`.
fn stop_reason(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
        _ => "end_turn",
    }
}

/// A usage object as Messages writes it: input tokens without the cached
/// ones, which have their own field.
fn usage_json(usage: &staunch_core::Usage) -> Value {
    serde_json::to_value(UsageOut::from(usage)).unwrap_or(Value::Null)
}

/// Writes a streamed answer as Anthropic's server-sent events, the way the
/// official SDKs read them: `message_start`, then per block
/// `content_block_start` / `content_block_delta` (`text_delta`,
/// `input_json_delta`) / `content_block_stop`, then `message_delta` with the
/// stop reason and usage, and `message_stop`. A failure after the commit
/// point is an `error` event, and no `message_stop` follows.
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    started: bool,
    // The open block: its index and whether it is a tool call (and which).
    open: Option<(usize, Option<u32>)>,
    next_block: usize,
    usage: staunch_core::Usage,
    stop_reason: Option<&'static str>,
}

impl StreamEncoder {
    /// An encoder for a message `id` from `model`.
    pub fn new(id: impl Into<String>, model: impl Into<String>) -> Self {
        StreamEncoder {
            id: id.into(),
            model: model.into(),
            started: false,
            open: None,
            next_block: 0,
            usage: staunch_core::Usage::default(),
            stop_reason: None,
        }
    }

    fn event(out: &mut Vec<u8>, name: &str, data: &Value) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        let _ = serde_json::to_writer(&mut *out, data);
        out.extend_from_slice(b"\n\n");
    }

    /// A `content_block_delta` event, the one event of every token:
    /// written straight into the frame, its bytes those of the event built
    /// as a `serde_json::Value` and serialized (keys sorted), with no map
    /// or string made per key per token. `kind` and `key` are fixed text
    /// that needs no escape.
    fn delta(out: &mut Vec<u8>, index: usize, kind: &'static str, key: &'static str, value: &str) {
        out.reserve(112 + value.len() + value.len() / 8);
        out.extend_from_slice(b"event: content_block_delta\ndata: {\"delta\":{\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        crate::json::push_json_str(out, value);
        out.extend_from_slice(b",\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\"},\"index\":");
        crate::json::push_u64(out, index as u64);
        out.extend_from_slice(b",\"type\":\"content_block_delta\"}\n\n");
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({"type": "message_start", "message": {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0}}});
        Self::event(out, "message_start", &message);
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            Self::event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    /// The bytes of one event (possibly none, possibly several SSE events).
    pub fn encode(&mut self, event: &staunch_core::StreamEvent) -> Vec<u8> {
        use staunch_core::StreamEvent;
        let mut out = Vec::new();
        self.start(&mut out);
        match event {
            StreamEvent::TextDelta(text) => {
                if !matches!(self.open, Some((_, None))) {
                    self.close_block(&mut out);
                    let index = self.next_block;
                    self.next_block += 1;
                    self.open = Some((index, None));
                    Self::event(
                        &mut out,
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": index,
                                "content_block": {"type": "text", "text": ""}}),
                    );
                }
                let index = self.open.map_or(0, |(i, _)| i);
                Self::delta(&mut out, index, "text_delta", "text", text);
            }
            StreamEvent::ToolCallDelta {
                index: call,
                id,
                name,
                arguments,
            } => {
                if self.open.map(|(_, c)| c) != Some(Some(*call)) {
                    self.close_block(&mut out);
                    let index = self.next_block;
                    self.next_block += 1;
                    self.open = Some((index, Some(*call)));
                    Self::event(
                        &mut out,
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": index,
                                "content_block": {"type": "tool_use",
                                    "id": id.as_deref().unwrap_or_default(),
                                    "name": name.as_deref().unwrap_or_default(), "input": {}}}),
                    );
                }
                if !arguments.is_empty() {
                    let index = self.open.map_or(0, |(i, _)| i);
                    Self::delta(
                        &mut out,
                        index,
                        "input_json_delta",
                        "partial_json",
                        arguments,
                    );
                }
            }
            StreamEvent::Usage(usage) => self.usage = *usage,
            StreamEvent::Finish(reason) => {
                self.stop_reason = Some(stop_reason(reason));
            }
            _ => {}
        }
        out
    }

    /// The end of a complete stream: the open block closed, the stop reason
    /// and usage, `message_stop`.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.start(&mut out);
        self.close_block(&mut out);
        Self::event(
            &mut out,
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
                    "usage": usage_json(&self.usage)}),
        );
        Self::event(&mut out, "message_stop", &json!({"type": "message_stop"}));
        out
    }

    /// A failure after the commit point: an `error` event (no
    /// `message_stop` follows, so no client takes the stream for complete).
    pub fn error(&mut self, error: &staunch_core::LlmError) -> Vec<u8> {
        let mut out = Vec::new();
        let kind = match error.kind {
            staunch_core::ErrorKind::Overloaded => "overloaded_error",
            staunch_core::ErrorKind::RateLimited => "rate_limit_error",
            staunch_core::ErrorKind::Timeout => "timeout_error",
            _ => "api_error",
        };
        Self::event(
            &mut out,
            "error",
            &json!({"type": "error", "error": {"type": kind, "message": error.to_string()}}),
        );
        out
    }
}

#[cfg(test)]
mod encode_tests {
    use super::*;
    use crate::test_strategies::{chat_answer, json_text, same_output};
    use proptest::prelude::*;
    use staunch_core::{Content, StreamEvent};

    /// The message serialized through serde's derive, as the encoder did
    /// before it wrote the bytes itself: the oracle.
    fn through_serde(response: &ChatResponse) -> Result<Vec<u8>, IngressError> {
        let mut content = Vec::new();
        let text = response.text();
        if !text.is_empty() {
            content.push(BlockOut::Text {
                text: &text,
                kind: "text",
            });
        }
        for call in &response.message.tool_calls {
            let input = match call.arguments_json() {
                Ok(input @ Value::Object(_)) => input,
                _ => return Err(field("tool_calls.arguments", "not an object")),
            };
            content.push(BlockOut::ToolUse {
                id: &call.id,
                input,
                name: &call.name,
                kind: "tool_use",
            });
        }
        let body = MessageOut {
            content,
            id: if response.id.is_empty() {
                "msg_staunch"
            } else {
                &response.id
            },
            model: response.answered_model(),
            role: "assistant",
            stop_reason: match &response.finish_reason {
                FinishReason::Other(other) => other.as_str(),
                reason => stop_reason(reason),
            },
            stop_sequence: (),
            kind: "message",
            usage: UsageOut::from(&response.usage),
        };
        Ok(serde_json::to_vec(&body).expect("a message serializes"))
    }

    // A message as the Messages API writes it, serialized straight from the
    // answer's borrowed parts. The fields are in the order the wire has always
    // had them (alphabetical, as a `serde_json::Value` object writes them).

    #[derive(serde::Serialize)]
    struct MessageOut<'a> {
        content: Vec<BlockOut<'a>>,
        id: &'a str,
        model: &'a str,
        role: &'static str,
        stop_reason: &'a str,
        // Always `null`.
        stop_sequence: (),
        #[serde(rename = "type")]
        kind: &'static str,
        usage: UsageOut,
    }

    #[derive(serde::Serialize)]
    #[serde(untagged)]
    enum BlockOut<'a> {
        Text {
            text: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
        },
        ToolUse {
            id: &'a str,
            input: Value,
            name: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
        },
    }

    /// A `content_block_delta` event built as a value, as the encoder wrote
    /// every token's event before: the oracle of the stream's deltas.
    fn delta_through_a_value(index: usize, kind: &str, key: &str, value: &str) -> Vec<u8> {
        let mut delta = Map::new();
        delta.insert("type".to_owned(), Value::from(kind));
        delta.insert(key.to_owned(), Value::from(value));
        let mut out = Vec::new();
        StreamEncoder::event(
            &mut out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
        out
    }

    proptest! {
        #[test]
        fn a_message_written_by_hand_is_byte_for_byte_what_serde_writes(response in chat_answer(json_text().prop_map(Content::Text))) {
            same_output(encode_response(&response), through_serde(&response))?;
        }

        #[test]
        fn a_token_s_event_written_by_hand_is_what_the_value_wrote(
            value in json_text(),
            index in prop_oneof![Just(0usize), any::<u32>().prop_map(|n| n as usize)],
            tool in any::<bool>(),
        ) {
            let (kind, key) = if tool {
                ("input_json_delta", "partial_json")
            } else {
                ("text_delta", "text")
            };
            let mut mine = Vec::new();
            StreamEncoder::delta(&mut mine, index, kind, key, &value);
            let oracle = delta_through_a_value(index, kind, key, &value);
            prop_assert_eq!(String::from_utf8_lossy(&mine), String::from_utf8_lossy(&oracle));
        }
    }

    #[test]
    fn a_stream_of_text_and_a_tool_call_reads_as_messages_events() {
        let mut encoder = StreamEncoder::new("msg_1", "claude-sonnet-4-5");
        let mut bytes = encoder.encode(&StreamEvent::TextDelta("hel\"lo".to_owned()));
        bytes.extend(encoder.encode(&StreamEvent::ToolCallDelta {
            index: 0,
            id: Some("toolu_1".to_owned()),
            name: Some("lookup".to_owned()),
            arguments: "{\"q\":".to_owned(),
        }));
        bytes.extend(encoder.finish());
        let text = String::from_utf8(bytes).expect("UTF-8");
        let events: Vec<(&str, Value)> = text
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once("\ndata: ").expect("an event and its data");
                let name = name.strip_prefix("event: ").expect("an event name");
                (name, serde_json::from_str(data).expect("JSON data"))
            })
            .collect();
        let deltas: Vec<&Value> = events
            .iter()
            .filter(|(name, _)| *name == "content_block_delta")
            .map(|(_, data)| data)
            .collect();
        assert_eq!(deltas.len(), 2);
        assert_eq!(
            deltas[0]["delta"],
            json!({"type": "text_delta", "text": "hel\"lo"})
        );
        assert_eq!(deltas[0]["index"], 0);
        assert_eq!(
            deltas[1]["delta"],
            json!({"type": "input_json_delta", "partial_json": "{\"q\":"})
        );
        assert_eq!(deltas[1]["index"], 1);
        assert_eq!(events.last().map(|(name, _)| *name), Some("message_stop"));
    }
}
