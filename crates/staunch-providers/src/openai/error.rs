//! Classifying an OpenAI (or OpenAI-compatible) error answer.

use http::HeaderMap;
use staunch_core::LlmError;

/// Classifies a non-2xx response: staunch-core's one classifier
/// ([`staunch_core::classify_http::openai`]), shared with the layers over a
/// raw HTTP client.
pub fn error(status: u16, headers: &HeaderMap, body: &[u8]) -> LlmError {
    staunch_core::classify_http::openai(status, headers, body)
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
    fn the_providers_code_is_kept() {
        let e = parse(
            400,
            r#"{"error": {"message": "Your request was rejected as a result of our safety system.", "type": "invalid_request_error", "param": null, "code": "content_policy_violation"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::ContentFiltered);
        assert_eq!(e.code.as_deref(), Some("content_policy_violation"));
        assert_eq!(
            e.message,
            "Your request was rejected as a result of our safety system."
        );
        // No `code`: the `type` stands in (Ollama, vLLM's class name).
        let e = parse(
            400,
            r#"{"error": {"message": "bad", "type": "BadRequestError", "param": null, "code": null}}"#,
        );
        assert_eq!(e.code.as_deref(), Some("BadRequestError"));
        // vLLM's numeric code.
        let e = parse(
            400,
            r#"{"error": {"message": "bad", "type": "x", "code": 400}}"#,
        );
        assert_eq!(e.code.as_deref(), Some("400"));
        // Older vLLM's flat shape.
        let e = parse(
            400,
            r#"{"object": "error", "message": "bad", "type": "BadRequestError", "code": 400}"#,
        );
        assert_eq!(e.code.as_deref(), Some("400"));
        // Nothing to keep.
        assert_eq!(parse(502, "<html>Bad Gateway</html>").code, None);
        assert_eq!(parse(400, r#"{"error": "just text"}"#).code, None);
        assert_eq!(parse(400, "").code, None);
    }

    #[test]
    fn a_hostile_code_is_bounded_and_never_a_key() {
        let long = format!("policy_{}", "a".repeat(100_000));
        let body = serde_json::json!({"error": {"message": "m", "type": "t", "code": long}});
        let e = parse(400, &body.to_string());
        let code = e.code.as_deref().unwrap_or_default();
        assert_eq!(code.len(), LlmError::MAX_CODE_LEN);
        assert!(code.starts_with("policy_aaa"));

        for key in [
            "sk-proj-AbCdEfGh0123456789",
            "Bearer eyJhbGciOiJIUzI1NiJ9",
            "3f9c2b7e1d4a8f6e3f9c2b7e1d4a8f6e",
        ] {
            let body = serde_json::json!({"error": {"message": "m", "type": "invalid_request_error", "code": key}});
            let e = parse(400, &body.to_string());
            assert_eq!(e.code, None, "{key}");
        }
        // Markup and control characters are dropped, not passed on.
        let body = serde_json::json!({"error": {"message": "m", "code": "<script>x</script>\r\nSet-Cookie: a"}});
        assert_eq!(
            parse(400, &body.to_string()).code.as_deref(),
            Some("scriptxscriptSet-Cookiea")
        );
    }
}
