//! Classifying the Responses API's errors: an error status has the same
//! body as Chat Completions (OpenAI's one classifier reads it); an error
//! inside a 200 answer (a `failed` response, a stream's `error` or
//! `response.failed` event) carries only a `code` and a `message`, which
//! are mapped to the status they stand for and read by the same
//! classifier.

use http::HeaderMap;
use serde_json::{Value, json};
use staunch_core::LlmError;

/// The status of an answer whose body reported the error.
const IN_BODY_STATUS: u16 = 200;

/// Classifies a non-2xx response: OpenAI's classifier
/// ([`staunch_core::classify_http::openai`]).
pub fn error(status: u16, headers: &HeaderMap, body: &[u8]) -> LlmError {
    crate::openai::wire::error(status, headers, body)
}

/// The status a Responses error `code` stands for; an unknown code is a
/// server failure.
fn status_of(code: &str) -> u16 {
    match code.to_ascii_lowercase().as_str() {
        "rate_limit_exceeded" | "rate_limit_error" | "insufficient_quota" => 429,
        "server_is_overloaded" | "server_overloaded" | "overloaded" | "service_unavailable" => 503,
        "vector_store_timeout" | "timeout" => 504,
        "invalid_prompt"
        | "invalid_request_error"
        | "context_length_exceeded"
        | "content_filter"
        | "content_policy_violation"
        | "bio_policy"
        | "data_residency_mismatch"
        | "invalid_image"
        | "invalid_image_format"
        | "invalid_base64_image"
        | "invalid_image_url"
        | "image_too_large"
        | "image_too_small"
        | "image_parse_error"
        | "image_content_policy_violation"
        | "invalid_image_mode"
        | "image_file_too_large"
        | "unsupported_image_media_type"
        | "empty_image_file"
        | "failed_to_download_image"
        | "image_file_not_found" => 400,
        "invalid_api_key" | "authentication_error" => 401,
        "permission_denied" | "permission_error" => 403,
        "model_not_found" | "not_found_error" => 404,
        _ => 500,
    }
}

/// An error reported inside an answer (`{code, message}`): classified as
/// the same error sent with its status would be, with status 200 (the
/// status the answer came with).
pub(crate) fn in_body(err: Option<&Value>) -> LlmError {
    let text = |name: &str| err.and_then(|e| e.get(name)).and_then(Value::as_str);
    let code = text("code").or_else(|| text("type"));
    let message = text("message")
        .filter(|m| !m.is_empty())
        .unwrap_or("the OpenAI Responses API reported a failure without a message");
    let body = json!({"error": {"message": message, "type": null, "param": null, "code": code}});
    let mut error = crate::openai::wire::error(
        code.map_or(500, status_of),
        &HeaderMap::new(),
        body.to_string().as_bytes(),
    );
    error.status = Some(IN_BODY_STATUS);
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use staunch_core::ErrorKind;

    fn kind(code: &str, message: &str) -> ErrorKind {
        in_body(Some(&json!({"code": code, "message": message}))).kind
    }

    #[test]
    fn codes_in_an_answer_are_classified() {
        assert_eq!(
            kind("rate_limit_exceeded", "slow down"),
            ErrorKind::RateLimited
        );
        assert_eq!(kind("insufficient_quota", "pay"), ErrorKind::QuotaExhausted);
        assert_eq!(kind("server_error", "oops"), ErrorKind::Server);
        assert_eq!(
            kind("server_error", "The server is overloaded"),
            ErrorKind::Overloaded
        );
        assert_eq!(
            kind("context_length_exceeded", "too long"),
            ErrorKind::ContextLengthExceeded
        );
        assert_eq!(
            kind("invalid_image", "bad image"),
            ErrorKind::InvalidRequest
        );
        assert_eq!(kind("something_new", "?"), ErrorKind::Server);
        let e = in_body(Some(&json!({"code": "invalid_prompt", "message": "m"})));
        assert_eq!(e.code.as_deref(), Some("invalid_prompt"));
        assert_eq!(e.status, Some(200));
        assert_eq!(e.message, "m");
    }

    #[test]
    fn a_missing_or_odd_error_is_still_an_error() {
        assert_eq!(in_body(None).kind, ErrorKind::Server);
        assert_eq!(in_body(Some(&json!("text"))).kind, ErrorKind::Server);
        assert_eq!(
            in_body(Some(&json!({"code": 7, "message": ["x"]}))).kind,
            ErrorKind::Server
        );
    }

    #[test]
    fn an_error_status_reads_like_chat_completions() {
        let body = br#"{"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}"#;
        assert_eq!(
            error(429, &HeaderMap::new(), body).kind,
            ErrorKind::RateLimited
        );
    }
}
