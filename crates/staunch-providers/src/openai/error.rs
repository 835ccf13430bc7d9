//! Classifying an OpenAI (or OpenAI-compatible) error answer.

use crate::json::{lower, snippet};
use http::HeaderMap;
use serde_json::Value;
use staunch_core::{ErrorKind, LlmError};

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
        // "The engine is currently overloaded", as a 5xx or in a stream.
        500..=599 if lowered.contains("overloaded") => ErrorKind::Overloaded,
        _ => ErrorKind::from_status(status),
    };
    let mut error = LlmError::new(kind, message).with_status(status);
    error.retry_after = crate::headers::retry_after(headers);
    error.should_retry = crate::headers::should_retry(headers);
    error.request_id = crate::headers::request_id(headers);
    error
}
