//! The OpenAI Chat Completions dialect: reading a request's messages, tools,
//! `tool_choice` and `response_format`, and writing completions (text, tool
//! calls, content-filter stops) and OpenAI's error bodies.

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

/// `POST /v1/chat/completions`.
pub(crate) struct Chat;

impl Dialect for Chat {
    fn provider(&self) -> &'static str {
        "openai"
    }

    fn serves(&self, method: &Method, path: &str) -> bool {
        method == Method::POST && path == "/v1/chat/completions"
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

    fn error(&self, failure: &Failure<'_>, _n: u64) -> ErrorParts {
        error(failure)
    }

    fn error_event(&self, failure: &Failure<'_>, _n: u64, _seq: usize) -> Bytes {
        sse(None, &error(failure).1.to_string())
    }
}

/// A schema that accepts anything, for a `json_schema` format without one.
pub(super) static ANY: Value = Value::Bool(true);

fn role(message: &Value) -> Option<&str> {
    message.get("role").and_then(Value::as_str)
}

/// Reads what `body` asks for: the conversation ends with the user or with
/// `role: tool` messages; `tools` of `type: function`; `tool_choice`
/// (`auto`, `none`, `required`, or `{"type": "function", "function":
/// {"name"}}`); `response_format` (`json_object`, `json_schema`); a
/// trailing `assistant` message without tool calls is a prefill.
pub(super) fn read(body: &Value) -> Ask<'_> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut results: Vec<String> = messages
        .iter()
        .rev()
        .take_while(|m| role(m) == Some("tool"))
        .map(|m| content_text(&m["content"]))
        .collect();
    results.reverse();
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter(|t| t.get("type").is_none_or(|k| k == "function"))
                .filter_map(|t| {
                    let function = t.get("function")?;
                    Some(Tool {
                        name: function.get("name")?.as_str()?,
                        schema: function.get("parameters").map(Cow::Borrowed),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let choice = match body.get("tool_choice") {
        Some(Value::String(mode)) => match mode.as_str() {
            "none" => ToolChoice::None,
            "required" => ToolChoice::Any,
            _ => ToolChoice::Auto,
        },
        Some(forced @ Value::Object(_)) => forced["function"]["name"]
            .as_str()
            .map_or(ToolChoice::Any, ToolChoice::Named),
        _ => ToolChoice::Auto,
    };
    let format = match body.get("response_format") {
        Some(f) if f["type"] == "json_object" => Format::JsonObject,
        Some(f) if f["type"] == "json_schema" => Format::JsonSchema(Cow::Borrowed(
            f["json_schema"].get("schema").unwrap_or(&ANY),
        )),
        _ => Format::Text,
    };
    let prefill = messages
        .last()
        .filter(|m| role(m) == Some("assistant"))
        .filter(|m| {
            m.get("tool_calls")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
        })
        .map(|m| content_text(&m["content"]))
        .filter(|text| !text.is_empty());
    Ask {
        model: body.get("model").and_then(Value::as_str).unwrap_or("mock"),
        user_text: last_user_text(body),
        last_is_user: messages.last().and_then(role) == Some("user"),
        tool_results: (!results.is_empty()).then_some(results),
        tools,
        choice,
        format,
        prefill,
        reject_prefill: false,
    }
}

/// The completion answering `ask` (whose raw `body` gives the usage), the
/// `n`th the server sends: `finish_reason` `stop` with text, `tool_calls`
/// with `content: null` and the arguments as JSON text, or
/// `content_filter`.
pub(super) fn answer<'a>(
    ask: &Ask<'a>,
    body: &Value,
    fault: &Fault,
    n: u64,
) -> Result<Value, Failure<'a>> {
    let reply = ask.reply(fault, false)?;
    let prompt = estimate_tokens(body);
    let completion = completion_tokens(&reply);
    let (message, finish) = match &reply {
        Reply::Text(text) => (json!({"role": "assistant", "content": text}), "stop"),
        Reply::Filtered => (
            json!({"role": "assistant", "content": null}),
            "content_filter",
        ),
        Reply::Call { name, arguments } => (
            json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": format!("call_mock_{n}"),
                    "type": "function",
                    "function": {"name": name, "arguments": Arguments::text(arguments)}
                }]
            }),
            "tool_calls",
        ),
    };
    Ok(json!({
        "id": format!("chatcmpl-mock-{n}"),
        "object": "chat.completion",
        "created": 1_700_000_000u64,
        "model": ask.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    }))
}

/// The streamed answer to `ask`, as `chat.completion.chunk` events: a role
/// chunk (`content: ""`, or `null` before a tool call), one chunk per piece
/// of text, or a tool call's opening (id, type, name, empty arguments) and
/// then its arguments in pieces; a chunk with the `finish_reason`; with
/// `stream_options.include_usage`, a chunk with no choices and the usage
/// (and `usage: null` on every other chunk); then `data: [DONE]`.
pub(super) fn events<'a>(
    ask: &Ask<'a>,
    body: &Value,
    fault: &Fault,
    n: u64,
) -> Result<Events, Failure<'a>> {
    let reply = ask.reply(fault, false)?;
    let prompt = estimate_tokens(body);
    let completion = completion_tokens(&reply);
    let with_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let id = format!("chatcmpl-mock-{n}");
    let chunk = |choices: Value| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": 1_700_000_000u64,
            "model": ask.model,
            "system_fingerprint": null,
            "choices": choices,
        });
        if with_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    };
    let delta = |delta: Value, finish: Option<&str>| {
        let choice =
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        sse(None, &chunk(choice).to_string())
    };
    let (role, content, finish) = match &reply {
        Reply::Text(text) => (
            json!({"role": "assistant", "content": ""}),
            pieces(text)
                .into_iter()
                .map(|piece| delta(json!({"content": piece}), None))
                .collect(),
            "stop",
        ),
        Reply::Filtered => (
            json!({"role": "assistant", "content": ""}),
            Vec::new(),
            "content_filter",
        ),
        Reply::Call { name, arguments } => {
            let opening = json!({"tool_calls": [{
                "index": 0,
                "id": format!("call_mock_{n}"),
                "type": "function",
                "function": {"name": name, "arguments": ""}
            }]});
            let arguments = arguments.text();
            let mut content = vec![delta(opening, None)];
            content.extend(pieces(&arguments).into_iter().map(|piece| {
                delta(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    None,
                )
            }));
            (
                json!({"role": "assistant", "content": null}),
                content,
                "tool_calls",
            )
        }
    };
    let mut tail = vec![delta(json!({}), Some(finish))];
    if with_usage {
        let mut last = chunk(json!([]));
        last["usage"] = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
        tail.push(sse(None, &last.to_string()));
    }
    Ok(Events {
        head: vec![delta(role, None)],
        content,
        tail,
        terminator: Bytes::from_static(b"data: [DONE]\n\n"),
        malformed: Bytes::from(format!(
            "data: {{\"id\":\"{id}\",\"object\":\"chat.completion.chunk\",\"choices\": [\n\n"
        )),
    })
}

fn body(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// Status, body and headers (besides the request id and `retry-after`) of
/// `failure`.
pub(super) fn error(failure: &Failure<'_>) -> ErrorParts {
    match failure {
        Failure::RateLimit { retry_after, model } => (
            429,
            body(
                &rate_limit_message(model, *retry_after),
                "requests",
                Some("rate_limit_exceeded"),
            ),
            vec![(
                "retry-after-ms",
                format!("{}", (retry_after * 1000.0).round() as u64),
            )],
        ),
        Failure::Overloaded { .. } => (
            503,
            body(
                "The engine is currently overloaded, please try again later",
                "server_error",
                None,
            ),
            vec![],
        ),
        Failure::Server => (
            500,
            body(
                "The server had an error while processing your request.",
                "server_error",
                None,
            ),
            vec![],
        ),
        Failure::Quota => (
            429,
            body(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                Some("insufficient_quota"),
            ),
            vec![],
        ),
        Failure::Unauthorized => (
            401,
            body(
                "Incorrect API key provided: sk-mo***ck. You can find your API key in your account settings.",
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
            vec![],
        ),
        Failure::ContextOverflow { tokens, .. } => (
            400,
            body(
                &format!(
                    "This model's maximum context length is exceeded: your messages resulted in {tokens} tokens. Please reduce the length of the messages."
                ),
                "invalid_request_error",
                Some("context_length_exceeded"),
            ),
            vec![],
        ),
        Failure::Invalid(message) => (400, body(message, "invalid_request_error", None), vec![]),
    }
}
