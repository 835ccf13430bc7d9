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
    // The provider's own code for the client: `error.type` (bounded and
    // secret-free through `with_code`).
    if !kind_field.is_empty() {
        error = error.with_code(&kind_field);
    }
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

#[cfg(test)]
mod tests {
    use super::error;
    use http::HeaderMap;
    use staunch_core::{ErrorKind, LlmError};

    fn parse(status: u16, body: &str) -> LlmError {
        error(status, &HeaderMap::new(), body.as_bytes())
    }

    #[test]
    fn the_error_type_is_the_code() {
        let e = parse(
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 200251 tokens > 200000 maximum"},"request_id":"req_1"}"#,
        );
        assert_eq!(e.kind, ErrorKind::ContextLengthExceeded);
        assert_eq!(e.code.as_deref(), Some("invalid_request_error"));
        let e = parse(
            529,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(e.code.as_deref(), Some("overloaded_error"));
        // A proxy's body without a top-level type.
        let e = parse(
            413,
            r#"{"error":{"type":"request_too_large","message":"Request exceeds the maximum size"}}"#,
        );
        assert_eq!(e.code.as_deref(), Some("request_too_large"));
        assert_eq!(parse(502, "not json").code, None);
        assert_eq!(parse(400, r#"{"error":{"type":42}}"#).code, None);
    }

    #[test]
    fn a_hostile_type_is_bounded_and_never_a_key() {
        let long = "x_".repeat(50_000);
        let body = serde_json::json!({"type": "error", "error": {"type": long, "message": "m"}});
        let e = parse(400, &body.to_string());
        assert_eq!(
            e.code.as_deref().map(str::len),
            Some(LlmError::MAX_CODE_LEN)
        );
        let body = serde_json::json!({"type": "error", "error": {"type": "sk-ant-api03-AbC_d-9xYz", "message": "m"}});
        assert_eq!(parse(400, &body.to_string()).code, None);
        let body = serde_json::json!({"type": "error", "error": {"type": "x-api-key=AbCdEf0123456789AbCd", "message": "m"}});
        assert_eq!(parse(400, &body.to_string()).code, None);
    }
}
