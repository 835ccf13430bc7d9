//! OpenAI Chat Completions wire format, both ways.

use crate::json::{decode, lower, snippet};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use staunch_core::{ChatRequest, ChatResponse, ErrorKind, FinishReason, LlmError, Role, Usage};

/// The request body for `request`: the neutral fields, then the provider
/// extras (which may override them, e.g. `max_completion_tokens`).
pub fn request_body(request: &ChatRequest) -> Value {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|m| {
            let mut msg = Map::new();
            msg.insert("role".into(), json!(m.role.as_str()));
            msg.insert("content".into(), json!(m.content));
            if let Some(name) = &m.name {
                let key = if m.role == Role::Tool {
                    "tool_call_id"
                } else {
                    "name"
                };
                msg.insert(key.into(), json!(name));
            }
            Value::Object(msg)
        })
        .collect();
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert("messages".into(), Value::Array(messages));
    if let Some(n) = request.max_tokens {
        body.insert("max_tokens".into(), json!(n));
    }
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = request.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if !request.stop.is_empty() {
        body.insert("stop".into(), json!(request.stop));
    }
    for (k, v) in request.extra.iter() {
        body.insert(k.clone(), v.clone());
    }
    Value::Object(body)
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
