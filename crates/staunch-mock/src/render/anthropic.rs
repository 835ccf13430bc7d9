//! The Anthropic Messages dialect: reading a request's turns, `tool_result`
//! blocks, tools and `tool_choice` (a JSON output format arrives as a
//! forced tool), and writing messages (text, `tool_use`, refusals) and
//! Anthropic's error bodies.

use super::stream::{Events, pieces, sse};
use super::{
    Arguments, Ask, Call, Dialect, ErrorParts, Failure, Format, Options, Reply, Tool, ToolChoice,
    completion_tokens, content_text, last_user_text, rate_limit_message,
};
use crate::scenario::Fault;
use crate::state::estimate_tokens;
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use std::borrow::Cow;

/// `POST /v1/messages`.
pub(crate) struct Messages;

impl Dialect for Messages {
    fn provider(&self) -> &'static str {
        "anthropic"
    }

    fn serves(&self, method: &Method, path: &str) -> bool {
        method == Method::POST && path == "/v1/messages"
    }

    fn request_id(&self) -> &'static str {
        "request-id"
    }

    fn answer<'a>(
        &self,
        call: &Call<'a>,
        fault: &Fault,
        n: u64,
        options: &Options,
    ) -> Result<Value, Failure<'a>> {
        answer(&read(call.body).under(options), call.body, fault, n)
    }

    fn events<'a>(
        &self,
        call: &Call<'a>,
        fault: &Fault,
        n: u64,
        options: &Options,
    ) -> Result<Events, Failure<'a>> {
        events(&read(call.body).under(options), call.body, fault, n)
    }

    fn error(&self, failure: &Failure<'_>, n: u64) -> ErrorParts {
        error(failure, n)
    }

    fn error_event(&self, failure: &Failure<'_>, n: u64, _seq: usize) -> Bytes {
        sse(Some("error"), &error(failure, n).1.to_string())
    }
}

/// Reads what `body` asks for: the conversation ends with a user turn,
/// which may carry `tool_result` blocks; client `tools` (server tools, with
/// a `type` other than `custom`, are never called); `tool_choice` (`auto`,
/// `any`, `tool` with a `name`, `none`); a trailing assistant turn's text is
/// a prefill.
pub(super) fn read(body: &Value) -> Ask<'_> {
    let last = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last());
    let last_is_user = last.is_some_and(|m| m["role"] == "user");
    let results: Vec<String> = match last.map(|m| &m["content"]) {
        Some(Value::Array(blocks)) if last_is_user => blocks
            .iter()
            .filter(|b| b["type"] == "tool_result")
            .map(|b| content_text(&b["content"]))
            .collect(),
        _ => Vec::new(),
    };
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter(|t| t.get("type").is_none_or(|k| k == "custom"))
                .filter_map(|t| {
                    Some(Tool {
                        name: t.get("name")?.as_str()?,
                        schema: t.get("input_schema").map(Cow::Borrowed),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let choice = match body.get("tool_choice") {
        Some(c) => match c["type"].as_str() {
            Some("none") => ToolChoice::None,
            Some("any") => ToolChoice::Any,
            Some("tool") => c["name"]
                .as_str()
                .map_or(ToolChoice::Any, ToolChoice::Named),
            _ => ToolChoice::Auto,
        },
        None => ToolChoice::Auto,
    };
    let prefill = last
        .filter(|m| m["role"] == "assistant")
        .map(|m| content_text(&m["content"]))
        .filter(|text| !text.is_empty());
    Ask {
        model: body.get("model").and_then(Value::as_str).unwrap_or("mock"),
        user_text: last_user_text(body),
        last_is_user: last_is_user && results.is_empty(),
        tool_results: (!results.is_empty()).then_some(results),
        tools,
        choice,
        format: Format::Text,
        prefill,
        reject_prefill: false,
    }
}

/// The message answering `ask` (whose raw `body` gives the usage), the
/// `n`th the server sends: `stop_reason` `end_turn` with a text block,
/// `tool_use` with one `tool_use` block whose `input` is an object, or
/// `refusal` with no content.
pub(super) fn answer<'a>(
    ask: &Ask<'a>,
    body: &Value,
    fault: &Fault,
    n: u64,
) -> Result<Value, Failure<'a>> {
    let reply = ask.reply(fault, true)?;
    let prompt = estimate_tokens(body);
    let completion = completion_tokens(&reply);
    let (content, stop) = match reply {
        Reply::Text(text) => (json!([{"type": "text", "text": text}]), "end_turn"),
        Reply::Filtered => (json!([]), "refusal"),
        Reply::Call { name, arguments } => {
            let input = match arguments {
                Arguments::Json(value) => value,
                Arguments::Text(text) => Value::String(text),
            };
            (
                json!([{"type": "tool_use", "id": format!("toolu_mock_{n}"), "name": name, "input": input}]),
                "tool_use",
            )
        }
    };
    Ok(json!({
        "id": format!("msg_mock_{n}"),
        "type": "message",
        "role": "assistant",
        "model": ask.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": {"input_tokens": prompt, "output_tokens": completion}
    }))
}

/// The streamed answer to `ask`, as Anthropic's events: `message_start`
/// (the message without content, `usage.input_tokens`), a text block's
/// `content_block_start`, `ping`; then a `text_delta` per piece of text, or
/// a `tool_use` block's `content_block_start` (id, name, `input: {}`) and
/// its input in `input_json_delta` pieces; `content_block_stop`,
/// `message_delta` (`stop_reason`, `usage.output_tokens`), `message_stop`.
pub(super) fn events<'a>(
    ask: &Ask<'a>,
    body: &Value,
    fault: &Fault,
    n: u64,
) -> Result<Events, Failure<'a>> {
    let reply = ask.reply(fault, true)?;
    let prompt = estimate_tokens(body);
    let completion = completion_tokens(&reply);
    let event = |name: &str, data: Value| sse(Some(name), &data.to_string());
    let mut head = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": format!("msg_mock_{n}"),
            "type": "message",
            "role": "assistant",
            "model": ask.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": prompt, "output_tokens": 1}
        }}),
    )];
    let block_delta = |delta: Value| {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        )
    };
    let (content, stop, block) = match &reply {
        Reply::Text(text) => {
            head.push(event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            let content = pieces(text)
                .into_iter()
                .map(|piece| block_delta(json!({"type": "text_delta", "text": piece})))
                .collect();
            (content, "end_turn", true)
        }
        Reply::Filtered => (Vec::new(), "refusal", false),
        Reply::Call { name, arguments } => {
            let input = match arguments {
                Arguments::Json(value) => value.to_string(),
                Arguments::Text(text) => Value::String(text.clone()).to_string(),
            };
            let mut content = vec![event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {
                    "type": "tool_use", "id": format!("toolu_mock_{n}"), "name": name, "input": {}
                }}),
            )];
            content.extend(pieces(&input).into_iter().map(|piece| {
                block_delta(json!({"type": "input_json_delta", "partial_json": piece}))
            }));
            (content, "tool_use", true)
        }
    };
    head.push(event("ping", json!({"type": "ping"})));
    let mut tail = Vec::new();
    if block {
        tail.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
    }
    tail.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": completion}}),
    ));
    Ok(Events {
        head,
        content,
        tail,
        terminator: event("message_stop", json!({"type": "message_stop"})),
        malformed: Bytes::from_static(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"te\n\n",
        ),
    })
}

fn body(kind: &str, message: &str, n: u64) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": format!("req_mock_{n}")})
}

/// Status, body and headers (besides the request id and `retry-after`) of
/// `failure`.
pub(super) fn error(failure: &Failure<'_>, n: u64) -> ErrorParts {
    let (status, body) = match failure {
        Failure::RateLimit { retry_after, model } => (
            429,
            body(
                "rate_limit_error",
                &rate_limit_message(model, *retry_after),
                n,
            ),
        ),
        Failure::Overloaded { .. } => (529, body("overloaded_error", "Overloaded", n)),
        Failure::Server => (500, body("api_error", "Internal server error", n)),
        Failure::Quota => (
            429,
            json!({
                "type": "error",
                "error": {
                    "type": "rate_limit_error",
                    "message": "You have reached your specified API usage limits.",
                    "details": {"error_code": "enforced_spend_limit_reached"}
                },
                "request_id": format!("req_mock_{n}")
            }),
        ),
        Failure::Unauthorized => (401, body("authentication_error", "invalid x-api-key", n)),
        Failure::ContextOverflow { tokens, .. } => (
            400,
            body(
                "invalid_request_error",
                &format!("prompt is too long: {tokens} tokens > maximum"),
                n,
            ),
        ),
        Failure::Invalid(message) => (400, body("invalid_request_error", message, n)),
    };
    (status, body, Vec::new())
}
