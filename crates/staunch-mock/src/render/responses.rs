//! The OpenAI Responses dialect (`POST /v1/responses`): reading a request's
//! `instructions`, `input` (text, or items: messages, `function_call`,
//! `function_call_output`), function `tools`, `tool_choice` and
//! `text.format`, and writing Response objects (an `output_text` message or
//! a `function_call` item; a content filter as `status: "incomplete"`),
//! their typed event stream and OpenAI's error bodies.
//!
//! The mock keeps no state: `previous_response_id` is echoed, not looked
//! up, so a tool-result round is read from the `function_call_output` items
//! the `input` ends with.

use super::openai::{self, ANY};
use super::stream::{Events, pieces, sse};
use super::{
    Ask, Call, Dialect, ErrorParts, Failure, Format, Options, Reply, Tool, ToolChoice, clip,
    completion_tokens, content_text,
};
use crate::scenario::Fault;
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use std::borrow::Cow;

/// `POST /v1/responses`.
pub(crate) struct Responses;

impl Dialect for Responses {
    fn provider(&self) -> &'static str {
        "openai"
    }

    fn serves(&self, method: &Method, path: &str) -> bool {
        method == Method::POST && path == "/v1/responses"
    }

    fn prompt_tokens(&self, body: &Value) -> u64 {
        prompt_tokens(body)
    }

    fn answer<'a>(
        &self,
        call: &Call<'a>,
        fault: &Fault,
        n: u64,
        options: &Options,
    ) -> Result<Value, Failure<'a>> {
        let reply = read(call).under(options).reply(fault, false)?;
        let ids = Ids::new(n);
        let (output, status, incomplete) = match &reply {
            Reply::Text(text) => (vec![message(&ids, text, "completed")], "completed", None),
            Reply::Filtered => (Vec::new(), "incomplete", Some("content_filter")),
            Reply::Call { name, arguments } => (
                vec![function_call(&ids, name, &arguments.text(), "completed")],
                "completed",
                None,
            ),
        };
        let usage = usage(prompt_tokens(call.body), completion_tokens(&reply));
        Ok(response(call, &ids, status, output, usage, incomplete))
    }

    /// `response.created`, `response.in_progress`; for text the message's
    /// `response.output_item.added` and `response.content_part.added`, an
    /// `response.output_text.delta` per piece (the content events), then
    /// `response.output_text.done`, `response.content_part.done`,
    /// `response.output_item.done`; for a tool call its
    /// `response.output_item.added` and `response.function_call_arguments.delta`
    /// pieces (the content events), `response.function_call_arguments.done`,
    /// `response.output_item.done`; last `response.completed` (a content
    /// filter: `response.incomplete`), which `no_terminator` leaves out.
    /// Every event has `event: <type>` and a `sequence_number`.
    fn events<'a>(
        &self,
        call: &Call<'a>,
        fault: &Fault,
        n: u64,
        options: &Options,
    ) -> Result<Events, Failure<'a>> {
        let reply = read(call).under(options).reply(fault, false)?;
        let ids = Ids::new(n);
        let usage = usage(prompt_tokens(call.body), completion_tokens(&reply));
        let mut seq = Sequence(0);
        let pending = response(call, &ids, "in_progress", Vec::new(), Value::Null, None);
        let mut head = vec![
            seq.event("response.created", json!({"response": pending})),
            seq.event("response.in_progress", json!({"response": pending})),
        ];
        let at = |item: &str| json!({"item_id": item, "output_index": 0});
        let with = |mut base: Value, extra: Value| {
            if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
                base.extend(extra);
            }
            base
        };
        let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
        let (content, tail, last) = match &reply {
            Reply::Text(text) => {
                let item = message(&ids, "", "in_progress");
                head.push(seq.event(
                    "response.output_item.added",
                    json!({"output_index": 0, "item": with(item, json!({"content": []}))}),
                ));
                let at_part = with(at(&ids.message), json!({"content_index": 0}));
                head.push(seq.event(
                    "response.content_part.added",
                    with(at_part.clone(), json!({"part": part("")})),
                ));
                let content = pieces(text)
                    .into_iter()
                    .map(|piece| {
                        let delta = json!({"delta": piece, "logprobs": []});
                        seq.event("response.output_text.delta", with(at_part.clone(), delta))
                    })
                    .collect();
                let done = message(&ids, text, "completed");
                let tail = vec![
                    seq.event(
                        "response.output_text.done",
                        with(at_part.clone(), json!({"text": text, "logprobs": []})),
                    ),
                    seq.event(
                        "response.content_part.done",
                        with(at_part, json!({"part": part(text)})),
                    ),
                    seq.event(
                        "response.output_item.done",
                        json!({"output_index": 0, "item": done.clone()}),
                    ),
                ];
                (content, tail, vec![done])
            }
            Reply::Filtered => (Vec::new(), Vec::new(), Vec::new()),
            Reply::Call { name, arguments } => {
                let arguments = arguments.text();
                let mut content = vec![seq.event(
                    "response.output_item.added",
                    json!({"output_index": 0, "item": function_call(&ids, name, "", "in_progress")}),
                )];
                content.extend(pieces(&arguments).into_iter().map(|piece| {
                    seq.event(
                        "response.function_call_arguments.delta",
                        with(at(&ids.call_item), json!({"delta": piece})),
                    )
                }));
                let done = function_call(&ids, name, &arguments, "completed");
                let tail = vec![
                    seq.event(
                        "response.function_call_arguments.done",
                        with(
                            at(&ids.call_item),
                            json!({"name": name, "arguments": arguments}),
                        ),
                    ),
                    seq.event(
                        "response.output_item.done",
                        json!({"output_index": 0, "item": done.clone()}),
                    ),
                ];
                (content, tail, vec![done])
            }
        };
        let terminator = match &reply {
            Reply::Filtered => {
                let incomplete = Some("content_filter");
                let response = response(call, &ids, "incomplete", last, usage, incomplete);
                seq.event("response.incomplete", json!({"response": response}))
            }
            _ => {
                let response = response(call, &ids, "completed", last, usage, None);
                seq.event("response.completed", json!({"response": response}))
            }
        };
        Ok(Events {
            head,
            content,
            tail,
            terminator,
            malformed: Bytes::from(format!(
                "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"item_id\":\"{}\",\"output_index\":0,\"del\n\n",
                ids.message
            )),
        })
    }

    fn error(&self, failure: &Failure<'_>, _n: u64) -> ErrorParts {
        openai::error(failure)
    }

    /// `event: error` with `{"type": "error", "code", "message", "param",
    /// "sequence_number"}` (the code is OpenAI's error code, else its type).
    fn error_event(&self, failure: &Failure<'_>, _n: u64, seq: usize) -> Bytes {
        let (_, body, _) = openai::error(failure);
        let error = &body["error"];
        let code = match &error["code"] {
            Value::Null => error["type"].clone(),
            code => code.clone(),
        };
        let event = json!({
            "type": "error",
            "code": code,
            "message": error["message"],
            "param": null,
            "sequence_number": seq
        });
        sse(Some("error"), &event.to_string())
    }
}

/// Numbers a stream's events as they are written.
struct Sequence(usize);

impl Sequence {
    /// `event: <kind>` with `data` plus its `type` and `sequence_number`.
    fn event(&mut self, kind: &str, mut data: Value) -> Bytes {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.0);
        self.0 += 1;
        sse(Some(kind), &data.to_string())
    }
}

/// The ids of the `n`th answer and its items.
struct Ids {
    response: String,
    message: String,
    call_item: String,
    call: String,
}

impl Ids {
    fn new(n: u64) -> Ids {
        Ids {
            response: format!("resp_mock_{n}"),
            message: format!("msg_mock_{n}"),
            call_item: format!("fc_mock_{n}"),
            call: format!("call_mock_{n}"),
        }
    }
}

/// An input item's type (`message` for an item with a `role` and no
/// `type`).
fn kind(item: &Value) -> &str {
    match item.get("type").and_then(Value::as_str) {
        Some(kind) => kind,
        None if item.get("role").is_some() => "message",
        None => "",
    }
}

/// A message item's role.
fn role(item: &Value) -> Option<&str> {
    (kind(item) == "message")
        .then(|| item.get("role").and_then(Value::as_str))
        .flatten()
}

/// A `function_call_output`'s output as text.
fn output_text(item: &Value) -> String {
    content_text(&item["output"])
}

/// Reads what a request asks for: `input` text is one user message; input
/// items end with a user message, with `function_call_output` items (the
/// tool results), or with an assistant message (a prefill); `tools` of
/// `type: function`; `tool_choice` (`auto`, `none`, `required`, `{"type":
/// "function", "name"}`); `text.format` (`json_schema` with its `schema`,
/// `json_object`).
fn read<'a>(call: &Call<'a>) -> Ask<'a> {
    let body = call.body;
    let (items, text) = match body.get("input") {
        Some(Value::Array(items)) => (items.as_slice(), None),
        Some(Value::String(text)) => (&[][..], Some(text.as_str())),
        _ => (&[][..], None),
    };
    let mut results: Vec<String> = items
        .iter()
        .rev()
        .take_while(|i| kind(i) == "function_call_output")
        .map(output_text)
        .collect();
    results.reverse();
    let user_text = match text {
        Some(text) => clip(text, 48),
        None => items
            .iter()
            .rev()
            .find(|i| role(i) == Some("user"))
            .map(|i| clip(&content_text(&i["content"]), 48))
            .unwrap_or_default(),
    };
    let last = items.last();
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t["type"] == "function")
        .filter_map(|t| {
            Some(Tool {
                name: t.get("name")?.as_str()?,
                schema: t.get("parameters").map(Cow::Borrowed),
            })
        })
        .collect();
    let choice = match body.get("tool_choice") {
        Some(Value::String(mode)) => match mode.as_str() {
            "none" => ToolChoice::None,
            "required" => ToolChoice::Any,
            _ => ToolChoice::Auto,
        },
        Some(forced @ Value::Object(_)) => match forced["name"].as_str() {
            Some(name) => ToolChoice::Named(name),
            None if forced["mode"] == "required" => ToolChoice::Any,
            None => ToolChoice::Auto,
        },
        _ => ToolChoice::Auto,
    };
    let format = match body.pointer("/text/format") {
        Some(f) if f["type"] == "json_object" => Format::JsonObject,
        Some(f) if f["type"] == "json_schema" => {
            Format::JsonSchema(Cow::Borrowed(f.get("schema").unwrap_or(&ANY)))
        }
        _ => Format::Text,
    };
    let prefill = last
        .filter(|i| role(i) == Some("assistant"))
        .map(|i| content_text(&i["content"]))
        .filter(|t| !t.is_empty());
    Ask {
        model: call.model,
        user_text,
        last_is_user: text.is_some() || last.and_then(role) == Some("user"),
        tool_results: (!results.is_empty()).then_some(results),
        tools,
        choice,
        format,
        prefill,
        reject_prefill: false,
    }
}

/// About four bytes of text per token plus framing, for the instructions
/// and each input item (its content, call arguments or output).
fn prompt_tokens(body: &Value) -> u64 {
    let tokens = |bytes: usize| (bytes as u64).div_ceil(4) + 4;
    let instructions = body
        .get("instructions")
        .and_then(Value::as_str)
        .map_or(0, |i| tokens(i.len()));
    let input = match body.get("input") {
        Some(Value::String(text)) => tokens(text.len()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                tokens(
                    content_text(&item["content"]).len()
                        + item["arguments"].as_str().map_or(0, str::len)
                        + output_text(item).len(),
                )
            })
            .sum(),
        _ => 0,
    };
    instructions + input
}

/// The assistant's message item with `text`.
fn message(ids: &Ids, text: &str, status: &str) -> Value {
    json!({
        "id": ids.message,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    })
}

/// A `function_call` item.
fn function_call(ids: &Ids, name: &str, arguments: &str, status: &str) -> Value {
    json!({
        "id": ids.call_item,
        "type": "function_call",
        "status": status,
        "call_id": ids.call,
        "name": name,
        "arguments": arguments
    })
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion
    })
}

/// The Response object, echoing the request's settings as OpenAI does.
fn response(
    call: &Call<'_>,
    ids: &Ids,
    status: &str,
    output: Vec<Value>,
    usage: Value,
    incomplete: Option<&str>,
) -> Value {
    let body = call.body;
    let echo = |key: &str, default: Value| match body.get(key) {
        Some(value) if !value.is_null() => value.clone(),
        _ => default,
    };
    json!({
        "id": ids.response,
        "object": "response",
        "created_at": 1_700_000_000u64,
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": incomplete.map(|reason| json!({"reason": reason})),
        "instructions": echo("instructions", Value::Null),
        "max_output_tokens": echo("max_output_tokens", Value::Null),
        "metadata": echo("metadata", json!({})),
        "model": call.model,
        "output": output,
        "parallel_tool_calls": echo("parallel_tool_calls", json!(true)),
        "previous_response_id": echo("previous_response_id", Value::Null),
        "reasoning": {"effort": null, "summary": null},
        "service_tier": "default",
        "store": echo("store", json!(true)),
        "temperature": echo("temperature", json!(1.0)),
        "text": {"format": body.pointer("/text/format").cloned().unwrap_or(json!({"type": "text"}))},
        "tool_choice": echo("tool_choice", json!("auto")),
        "tools": echo("tools", json!([])),
        "top_p": echo("top_p", json!(1.0)),
        "truncation": echo("truncation", json!("disabled")),
        "usage": usage,
        "user": null
    })
}
