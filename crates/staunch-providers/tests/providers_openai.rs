//! The OpenAI client against the mock server over loopback: every error
//! case of the reference comes out with the right kind, status,
//! `retry_after` and message.

mod support;

use staunch_core::{ErrorKind, FinishReason, LlmError, Usage};
use staunch_mock::{Fault, Route};
use std::time::{Duration, SystemTime};
use support::{KEY, ask, openai, server, status};
use tower::ServiceExt;

async fn fail_with(fault: Fault) -> LlmError {
    let server = server(vec![fault], vec![]).await;
    let err = openai(&server).oneshot(ask("gpt-4o")).await.unwrap_err();
    assert_eq!(server.stats().requests_to(Route::OpenAi), 1);
    assert!(
        !format!("{err} {err:?}").contains("TOPSECRET"),
        "the key leaked: {err:?}"
    );
    err
}

#[tokio::test]
async fn an_answer_is_mapped_both_ways() {
    let server = server(vec![Fault::Ok], vec![]).await;
    let request = ask("gpt-4o")
        .with_temperature(0.5)
        .with_top_p(0.9)
        .with_stop(["END"])
        .with_extra(staunch_core::Dialect::OpenAi, "seed", 42);
    let answer = openai(&server).oneshot(request).await.unwrap();
    assert_eq!(answer.text(), "mock answer to: What is 2+2?");
    assert_eq!(
        (answer.id.as_str(), answer.model.as_str()),
        ("chatcmpl-mock-1", "gpt-4o")
    );
    assert_eq!(answer.finish_reason, FinishReason::Stop);
    // Prompt: two messages of 3 estimated tokens + 4 framing; answer: 6 words.
    assert_eq!(answer.usage, Usage::new(3 + 4 + 3 + 4, 6));
    assert_eq!(answer.meta.provider.as_deref(), Some("openai"));
    assert_eq!(answer.meta.model.as_deref(), Some("gpt-4o"));

    let seen = server.stats().recent.pop_back().unwrap();
    let body = seen.body;
    assert_eq!(
        body["messages"][0],
        serde_json::json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(body["messages"][1]["role"], "user");
    assert_eq!(
        (body["max_tokens"].as_u64(), body["seed"].as_u64()),
        (Some(32), Some(42))
    );
    assert_eq!(body["stop"], serde_json::json!(["END"]));
    assert_eq!(body["temperature"].as_f64(), Some(0.5));
    assert_eq!(
        seen.headers["authorization"], "[present]",
        "the key was sent"
    );
    assert_eq!(seen.headers["content-type"], "application/json");
}

#[tokio::test]
async fn rate_limits_carry_their_wait() {
    let err = fail_with(Fault::RateLimit { retry_after: 1.5 }).await;
    assert_eq!((err.kind, err.status), (ErrorKind::RateLimited, Some(429)));
    assert_eq!(
        err.retry_after,
        Some(Duration::from_millis(1_500)),
        "retry-after-ms wins"
    );
    assert!(
        err.message.starts_with("Rate limit reached for gpt-4o"),
        "{}",
        err.message
    );
    assert_eq!(err.request_id.as_deref(), Some("req_mock_1"));
    assert_eq!(err.provider.as_deref(), Some("openai"));
    // The rate-limit headers ride up for a quota layer to learn from.
    let limits = err.rate_limit_headers.as_ref().expect("rate-limit headers");
    assert!(limits.contains_key("retry-after"), "{limits:?}");

    let in_seconds = status(
        429,
        r#"{"error":{"message":"Rate limit reached","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
        &[("retry-after", "2")],
    );
    assert_eq!(
        fail_with(in_seconds).await.retry_after,
        Some(Duration::from_secs(2))
    );

    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    let as_date = status(
        429,
        r#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#,
        &[("retry-after", &at)],
    );
    let wait = fail_with(as_date).await.retry_after.unwrap();
    assert!(
        wait > Duration::from_secs(27) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
}

#[tokio::test]
async fn quota_and_too_large_are_not_rate_limits() {
    assert_eq!(
        fail_with(Fault::Quota).await.kind,
        ErrorKind::QuotaExhausted
    );
    for code in ["credit_balance_exhausted", "project_spend_limit_exceeded"] {
        let body = format!(
            r#"{{"error":{{"message":"billing","type":"insufficient_quota","code":"{code}"}}}}"#
        );
        assert_eq!(
            fail_with(status(429, &body, &[])).await.kind,
            ErrorKind::QuotaExhausted,
            "{code}"
        );
    }
    let too_large = status(
        429,
        r#"{"error":{"message":"Request too large for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Requested 34307.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
        &[],
    );
    let err = fail_with(too_large).await;
    assert_eq!(err.kind, ErrorKind::RequestTooLarge);
    assert!(!err.class().is_retryable());
}

#[tokio::test]
async fn context_overflow_in_every_dialect() {
    assert_eq!(
        fail_with(Fault::ContextOverflow).await.kind,
        ErrorKind::ContextLengthExceeded
    );
    let bodies = [
        r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130412 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
        r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, you requested 8203 tokens (7691 in the messages, 512 in the completion).","type":"BadRequestError","param":null,"code":400}}"#,
        r#"{"object":"error","message":"This model's maximum context length is 4096 tokens.","type":"BadRequestError","param":null,"code":400}"#,
    ];
    for body in bodies {
        let err = fail_with(status(400, body, &[])).await;
        assert_eq!(err.kind, ErrorKind::ContextLengthExceeded, "{body}");
        assert!(err.message.contains("maximum context length"));
    }
}

#[tokio::test]
async fn content_policy_as_an_error_and_as_a_finish_reason() {
    let invalid_prompt = r#"{"error":{"message":"Invalid prompt: your prompt was flagged as potentially violating our usage policy.","type":"invalid_request_error","param":null,"code":"invalid_prompt"}}"#;
    let azure = r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"}}}}}"#;
    // The provider's own code travels with the error, for a gateway to
    // pass on.
    for (body, code) in [
        (invalid_prompt, "invalid_prompt"),
        (azure, "content_filter"),
    ] {
        let err = fail_with(status(400, body, &[])).await;
        assert_eq!(err.kind, ErrorKind::ContentFiltered, "{body}");
        assert_eq!(err.code.as_deref(), Some(code), "{body}");
    }
    let err = fail_with(Fault::ContentFilter).await;
    assert_eq!(
        (err.kind, err.status),
        (ErrorKind::ContentFiltered, Some(200))
    );
    assert_eq!(err.code.as_deref(), Some("content_filter"));
    assert!(
        err.spent.input_tokens > 0,
        "the filtered answer's tokens are reported"
    );
}

#[tokio::test]
async fn statuses_map_to_kinds() {
    let cases = [
        (
            400,
            r#"{"error":{"message":"'messages' must not be empty","type":"invalid_request_error","param":"messages","code":null}}"#,
            ErrorKind::InvalidRequest,
        ),
        (
            403,
            r#"{"error":{"message":"Country, region, or territory not supported","type":"request_forbidden","code":"unsupported_country_region_territory"}}"#,
            ErrorKind::PermissionDenied,
        ),
        (
            404,
            r#"{"error":{"message":"The model `gpt-5x` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
            ErrorKind::ModelNotFound,
        ),
        (
            409,
            r#"{"error":{"message":"conflict","type":"server_error"}}"#,
            ErrorKind::Server,
        ),
        (
            422,
            r#"{"error":{"message":"unprocessable","type":"invalid_request_error"}}"#,
            ErrorKind::InvalidRequest,
        ),
        (
            500,
            r#"{"error":{"message":"The server had an error","type":"server_error"}}"#,
            ErrorKind::Server,
        ),
        (
            503,
            r#"{"error":{"message":"The engine is currently overloaded, please try again later","type":"server_error"}}"#,
            ErrorKind::Overloaded,
        ),
        (504, "", ErrorKind::Server),
    ];
    for (code, body, kind) in cases {
        let err = fail_with(status(code, body, &[])).await;
        assert_eq!((err.kind, err.status), (kind, Some(code)), "{code} {body}");
    }
    assert_eq!(
        fail_with(Fault::Overloaded {
            retry_after: Some(3.0)
        })
        .await
        .retry_after,
        Some(Duration::from_secs(3))
    );
    let gateway = fail_with(Fault::BadGateway).await;
    assert_eq!(
        (gateway.kind, gateway.status),
        (ErrorKind::Server, Some(502))
    );
    assert!(
        gateway.message.contains("502 Bad Gateway"),
        "{}",
        gateway.message
    );
}

#[tokio::test]
async fn authentication_errors_never_echo_the_key() {
    let err = fail_with(Fault::Unauthorized).await;
    assert_eq!(
        (err.kind, err.status),
        (ErrorKind::Authentication, Some(401))
    );
    let shown = err.to_string();
    assert!(shown.contains("sk-[redacted]"), "{shown}");
    assert!(!shown.contains("sk-mo"), "{shown}");
}

#[tokio::test]
async fn x_should_retry_is_read() {
    let body = r#"{"error":{"message":"The server had an error","type":"server_error"}}"#;
    let err = fail_with(status(500, body, &[("x-should-retry", "false")])).await;
    assert_eq!(err.should_retry, Some(false));
    let err = fail_with(status(
        400,
        r#"{"error":{"message":"x","type":"invalid_request_error"}}"#,
        &[("x-should-retry", "true")],
    ))
    .await;
    assert_eq!(err.should_retry, Some(true));
}

#[tokio::test]
async fn broken_bodies_are_clear_errors() {
    let malformed = fail_with(Fault::Malformed).await;
    assert_eq!(malformed.kind, ErrorKind::MalformedResponse);
    assert!(
        malformed
            .message
            .contains("could not read the OpenAI response"),
        "{}",
        malformed.message
    );
    assert_eq!(
        fail_with(Fault::CutJson).await.kind,
        ErrorKind::TruncatedResponse
    );
    assert_eq!(
        fail_with(Fault::Truncated).await.kind,
        ErrorKind::TruncatedResponse
    );
    let no_choices = status(
        200,
        r#"{"id":"x","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":0}}"#,
        &[],
    );
    let err = fail_with(no_choices).await;
    assert_eq!(
        (err.kind, err.spent),
        (ErrorKind::MalformedResponse, Usage::new(3, 0))
    );
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let server = server(vec![Fault::Ok], vec![]).await;
    let client = staunch_providers::OpenAi::new(
        staunch_providers::OpenAiConfig::new()
            .base_url(server.openai_base_url())
            .no_api_key()
            .http(support::http().max_response_bytes(64)),
    )
    .unwrap();
    let err = client.oneshot(ask("gpt-4o")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::MalformedResponse);
    assert!(err.message.contains("64-byte limit"), "{}", err.message);
}

#[tokio::test]
async fn connection_failures_timeouts_and_resets() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let refused = staunch_providers::OpenAi::new(
        staunch_providers::OpenAiConfig::new()
            .base_url(format!("http://127.0.0.1:{port}/v1"))
            .api_key(staunch_providers::ApiKey::new(KEY)),
    )
    .unwrap();
    let err = refused.oneshot(ask("gpt-4o")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Connect, "{err:?}");
    assert!(!format!("{err:?}").contains("TOPSECRET"));

    let server = server(vec![Fault::Hang], vec![]).await;
    let impatient = staunch_providers::OpenAi::new(
        staunch_providers::OpenAiConfig::new()
            .base_url(server.openai_base_url())
            .no_api_key()
            .http(support::http().request_timeout(Duration::from_millis(150))),
    )
    .unwrap();
    let err = impatient.oneshot(ask("gpt-4o")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);

    let err = fail_with(Fault::Reset).await;
    assert_eq!(err.kind, ErrorKind::Network, "{err:?}");
    assert!(err.class().is_retryable());
}

#[tokio::test]
async fn the_client_and_its_config_never_print_the_key() {
    let server = server(vec![], vec![]).await;
    let client = openai(&server);
    let shown = format!("{client:?}");
    assert!(
        !shown.contains("TOPSECRET") && shown.contains("openai"),
        "{shown}"
    );
    let config =
        staunch_providers::OpenAiConfig::new().api_key(staunch_providers::ApiKey::new(KEY));
    assert!(!format!("{config:?}").contains("TOPSECRET"));
}

#[test]
fn bad_configs_are_clear_errors() {
    use staunch_providers::{ConfigError, OpenAi, OpenAiConfig};
    let err = OpenAi::new(OpenAiConfig::new().base_url("not a url")).unwrap_err();
    assert!(matches!(err, ConfigError::Url(_)), "{err:?}");
    let err = OpenAi::new(OpenAiConfig::new().base_url("ftp://x/v1")).unwrap_err();
    assert!(matches!(err, ConfigError::Url(_)));
    let err = OpenAi::new(OpenAiConfig::new().header("bad header", "x")).unwrap_err();
    assert_eq!(err, ConfigError::Header("bad header".to_owned()));
    let err =
        OpenAi::new(OpenAiConfig::new().api_key(staunch_providers::ApiKey::new("line\nbreak")))
            .unwrap_err();
    assert_eq!(err, ConfigError::Key);
    assert!(!err.to_string().contains("line"));
}
