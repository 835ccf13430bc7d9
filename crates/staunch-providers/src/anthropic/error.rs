//! Classifying an Anthropic error answer.

use http::HeaderMap;
use staunch_core::LlmError;

/// Classifies a non-2xx response, by the body's `error.type` first, then by
/// the status: staunch-core's one classifier
/// ([`staunch_core::classify_http::anthropic`]), shared with the layers
/// over a raw HTTP client.
pub fn error(status: u16, headers: &HeaderMap, body: &[u8]) -> LlmError {
    staunch_core::classify_http::anthropic(status, headers, body)
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
