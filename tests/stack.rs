//! The full recommended stack of DESIGN.md, for three targets over scripted
//! providers, driven through the failure scenarios with deterministic time.
//!
//! instrument > degrade > budget > fallback > per target: circuit breaker >
//! retry > tower timeout > tower buffer + rate limit > scripted provider.

use staunch::budget::{BudgetConfig, BudgetLayer};
use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerHandle, CircuitState};
use staunch::core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message, Price, QualityTier};
use staunch::degrade::DegradeConfig;
use staunch::fallback::{Fallback, Target};
use staunch::observe::InstrumentLayer;
use staunch::retry::{NoJitter, RetryConfig};
use staunch::{ServiceBuilderExt, TargetBuilder};
use staunch_test::{FakeProvider, Step, fail_after, fail_status};
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

type Stack = BoxCloneSyncService<ChatRequest, ChatResponse, LlmError>;

struct World {
    stack: Stack,
    openai_circuit: CircuitBreakerHandle,
    openai: FakeProvider,
    anthropic: FakeProvider,
    mini: FakeProvider,
}

/// One target: breaker over retry over a per-attempt timeout over a
/// rate-limited provider; the chain asks the breaker before calling.
fn target(
    name: &'static str,
    provider: FakeProvider,
    model: &'static str,
    window: u64,
    price: Price,
) -> (Target, CircuitBreakerHandle) {
    let limited = ServiceBuilder::new()
        .buffer(32)
        .rate_limit(50, Duration::from_secs(1))
        .service(provider);
    TargetBuilder::new(name, limited)
        .breaker(
            CircuitBreakerConfig::new(name)
                .consecutive_failures(Some(5))
                .break_duration(Duration::from_secs(30)),
        )
        .retry(
            RetryConfig::new()
                .max_retries(2)
                .base_delay(Duration::from_millis(100))
                .max_delay(Duration::from_secs(2))
                .max_retry_after(Duration::from_secs(10))
                .jitter(NoJitter)
                .no_budget(),
        )
        .attempt_timeout(Duration::from_secs(5))
        .model(model)
        .context_window(window)
        .price(price)
        .build()
        .expect("valid breaker")
}

fn world() -> World {
    let openai = FakeProvider::new("openai").bill_prompt(20).window(128_000);
    let anthropic = FakeProvider::new("anthropic")
        .bill_prompt(20)
        .window(200_000);
    let mini = FakeProvider::new("mini").bill_prompt(20).window(16_000);
    let (a, openai_circuit) = target(
        "openai",
        openai.clone(),
        "gpt-4o",
        128_000,
        Price::per_million(2.5, 10.0),
    );
    let (b, _) = target(
        "anthropic",
        anthropic.clone(),
        "claude-sonnet-4-5",
        200_000,
        Price::per_million(3.0, 15.0),
    );
    let (c, _) = target(
        "mini",
        mini.clone(),
        "gpt-4o-mini",
        16_000,
        Price::per_million(0.15, 0.6),
    );
    let chain = Fallback::new([a, b, c]).expect("three targets");
    let stack = ServiceBuilder::new()
        .layer(InstrumentLayer::new())
        .degrade(
            DegradeConfig::new()
                .cache(Duration::from_secs(600), 10_000)
                .static_answer("The assistant is unavailable; please retry shortly."),
        )
        .budget(
            BudgetLayer::new(BudgetConfig::new().per_request_tokens(400_000))
                .expect("valid budget"),
        )
        .service(chain);
    World {
        stack: BoxCloneSyncService::new(stack),
        openai_circuit,
        openai,
        anthropic,
        mini,
    }
}

fn ask(text: &str) -> ChatRequest {
    ChatRequest::new("default", vec![Message::user(text)]).with_max_tokens(256)
}

fn calls(w: &World) -> (usize, usize, usize) {
    (w.openai.calls(), w.anthropic.calls(), w.mini.calls())
}

#[tokio::test(start_paused = true)]
async fn the_primary_answers_when_all_is_well() {
    let w = world();
    let r = w.stack.clone().oneshot(ask("hello")).await.unwrap();
    assert_eq!(calls(&w), (1, 0, 0));
    assert_eq!(r.text(), "openai answers");
    assert_eq!(r.meta.tier, QualityTier::Full);
    assert_eq!(r.meta.target.as_deref(), Some("openai"));
    assert_eq!(r.meta.model.as_deref(), Some("gpt-4o"));
    assert_eq!((r.meta.attempts, r.meta.fallback_depth), (1, 0));
    let cost = r.meta.cost.expect("priced");
    assert!(
        (cost - (6.0 * 2.5 + 20.0 * 10.0) / 1e6).abs() < 1e-12,
        "{cost}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_primary_is_retried_after_retry_after() {
    let w = world();
    w.openai.script(
        [fail_after(
            ErrorKind::RateLimited,
            429,
            Duration::from_secs(2),
        )],
        Step::Answer,
    );
    let started = Instant::now();
    let r = w.stack.clone().oneshot(ask("hello")).await.unwrap();
    assert_eq!(calls(&w), (2, 0, 0));
    assert_eq!(
        w.openai.call_times(),
        [started, started + Duration::from_secs(2)]
    );
    assert_eq!(r.meta.tier, QualityTier::Full);
    assert_eq!(
        (r.meta.attempts, r.meta.retry_wait),
        (2, Duration::from_secs(2))
    );
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_longer_than_the_cap_falls_back_at_once() {
    let w = world();
    w.openai.script(
        [fail_after(
            ErrorKind::RateLimited,
            429,
            Duration::from_secs(120),
        )],
        Step::Answer,
    );
    let started = Instant::now();
    let r = w.stack.clone().oneshot(ask("hello")).await.unwrap();
    assert_eq!(calls(&w), (1, 1, 0));
    assert_eq!(started.elapsed(), Duration::ZERO, "no one slept");
    assert_eq!(r.meta.tier, QualityTier::Reduced);
    assert_eq!(r.meta.target.as_deref(), Some("anthropic"));
    assert_eq!(w.anthropic.models(), ["claude-sonnet-4-5"]);
}

#[tokio::test(start_paused = true)]
async fn a_context_overflow_goes_to_the_large_window_target() {
    let w = world();
    // About 150k tokens: over gpt-4o's 128k, under Claude's 200k.
    let long = "word ".repeat(120_000);
    let r = w.stack.clone().oneshot(ask(&long)).await.unwrap();
    assert_eq!(
        calls(&w),
        (1, 1, 0),
        "overflow is not retried; mini's window is too small"
    );
    assert_eq!(r.meta.target.as_deref(), Some("anthropic"));
    assert_eq!((r.meta.tier, r.meta.attempts), (QualityTier::Reduced, 2));

    // Too long for every window: the error lists each target, mini skipped.
    let huge = "word ".repeat(300_000);
    let err = w.stack.clone().oneshot(ask(&huge)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ContextLengthExceeded);
    assert_eq!(calls(&w), (2, 2, 0));
    assert_eq!(err.earlier.len(), 2);
    assert_eq!(err.target.as_deref(), Some("mini"));
    assert!(err.message.starts_with("skipped"), "{}", err.message);
}

#[tokio::test(start_paused = true)]
async fn a_content_filter_hit_goes_to_another_provider() {
    let w = world();
    w.openai.script([Step::Filtered], Step::Answer);
    let r = w
        .stack
        .clone()
        .oneshot(ask("a touchy topic"))
        .await
        .unwrap();
    assert_eq!(
        calls(&w),
        (1, 1, 0),
        "a filter hit is not retried on the same provider"
    );
    assert_eq!(r.meta.target.as_deref(), Some("anthropic"));
    assert_eq!(
        r.meta.failed_usage.output_tokens, 3,
        "the filtered attempt's tokens are reported"
    );
}

#[tokio::test(start_paused = true)]
async fn when_everything_is_down_cached_then_static_answers() {
    let w = world();
    let first = w.stack.clone().oneshot(ask("cache me")).await.unwrap();
    assert_eq!(first.meta.tier, QualityTier::Full);

    for p in [&w.openai, &w.anthropic, &w.mini] {
        p.script([], fail_status(ErrorKind::Server, 500));
    }
    let cached = w.stack.clone().oneshot(ask("cache me")).await.unwrap();
    assert_eq!(cached.meta.tier, QualityTier::Cached);
    assert_eq!(cached.text(), first.text());
    assert_eq!(
        calls(&w),
        (1 + 3, 3, 3),
        "every target was tried, with its retries"
    );
    assert_eq!(cached.meta.attempts, 9);
    assert!(cached.meta.warning.as_deref().unwrap().contains("server"));

    let fresh = w.stack.clone().oneshot(ask("never seen")).await.unwrap();
    assert_eq!(fresh.meta.tier, QualityTier::Static);
    assert_eq!(
        fresh.text(),
        "The assistant is unavailable; please retry shortly."
    );
    assert_eq!(calls(&w), (7, 6, 6));
}

#[tokio::test(start_paused = true)]
async fn a_fatal_request_fails_at_once_with_nothing_retried_cached_or_degraded() {
    let w = world();
    w.openai
        .script([fail_status(ErrorKind::InvalidRequest, 400)], Step::Answer);
    let err = w.stack.clone().oneshot(ask("bad")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
    assert_eq!(calls(&w), (1, 0, 0));
    assert_eq!(err.attempts, 1);
    // Not cached: the same request now answers fresh, at full quality.
    let r = w.stack.clone().oneshot(ask("bad")).await.unwrap();
    assert_eq!(r.meta.tier, QualityTier::Full);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_primary_is_cut_by_the_attempt_timeout_and_the_next_target_answers() {
    let w = world();
    w.openai.script([Step::Hang], Step::Answer);
    let started = Instant::now();
    let r = w.stack.clone().oneshot(ask("hello")).await.unwrap();
    // An upstream that never answered is not asked again: one timeout,
    // then the next target, with no backoff in between.
    assert_eq!(calls(&w), (1, 1, 0));
    assert_eq!(r.meta.attempts, 2);
    assert_eq!(r.meta.target.as_deref(), Some("anthropic"));
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn the_budget_refuses_before_any_call() {
    let w = world();
    let err = w
        .stack
        .clone()
        .oneshot(ask("hi").with_max_tokens(500_000))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::BudgetExhausted);
    assert_eq!(calls(&w), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_primary_down_long_enough_opens_its_circuit_and_is_skipped() {
    let w = world();
    w.openai.script([], fail_status(ErrorKind::Overloaded, 503));
    // The breaker sits outside retry: each request whose retries are spent
    // on openai is one failure. Five such requests open the circuit; each
    // is answered by anthropic.
    for i in 1..=5u32 {
        let r = w
            .stack
            .clone()
            .oneshot(ask(&format!("request {i}")))
            .await
            .unwrap();
        assert_eq!(
            (r.meta.target.as_deref(), r.meta.attempts),
            (Some("anthropic"), 4)
        );
        let want = if i < 5 {
            CircuitState::Closed
        } else {
            CircuitState::Open
        };
        assert_eq!(w.openai_circuit.state(), want, "after request {i}");
    }
    assert_eq!(calls(&w), (15, 5, 0));
    // Later requests skip openai without spending an attempt on it.
    for text in ["six", "seven"] {
        let r = w.stack.clone().oneshot(ask(text)).await.unwrap();
        assert_eq!(r.meta.target.as_deref(), Some("anthropic"));
        assert_eq!((r.meta.attempts, r.meta.fallback_depth), (1, 1));
    }
    assert_eq!(calls(&w), (15, 7, 0));
    assert_eq!(w.openai_circuit.counts().failures, 5);
    assert_eq!(
        w.openai_circuit.counts().rejected,
        0,
        "skipped, not even refused"
    );

    // After the break, openai has recovered: the next request probes it and
    // closes the circuit.
    w.openai.script([], Step::Answer);
    tokio::time::advance(Duration::from_secs(30)).await;
    let r = w.stack.clone().oneshot(ask("eight")).await.unwrap();
    assert_eq!(
        (r.meta.target.as_deref(), r.meta.tier),
        (Some("openai"), QualityTier::Full)
    );
    assert_eq!(w.openai_circuit.state(), CircuitState::Closed);
    assert_eq!(calls(&w), (16, 7, 0));
}
