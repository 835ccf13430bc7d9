//! OpenAI Chat Completions wire format, both ways.

use crate::json::{decode, lower, snippet};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use staunch_core::{ChatRequest, ChatResponse, ErrorKind, FinishReason, LlmError, Role, Usage};

/// The request body for `request`: the neutral fields, then the provider
/// extras (which override them, e.g. `max_completion_tokens`). It borrows
/// the request and serializes straight into the output, with no JSON tree
/// in between; [`encode_request`] is what the client sends.
pub fn request_body(request: &ChatRequest) -> RequestBody<'_> {
    RequestBody { request }
}

/// The body bytes for `request`, serialized into one buffer sized from a
/// cheap estimate of the output (so memory stays about the body's size,
/// whatever the conversation's length).
pub fn encode_request(request: &ChatRequest) -> Result<Vec<u8>, serde_json::Error> {
    let messages: usize = request
        .messages
        .iter()
        // `{"role":"…","content":"…"},` and `,"name":"…"` or
        // `,"tool_call_id":"…"`, before escaping.
        .map(|m| {
            m.role.as_str().len()
                + 25
                + m.content.len()
                + m.name.as_ref().map_or(0, |n| n.len() + 18)
        })
        .sum();
    let estimate = 128
        + request.model.len()
        + messages
        + crate::json::estimate_strings(&request.stop)
        + crate::json::estimate_map(&request.extra);
    // A little room for escapes, so a typical body never reallocates.
    crate::json::encode(&request_body(request), estimate + estimate / 32)
}

/// An OpenAI request body borrowed from a [`ChatRequest`]; see
/// [`request_body`].
pub struct RequestBody<'a> {
    request: &'a ChatRequest,
}

impl serde::Serialize for RequestBody<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.request;
        // A key in `extra` replaces the typed field of the same name.
        let typed = |key: &str| !r.extra.contains_key(key);
        let mut map = serializer.serialize_map(None)?;
        if typed("model") {
            map.serialize_entry("model", &r.model)?;
        }
        if typed("messages") {
            map.serialize_entry("messages", &WireMessages(&r.messages))?;
        }
        if let Some(n) = r.max_tokens.filter(|_| typed("max_tokens")) {
            map.serialize_entry("max_tokens", &n)?;
        }
        if let Some(t) = r.temperature.filter(|_| typed("temperature")) {
            map.serialize_entry("temperature", &t)?;
        }
        if let Some(p) = r.top_p.filter(|_| typed("top_p")) {
            map.serialize_entry("top_p", &p)?;
        }
        if !r.stop.is_empty() && typed("stop") {
            map.serialize_entry("stop", &*r.stop)?;
        }
        for (k, v) in r.extra.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The conversation, one wire message at a time.
struct WireMessages<'a>(&'a [staunch_core::Message]);

/// One message on the wire: a tool result's name is its `tool_call_id`.
#[derive(serde::Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

impl serde::Serialize for WireMessages<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|m| {
            let name = m.name.as_deref();
            let tool = m.role == Role::Tool;
            OutMessage {
                role: m.role.as_str(),
                content: &m.content,
                name: name.filter(|_| !tool),
                tool_call_id: name.filter(|_| tool),
            }
        }))
    }
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: WireMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// Reads a response: a 2xx body becomes a [`ChatResponse`] (or a
/// `ContentFiltered` error when the provider filtered the answer), anything
/// else an [`LlmError`] classified from status, body and headers. Never
/// panics, whatever the bytes.
pub fn parse(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<ChatResponse, LlmError> {
    if !(200..300).contains(&status) {
        return Err(error(status, headers, body));
    }
    let completion: Completion = decode("OpenAI", body)?;
    let usage = completion
        .usage
        .map(|u| Usage::new(u.prompt_tokens, u.completion_tokens))
        .unwrap_or_default();
    let Some(choice) = completion.choices.into_iter().next() else {
        return Err(LlmError::new(
            ErrorKind::MalformedResponse,
            "the OpenAI response has no choices",
        )
        .with_spent(usage));
    };
    let finish = choice
        .finish_reason
        .map(FinishReason::from)
        .unwrap_or(FinishReason::Stop);
    if finish == FinishReason::ContentFilter {
        return Err(LlmError::new(
            ErrorKind::ContentFiltered,
            "the answer was stopped by the content filter (finish_reason: content_filter)",
        )
        .with_status(status)
        .with_spent(usage));
    }
    let text = choice
        .message
        .content
        .or(choice.message.refusal)
        .unwrap_or_default();
    Ok(ChatResponse::new(completion.model, text)
        .with_id(completion.id)
        .with_usage(usage)
        .with_finish_reason(finish))
}

/// The fields of an error body, in any of the shapes OpenAI-compatible
/// servers send: `{"error": {...}}` (OpenAI, Azure, Ollama, newer vLLM,
/// with `code` a string or a number) or a flat `{"object": "error", ...}`
/// (older vLLM).
#[derive(Default)]
struct ErrorBody {
    message: String,
    kind: String,
    code: String,
    inner_code: String,
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn error_body(body: &[u8]) -> Option<ErrorBody> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let obj = match value.get("error") {
        Some(e @ Value::Object(_)) => e,
        Some(Value::String(s)) => {
            return Some(ErrorBody {
                message: s.clone(),
                ..ErrorBody::default()
            });
        }
        _ if value.get("message").is_some() => &value,
        _ => return None,
    };
    Some(ErrorBody {
        message: text_of(obj.get("message")),
        kind: text_of(obj.get("type")),
        code: text_of(obj.get("code")),
        inner_code: text_of(obj.get("innererror").and_then(|i| i.get("code"))),
    })
}

const QUOTA_CODES: [&str; 5] = [
    "insufficient_quota",
    "credit_balance_exhausted",
    "organization_spend_limit_exceeded",
    "project_spend_limit_exceeded",
    "organization_usage_limit_exceeded",
];

fn is_context_overflow(code: &str, message: &str) -> bool {
    code == "context_length_exceeded"
        || message.contains("maximum context length")
        || message.contains("context length")
        || message.contains("context window")
        || message.contains("prompt is too long")
        || message.contains("too many tokens")
}

fn is_content_filter(body: &ErrorBody, message: &str) -> bool {
    matches!(
        body.code.as_str(),
        "content_filter" | "content_policy_violation" | "invalid_prompt"
    ) || body.inner_code == "ResponsibleAIPolicyViolation"
        || message.contains("content management policy")
        || message.contains("usage policy")
}

/// Classifies a non-2xx response.
pub fn error(status: u16, headers: &HeaderMap, body: &[u8]) -> LlmError {
    let parsed = error_body(body);
    let message = match &parsed {
        Some(b) if !b.message.is_empty() => b.message.clone(),
        Some(b) if !b.code.is_empty() => b.code.clone(),
        _ if body.is_empty() => format!("HTTP {status} with an empty body"),
        _ => snippet(body),
    };
    let b = parsed.unwrap_or_default();
    let lowered = lower(&message);
    let code = lower(&b.code);
    let kind_field = lower(&b.kind);
    let kind = match status {
        429 if QUOTA_CODES.contains(&code.as_str())
            || QUOTA_CODES.contains(&kind_field.as_str()) =>
        {
            ErrorKind::QuotaExhausted
        }
        429 if lowered.contains("request too large") => ErrorKind::RequestTooLarge,
        400 | 413 | 422 if is_context_overflow(&code, &lowered) => ErrorKind::ContextLengthExceeded,
        400 | 422 if is_content_filter(&b, &lowered) => ErrorKind::ContentFiltered,
        _ => ErrorKind::from_status(status),
    };
    let mut error = LlmError::new(kind, message).with_status(status);
    error.retry_after = crate::headers::retry_after(headers);
    error.should_retry = crate::headers::should_retry(headers);
    error.request_id = crate::headers::request_id(headers);
    error
}
