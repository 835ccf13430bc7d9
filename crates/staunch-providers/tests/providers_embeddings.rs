//! The OpenAI client's embeddings against the mock server over loopback:
//! vectors in input order from float and base64 answers, the body it
//! sends, and every failure mapped as for chat (429 with its headers,
//! context overflow, malformed, truncated, hung, reset), without the key.

mod support;

use staunch_core::{
    Deadline, Dialect, EmbeddingRequest, EmbeddingResponse, EncodingFormat, ErrorKind, LlmError,
    Usage,
};
use staunch_mock::{Fault, MockServer, Route, RouteScenario, Scenario};
use staunch_providers::{ApiKey, HttpOptions, OpenAi, OpenAiConfig};
use std::time::Duration;
use support::{KEY, openai, status};
use tower::ServiceExt;

async fn server(script: Vec<Fault>) -> MockServer {
    let scenario = Scenario {
        embeddings: RouteScenario {
            script,
            ..RouteScenario::default()
        },
        ..Scenario::default()
    };
    MockServer::start(scenario).await.expect("mock server")
}

fn request() -> EmbeddingRequest {
    EmbeddingRequest::new("text-embedding-3-small", ["alpha", "beta", "gamma"])
}

async fn embed(
    server: &MockServer,
    request: EmbeddingRequest,
) -> Result<EmbeddingResponse, LlmError> {
    let result = openai(server).oneshot(request).await;
    if let Err(e) = &result {
        assert!(
            !format!("{e} {e:?}").contains("TOPSECRET"),
            "the key leaked: {e:?}"
        );
    }
    result
}

async fn fail_with(fault: Fault) -> LlmError {
    let server = server(vec![fault]).await;
    let err = embed(&server, request()).await.unwrap_err();
    assert_eq!(server.stats().requests_to(Route::Embeddings), 1);
    assert_eq!(err.provider.as_deref(), Some("openai"));
    assert_eq!(err.model.as_deref(), Some("text-embedding-3-small"));
    err
}

fn assert_unit(v: &[f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");
}

#[tokio::test]
async fn an_answer_comes_in_input_order_with_its_meta() {
    let server = server(vec![]).await;
    let request = request()
        .with_dimensions(32)
        .with_extra(Dialect::OpenAi, "user", "user-7");
    let answer = embed(&server, request).await.unwrap();
    assert_eq!(answer.model, "text-embedding-3-small");
    assert_eq!(answer.data.len(), 3);
    for (i, e) in answer.data.iter().enumerate() {
        assert_eq!(e.index, i);
        assert_eq!(e.vector.len(), 32);
        assert_unit(&e.vector);
    }
    // 5, 4 and 5 bytes: 2 + 1 + 2 tokens.
    assert_eq!(answer.usage, Usage::new(5, 0));
    assert_eq!(answer.meta.provider.as_deref(), Some("openai"));
    assert_eq!(answer.meta.model.as_deref(), Some("text-embedding-3-small"));
    assert_eq!(answer.meta.attempts, 1);
    assert!(answer.meta.latency > Duration::ZERO);

    let seen = server.stats().recent.pop_back().unwrap();
    assert_eq!(
        *seen.body.json(),
        serde_json::json!({
            "model": "text-embedding-3-small",
            "input": ["alpha", "beta", "gamma"],
            "dimensions": 32,
            "user": "user-7"
        })
    );
    assert_eq!(seen.headers["authorization"], "[present]");
    assert_eq!(server.stats().requests_to(Route::OpenAi), 0);
}

#[tokio::test]
async fn base64_answers_decode_to_the_same_floats() {
    let server = server(vec![]).await;
    let float = embed(
        &server,
        request().with_encoding_format(EncodingFormat::Float),
    )
    .await
    .unwrap();
    let base64 = embed(
        &server,
        request().with_encoding_format(EncodingFormat::Base64),
    )
    .await
    .unwrap();
    let seen = server.stats().recent.pop_back().unwrap();
    assert_eq!(seen.body["encoding_format"], "base64");
    assert_eq!(float.data.len(), base64.data.len());
    for (f, b) in float.vectors().zip(base64.vectors()) {
        assert_eq!(f.len(), b.len());
        for (x, y) in f.iter().zip(b) {
            // JSON numbers round-trip an f32 to within its precision.
            assert!((x - y).abs() < 1e-6, "{x} vs {y}");
        }
    }
}

#[tokio::test]
async fn token_arrays_embed_too() {
    let server = server(vec![]).await;
    let answer = embed(
        &server,
        EmbeddingRequest::new("m", vec![vec![1u32, 2, 3], vec![4]]),
    )
    .await
    .unwrap();
    assert_eq!(answer.data.len(), 2);
    assert_eq!(answer.usage.input_tokens, 4);
}

#[tokio::test]
async fn rate_limits_carry_their_wait_and_headers() {
    let err = fail_with(Fault::RateLimit { retry_after: 1.5 }).await;
    assert_eq!((err.kind, err.status), (ErrorKind::RateLimited, Some(429)));
    assert_eq!(err.retry_after, Some(Duration::from_millis(1_500)));
    assert_eq!(err.request_id.as_deref(), Some("req_mock_1"));
    assert!(err.rate_limit_headers.is_some());

    let headers = [
        ("retry-after", "3"),
        ("x-ratelimit-limit-tokens", "1000000"),
        ("x-ratelimit-remaining-tokens", "0"),
        ("x-ratelimit-reset-tokens", "3s"),
    ];
    let body = r#"{"error": {"message": "Rate limit reached for text-embedding-3-small on tokens per min (TPM)", "type": "tokens", "code": "rate_limit_exceeded"}}"#;
    let err = fail_with(status(429, body, &headers)).await;
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.retry_after, Some(Duration::from_secs(3)));
    let limits = err.rate_limit_headers.as_ref().expect("rate-limit headers");
    assert_eq!(limits["x-ratelimit-remaining-tokens"], "0");
}

#[tokio::test]
async fn an_input_too_long_is_a_context_overflow() {
    assert_eq!(
        fail_with(Fault::ContextOverflow).await.kind,
        ErrorKind::ContextLengthExceeded
    );
    let openai = r#"{"error": {"message": "This model's maximum context length is 8192 tokens, however you requested 9000 tokens (9000 in your prompt; 0 for the completion). Please reduce your prompt; or completion length.", "type": "invalid_request_error", "param": null, "code": null}}"#;
    let err = fail_with(status(400, openai, &[])).await;
    assert_eq!(
        (err.kind, err.status),
        (ErrorKind::ContextLengthExceeded, Some(400))
    );
    let short = r#"{"error": {"message": "input too long", "type": "invalid_request_error"}}"#;
    assert_eq!(
        fail_with(status(400, short, &[])).await.kind,
        ErrorKind::ContextLengthExceeded
    );

    // The mock's own context window, input by input.
    let mut scenario = Scenario::default();
    scenario.context_windows.insert("small".into(), 8);
    let server = MockServer::start(scenario).await.unwrap();
    let long = EmbeddingRequest::new("small", ["short", &"x".repeat(100)]);
    let err = embed(&server, long).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ContextLengthExceeded);
}

#[tokio::test]
async fn statuses_map_to_kinds_as_for_chat() {
    for (fault, kind) in [
        (
            Fault::Overloaded { retry_after: None },
            ErrorKind::Overloaded,
        ),
        (Fault::ServerError, ErrorKind::Server),
        (Fault::BadGateway, ErrorKind::Server),
        (Fault::Quota, ErrorKind::QuotaExhausted),
        (Fault::Unauthorized, ErrorKind::Authentication),
        (Fault::Malformed, ErrorKind::MalformedResponse),
        (Fault::CutJson, ErrorKind::TruncatedResponse),
    ] {
        let name = fault.name();
        assert_eq!(fail_with(fault).await.kind, kind, "{name}");
    }
}

#[tokio::test]
async fn a_batch_over_the_servers_limit_is_an_invalid_request() {
    let scenario = Scenario {
        embedding_max_inputs: 2,
        ..Scenario::default()
    };
    let server = MockServer::start(scenario).await.unwrap();
    let err = embed(&server, request()).await.unwrap_err();
    assert_eq!(
        (err.kind, err.status),
        (ErrorKind::InvalidRequest, Some(400))
    );
    assert!(
        err.message.starts_with("Too many inputs"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn broken_connections_are_transient() {
    assert_eq!(
        fail_with(Fault::Reset).await.kind.class(),
        staunch_core::ErrorClass::Transient
    );
    let truncated = fail_with(Fault::Truncated).await;
    assert_eq!(truncated.kind.class(), staunch_core::ErrorClass::Transient);

    // A hang ends at the request's deadline.
    let server = server(vec![Fault::Hang]).await;
    let request = request().with_extension(Deadline::after(Duration::from_millis(200)));
    let started = std::time::Instant::now();
    let err = embed(&server, request).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn nothing_is_sent_for_a_request_no_server_takes() {
    let server = server(vec![]).await;
    let err = embed(&server, EmbeddingRequest::new("m", Vec::<String>::new()))
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.attempts), (ErrorKind::InvalidRequest, 0));
    assert_eq!(server.stats().requests_to(Route::Embeddings), 0);
}

#[tokio::test]
async fn an_answer_larger_than_the_bound_is_refused() {
    let server = server(vec![]).await;
    let client = OpenAi::new(
        OpenAiConfig::new()
            .base_url(server.openai_base_url())
            .api_key(ApiKey::new(KEY))
            .http(HttpOptions::new().max_response_bytes(1024)),
    )
    .unwrap();
    let big = EmbeddingRequest::new("m", vec!["x"; 50]).with_dimensions(64);
    let err = client.oneshot(big).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::MalformedResponse, "{err:?}");
    assert!(err.message.contains("1024-byte limit"), "{}", err.message);
    assert!(!format!("{err:?}").contains("TOPSECRET"));
}

#[tokio::test]
async fn a_custom_embeddings_path_and_chat_share_one_client() {
    let server = server(vec![]).await;
    let client = OpenAi::new(
        OpenAiConfig::new()
            .base_url(server.url())
            .path("/v1/chat/completions")
            .embeddings_path("/v1/embeddings")
            .no_api_key(),
    )
    .unwrap();
    let answer = client.clone().oneshot(request()).await.unwrap();
    assert_eq!(answer.data.len(), 3);
    let chat = client.oneshot(support::ask("gpt-4o")).await.unwrap();
    assert!(chat.text().starts_with("mock answer"));
    let seen = server.stats().recent;
    assert!(!seen[0].headers.contains_key("authorization"));
}
