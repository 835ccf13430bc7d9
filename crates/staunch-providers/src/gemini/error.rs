//! Classifying a Gemini error answer.

use http::HeaderMap;
use staunch_core::LlmError;

/// Classifies a non-2xx response by the body's `error.status` first
/// (`RESOURCE_EXHAUSTED` with a per-day quota is `QuotaExhausted`, without
/// it `RateLimited` with the `RetryInfo` delay as `retry_after`;
/// `UNAVAILABLE` is `Overloaded`, …), then by the HTTP status:
/// staunch-core's one classifier ([`staunch_core::classify_http::gemini`]),
/// shared with the layers over a raw HTTP client.
pub fn error(status: u16, headers: &HeaderMap, body: &[u8]) -> LlmError {
    staunch_core::classify_http::gemini(status, headers, body)
}

/// The HTTP status a Gemini error object stands for, for an error that came
/// inside a stream (where the response's own status was 200): its numeric
/// `code` when that is an error status, else the one its `status` names,
/// else 500 (an unknown failure mid-stream is the server's).
pub(crate) fn status_of(err: Option<&serde_json::Value>) -> u16 {
    let code = err
        .and_then(|e| e.get("code"))
        .and_then(serde_json::Value::as_u64);
    if let Some(code) = code
        && (400..600).contains(&code)
    {
        return code as u16;
    }
    let name = err
        .and_then(|e| e.get("status"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    match name {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 499,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use serde_json::json;
    use staunch_core::ErrorKind;
    use std::time::Duration;

    fn parse(status: u16, body: &serde_json::Value) -> LlmError {
        error(status, &HeaderMap::new(), body.to_string().as_bytes())
    }

    #[test]
    fn the_status_names_the_kind() {
        let e = parse(
            429,
            &json!({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
                "status": "RESOURCE_EXHAUSTED", "details": [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}}),
        );
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_secs(37)));
        assert_eq!(e.code.as_deref(), Some("RESOURCE_EXHAUSTED"));
        let e = parse(
            429,
            &json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED", "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                    {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                     "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]}}),
        );
        assert_eq!(e.kind, ErrorKind::QuotaExhausted);
        let e = parse(
            503,
            &json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}),
        );
        assert_eq!(e.kind, ErrorKind::Overloaded);
        let e = parse(
            400,
            &json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT"}}),
        );
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert_eq!(parse(502, &json!("<html>")).kind, ErrorKind::Server);
    }

    #[test]
    fn a_stream_error_object_names_its_status() {
        assert_eq!(status_of(Some(&json!({"code": 503}))), 503);
        assert_eq!(
            status_of(Some(&json!({"code": 7, "status": "PERMISSION_DENIED"}))),
            403
        );
        assert_eq!(
            status_of(Some(&json!({"status": "RESOURCE_EXHAUSTED"}))),
            429
        );
        assert_eq!(status_of(Some(&json!({"status": "SOMETHING_NEW"}))), 500);
        assert_eq!(status_of(None), 500);
    }
}
