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
        // Embedding servers: "input too long" (OpenAI-compatible servers),
        // TEI's "`inputs` must have less than 512 tokens".
        || message.contains("input too long")
        || message.contains("input is too long")
        || (message.contains("must have less than") && message.contains("tokens"))
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
    // The provider's own code for the client: `error.code`, else
    // `error.type` (vLLM's class name, Ollama's type); bounded and
    // secret-free through `with_code`.
    let provider_code = if b.code.is_empty() { &b.kind } else { &b.code };
    if !provider_code.is_empty() {
        error = error.with_code(provider_code);
    }
    error.retry_after = crate::headers::retry_after(headers);
    error.should_retry = crate::headers::should_retry(headers);
    error.request_id = crate::headers::request_id(headers);
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
