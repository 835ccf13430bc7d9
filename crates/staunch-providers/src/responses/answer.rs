//! Reading a Responses answer: the output items (`message` text and
//! refusals, `function_call`s), the status (`incomplete` for a token limit
//! or a content filter, `failed` with its error) and the usage (cached and
//! reasoning tokens included).

use super::error::{error, in_body};
use crate::json::decode;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use staunch_core::{ChatResponse, ErrorKind, FinishReason, LlmError, ToolCall, Usage};

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    status: Option<String>,
    output: Vec<Value>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    incomplete_details: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

/// The Responses usage object.
#[derive(Deserialize, Default)]
pub(crate) struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    input_tokens_details: Option<Details>,
    #[serde(default)]
    output_tokens_details: Option<Details>,
}

#[derive(Deserialize, Default)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl WireUsage {
    /// The neutral usage (input tokens include the cached ones, as here).
    pub(crate) fn usage(&self) -> Usage {
        let cached = self
            .input_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0);
        let reasoning = self
            .output_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0);
        Usage::new(
            self.input_tokens.unwrap_or(0),
            self.output_tokens.unwrap_or(0),
        )
        .with_cached_input(cached)
        .with_reasoning(reasoning)
    }
}

/// The usage of a response object given as JSON (a stream's final event),
/// if it has one.
pub(crate) fn usage_of(response: Option<&Value>) -> Result<Option<Usage>, String> {
    match response.and_then(|r| r.get("usage")) {
        None | Some(Value::Null) => Ok(None),
        Some(u) => WireUsage::deserialize(u)
            .map(|u| Some(u.usage()))
            .map_err(|e| format!("a Responses usage object is bad: {e}")),
    }
}

/// The error for an answer stopped by the content filter.
pub(crate) fn filtered(usage: Usage) -> LlmError {
    LlmError::new(
        ErrorKind::ContentFiltered,
        "the answer was stopped by the content filter (incomplete_details.reason: content_filter)",
    )
    .with_code("content_filter")
    .with_status(200)
    .with_spent(usage)
}

/// The reason an `incomplete` response gives.
pub(crate) fn incomplete_reason(details: Option<&Value>) -> Option<&str> {
    details
        .and_then(|d| d.get("reason"))
        .and_then(Value::as_str)
}

/// The finish reason of an `incomplete` response (its content-filter case
/// is an error, see [`filtered`]).
pub(crate) fn incomplete_finish(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("max_output_tokens") | None => FinishReason::Length,
        Some(other) => FinishReason::Other(other.to_owned()),
    }
}

/// What the output items say: text, refusal, tool calls.
#[derive(Default)]
struct Output {
    text: String,
    refusal: Option<String>,
    calls: Vec<ToolCall>,
}

fn read_output(items: &[Value]) -> Result<Output, String> {
    let mut out = Output::default();
    for (i, item) in items.iter().enumerate() {
        let Some(kind) = item.get("type").and_then(Value::as_str) else {
            return Err(format!("output item {i} has no type"));
        };
        match kind {
            "message" => {
                let parts = match item.get("content") {
                    Some(Value::Array(parts)) => parts.as_slice(),
                    None | Some(Value::Null) => &[],
                    Some(_) => return Err(format!("output item {i}'s content is not a list")),
                };
                for part in parts {
                    match part.get("type").and_then(Value::as_str) {
                        Some("output_text") => {
                            if let Some(text) = part.get("text").and_then(Value::as_str) {
                                out.text.push_str(text);
                            }
                        }
                        Some("refusal") => {
                            if let Some(text) = part.get("refusal").and_then(Value::as_str) {
                                out.refusal.get_or_insert_with(String::new).push_str(text);
                            }
                        }
                        _ => {}
                    }
                }
            }
            "function_call" => {
                let text = |name: &str| item.get(name).and_then(Value::as_str);
                let Some(call_id) = text("call_id").filter(|s| !s.is_empty()) else {
                    return Err(format!("function call {i} has no call_id"));
                };
                let arguments = match item.get("arguments") {
                    Some(Value::String(s)) => s.clone(),
                    None | Some(Value::Null) => String::new(),
                    Some(other) => other.to_string(),
                };
                out.calls.push(ToolCall::new(
                    call_id,
                    text("name").unwrap_or_default(),
                    arguments,
                ));
            }
            // Reasoning and the output of hosted tools carry nothing the
            // neutral answer holds.
            _ => {}
        }
    }
    Ok(out)
}

/// Reads a response: a 2xx body becomes a [`ChatResponse`] (an answer the
/// content filter stopped, or a `failed` one, an error), anything else an
/// [`LlmError`] classified from status, body and headers. Never panics,
/// whatever the bytes.
pub fn parse(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<ChatResponse, LlmError> {
    if !(200..300).contains(&status) {
        return Err(error(status, headers, body));
    }
    let response: WireResponse = decode("OpenAI Responses", body)?;
    let usage = response
        .usage
        .as_ref()
        .map(WireUsage::usage)
        .unwrap_or_default();
    let finish = match response.status.as_deref() {
        None | Some("completed") => None,
        Some("incomplete") => {
            let reason = incomplete_reason(response.incomplete_details.as_ref());
            if reason == Some("content_filter") {
                return Err(filtered(usage));
            }
            Some(incomplete_finish(reason))
        }
        Some("failed") => return Err(in_body(response.error.as_ref()).with_spent(usage)),
        Some(other) => {
            return Err(LlmError::new(
                ErrorKind::MalformedResponse,
                format!("the OpenAI Responses answer is not finished (status: {other:?})"),
            )
            .with_spent(usage));
        }
    };
    let output = read_output(&response.output).map_err(|why| {
        LlmError::new(
            ErrorKind::MalformedResponse,
            format!("could not read the OpenAI Responses answer: {why}"),
        )
        .with_spent(usage)
    })?;
    let finish = finish.unwrap_or(if output.calls.is_empty() {
        FinishReason::Stop
    } else {
        FinishReason::ToolCalls
    });
    let mut text = output.text;
    if text.is_empty()
        && let Some(r) = &output.refusal
    {
        // The refusal is the model's answer to show.
        text.clone_from(r);
    }
    let mut answer = ChatResponse::new(response.model.unwrap_or_default(), text)
        .with_id(response.id.unwrap_or_default())
        .with_usage(usage)
        .with_finish_reason(finish);
    answer.message.tool_calls = output.calls;
    answer.refusal = output.refusal;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(body: Value) -> ChatResponse {
        parse(200, &HeaderMap::new(), body.to_string().as_bytes()).expect("an answer")
    }

    fn err(body: Value) -> LlmError {
        parse(200, &HeaderMap::new(), body.to_string().as_bytes()).expect_err("an error")
    }

    fn usage() -> Value {
        json!({"input_tokens": 36, "input_tokens_details": {"cached_tokens": 10},
               "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 5},
               "total_tokens": 123})
    }

    #[test]
    fn a_text_answer() {
        let r = ok(json!({
            "id": "resp_67ccd3a9", "object": "response", "created_at": 1741476777,
            "status": "completed", "error": null, "incomplete_details": null,
            "model": "gpt-4o-2024-08-06",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "In a peaceful grove", "annotations": []},
                             {"type": "output_text", "text": "...", "annotations": []}]}],
            "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
            "usage": usage()}));
        assert_eq!(r.id, "resp_67ccd3a9");
        assert_eq!(r.model, "gpt-4o-2024-08-06");
        assert_eq!(r.text(), "In a peaceful grove...");
        assert_eq!(r.finish_reason, FinishReason::Stop);
        assert_eq!(
            r.usage,
            Usage::new(36, 87).with_cached_input(10).with_reasoning(5)
        );
    }

    #[test]
    fn tool_calls() {
        let r = ok(
            json!({"id": "resp_1", "model": "gpt-4.1", "status": "completed",
            "output": [
                {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "get_weather",
                 "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
                {"type": "function_call", "id": "fc_2", "call_id": "call_b", "name": "get_time",
                 "arguments": {"tz": "CET"}}]}),
        );
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            r.calls(),
            [
                ToolCall::new("call_a", "get_weather", "{\"city\":\"Paris\"}"),
                ToolCall::new("call_b", "get_time", "{\"tz\":\"CET\"}"),
            ]
        );
    }

    #[test]
    fn incomplete_refused_and_failed_answers() {
        let r = ok(
            json!({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
            "output": [{"type": "message", "content": [{"type": "output_text", "text": "Once"}]}]}),
        );
        assert_eq!(r.finish_reason, FinishReason::Length);
        assert_eq!(r.text(), "Once");

        let e = err(
            json!({"status": "incomplete", "incomplete_details": {"reason": "content_filter"},
                           "output": [], "usage": usage()}),
        );
        assert_eq!(e.kind, ErrorKind::ContentFiltered);
        assert_eq!(e.spent.input_tokens, 36);

        let r = ok(json!({"status": "completed", "output": [{"type": "message",
            "content": [{"type": "refusal", "refusal": "I can't help with that."}]}]}));
        assert_eq!(r.refusal.as_deref(), Some("I can't help with that."));
        assert_eq!(r.text(), "I can't help with that.");

        let e = err(json!({"status": "failed", "output": [],
                           "error": {"code": "rate_limit_exceeded", "message": "slow down"}}));
        assert_eq!(e.kind, ErrorKind::RateLimited);
        let e = err(json!({"status": "in_progress", "output": []}));
        assert_eq!(e.kind, ErrorKind::MalformedResponse);
    }

    #[test]
    fn bad_bodies_are_errors_never_panics() {
        for body in [
            &b""[..],
            b"{",
            b"[]",
            b"null",
            br#"{"output": 7}"#,
            br#"{"output": [7]}"#,
            br#"{"output": [{"type": "message", "content": 7}]}"#,
            br#"{"output": [{"type": "function_call", "name": "x"}]}"#,
            br#"{"usage": {"input_tokens": -1}}"#,
        ] {
            let e = parse(200, &HeaderMap::new(), body).unwrap_err();
            assert!(
                matches!(
                    e.kind,
                    ErrorKind::MalformedResponse | ErrorKind::TruncatedResponse
                ),
                "{e:?}"
            );
        }
        let e = parse(
            401,
            &HeaderMap::new(),
            br#"{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Authentication);
    }
}
