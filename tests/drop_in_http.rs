//! Issue 31, part 2: the staunch layers straight over a raw HTTP client
//! (hyper-util's legacy client as a tower service, over loopback) against
//! the mock's scripted faults, no staunch provider client at all.
//! Run with `cargo test -p staunch --all-features -- drop_in`.
#![cfg(feature = "http-call")]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use staunch::core::{Answer, ErrorClass, ErrorKind, LlmError};
use staunch::http_call::{ClassifyHttpLayer, HttpAnswer, HttpCall};
use staunch::quota::{QuotaConfig, QuotaLayer};
use staunch::retry::{NoJitter, RetryConfig, RetryLayer};
use staunch_mock::{Fault, MockServer, Route, RouteScenario, Scenario};
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};

type Stack = BoxCloneService<HttpCall, HttpAnswer, LlmError>;

fn users_http_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn mock(openai: Vec<Fault>, anthropic: Vec<Fault>) -> MockServer {
    let scenario = Scenario {
        openai: RouteScenario {
            script: openai,
            ..RouteScenario::default()
        },
        anthropic: RouteScenario {
            script: anthropic,
            ..RouteScenario::default()
        },
        ..Scenario::default()
    };
    MockServer::start(scenario).await.expect("mock server")
}

/// Retry over the breaker over the quota over the user's client.
fn stack(breaker: CircuitBreakerConfig, retries: u32) -> Stack {
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(
            RetryConfig::new()
                .no_budget()
                .max_retries(retries)
                .jitter(NoJitter),
        ))
        .layer(CircuitBreakerLayer::new(breaker).expect("a breaker"))
        .layer(
            QuotaLayer::new(QuotaConfig::new("mock").requests_per_minute(10_000)).expect("a quota"),
        )
        .layer(ClassifyHttpLayer::new())
        .service(users_http_client());
    BoxCloneService::new(service)
}

fn default_stack() -> Stack {
    stack(CircuitBreakerConfig::new("mock"), 3)
}

const OPENAI_BODY: &str = r#"{"model": "gpt-4o-mini", "max_tokens": 32, "messages": [{"role": "user", "content": "Say hello, replayed byte for byte."}]}"#;

fn openai_call(mock: &MockServer) -> HttpCall {
    openai_call_of(mock, OPENAI_BODY)
}

/// `body` as a user's client sends it to the mock's OpenAI route.
fn openai_call_of(mock: &MockServer, body: &'static str) -> HttpCall {
    let request = http::Request::post(format!("{}/chat/completions", mock.openai_base_url()))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test")
        .body(Bytes::from_static(body.as_bytes()))
        .expect("a request");
    HttpCall::new(request).expect("a call")
}

fn anthropic_call(mock: &MockServer) -> HttpCall {
    let body = r#"{"model": "claude-sonnet-4-5", "max_tokens": 32, "messages": [{"role": "user", "content": "hello"}]}"#;
    let request = http::Request::post(format!("{}/v1/messages", mock.anthropic_base_url()))
        .header("content-type", "application/json")
        .header("x-api-key", "sk-ant-test")
        .header("anthropic-version", "2023-06-01")
        .body(Bytes::from_static(body.as_bytes()))
        .expect("a request");
    HttpCall::new(request).expect("a call")
}

#[tokio::test(start_paused = true)]
async fn drop_in_http_retries_a_429_honouring_retry_after_and_replays_the_body() {
    let mock = mock(
        vec![Fault::RateLimit { retry_after: 3.0 }, Fault::Ok],
        vec![],
    )
    .await;
    let started = Instant::now();
    let answer = default_stack()
        .oneshot(openai_call(&mock))
        .await
        .expect("answered after one retry");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "waited the provider's Retry-After: {:?}",
        started.elapsed()
    );
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.meta().attempts, 2);
    assert!(answer.usage().input_tokens > 0, "usage read from the JSON");
    let body = answer
        .into_response()
        .into_body()
        .collect()
        .await
        .expect("body");
    let json: serde_json::Value = serde_json::from_slice(&body.to_bytes()).expect("json");
    assert_eq!(json["object"], "chat.completion");

    let stats = mock.stats();
    assert_eq!(stats.requests_to(Route::OpenAi), 2);
    let bodies: Vec<&[u8]> = stats.recent.iter().map(|r| r.body.bytes()).collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0], OPENAI_BODY.as_bytes(), "the body as sent");
    assert_eq!(bodies[0], bodies[1], "replayed identically on retry");
}

#[tokio::test(start_paused = true)]
async fn drop_in_http_retries_anthropics_overloaded_529() {
    let mock = mock(
        vec![],
        vec![Fault::Overloaded {
            retry_after: Some(1.0),
        }],
    )
    .await;
    let answer = default_stack()
        .oneshot(anthropic_call(&mock))
        .await
        .expect("answered after the overload");
    assert_eq!(answer.meta().attempts, 2);
    assert_eq!(mock.stats().requests_to(Route::Anthropic), 2);
}

#[tokio::test(start_paused = true)]
async fn drop_in_http_does_not_retry_a_context_overflow() {
    let mock = mock(vec![Fault::ContextOverflow, Fault::Ok], vec![]).await;
    let error = default_stack()
        .oneshot(openai_call(&mock))
        .await
        .expect_err("a context overflow");
    assert_eq!(error.kind, ErrorKind::ContextLengthExceeded);
    assert_eq!(error.class(), ErrorClass::Unavailable);
    assert_eq!(error.status, Some(400));
    assert_eq!(
        mock.stats().requests_to(Route::OpenAi),
        1,
        "never sent twice"
    );
}

#[tokio::test(start_paused = true)]
async fn drop_in_http_insufficient_quota_is_unavailable_and_not_retried() {
    let mock = mock(vec![Fault::Quota, Fault::Ok], vec![]).await;
    let error = default_stack()
        .oneshot(openai_call(&mock))
        .await
        .expect_err("quota");
    assert_eq!(error.kind, ErrorKind::QuotaExhausted);
    assert_eq!(error.class(), ErrorClass::Unavailable);
    assert_eq!(mock.stats().requests_to(Route::OpenAi), 1);
}

#[tokio::test(start_paused = true)]
async fn drop_in_http_opens_the_breaker_on_repeated_5xx() {
    let mock = mock(vec![Fault::ServerError; 10], vec![]).await;
    let service = stack(
        CircuitBreakerConfig::new("mock")
            .consecutive_failures(Some(3))
            .break_duration(Duration::from_secs(60)),
        0,
    );
    for _ in 0..3 {
        let error = service
            .clone()
            .oneshot(openai_call(&mock))
            .await
            .expect_err("a 500");
        assert_eq!(error.kind, ErrorKind::Server);
    }
    let error = service
        .clone()
        .oneshot(openai_call(&mock))
        .await
        .expect_err("the circuit is open");
    assert_eq!(error.kind, ErrorKind::CircuitOpen);
    assert_eq!(
        mock.stats().requests_to(Route::OpenAi),
        3,
        "the open circuit sent nothing"
    );
}

/// An OpenAI-shaped 429 with the wait in `headers` only.
fn rate_limited(headers: &[(&str, String)]) -> Fault {
    Fault::Status {
        status: 429,
        body: r#"{"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}}"#.into(),
        headers: headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect(),
    }
}

#[tokio::test(start_paused = true)]
async fn drop_in_http_honours_retry_after_as_an_http_date() {
    // The date is on the wall clock; whole seconds, so 4 to 5 s from now.
    let at = std::time::SystemTime::now() + Duration::from_secs(5);
    let date = httpdate::fmt_http_date(at);
    let mock = mock(
        vec![rate_limited(&[("retry-after", date)]), Fault::Ok],
        vec![],
    )
    .await;
    let started = Instant::now();
    let answer = default_stack()
        .oneshot(openai_call(&mock))
        .await
        .expect("answered after the date");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited <= Duration::from_secs(6),
        "waited until the date: {waited:?}"
    );
    assert_eq!(answer.meta().attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn drop_in_http_honours_retry_after_ms() {
    let mock = mock(
        vec![
            rate_limited(&[("retry-after-ms", "2500".into())]),
            Fault::Ok,
        ],
        vec![],
    )
    .await;
    let started = Instant::now();
    let answer = default_stack()
        .oneshot(openai_call(&mock))
        .await
        .expect("answered after the wait");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_millis(3500),
        "waited retry-after-ms: {waited:?}"
    );
    assert_eq!(answer.meta().attempts, 2);
}

fn gemini_call(mock: &MockServer) -> HttpCall {
    let request = http::Request::post(format!(
        "{}/v1beta/models/gemini-2.5-flash:generateContent",
        mock.gemini_base_url()
    ))
    .header("content-type", "application/json")
    .header("x-goog-api-key", "gemini-test-key")
    .body(Bytes::from_static(
        br#"{"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}"#,
    ))
    .expect("a request");
    HttpCall::new(request).expect("a call")
}

/// Gemini's 429 is `RESOURCE_EXHAUSTED` with the wait in a `RetryInfo`
/// detail of the JSON body (no header): retried after it; its per-day
/// quota failure is not retried at all.
#[tokio::test(start_paused = true)]
async fn drop_in_http_reads_geminis_resource_exhausted() {
    let scenario = Scenario {
        gemini: RouteScenario {
            script: vec![
                Fault::RateLimit { retry_after: 2.0 },
                Fault::Ok,
                Fault::Quota,
            ],
            ..RouteScenario::default()
        },
        ..Scenario::default()
    };
    let mock = MockServer::start(scenario).await.expect("mock server");
    let stack = default_stack();
    let started = Instant::now();
    let answer = stack
        .clone()
        .oneshot(gemini_call(&mock))
        .await
        .expect("answered after the RetryInfo delay");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited the RetryInfo delay: {:?}",
        started.elapsed()
    );
    assert_eq!(answer.meta().attempts, 2);
    assert!(answer.usage().input_tokens > 0, "usageMetadata read");

    let error = stack
        .oneshot(gemini_call(&mock))
        .await
        .expect_err("a per-day quota");
    assert_eq!(error.kind, ErrorKind::QuotaExhausted, "{error}");
    assert_eq!(error.class(), ErrorClass::Unavailable);
    assert_eq!(mock.stats().requests_to(Route::Gemini), 3, "not retried");
}

/// The providers' rate-limit headers on an answer teach the quota over
/// the raw client: told no request is left until a reset 20 s away, the
/// next call waits for the reset instead of drawing a 429.
#[tokio::test(start_paused = true)]
async fn drop_in_http_the_quota_learns_the_rate_limit_headers() {
    let answer_body = r#"{"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}}"#;
    let spent = Fault::Status {
        status: 200,
        body: answer_body.into(),
        headers: [
            ("content-type", "application/json"),
            ("x-ratelimit-limit-requests", "500"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "20s"),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect(),
    };
    let mock = mock(vec![spent, Fault::Ok], vec![]).await;
    let quota = QuotaLayer::new(
        QuotaConfig::new("mock")
            .requests_per_minute(10_000)
            .max_wait(Duration::from_secs(60)),
    )
    .expect("a quota");
    let handle = quota.handle();
    let stack = ServiceBuilder::new()
        .layer(quota)
        .layer(ClassifyHttpLayer::new())
        .service(users_http_client());
    let first = stack
        .clone()
        .oneshot(openai_call(&mock))
        .await
        .expect("answered");
    assert_eq!(first.usage().input_tokens, 9);
    assert_eq!(handle.available_requests(), Some(0), "told none is left");
    let started = Instant::now();
    stack
        .oneshot(openai_call(&mock))
        .await
        .expect("answered after the reset");
    assert!(
        started.elapsed() >= Duration::from_secs(19),
        "waited for the provider's reset: {:?}",
        started.elapsed()
    );
    assert_eq!(mock.stats().requests_to(Route::OpenAi), 2, "no 429 drawn");
}

const STREAM_BODY: &str = r#"{"model": "gpt-4o-mini", "stream": true, "max_tokens": 32, "messages": [{"role": "user", "content": "Stream me a hello."}]}"#;

fn openai_stream_call(mock: &MockServer) -> HttpCall {
    openai_call_of(mock, STREAM_BODY)
}

/// A streamed call over raw HTTP: a 429 before the headers is retried,
/// the stream is handed up at its headers and reads through to its end.
#[tokio::test(start_paused = true)]
async fn drop_in_http_streams_commit_at_their_headers() {
    let mock = mock(
        vec![Fault::RateLimit { retry_after: 1.0 }, Fault::Ok],
        vec![],
    )
    .await;
    let answer = default_stack()
        .oneshot(openai_stream_call(&mock))
        .await
        .expect("a stream after one retry");
    assert!(answer.is_streaming(), "committed at its headers");
    assert_eq!(answer.meta().attempts, 2);
    assert!(answer.bytes().is_none(), "the body is left to the caller");
    let body = answer
        .into_response()
        .into_body()
        .collect()
        .await
        .expect("the whole stream")
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("chat.completion.chunk"), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}

/// Once its headers are in, a stream is the caller's: a stream that
/// stalls after its first token is not sent again behind the caller's
/// back (it already has the first token).
#[tokio::test(start_paused = true)]
async fn drop_in_http_a_committed_stream_is_not_retried() {
    let mock = mock(vec![Fault::StallAfter { tokens: 1 }, Fault::Ok], vec![]).await;
    let answer = default_stack()
        .oneshot(openai_stream_call(&mock))
        .await
        .expect("the stream's headers");
    assert!(answer.is_streaming());
    assert_eq!(answer.meta().attempts, 1);
    assert_eq!(mock.stats().requests_to(Route::OpenAi), 1);
}
