//! The Anthropic client against the mock server over loopback.

mod support;

use staunch_core::{ChatRequest, ErrorKind, FinishReason, LlmError, Message};
use staunch_mock::{Fault, Route};
use std::time::Duration;
use support::{anthropic, ask, server, status};
use tower::ServiceExt;

async fn fail_with(fault: Fault) -> LlmError {
    let server = server(vec![], vec![fault]).await;
    let err = anthropic(&server)
        .oneshot(ask("claude-sonnet-4-5"))
        .await
        .unwrap_err();
    assert_eq!(server.stats().requests_to(Route::Anthropic), 1);
    assert!(
        !format!("{err} {err:?}").contains("TOPSECRET"),
        "the key leaked: {err:?}"
    );
    err
}

#[tokio::test]
async fn an_answer_is_mapped_both_ways() {
    let server = server(vec![], vec![Fault::Ok]).await;
    let request = ChatRequest::new(
        "claude-sonnet-4-5",
        vec![
            Message::system("Be brief."),
            Message::system("Use SI units."),
            Message::user("How far is the Moon?"),
        ],
    )
    .with_stop(["\n\nHuman:"])
    .with_extra(staunch_core::Dialect::Anthropic, "top_k", 40);
    let answer = anthropic(&server).oneshot(request).await.unwrap();
    assert_eq!(answer.text(), "mock answer to: How far is the Moon?");
    assert_eq!(answer.id, "msg_mock_1");
    assert_eq!(answer.finish_reason, FinishReason::Stop);
    assert_eq!(answer.meta.provider.as_deref(), Some("anthropic"));

    let seen = server.stats().recent.pop_back().unwrap();
    let body = seen.body;
    assert_eq!(
        body["system"], "Be brief.\n\nUse SI units.",
        "system messages become the top-level field"
    );
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(body["messages"][0]["role"], "user");
    assert_eq!(
        body["max_tokens"], 4096,
        "the required max_tokens gets its default"
    );
    assert_eq!(body["stop_sequences"], serde_json::json!(["\n\nHuman:"]));
    assert_eq!(body["top_k"], 40);
    assert_eq!(seen.headers["x-api-key"], "[present]");
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert!(!seen.headers.contains_key("authorization"));
}

#[tokio::test]
async fn errors_are_classified_by_their_type() {
    let overloaded = fail_with(Fault::Overloaded {
        retry_after: Some(4.0),
    })
    .await;
    assert_eq!(
        (overloaded.kind, overloaded.status),
        (ErrorKind::Overloaded, Some(529))
    );
    assert_eq!(overloaded.retry_after, Some(Duration::from_secs(4)));
    assert_eq!(overloaded.message, "Overloaded");
    assert_eq!(
        overloaded.request_id.as_deref(),
        Some("req_mock_1"),
        "from the body"
    );

    let limited = fail_with(Fault::RateLimit { retry_after: 7.0 }).await;
    assert_eq!(
        (limited.kind, limited.retry_after),
        (ErrorKind::RateLimited, Some(Duration::from_secs(7)))
    );

    let cases = [
        (
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 200251 tokens > 200000 maximum"},"request_id":"req_011"}"#,
            ErrorKind::ContextLengthExceeded,
        ),
        (
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#,
            ErrorKind::InvalidRequest,
        ),
        (
            401,
            r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
            ErrorKind::Authentication,
        ),
        (
            402,
            r#"{"type":"error","error":{"type":"billing_error","message":"Your credit balance is too low"}}"#,
            ErrorKind::QuotaExhausted,
        ),
        (
            403,
            r#"{"type":"error","error":{"type":"permission_error","message":"not allowed"}}"#,
            ErrorKind::PermissionDenied,
        ),
        (
            404,
            r#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-9"}}"#,
            ErrorKind::ModelNotFound,
        ),
        (
            409,
            r#"{"type":"error","error":{"type":"conflict_error","message":"conflict"}}"#,
            ErrorKind::Server,
        ),
        (
            413,
            r#"{"error":{"type":"request_too_large","message":"Request exceeds the maximum size"}}"#,
            ErrorKind::InvalidRequest,
        ),
        (
            429,
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"limit reached","details":{"error_code":"enforced_spend_limit_reached"}}}"#,
            ErrorKind::QuotaExhausted,
        ),
        (
            500,
            r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
            ErrorKind::Server,
        ),
        (
            504,
            r#"{"type":"error","error":{"type":"timeout_error","message":"Request timed out"}}"#,
            ErrorKind::Timeout,
        ),
    ];
    for (code, body, kind) in cases {
        let err = fail_with(status(code, body, &[])).await;
        assert_eq!((err.kind, err.status), (kind, Some(code)), "{code} {body}");
    }
    assert_eq!(
        fail_with(Fault::Quota).await.kind,
        ErrorKind::QuotaExhausted
    );
    assert_eq!(
        fail_with(Fault::ContextOverflow).await.kind,
        ErrorKind::ContextLengthExceeded
    );
    let retry_false = status(
        529,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        &[("x-should-retry", "false")],
    );
    assert_eq!(fail_with(retry_false).await.should_retry, Some(false));
}

#[tokio::test]
async fn a_refusal_is_a_content_filter_hit() {
    let err = fail_with(Fault::ContentFilter).await;
    assert_eq!(
        (err.kind, err.status),
        (ErrorKind::ContentFiltered, Some(200))
    );
    assert!(err.message.contains("refusal"));
}

#[tokio::test]
async fn broken_bodies_are_clear_errors() {
    assert_eq!(
        fail_with(Fault::Malformed).await.kind,
        ErrorKind::MalformedResponse
    );
    assert_eq!(
        fail_with(Fault::CutJson).await.kind,
        ErrorKind::TruncatedResponse
    );
    assert_eq!(
        fail_with(Fault::Truncated).await.kind,
        ErrorKind::TruncatedResponse
    );
    assert_eq!(fail_with(Fault::Reset).await.kind, ErrorKind::Network);
    let gateway = fail_with(Fault::BadGateway).await;
    assert_eq!(
        (gateway.kind, gateway.status),
        (ErrorKind::Server, Some(502))
    );
}
