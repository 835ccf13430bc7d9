//! Unit tests of the balancer: the picks' invariants (property-tested),
//! failover, ejection, the deadline and cancellation.

use super::*;
use crate::Deadline;
use crate::test_support::{Scripted, Step, fail, request};
use proptest::prelude::{ProptestConfig, any, prop_assert, prop_assert_eq, proptest};
use staunch_core::{ErrorClass, ErrorKind, Usage};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tower::ServiceExt;

fn balance(strategy: Strategy, deployments: impl IntoIterator<Item = Deployment>) -> Balance {
    Balance::new(
        BalanceConfig::new("gpt-4o").strategy(strategy).seed(42),
        deployments,
    )
    .unwrap()
}

const ALL: [Strategy; 4] = [
    Strategy::WeightedRandom,
    Strategy::LeastInFlight,
    Strategy::PowerOfTwoChoices,
    Strategy::Headroom,
];

/// `n` deployments whose health reads bit `i` of `out` (set: circuit open).
fn switchable(n: usize, weights: &[u32], out: &Arc<AtomicU64>) -> Vec<Deployment> {
    (0..n)
        .map(|i| {
            let out = out.clone();
            Deployment::new(format!("d{i}"), Scripted::new(format!("d{i}")))
                .weight(weights.get(i).copied().unwrap_or(1))
                .health(move || {
                    (out.load(Ordering::Relaxed) & (1 << i) != 0).then_some(Duration::from_secs(5))
                })
        })
        .collect()
}

fn strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
    proptest::sample::select(ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the strategy, the weights, the seed and which deployments
    /// are out or excluded, a pick is never an out or excluded deployment,
    /// and there is a pick whenever one is in.
    #[test]
    fn never_picks_an_out_deployment(
        strategy in strategy(),
        weights in proptest::collection::vec(1u32..20, 1..=16),
        out_mask in any::<u64>(),
        excluded in any::<u64>(),
        seed in any::<u64>(),
    ) {
        let n = weights.len();
        let all = (1u64 << n) - 1;
        let out = Arc::new(AtomicU64::new(out_mask & all));
        let b = Balance::new(
            BalanceConfig::new("p").strategy(strategy).seed(seed),
            switchable(n, &weights, &out),
        ).unwrap();
        let book = &b.shared.book;
        let excluded = excluded & all;
        for _ in 0..32 {
            let blocked = (out_mask & all) | excluded;
            match book.pick(excluded, || 10) {
                Some(i) => prop_assert_eq!(blocked & (1 << i), 0, "picked {} of {:b}", i, blocked),
                None => prop_assert_eq!(blocked, all, "no pick though some are in"),
            }
        }
    }

    /// Weighted picks converge to the weights: over 20,000 picks each
    /// deployment's share is within 2 points of its weight's share.
    #[test]
    fn weighted_picks_converge_to_the_weights(
        weights in proptest::collection::vec(1u32..10, 1..=16),
        seed in any::<u64>(),
    ) {
        let n = weights.len();
        let out = Arc::new(AtomicU64::new(0));
        let b = Balance::new(
            BalanceConfig::new("p").strategy(Strategy::WeightedRandom).seed(seed),
            switchable(n, &weights, &out),
        ).unwrap();
        let mut counts = vec![0u32; n];
        let picks = 20_000;
        for _ in 0..picks {
            counts[b.shared.book.pick(0, || 1).unwrap()] += 1;
        }
        let total: u32 = weights.iter().sum();
        for i in 0..n {
            let want = f64::from(weights[i]) / f64::from(total);
            let got = f64::from(counts[i]) / f64::from(picks);
            prop_assert!((got - want).abs() < 0.02, "d{} got {:.3}, want {:.3}", i, got, want);
        }
    }
}

#[test]
fn invalid_sets_are_refused() {
    let d = |name: &str| Deployment::new(name.to_owned(), Scripted::new(name));
    let err = |r: Result<Balance, InvalidBalance>| r.unwrap_err();
    assert_eq!(
        err(Balance::new(BalanceConfig::default(), Vec::new())),
        InvalidBalance::Empty
    );
    assert_eq!(
        err(Balance::new(BalanceConfig::default(), [d("a"), d("a")])),
        InvalidBalance::DuplicateName("a".into())
    );
    assert_eq!(
        err(Balance::new(BalanceConfig::default(), [d("a").weight(0)])),
        InvalidBalance::ZeroWeight("a".into())
    );
    assert_eq!(
        err(Balance::new(
            BalanceConfig::default(),
            (0..65).map(|i| d(&format!("d{i}")))
        )),
        InvalidBalance::TooMany(65)
    );
    assert_eq!(
        err(Balance::new(
            BalanceConfig::default().latency_decay(Duration::ZERO),
            [d("a")]
        )),
        InvalidBalance::ZeroDecay
    );
    assert_eq!("p2c".parse::<Strategy>(), Ok(Strategy::PowerOfTwoChoices));
    for s in ALL {
        assert_eq!(s.as_str().parse::<Strategy>(), Ok(s));
    }
    assert!("random".parse::<Strategy>().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_failed_deployment_fails_over_and_meta_names_the_one_that_answered() {
    for strategy in ALL {
        let a = Scripted::new("p");
        a.script(
            [Step::Fail {
                kind: ErrorKind::Overloaded,
                status: Some(529),
                retry_after: None,
                should_retry: None,
                spent: Usage::new(7, 0),
            }],
            Step::Answer,
        );
        let b = a.clone();
        // One provider behind both: whichever is picked first fails, the
        // other answers.
        let answer = balance(
            strategy,
            [
                Deployment::new("east", a.clone()),
                Deployment::new("west", b),
            ],
        )
        .oneshot(request())
        .await
        .unwrap();
        assert_eq!(a.calls(), 2, "{strategy:?}");
        assert!(answer.meta.deployment.is_some());
        assert_eq!(answer.meta.attempts, 2, "{strategy:?}");
        assert_eq!(answer.meta.failed_usage, Usage::new(7, 0));
        assert_eq!(answer.meta.tier, staunch_core::QualityTier::Full);
    }
}

#[tokio::test(start_paused = true)]
async fn an_auth_failure_takes_the_deployment_out_not_the_model() {
    for (kind, why) in [
        (ErrorKind::Authentication, Ejection::Authentication),
        (ErrorKind::PermissionDenied, Ejection::PermissionDenied),
        (ErrorKind::QuotaExhausted, Ejection::QuotaExhausted),
    ] {
        let bad = Scripted::scripted([fail(kind)]);
        let good = Scripted::scripted([Step::Answer]);
        let b = balance(
            Strategy::WeightedRandom,
            [
                Deployment::new("bad", bad.clone()).weight(100),
                Deployment::new("good", good.clone()),
            ],
        );
        let handle = b.handle();
        for _ in 0..20 {
            let answer = b.clone().oneshot(request()).await.unwrap();
            assert_eq!(answer.meta.deployment.as_deref(), Some("good"));
        }
        assert_eq!(bad.calls(), 1, "called once, then out");
        let out = handle.out();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "bad");
        assert!(
            matches!(out[0].1, OutReason::Ejected(w, left) if w == why && left == Duration::from_secs(600))
        );
        // Out for the configured time, then back.
        tokio::time::advance(Duration::from_secs(601)).await;
        assert!(handle.out().is_empty());
        // And the handle puts it back sooner.
        handle.eject("bad", Duration::from_secs(60));
        assert_eq!(handle.out().len(), 1);
        assert!(handle.restore("bad"));
        assert!(handle.out().is_empty());
        assert!(!handle.restore("nobody") && !handle.eject("nobody", Duration::ZERO));
    }
}

#[tokio::test(start_paused = true)]
async fn every_deployment_out_fails_with_an_unavailable_error_that_says_so() {
    let out = Arc::new(AtomicU64::new(0b11));
    let b = Balance::new(BalanceConfig::new("gpt-4o"), switchable(2, &[1, 1], &out)).unwrap();
    let handle = b.handle();
    assert_eq!(
        crate::health::TargetHealth::unavailable_for(&handle),
        Some(Duration::from_secs(5))
    );
    let error = b.clone().oneshot(request()).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::CircuitOpen);
    assert_eq!(error.class(), ErrorClass::Unavailable);
    assert_eq!(error.attempts, 0);
    assert_eq!(error.retry_after, Some(Duration::from_secs(5)));
    let account = AllDeploymentsOut::of(&error).expect("the account");
    assert_eq!(account.deployments.len(), 2);
    assert!(
        error
            .to_string()
            .contains("every deployment of gpt-4o is out: d0 (circuit open"),
        "{error}"
    );
    // One back: the target is available again.
    out.store(0b01, Ordering::Relaxed);
    assert_eq!(crate::health::TargetHealth::unavailable_for(&handle), None);
    let answer = b.oneshot(request()).await.unwrap();
    assert_eq!(answer.meta.deployment.as_deref(), Some("d1"));
}

#[tokio::test(start_paused = true)]
async fn no_room_is_a_rate_limit_not_worth_retrying_here() {
    let b = balance(
        Strategy::PowerOfTwoChoices,
        [Deployment::new("a", Scripted::new("a")).headroom(|| Room::new(Some(0), None))],
    );
    let error = b.oneshot(request()).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::RateLimited);
    assert_eq!(error.class(), ErrorClass::Unavailable);
}

#[tokio::test(start_paused = true)]
async fn when_every_deployment_fails_the_last_error_counts_them_all() {
    let a = Scripted::scripted([fail(ErrorKind::Overloaded)]);
    let b = Scripted::scripted([fail(ErrorKind::Timeout)]);
    let c = Scripted::scripted([Step::Answer]);
    let error = balance(
        Strategy::LeastInFlight,
        [
            Deployment::new("a", a.clone()),
            Deployment::new("b", b.clone()),
            Deployment::new("c", c.clone()).health(|| Some(Duration::from_secs(3))),
        ],
    )
    .oneshot(request())
    .await
    .unwrap_err();
    assert_eq!((a.calls(), b.calls(), c.calls()), (1, 1, 0));
    assert_eq!(error.attempts, 2);
    assert!(matches!(
        error.kind,
        ErrorKind::Overloaded | ErrorKind::Timeout
    ));
    let text = error.to_string();
    assert!(text.contains("every deployment of gpt-4o is out"), "{text}");
    assert!(text.contains("c (circuit open for 3s)"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn errors_another_deployment_would_repeat_end_the_call() {
    for kind in [
        ErrorKind::InvalidRequest,
        ErrorKind::ContextLengthExceeded,
        ErrorKind::ContentFiltered,
    ] {
        let p = Scripted::scripted([fail(kind)]);
        let error = balance(
            Strategy::WeightedRandom,
            [
                Deployment::new("a", p.clone()),
                Deployment::new("b", p.clone()),
            ],
        )
        .oneshot(request())
        .await
        .unwrap_err();
        assert_eq!(p.calls(), 1, "{kind:?}: no failover");
        assert_eq!(error.kind, kind);
    }
}

#[tokio::test(start_paused = true)]
async fn p2c_sends_most_calls_to_the_faster_deployment() {
    let slow = Scripted::scripted([Step::Slow(Duration::from_secs(4))]);
    let fast = Scripted::scripted([Step::Slow(Duration::from_millis(400))]);
    let b = balance(
        Strategy::PowerOfTwoChoices,
        [
            Deployment::new("slow", slow.clone()),
            Deployment::new("fast", fast.clone()),
        ],
    );
    for _ in 0..50 {
        b.clone().oneshot(request()).await.unwrap();
    }
    assert!(
        fast.calls() >= 45,
        "fast {} slow {}",
        fast.calls(),
        slow.calls()
    );
    let status = b.handle().deployments();
    assert!(status[0].latency > status[1].latency);
    assert_eq!((status[0].in_flight, status[1].in_flight), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_idle_slow_deployment_is_tried_again_as_its_estimate_decays() {
    let slow = Scripted::scripted([Step::Slow(Duration::from_secs(4))]);
    let fast = Scripted::scripted([Step::Slow(Duration::from_millis(400))]);
    let b = balance(
        Strategy::PowerOfTwoChoices,
        [
            Deployment::new("slow", slow.clone()),
            Deployment::new("fast", fast.clone()),
        ],
    );
    // Both measured.
    while slow.calls() == 0 || fast.calls() == 0 {
        b.clone().oneshot(request()).await.unwrap();
    }
    let before = slow.calls();
    // The fast one keeps answering, so its estimate stays fresh; the idle
    // slow one's decays until it wins a pick again.
    for _ in 0..100 {
        b.clone().oneshot(request()).await.unwrap();
    }
    assert!(slow.calls() > before, "the slow one was tried again");
    assert!(fast.calls() > 80);
}

#[tokio::test(start_paused = true)]
async fn least_in_flight_avoids_the_busy_deployment() {
    // One provider behind both: its first call hangs, the rest answer.
    let p = Scripted::new("p");
    p.script([Step::Hang], Step::Answer);
    let bal = balance(
        Strategy::LeastInFlight,
        [
            Deployment::new("a", p.clone()),
            Deployment::new("b", p.clone()),
        ],
    );
    let hung = tokio::spawn(bal.clone().oneshot(request()));
    tokio::task::yield_now().await;
    let status = bal.handle().deployments();
    let busy = status
        .iter()
        .find(|d| d.in_flight == 1)
        .expect("one busy")
        .name
        .clone();
    for _ in 0..10 {
        let answer = bal.clone().oneshot(request()).await.unwrap();
        assert_ne!(answer.meta.deployment.as_deref(), Some(busy.as_str()));
    }
    hung.abort();
}

#[tokio::test(start_paused = true)]
async fn headroom_picks_the_most_room_and_never_none() {
    let small = Scripted::new("small");
    let big = Scripted::new("big");
    let empty = Scripted::new("empty");
    let b = balance(
        Strategy::Headroom,
        [
            Deployment::new("small", small.clone()).headroom(|| Room::new(Some(5), Some(100_000))),
            Deployment::new("big", big.clone()).headroom(|| Room::new(Some(500), Some(1_000_000))),
            Deployment::new("empty", empty.clone()).headroom(|| Room::new(Some(900), Some(0))),
        ],
    );
    for _ in 0..10 {
        let answer = b.clone().oneshot(request()).await.unwrap();
        assert_eq!(answer.meta.deployment.as_deref(), Some("big"));
    }
    assert_eq!(empty.calls(), 0);
    assert_eq!(Room::new(Some(10), Some(1_000)).calls_that_fit(300), 3);
    assert_eq!(Room::default().calls_that_fit(300), u64::MAX);
}

#[tokio::test(start_paused = true)]
async fn a_passed_deadline_calls_nobody_and_one_in_flight_is_cut() {
    let p = Scripted::scripted([Step::Hang]);
    let b = balance(
        Strategy::PowerOfTwoChoices,
        [
            Deployment::new("a", p.clone()),
            Deployment::new("b", p.clone()),
        ],
    );
    let deadline = Deadline::after(Duration::from_secs(2));
    let started = tokio::time::Instant::now();
    let error = b
        .clone()
        .oneshot(request().with_extension(deadline))
        .await
        .unwrap_err();
    assert!(error.is_deadline_exceeded(), "{error}");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(p.calls(), 1, "no failover past the deadline");
    let error = b
        .oneshot(request().with_extension(deadline))
        .await
        .unwrap_err();
    assert!(error.is_deadline_exceeded());
    assert_eq!(p.calls(), 1, "nothing called once it passed");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_releases_its_slot_and_counts_as_slow() {
    let p = Scripted::scripted([Step::Hang]);
    let b = balance(Strategy::LeastInFlight, [Deployment::new("a", p.clone())]);
    let handle = b.handle();
    let call = tokio::spawn(b.clone().oneshot(request()));
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(handle.deployments()[0].in_flight, 1);
    call.abort();
    let _ = call.await;
    let status = &handle.deployments()[0];
    assert_eq!(status.in_flight, 0);
    assert_eq!(status.failed, 1);
    assert!(
        status.latency >= Duration::from_millis(8_999),
        "a peak: {status:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deployment_asks_for_its_own_model() {
    let p = Scripted::scripted([Step::Answer]);
    let answer = balance(
        Strategy::WeightedRandom,
        [Deployment::new("azure", p.clone()).model("gpt-4o-eastus")],
    )
    .oneshot(request())
    .await
    .unwrap();
    assert_eq!(p.models(), ["gpt-4o-eastus"]);
    assert_eq!(answer.meta.deployment.as_deref(), Some("azure"));
}

#[cfg(feature = "hedge")]
#[tokio::test(start_paused = true)]
async fn a_hedge_goes_to_another_deployment_than_the_first() {
    use crate::hedge::HedgeRoute;
    for strategy in ALL {
        let p = Scripted::scripted([Step::Answer]);
        let b = balance(
            strategy,
            (0..4).map(|i| Deployment::new(format!("d{i}"), p.clone())),
        );
        for _ in 0..20 {
            let route = HedgeRoute::default();
            let first = b
                .clone()
                .oneshot(request().with_extension(route.clone()))
                .await
                .unwrap();
            let second = b
                .clone()
                .oneshot(request().with_extension(route.for_second()))
                .await
                .unwrap();
            assert_ne!(
                first.meta.deployment, second.meta.deployment,
                "{strategy:?}"
            );
        }
        // With one deployment, the hedge goes to it after all.
        let one = balance(strategy, [Deployment::new("only", p.clone())]);
        let route = HedgeRoute::default();
        one.clone()
            .oneshot(request().with_extension(route.clone()))
            .await
            .unwrap();
        one.oneshot(request().with_extension(route.for_second()))
            .await
            .unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn least_in_flight_spreads_ties_at_random() {
    let b = balance(
        Strategy::LeastInFlight,
        (0..3).map(|i| Deployment::new(format!("d{i}"), Scripted::new("p"))),
    );
    let mut counts = [0; 3];
    for _ in 0..300 {
        counts[b.pick_for(&request()).unwrap()] += 1;
    }
    assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
}

#[cfg(feature = "quota")]
#[tokio::test(start_paused = true)]
async fn a_quota_paused_by_its_provider_is_not_picked() {
    use crate::quota::{QuotaConfig, QuotaLayer};
    use tower::Layer;
    let quota = QuotaLayer::new(QuotaConfig::new("east").requests_per_minute(1_000)).unwrap();
    let east = Scripted::scripted([Step::Answer]);
    let west = Scripted::scripted([Step::Answer]);
    let b = balance(
        Strategy::WeightedRandom,
        [
            Deployment::new("east", quota.layer(east.clone()))
                .weight(100)
                .headroom(quota.handle()),
            Deployment::new("west", west.clone()),
        ],
    );
    quota.handle().pause_for(Duration::from_secs(30));
    for _ in 0..10 {
        let answer = b.clone().oneshot(request()).await.unwrap();
        assert_eq!(answer.meta.deployment.as_deref(), Some("west"));
    }
    assert_eq!(east.calls(), 0);
    assert!(matches!(b.handle().out()[..], [(ref n, OutReason::NoRoom)] if n == "east"));
    tokio::time::advance(Duration::from_secs(31)).await;
    assert!(b.handle().out().is_empty());
}
