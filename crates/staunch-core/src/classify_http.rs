//! The one classifier of providers' HTTP error answers: a status, its
//! headers and its (bounded) body in, an [`LlmError`] out, with the kind,
//! the provider's code, `Retry-After`, `x-should-retry`, the request id and
//! the rate-limit headers.
//!
//! staunch's provider clients call the dialect's function
//! ([`openai`], [`anthropic`]); a layer stack over a raw HTTP client (the
//! `http-call` feature of the `staunch` crate) calls [`any`], which tells
//! the dialect from the body's shape. Both therefore classify the same
//! answer the same way: a context-window 400 is `ContextLengthExceeded`
//! (not retried), a 429 `insufficient_quota` is `QuotaExhausted`
//! (`Unavailable`), an Anthropic `overloaded_error` is `Overloaded`, a
//! Gemini `RESOURCE_EXHAUSTED` is `RateLimited` with its `RetryInfo` delay.
//!
//! Pure functions: no I/O, no clock but [`SystemTime::now`] for an HTTP-date
//! `Retry-After`. Read the body with at most [`MAX_ERROR_BODY_BYTES`]: a
//! provider's error body is small, and a larger one is cut, not trusted.
//!
//! ```
//! use http::HeaderMap;
//! use staunch_core::{ErrorClass, ErrorKind, classify_http};
//!
//! let body = br#"{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}}"#;
//! let error = classify_http::any(429, &HeaderMap::new(), body);
//! assert_eq!(error.kind, ErrorKind::QuotaExhausted);
//! assert_eq!(error.class(), ErrorClass::Unavailable);
//! ```

use crate::{ErrorKind, LlmError, redact_secrets, wire_time};
use http::HeaderMap;
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// The most bytes of an error body worth reading: every provider's error
/// body is far smaller; past this, the rest is dropped unread.
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Classifies a non-2xx answer of any provider: the dialect is read from
/// the body's shape (Anthropic's `{"type": "error", ...}` or its error
/// types, Gemini's `error.status` names, else OpenAI's shape, which every
/// OpenAI-compatible server and most gateways use), then classified as
/// that dialect's client does; a body that is no JSON at all (a proxy's
/// HTML page) is classified by its status. The rate-limit headers and the
/// request id are attached as the clients attach them.
pub fn any(status: u16, headers: &HeaderMap, body: &[u8]) -> LlmError {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let mut error = match value.as_ref().map(dialect_of) {
        Some(Dialect::Anthropic) => anthropic(status, headers, body),
        Some(Dialect::Gemini) => gemini(status, headers, body),
        _ => openai(status, headers, body),
    };
    if error.request_id.is_none() {
        error.request_id = request_id(headers);
    }
    error.rate_limit_headers = rate_limit_headers(headers);
    error
}

enum Dialect {
    OpenAi,
    Anthropic,
    Gemini,
}

/// Anthropic's error types (OpenAI-compatible servers use other names, or
/// add `code` and `param`, which Anthropic never sends).
const ANTHROPIC_TYPES: [&str; 11] = [
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "timeout_error",
    "overloaded_error",
    "error",
];

fn dialect_of(value: &Value) -> Dialect {
    let Some(err) = value.get("error").and_then(Value::as_object) else {
        return Dialect::OpenAi;
    };
    if err.get("status").is_some_and(Value::is_string) {
        return Dialect::Gemini;
    }
    if value.get("type").and_then(Value::as_str) == Some("error") {
        return Dialect::Anthropic;
    }
    let anthropic_type = err
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| ANTHROPIC_TYPES.contains(&t));
    if anthropic_type && !err.contains_key("code") && !err.contains_key("param") {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    }
}

/// The server's `x-should-retry` instruction (`true` forces a retry,
/// `false` vetoes one).
pub fn should_retry(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()?.trim() {
        v if v.eq_ignore_ascii_case("true") => Some(true),
        v if v.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// The wait a provider asks for, now: see [`wire_time::retry_after_at`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    wire_time::retry_after_at(headers, SystemTime::now())
}

/// The provider's request id (`x-request-id`, or Anthropic's `request-id`),
/// at most 200 characters, with anything shaped like a credential masked.
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    ["x-request-id", "request-id"]
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok())
        .map(|v| {
            let v: String = v.chars().take(200).collect();
            redact_secrets(&v).into_owned()
        })
}

/// The rate-limit headers of an answer (OpenAI's `x-ratelimit-*`,
/// Anthropic's `anthropic-ratelimit-*`, `retry-after`, `retry-after-ms`),
/// for a quota layer to learn from; `None` when there are none.
pub fn rate_limit_headers(headers: &HeaderMap) -> Option<HeaderMap> {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if n.starts_with("x-ratelimit-")
            || n.starts_with("anthropic-ratelimit-")
            || n.starts_with("retry-after")
        {
            out.append(name.clone(), value.clone());
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The start of a body that is not JSON, for error messages: at most 200
/// characters, control characters replaced, credentials masked.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    redact_secrets(out.trim()).into_owned()
}

/// The headers' part of every error: wait, instruction, request id.
fn with_header_facts(mut error: LlmError, headers: &HeaderMap) -> LlmError {
    error.retry_after = retry_after(headers);
    error.should_retry = should_retry(headers);
    error.request_id = request_id(headers);
    error
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The fields of an OpenAI-shaped error body: `{"error": {...}}` (OpenAI,
/// Azure, Ollama, newer vLLM, with `code` a string or a number) or a flat
/// `{"object": "error", ...}` (older vLLM).
#[derive(Default)]
struct OpenAiBody {
    message: String,
    kind: String,
    code: String,
    inner_code: String,
}

fn openai_body(body: &[u8]) -> Option<OpenAiBody> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let obj = match value.get("error") {
        Some(e @ Value::Object(_)) => e,
        Some(Value::String(s)) => {
            return Some(OpenAiBody {
                message: s.clone(),
                ..OpenAiBody::default()
            });
        }
        _ if value.get("message").is_some() => &value,
        _ => return None,
    };
    Some(OpenAiBody {
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

fn is_content_filter(body: &OpenAiBody, message: &str) -> bool {
    matches!(
        body.code.as_str(),
        "content_filter" | "content_policy_violation" | "invalid_prompt"
    ) || body.inner_code == "ResponsibleAIPolicyViolation"
        || message.contains("content management policy")
        || message.contains("usage policy")
}

/// Classifies a non-2xx answer of OpenAI or an OpenAI-compatible server
/// (by `error.code`, `error.type`, the message, then the status).
pub fn openai(status: u16, headers: &HeaderMap, body: &[u8]) -> LlmError {
    let parsed = openai_body(body);
    let message = match &parsed {
        Some(b) if !b.message.is_empty() => b.message.clone(),
        Some(b) if !b.code.is_empty() => b.code.clone(),
        _ if body.is_empty() => format!("HTTP {status} with an empty body"),
        _ => snippet(body),
    };
    let b = parsed.unwrap_or_default();
    let lowered = message.to_ascii_lowercase();
    let code = b.code.to_ascii_lowercase();
    let kind_field = b.kind.to_ascii_lowercase();
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
    with_header_facts(error, headers)
}

/// Classifies a non-2xx answer of Anthropic, by the body's `error.type`
/// first (it is what Anthropic documents), then by the status.
pub fn anthropic(status: u16, headers: &HeaderMap, body: &[u8]) -> LlmError {
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
    let lowered = message.to_ascii_lowercase();
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
    let mut error = with_header_facts(error, headers);
    if error.request_id.is_none() {
        error.request_id = value
            .as_ref()
            .and_then(|v| v.get("request_id"))
            .and_then(Value::as_str)
            .map(|id| {
                let id: String = id.chars().take(200).collect();
                redact_secrets(&id).into_owned()
            });
    }
    error
}

/// Classifies a non-2xx answer of Google's Gemini API (`{"error": {"code",
/// "message", "status", "details"}}`), by the `google.rpc` status name,
/// then the HTTP status. `RESOURCE_EXHAUSTED` is a rate limit, unless it
/// is a 402 (prepaid credit gone) or a `QuotaFailure` names a per-day quota
/// (waiting seconds will not help): then `QuotaExhausted`. A
/// `google.rpc.RetryInfo` `retryDelay` is the wait when no header gives one.
pub fn gemini(status: u16, headers: &HeaderMap, body: &[u8]) -> LlmError {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let err = value.as_ref().and_then(|v| v.get("error"));
    let text = |name: &str| text_of(err.and_then(|e| e.get(name)));
    let (status_name, message) = (text("status"), text("message"));
    let details: &[Value] = err
        .and_then(|e| e.get("details"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let of_type = |suffix: &'static str| {
        details.iter().filter(move |d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with(suffix))
        })
    };
    let per_day = of_type("google.rpc.QuotaFailure").any(|d| {
        d.get("violations")
            .and_then(Value::as_array)
            .is_some_and(|vs| {
                vs.iter().any(|v| {
                    text_of(v.get("quotaId")).contains("PerDay")
                        || text_of(v.get("quotaMetric")).contains("per_day")
                })
            })
    });
    let retry_delay = of_type("google.rpc.RetryInfo")
        .find_map(|d| d.get("retryDelay").and_then(Value::as_str))
        .and_then(wire_time::go_duration);
    let message = if !message.is_empty() {
        message
    } else if body.is_empty() {
        format!("HTTP {status} with an empty body")
    } else if status_name.is_empty() {
        snippet(body)
    } else {
        status_name.clone()
    };
    let lowered = message.to_ascii_lowercase();
    let too_long = lowered.contains("exceeds the maximum number of tokens")
        || lowered.contains("input token count")
        || lowered.contains("context window")
        || lowered.contains("too long");
    let kind = match status_name.as_str() {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" if too_long => {
            ErrorKind::ContextLengthExceeded
        }
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => ErrorKind::InvalidRequest,
        "UNAUTHENTICATED" => ErrorKind::Authentication,
        "PERMISSION_DENIED" => ErrorKind::PermissionDenied,
        "NOT_FOUND" => ErrorKind::ModelNotFound,
        "RESOURCE_EXHAUSTED" if status == 402 || per_day => ErrorKind::QuotaExhausted,
        "RESOURCE_EXHAUSTED" => ErrorKind::RateLimited,
        "CANCELLED" => ErrorKind::Cancelled,
        "UNAVAILABLE" => ErrorKind::Overloaded,
        "DEADLINE_EXCEEDED" => ErrorKind::Timeout,
        "INTERNAL" | "UNKNOWN" | "ABORTED" => ErrorKind::Server,
        _ => ErrorKind::from_status(status),
    };
    let mut error = LlmError::new(kind, message).with_status(status);
    if !status_name.is_empty() {
        error = error.with_code(&status_name);
    }
    let mut error = with_header_facts(error, headers);
    if error.retry_after.is_none() {
        error.retry_after = retry_delay;
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("a header value"));
        }
        h
    }

    fn kind(status: u16, body: &str) -> ErrorKind {
        any(status, &HeaderMap::new(), body.as_bytes()).kind
    }

    #[test]
    fn any_tells_the_dialect_from_the_body() {
        // OpenAI: a context-window 400 is not retried; the quota 429 moves on.
        let overflow = r#"{"error": {"message": "This model's maximum context length is 128000 tokens.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}"#;
        assert_eq!(kind(400, overflow), ErrorKind::ContextLengthExceeded);
        let quota = r#"{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}"#;
        assert_eq!(kind(429, quota), ErrorKind::QuotaExhausted);
        assert_eq!(
            kind(
                400,
                r#"{"error": {"message": "bad", "type": "invalid_request_error", "param": null, "code": null}}"#
            ),
            ErrorKind::InvalidRequest
        );
        // Anthropic: its types decide, whatever the status.
        let overloaded =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(kind(529, overloaded), ErrorKind::Overloaded);
        let too_long = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 200251 tokens > 200000 maximum"},"request_id":"req_1"}"#;
        let e = any(400, &HeaderMap::new(), too_long.as_bytes());
        assert_eq!(e.kind, ErrorKind::ContextLengthExceeded);
        assert_eq!(e.request_id.as_deref(), Some("req_1"));
        let spend = r#"{"type":"error","error":{"type":"rate_limit_error","message":"limit","details":{"error_code":"enforced_spend_limit_reached"}}}"#;
        assert_eq!(kind(429, spend), ErrorKind::QuotaExhausted);
        // A proxy's 413 without the top-level type.
        assert_eq!(
            kind(
                413,
                r#"{"error":{"type":"request_too_large","message":"Request exceeds the maximum size"}}"#
            ),
            ErrorKind::InvalidRequest
        );
        // Not JSON: the status decides.
        assert_eq!(kind(502, "<html>Bad Gateway</html>"), ErrorKind::Server);
        assert_eq!(kind(503, ""), ErrorKind::Overloaded);
    }

    #[test]
    fn gemini_resource_exhausted_waits_its_retry_info() {
        let body = r#"{"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}}"#;
        let e = any(429, &HeaderMap::new(), body.as_bytes());
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_secs(37)));
        assert_eq!(e.code.as_deref(), Some("RESOURCE_EXHAUSTED"));
        // A header wins over the body's delay.
        let e = any(429, &headers(&[("retry-after", "2")]), body.as_bytes());
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
        // A per-day quota will not come back in seconds.
        let daily = body.replace("PerMinute", "PerDay");
        assert_eq!(kind(429, &daily), ErrorKind::QuotaExhausted);
        assert_eq!(
            kind(
                402,
                r#"{"error": {"code": 402, "message": "credit", "status": "RESOURCE_EXHAUSTED"}}"#
            ),
            ErrorKind::QuotaExhausted
        );
        assert_eq!(
            kind(
                400,
                r#"{"error": {"code": 400, "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", "status": "INVALID_ARGUMENT"}}"#
            ),
            ErrorKind::ContextLengthExceeded
        );
        assert_eq!(
            kind(503, r#"{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}"#).class(),
            ErrorClass::Transient
        );
    }

    #[test]
    fn headers_give_the_wait_the_instruction_and_the_limits() {
        let h = headers(&[
            ("retry-after-ms", "1500"),
            ("retry-after", "9"),
            ("x-should-retry", "false"),
            ("x-request-id", "req_9"),
            ("x-ratelimit-remaining-requests", "0"),
            ("content-type", "application/json"),
        ]);
        let e = any(429, &h, b"{}");
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_millis(1500)));
        assert_eq!(e.should_retry, Some(false));
        assert_eq!(e.request_id.as_deref(), Some("req_9"));
        let limits = e
            .rate_limit_headers
            .as_ref()
            .expect("the rate-limit headers");
        assert_eq!(limits.len(), 3);
        assert!(!limits.contains_key("content-type"));
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let wait = any(503, &headers(&[("retry-after", &date)]), b"")
            .retry_after
            .expect("a wait from a date");
        assert!(wait > Duration::from_secs(28) && wait <= Duration::from_secs(30));
    }

    #[test]
    fn a_body_that_is_not_json_is_masked_and_bounded() {
        let body = format!(
            "upstream said key sk-proj-AbCdEfGh0123456789 {}",
            "x".repeat(5000)
        );
        let e = any(502, &HeaderMap::new(), body.as_bytes());
        assert!(
            !e.message.contains("sk-proj-AbCdEfGh0123456789"),
            "{}",
            e.message
        );
        assert!(e.message.chars().count() <= 201);
    }
}
