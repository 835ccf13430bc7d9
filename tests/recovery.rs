//! The retry and circuit-breaker layers over the real clients recover from
//! scripted failure sequences against the mock server.

mod support;

use staunch::ServiceBuilderExt;
use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
use staunch::core::ErrorKind;
use staunch::retry::RetryConfig;
use staunch_mock::{Fault, Route};
use std::time::Duration;
use support::wire::{anthropic, ask, openai, server};
use tower::{ServiceBuilder, ServiceExt};

fn fast_retry(max: u32) -> RetryConfig {
    RetryConfig::new()
        .max_retries(max)
        .base_delay(Duration::from_millis(5))
        .max_delay(Duration::from_millis(20))
        .no_budget()
}

#[tokio::test]
async fn openai_recovers_from_429_529_5xx_and_resets() {
    let server = server(
        vec![
            Fault::RateLimit { retry_after: 0.05 },
            Fault::Overloaded { retry_after: None },
            Fault::ServerError,
            Fault::Reset,
            Fault::Ok,
        ],
        vec![],
    )
    .await;
    let client = ServiceBuilder::new()
        .llm_retry(fast_retry(4))
        .service(openai(&server));
    let started = std::time::Instant::now();
    let answer = client.oneshot(ask("gpt-4o")).await.unwrap();
    assert_eq!(answer.meta.attempts, 5);
    assert!(
        answer.meta.retry_wait >= Duration::from_millis(50),
        "Retry-After honoured"
    );
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(server.stats().requests_to(Route::OpenAi), 5);
}

#[tokio::test]
async fn anthropic_recovers_from_529_and_a_hang_cut_by_the_attempt_timeout() {
    let server = server(
        vec![],
        vec![
            Fault::Overloaded {
                retry_after: Some(0.02),
            },
            Fault::Hang,
            Fault::Ok,
        ],
    )
    .await;
    let client = ServiceBuilder::new()
        .llm_retry(fast_retry(3))
        .timeout(Duration::from_millis(200))
        .service(anthropic(&server));
    let answer = client.oneshot(ask("claude-sonnet-4-5")).await.unwrap();
    assert_eq!(answer.meta.attempts, 3);
    assert_eq!(answer.meta.provider.as_deref(), Some("anthropic"));
    assert_eq!(server.stats().requests_to(Route::Anthropic), 3);
}

#[tokio::test]
async fn retries_stop_at_what_they_cannot_fix() {
    let server = server(vec![Fault::Quota, Fault::Ok], vec![]).await;
    let client = ServiceBuilder::new()
        .llm_retry(fast_retry(4))
        .service(openai(&server));
    let err = client.oneshot(ask("gpt-4o")).await.unwrap_err();
    assert_eq!((err.kind, err.attempts), (ErrorKind::QuotaExhausted, 1));
    assert_eq!(server.stats().requests_to(Route::OpenAi), 1);
}

#[tokio::test]
async fn the_breaker_stops_the_calls_to_a_dead_provider_and_probes_it_back() {
    let mut script = vec![Fault::ServerError; 6];
    script.push(Fault::Ok);
    let server = server(script, vec![]).await;
    let breaker = CircuitBreakerLayer::new(
        CircuitBreakerConfig::new("openai")
            .consecutive_failures(Some(2))
            .break_duration(Duration::from_millis(300)),
    )
    .unwrap();
    let handle = breaker.handle();
    let client = ServiceBuilder::new()
        .circuit_breaker(breaker)
        .llm_retry(fast_retry(2))
        .service(openai(&server));
    for _ in 0..2 {
        assert_eq!(
            client
                .clone()
                .oneshot(ask("gpt-4o"))
                .await
                .unwrap_err()
                .kind,
            ErrorKind::Server
        );
    }
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(server.stats().requests_to(Route::OpenAi), 6);
    for _ in 0..5 {
        let err = client.clone().oneshot(ask("gpt-4o")).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::CircuitOpen);
    }
    assert_eq!(
        server.stats().requests_to(Route::OpenAi),
        6,
        "nothing reached the dead provider"
    );
    // Wait out the break without sleeping past it by much: poll the handle.
    let wait = tokio::time::Instant::now() + Duration::from_secs(5);
    while !handle.is_call_permitted() && tokio::time::Instant::now() < wait {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answer = client.clone().oneshot(ask("gpt-4o")).await.unwrap();
    assert_eq!(answer.meta.attempts, 1);
    assert_eq!(handle.state(), CircuitState::Closed);
}
