//! Hedging over a balanced target: a slow deployment's calls are hedged to
//! another, within the budget.

use staunch::Deadline;
use staunch::balance::{Balance, BalanceConfig, Deployment, Strategy};
use staunch::core::{ChatRequest, Message};
use staunch::hedge::{HedgeAfter, HedgeBudget, HedgeConfig, HedgeLayer, NonIdempotent};
use staunch_test::{FakeProvider, Step};
use std::time::Duration;
use tower::{Layer, ServiceExt};

fn ask() -> ChatRequest {
    ChatRequest::new("gpt-4o", vec![Message::user("hello")])
}

fn generous() -> HedgeBudget {
    HedgeBudget::new(Duration::from_secs(10), 1_000, 1.0).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_hung_deployment_is_hedged_to_the_other_and_cancelled() {
    let hung = FakeProvider::scripted([Step::Hang]);
    let healthy = FakeProvider::scripted([Step::Slow(Duration::from_millis(300))]);
    let balance = Balance::new(
        BalanceConfig::new("gpt-4o").strategy(Strategy::WeightedRandom),
        [
            Deployment::new("hung", hung.clone()).weight(1_000),
            Deployment::new("healthy", healthy.clone()),
        ],
    )
    .unwrap();
    let handle = balance.handle();
    let hedge = HedgeLayer::new(
        HedgeConfig::new()
            .after(HedgeAfter::Fixed(Duration::from_secs(1)))
            .budget(generous()),
    )
    .unwrap();
    let service = hedge.layer(balance);
    let started = tokio::time::Instant::now();
    let answer = service.clone().oneshot(ask()).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(1_300));
    assert_eq!(answer.meta.deployment.as_deref(), Some("healthy"));
    assert_eq!((hung.calls(), healthy.calls()), (1, 1));
    assert_eq!(answer.meta.attempts, 2, "the cancelled attempt counts");
    // Cancelled: nothing is in flight any more, and the hung deployment
    // is known to be slow.
    let status = handle.deployments();
    assert_eq!((status[0].in_flight, status[1].in_flight), (0, 0));
    assert!(status[0].latency >= Duration::from_millis(1_299));
}

#[tokio::test(start_paused = true)]
async fn a_non_idempotent_call_waits_for_its_one_attempt() {
    let slow = FakeProvider::scripted([Step::Slow(Duration::from_secs(5))]);
    let hedge = HedgeLayer::new(
        HedgeConfig::new()
            .after(HedgeAfter::Fixed(Duration::from_secs(1)))
            .budget(generous()),
    )
    .unwrap();
    let answer = hedge
        .layer(slow.clone())
        .oneshot(ask().with_extension(NonIdempotent))
        .await
        .unwrap();
    assert_eq!(slow.calls(), 1);
    assert_eq!(answer.meta.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn the_default_budget_keeps_extra_calls_under_five_percent() {
    // Every call is slow: without a budget, every one would be hedged.
    let slow = FakeProvider::scripted([Step::Slow(Duration::from_secs(2))]);
    let hedge =
        HedgeLayer::new(HedgeConfig::new().after(HedgeAfter::Fixed(Duration::from_secs(1))))
            .unwrap();
    let service = hedge.layer(slow.clone());
    // 40 callers at once, 25 rounds.
    for _ in 0..25 {
        let calls: Vec<_> = (0..40)
            .map(|_| tokio::spawn(service.clone().oneshot(ask())))
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
    }
    let extra = slow.calls() - 1_000;
    assert!(extra > 0 && extra <= 50, "{extra} extra calls for 1000");
}

#[tokio::test(start_paused = true)]
async fn no_hedge_goes_past_the_deadline() {
    let slow = FakeProvider::scripted([Step::Hang]);
    let hedge = HedgeLayer::new(
        HedgeConfig::new()
            .after(HedgeAfter::Fixed(Duration::from_secs(1)))
            .budget(generous()),
    )
    .unwrap();
    let started = tokio::time::Instant::now();
    let error = hedge
        .layer(slow.clone())
        .oneshot(ask().with_extension(Deadline::after(Duration::from_millis(1_500))))
        .await
        .unwrap_err();
    assert!(error.is_deadline_exceeded());
    assert_eq!(started.elapsed(), Duration::from_millis(1_500));
    assert_eq!(slow.calls(), 1, "1.5 s leave no 1 s hedge its 1 s");
}
