//! Classifying an Anthropic error answer.

use crate::json::{lower, snippet};
use http::HeaderMap;
use serde_json::Value;
use staunch_core::{ErrorKind, LlmError};

/// Classifies a non-2xx response, by the body's `error.type` first (it is
/// what Anthropic documents), then by the status.
pub fn error(status: u16, headers: &HeaderMap, body: &[u8]) -> LlmError {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let err = value.as_ref().and_then(|v| v.get("error"));
    let field = |name: &str| {
        err.and_then(|e| e.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (kind_field, message) = (field("type"), field("message"));
    let spend_limit = err
        .and_then(|e| e.get("details"))
        .and_then(|d| d.get("error_code"))
        .and_then(Value::as_str)
        == Some("enforced_spend_limit_reached");
    let message = if !message.is_empty() {
        message
    } else if body.is_empty() {
        format!("HTTP {status} with an empty body")
    } else if kind_field.is_empty() {
        snippet(body)
    } else {
        kind_field.clone()
    };
    let lowered = lower(&message);
    let kind = match kind_field.as_str() {
        "invalid_request_error"
            if lowered.contains("prompt is too long") || lowered.contains("context window") =>
        {
            ErrorKind::ContextLengthExceeded
        }
        "invalid_request_error" | "request_too_large" => ErrorKind::InvalidRequest,
        "authentication_error" => ErrorKind::Authentication,
        "billing_error" => ErrorKind::QuotaExhausted,
        "permission_error" => ErrorKind::PermissionDenied,
        "not_found_error" => ErrorKind::ModelNotFound,
        "rate_limit_error" if spend_limit => ErrorKind::QuotaExhausted,
        "rate_limit_error" => ErrorKind::RateLimited,
        "api_error" => ErrorKind::Server,
        "timeout_error" => ErrorKind::Timeout,
        "overloaded_error" => ErrorKind::Overloaded,
        _ if status == 504 => ErrorKind::Timeout,
        _ => ErrorKind::from_status(status),
    };
    let mut error = LlmError::new(kind, message).with_status(status);
    error.retry_after = crate::headers::retry_after(headers);
    error.should_retry = crate::headers::should_retry(headers);
    error.request_id = crate::headers::request_id(headers).or_else(|| {
        value
            .as_ref()
            .and_then(|v| v.get("request_id"))
            .and_then(Value::as_str)
            .map(|id| staunch_core::redact_secrets(id).into_owned())
    });
    error
}
