use super::*;
use crate::fallback::{Fallback, Target};
use crate::retry::{NoJitter, Retry, RetryConfig};
use crate::test_support::{Scripted, Step, request};
use staunch_core::{ChatRequest, ErrorClass, ErrorKind, Price, Usage};
use std::time::Duration;
use tower::{Layer, ServiceExt};

/// `request()` is "hello": an estimate of 2 + 4 prompt tokens; with
/// `max_tokens(100)` one attempt is expected to need 106 tokens.
fn ask() -> ChatRequest {
    request().with_max_tokens(100)
}

fn costly(kind: ErrorKind, spent: Usage) -> Step {
    Step::Fail {
        kind,
        status: Some(500),
        retry_after: None,
        should_retry: None,
        spent,
    }
}

fn layer(config: BudgetConfig) -> BudgetLayer {
    BudgetLayer::new(config).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_request_over_the_per_request_cap_is_refused_before_any_call() {
    let fake = Scripted::scripted([Step::Answer]);
    let service = layer(BudgetConfig::new().per_request_tokens(105)).layer(fake.clone());
    let err = service.clone().oneshot(ask()).await.unwrap_err();
    assert_eq!(fake.calls(), 0);
    assert_eq!(err.kind, ErrorKind::BudgetExhausted);
    assert_eq!(err.class(), ErrorClass::Fatal);
    assert!(
        err.message.contains("106 tokens") && err.message.contains("105"),
        "{}",
        err.message
    );
    // Exactly at the cap is allowed.
    let service = layer(BudgetConfig::new().per_request_tokens(106)).layer(fake.clone());
    service.oneshot(ask()).await.unwrap();
    assert_eq!(fake.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_when_another_attempt_would_pass_the_request_cap() {
    let run = |cap: Option<u64>| async move {
        let fake = Scripted::scripted([costly(ErrorKind::Server, Usage::new(50, 50))]);
        let retry = Retry::new(
            fake.clone(),
            RetryConfig::new().jitter(NoJitter).no_budget(),
        );
        let config = cap.map_or(BudgetConfig::new(), |c| {
            BudgetConfig::new().per_request_tokens(c)
        });
        let err = layer(config).layer(retry).oneshot(ask()).await.unwrap_err();
        (fake.calls(), err)
    };
    let (calls, err) = run(None).await;
    assert_eq!((calls, err.attempts), (3, 3));
    // 100 spent + 106 more fits 300; 200 spent + 106 does not.
    let (calls, err) = run(Some(300)).await;
    assert_eq!((calls, err.attempts), (2, 2));
    assert_eq!(err.kind, ErrorKind::Server);
    assert_eq!(err.spent, Usage::new(100, 100));
}

#[tokio::test(start_paused = true)]
async fn fallback_stops_when_the_next_target_would_pass_the_request_cap() {
    let a = Scripted::scripted([costly(ErrorKind::TruncatedResponse, Usage::new(150, 50))]);
    let b = Scripted::scripted([Step::Answer]);
    let chain = Fallback::new([Target::new("a", a.clone()), Target::new("b", b.clone())]).unwrap();
    let service = layer(BudgetConfig::new().per_request_tokens(300)).layer(chain.clone());
    let err = service.oneshot(ask()).await.unwrap_err();
    assert_eq!((a.calls(), b.calls()), (1, 0));
    assert_eq!(err.kind, ErrorKind::TruncatedResponse);

    let roomy = layer(BudgetConfig::new().per_request_tokens(400)).layer(chain);
    assert!(roomy.oneshot(ask()).await.is_ok());
    assert_eq!(b.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_chain_inside_a_chain_counts_what_the_outer_targets_spent() {
    // The outer chain's first target spends 200 of the request's 400; the
    // inner chain's first then spends 100 more, so its second (106 more)
    // would pass the cap: 200 + 100 + 106 > 400.
    let a = Scripted::scripted([costly(ErrorKind::TruncatedResponse, Usage::new(150, 50))]);
    let c = Scripted::scripted([
        costly(ErrorKind::TruncatedResponse, Usage::new(80, 20)),
        costly(ErrorKind::TruncatedResponse, Usage::new(80, 20)),
    ]);
    let b = Scripted::scripted([Step::Answer]);
    let inner = Fallback::new([Target::new("c", c.clone()), Target::new("b", b.clone())]).unwrap();
    let outer = Fallback::new([Target::new("a", a.clone()), Target::new("inner", inner)]).unwrap();
    let service = layer(BudgetConfig::new().per_request_tokens(400)).layer(outer.clone());
    let err = service.oneshot(ask()).await.unwrap_err();
    assert_eq!((a.calls(), c.calls(), b.calls()), (1, 1, 0));
    assert_eq!(err.kind, ErrorKind::TruncatedResponse);

    // With room for it (300 + 106 <= 500), the inner chain goes on.
    let roomy = layer(BudgetConfig::new().per_request_tokens(500)).layer(outer);
    assert!(roomy.oneshot(ask()).await.is_ok());
    assert_eq!(b.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_window_cap_refuses_until_spend_ages_out() {
    let fake = Scripted::scripted([Step::Answer]);
    let budget = layer(
        BudgetConfig::new()
            .window(Duration::from_secs(60))
            .window_tokens(200),
    );
    let service = budget.layer(fake.clone());
    // Each answer bills 10 + 5 tokens (the fake's usage).
    for _ in 0..6 {
        service.clone().oneshot(ask()).await.unwrap();
    }
    assert_eq!(budget.handle().window_tokens(), 90);
    // 90 used + 106 fits 200; the 7th leaves 105 used, and 105 + 106 does not.
    service.clone().oneshot(ask()).await.unwrap();
    let err = service.clone().oneshot(ask()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::BudgetExhausted);
    assert_eq!(fake.calls(), 7);
    // All spend was recorded in the first 3 s bucket, which leaves the
    // window 63 s after it opened.
    assert_eq!(err.retry_after, Some(Duration::from_secs(63)));
    tokio::time::advance(Duration::from_secs(62)).await;
    assert!(service.clone().oneshot(ask()).await.is_err());
    tokio::time::advance(Duration::from_secs(1)).await;
    service.oneshot(ask()).await.unwrap();
    assert_eq!(budget.handle().window_tokens(), 15);
}

/// Spend is recorded when the answer came (its latency after the request
/// started), not when the request started: a slow answer's tokens stay in
/// the window a full window after it.
#[tokio::test(start_paused = true)]
async fn a_slow_answer_is_recorded_when_it_came() {
    let fake = Scripted::scripted([Step::Slow(Duration::from_secs(10))]);
    let budget = layer(BudgetConfig::new().window(Duration::from_secs(60)));
    let answer = budget.layer(fake).oneshot(ask()).await.unwrap();
    assert_eq!(answer.meta.latency, Duration::from_secs(10));
    assert_eq!(budget.handle().window_tokens(), 15);
    // Its bucket opened at 10 s and leaves the window 63 s later.
    tokio::time::advance(Duration::from_secs(62)).await;
    assert_eq!(budget.handle().window_tokens(), 15);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(budget.handle().window_tokens(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_cost_cap_prices_answers_and_failures() {
    let fake = Scripted::scripted([
        costly(ErrorKind::Server, Usage::new(100_000, 0)),
        Step::Answer,
    ]);
    let budget = layer(
        BudgetConfig::new()
            .window_cost(1.0)
            .price("gpt-4o", Price::per_million(5.0, 20.0)),
    );
    let service = budget.layer(fake);
    // The failure spent 100k input tokens: $0.50.
    assert!(service.clone().oneshot(ask()).await.is_err());
    assert!((budget.handle().window_cost() - 0.5).abs() < 1e-9);
    // The answer: 10 in, 5 out.
    service.clone().oneshot(ask()).await.unwrap();
    let want = 0.5 + (10.0 * 5.0 + 5.0 * 20.0) / 1e6;
    assert!((budget.handle().window_cost() - want).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn a_response_cost_wins_over_the_price_table() {
    let mut priced = staunch_core::ChatResponse::new("gpt-4o", "ok").with_usage(Usage::new(1, 1));
    priced.meta.cost = Some(0.25);
    let inner = tower::service_fn(move |_: ChatRequest| {
        let r = priced.clone();
        async move { Ok::<_, staunch_core::LlmError>(r) }
    });
    let budget = layer(
        BudgetConfig::new()
            .window_cost(10.0)
            .default_price(Price::per_million(1.0, 1.0)),
    );
    budget.layer(inner).oneshot(ask()).await.unwrap();
    assert!((budget.handle().window_cost() - 0.25).abs() < 1e-12);
}

#[tokio::test(start_paused = true)]
async fn reservations_hold_concurrent_requests_and_are_released_on_drop() {
    let fake = Scripted::scripted([Step::Slow(Duration::from_secs(3600))]);
    let budget = layer(BudgetConfig::new().window_tokens(250));
    let service = budget.layer(fake.clone());
    let first = tokio::spawn(service.clone().oneshot(ask()));
    let second = tokio::spawn(service.clone().oneshot(ask()));
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    assert_eq!(budget.handle().reserved_tokens(), 212);
    let err = service.clone().oneshot(ask()).await.unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::BudgetExhausted,
        "212 reserved + 106 > 250"
    );
    assert_eq!(fake.calls(), 2);
    first.abort();
    second.abort();
    let _ = (first.await, second.await);
    assert_eq!(budget.handle().reserved_tokens(), 0);
    assert_eq!(budget.handle().window_tokens(), 0, "nothing was billed");
}

#[tokio::test(start_paused = true)]
async fn failures_are_recorded_too() {
    let fake = Scripted::scripted([costly(ErrorKind::TruncatedResponse, Usage::new(30, 20))]);
    let budget = layer(BudgetConfig::new());
    assert!(budget.layer(fake).oneshot(ask()).await.is_err());
    assert_eq!(budget.handle().window_tokens(), 50);
}

#[test]
fn unenforceable_configs_are_clear_errors() {
    assert_eq!(
        BudgetLayer::new(BudgetConfig::new().window(Duration::ZERO)).unwrap_err(),
        InvalidBudget::Window(Duration::ZERO)
    );
    let e = BudgetLayer::new(
        BudgetConfig::new()
            .window_cost(f64::NAN)
            .default_price(Price::per_1k(1.0, 1.0)),
    )
    .unwrap_err();
    assert!(matches!(e, InvalidBudget::Cost(c) if c.is_nan()));
    assert_eq!(
        BudgetLayer::new(BudgetConfig::new().window_cost(5.0)).unwrap_err(),
        InvalidBudget::NoPrices
    );
    assert!(
        InvalidBudget::NoPrices
            .to_string()
            .contains("default_price")
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_started_before_the_budget_was_built_is_counted_when_it_was_answered() {
    let mut early = ask();
    early.start_clock();
    tokio::time::advance(Duration::from_secs(30)).await;
    let budget = layer(
        BudgetConfig::new()
            .window(Duration::from_secs(60))
            .window_tokens(1_000),
    );
    let service = budget.layer(Scripted::scripted([Step::Answer]));
    service.oneshot(early).await.unwrap();
    assert_eq!(budget.handle().window_tokens(), 15);
    // Counted when it was answered (the budget's start, 30 s after the
    // request's): it stays for the whole window (and its 3 s bucket) after
    // that.
    tokio::time::advance(Duration::from_secs(62)).await;
    assert_eq!(budget.handle().window_tokens(), 15);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(budget.handle().window_tokens(), 0);
}
