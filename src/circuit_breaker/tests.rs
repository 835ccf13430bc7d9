use super::*;
use crate::test_support::{Scripted, Step, fail, fail_after, request};
use staunch_core::{ChatRequest, ChatResponse, ErrorKind, LlmError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const S: fn(u64) -> Duration = Duration::from_secs;

/// The layer, with the break's jitter off so that waits are exact (the
/// jitter has its own test).
fn layer(config: CircuitBreakerConfig) -> CircuitBreakerLayer {
    CircuitBreakerLayer::new(config.break_jitter(0.0)).unwrap()
}

async fn run<Sv>(service: &Sv, n: usize) -> Vec<Result<ChatResponse, LlmError>>
where
    Sv: Service<ChatRequest, Response = ChatResponse, Error = LlmError> + Clone,
{
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(service.clone().oneshot(request()).await);
    }
    out
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_the_circuit_and_a_success_resets_the_run() {
    let fake = Scripted::scripted([
        fail(ErrorKind::Server),
        fail(ErrorKind::Server),
        Step::Answer,
        fail(ErrorKind::Server),
        fail(ErrorKind::Overloaded),
        fail(ErrorKind::Timeout),
        Step::Answer,
    ]);
    let cb = layer(CircuitBreakerConfig::new("p").consecutive_failures(Some(3)));
    let handle = cb.handle();
    let service = cb.layer(fake.clone());
    run(&service, 5).await;
    assert_eq!(
        handle.state(),
        CircuitState::Closed,
        "the success broke the run"
    );
    run(&service, 1).await;
    assert_eq!(handle.state(), CircuitState::Open);
    let counts = handle.counts();
    assert_eq!(
        (counts.successes, counts.failures, counts.transitions),
        (1, 5, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_fails_fast_without_touching_the_target() {
    let fake = Scripted::scripted([fail(ErrorKind::Server)]);
    let cb = layer(
        CircuitBreakerConfig::new("p")
            .consecutive_failures(Some(1))
            .break_duration(S(30)),
    );
    let handle = cb.handle();
    let service = cb.layer(fake.clone());
    run(&service, 1).await;
    tokio::time::advance(S(10)).await;
    let err = service.clone().oneshot(request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::CircuitOpen);
    assert_eq!(err.retry_after, Some(S(20)));
    assert_eq!(err.attempts, 0);
    assert!(err.message.contains("circuit p is open"), "{}", err.message);
    assert_eq!(fake.calls(), 1);
    assert_eq!(handle.counts().rejected, 1);
    assert!(!handle.is_call_permitted());
}

/// Counts `poll_ready` calls, to check the breaker leaves a refused call's
/// inner service alone.
#[derive(Clone)]
struct CountReady {
    inner: Scripted,
    polls: Arc<AtomicUsize>,
}

impl Service<ChatRequest> for CountReady {
    type Response = ChatResponse;
    type Error = LlmError;
    type Future = <Scripted as Service<ChatRequest>>::Future;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, r: ChatRequest) -> Self::Future {
        self.inner.call(r)
    }
}

#[tokio::test(start_paused = true)]
async fn poll_ready_never_fails_and_skips_the_inner_service_when_refusing() {
    let polls = Arc::new(AtomicUsize::new(0));
    let inner = CountReady {
        inner: Scripted::scripted([fail(ErrorKind::Server)]),
        polls: polls.clone(),
    };
    let cb = layer(CircuitBreakerConfig::new("p").consecutive_failures(Some(1)));
    let mut service = cb.layer(inner);
    service.ready().await.unwrap();
    assert!(service.call(request()).await.is_err());
    assert_eq!(polls.load(Ordering::SeqCst), 1);
    // Open: ready at once, the inner service not polled, the call refused.
    service.ready().await.unwrap();
    assert_eq!(polls.load(Ordering::SeqCst), 1);
    assert_eq!(
        service.call(request()).await.unwrap_err().kind,
        ErrorKind::CircuitOpen
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_probes_close_or_reopen_with_a_growing_break() {
    let fake = Scripted::scripted([
        fail(ErrorKind::Server), // trips
        fail(ErrorKind::Server), // probe 1 fails: 10 s -> 20 s
        fail(ErrorKind::Server), // probe 2 fails: 20 s -> 40 s
        fail(ErrorKind::Server), // probe 3 fails: capped at 50 s
        Step::Answer,            // probe 4 succeeds: closed
        fail(ErrorKind::Server), // trips again, with the base break
    ]);
    let cb = layer(
        CircuitBreakerConfig::new("p")
            .consecutive_failures(Some(1))
            .break_duration(S(10))
            .break_growth(2.0, S(50)),
    );
    let handle = cb.handle();
    let service = cb.layer(fake.clone());
    run(&service, 1).await;
    for (wait, state) in [
        (10, CircuitState::Open),
        (20, CircuitState::Open),
        (40, CircuitState::Open),
        (50, CircuitState::Closed),
    ] {
        let early = service.clone().oneshot(request()).await.unwrap_err();
        assert_eq!(early.retry_after, Some(S(wait)), "break before probe");
        tokio::time::advance(S(wait)).await;
        let _ = service.clone().oneshot(request()).await;
        assert_eq!(handle.state(), state);
    }
    run(&service, 1).await;
    let err = service.clone().oneshot(request()).await.unwrap_err();
    assert_eq!(err.retry_after, Some(S(10)), "closing reset the break");
    assert_eq!(fake.calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn success_threshold_needs_that_many_probes() {
    let fake = Scripted::scripted([fail(ErrorKind::Server), Step::Answer]);
    let cb = layer(
        CircuitBreakerConfig::new("p")
            .consecutive_failures(Some(1))
            .break_duration(S(5))
            .success_threshold(3),
    );
    let handle = cb.handle();
    let service = cb.layer(fake);
    run(&service, 1).await;
    tokio::time::advance(S(5)).await;
    run(&service, 2).await;
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    run(&service, 1).await;
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_only_the_probe_limit_under_concurrent_callers() {
    let fake = Scripted::scripted([fail(ErrorKind::Server), Step::Slow(S(60))]);
    let cb = layer(
        CircuitBreakerConfig::new("p")
            .consecutive_failures(Some(1))
            .break_duration(S(1))
            .half_open_probes(2)
            .half_open_wait(Duration::ZERO),
    );
    let handle = cb.handle();
    let service = cb.layer(fake.clone());
    run(&service, 1).await;
    tokio::time::advance(S(1)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let s = service.clone();
        tasks.spawn(async move { s.oneshot(request()).await });
    }
    tokio::task::yield_now().await;
    assert_eq!(fake.calls(), 1 + 2, "two probes reached the target");
    assert_eq!(handle.counts().rejected, 4);
    assert!(!handle.is_call_permitted());
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        if r.unwrap().is_err() {
            refused += 1;
        }
    }
    assert_eq!(refused, 4);
    assert_eq!(
        handle.state(),
        CircuitState::Closed,
        "the probes answered after their hang"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_gives_its_slot_back_and_counts_as_ignored() {
    let fake = Scripted::scripted([fail(ErrorKind::Server), Step::Slow(S(3600)), Step::Answer]);
    let cb = layer(
        CircuitBreakerConfig::new("p")
            .consecutive_failures(Some(1))
            .break_duration(S(1)),
    );
    let handle = cb.handle();
    let service = cb.layer(fake.clone());
    run(&service, 1).await;
    tokio::time::advance(S(1)).await;
    // An outer timeout gives up on the hanging probe.
    let outer = tower::timeout::Timeout::new(service.clone(), S(5));
    assert!(outer.oneshot(request()).await.is_err());
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    let counts = handle.counts();
    assert_eq!(
        (counts.successes, counts.ignored),
        (0, 1),
        "never a success"
    );
    // The slot is free again: the next call is a probe and closes the circuit.
    service.clone().oneshot(request()).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_with_retry_after_opens_a_cooldown_of_that_length() {
    let fake = Scripted::scripted([
        fail_after(ErrorKind::RateLimited, 429, Duration::from_millis(7_500)),
        Step::Answer,
    ]);
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let seen = transitions.clone();
    let cb = layer(
        CircuitBreakerConfig::new("openai")
            .break_duration(S(30))
            .on_transition(move |t: &Transition| seen.lock().unwrap().push(t.clone())),
    );
    let handle = cb.handle();
    let service = cb.layer(fake.clone());
    let start = Instant::now();
    run(&service, 1).await;
    assert_eq!(handle.state(), CircuitState::Open, "one 429 is enough");
    let err = service.clone().oneshot(request()).await.unwrap_err();
    assert_eq!(err.retry_after, Some(Duration::from_millis(7_500)));
    tokio::time::advance(Duration::from_millis(7_500)).await;
    service.clone().oneshot(request()).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
    let t = transitions.lock().unwrap().clone();
    let path: Vec<_> = t.iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        path,
        [
            (CircuitState::Closed, CircuitState::Open),
            (CircuitState::Open, CircuitState::HalfOpen),
            (CircuitState::HalfOpen, CircuitState::Closed)
        ]
    );
    assert_eq!(
        t[0].reason,
        TransitionReason::RateLimited(Duration::from_millis(7_500))
    );
    assert_eq!(t[0].open_for, Some(Duration::from_millis(7_500)));
    assert_eq!((t[0].breaker.as_str(), t[0].at), ("openai", start));
    assert_eq!(
        handle.last_transition(),
        Some(start + Duration::from_millis(7_500))
    );

    // Switched off, the same 429 is an ordinary failure.
    let fake = Scripted::scripted([fail_after(ErrorKind::RateLimited, 429, S(7))]);
    let cb = layer(CircuitBreakerConfig::new("p").rate_limit_cooldown(false));
    let handle = cb.handle();
    run(&cb.layer(fake), 1).await;
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn caller_errors_never_count() {
    for kind in [
        ErrorKind::InvalidRequest,
        ErrorKind::BudgetExhausted,
        ErrorKind::Cancelled,
        ErrorKind::ContextLengthExceeded,
        ErrorKind::ContentFiltered,
        ErrorKind::CircuitOpen,
    ] {
        let cb = layer(CircuitBreakerConfig::new("p").consecutive_failures(Some(1)));
        let handle = cb.handle();
        run(&cb.layer(Scripted::scripted([fail(kind)])), 10).await;
        assert_eq!(handle.state(), CircuitState::Closed, "{kind}");
        assert_eq!(
            (handle.counts().ignored, handle.counts().failures),
            (10, 0),
            "{kind}"
        );
    }
    // Provider-side unavailability does count.
    for kind in [
        ErrorKind::Authentication,
        ErrorKind::QuotaExhausted,
        ErrorKind::ModelNotFound,
    ] {
        let cb = layer(CircuitBreakerConfig::new("p").consecutive_failures(Some(2)));
        let handle = cb.handle();
        run(&cb.layer(Scripted::scripted([fail(kind)])), 2).await;
        assert_eq!(handle.state(), CircuitState::Open, "{kind}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_quota_refusal_neither_opens_nor_extends_a_circuit_but_a_providers_429_does() {
    // A staunch quota below the breaker refuses before the provider: a
    // `RateLimited` with the wait, marked as a quota refusal.
    let refusals = tower::service_fn(|_: ChatRequest| async {
        Err::<ChatResponse, _>(
            LlmError::new(ErrorKind::RateLimited, "quota used up")
                .with_retry_after(S(7))
                .with_should_retry(false)
                .with_source(staunch_core::QuotaRefusal),
        )
    });
    let cb = layer(CircuitBreakerConfig::new("p").consecutive_failures(Some(1)));
    let handle = cb.handle();
    let results = run(&cb.layer(refusals), 10).await;
    assert_eq!(handle.state(), CircuitState::Closed, "no cooldown opened");
    assert_eq!((handle.counts().ignored, handle.counts().failures), (10, 0));
    for result in results {
        let err = result.unwrap_err();
        assert_eq!(
            (err.kind, err.retry_after),
            (ErrorKind::RateLimited, Some(S(7)))
        );
    }

    // Open (by a provider's 429), a quota refusal on the probe does not
    // extend the break: the next probe that answers closes it.
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let target = tower::service_fn(move |_: ChatRequest| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            match n {
                0 => Err(LlmError::new(ErrorKind::RateLimited, "slow down")
                    .with_status(429)
                    .with_retry_after(S(5))),
                1 => Err(LlmError::new(ErrorKind::RateLimited, "quota used up")
                    .with_retry_after(S(60))
                    .with_source(staunch_core::QuotaRefusal)),
                _ => Ok(ChatResponse::new("m", "ok")),
            }
        }
    });
    let cb = layer(CircuitBreakerConfig::new("p"));
    let handle = cb.handle();
    let service = cb.layer(target);
    run(&service, 1).await;
    assert_eq!(
        handle.state(),
        CircuitState::Open,
        "a provider's 429 counts"
    );
    tokio::time::advance(S(5)).await;
    let refused = service.clone().oneshot(request()).await.unwrap_err();
    assert!(refused.is_quota_refusal());
    assert_ne!(handle.state(), CircuitState::Open, "not extended by 60 s");
    service.clone().oneshot(request()).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_custom_outcome_rule_decides() {
    let cb = layer(
        CircuitBreakerConfig::new("p")
            .consecutive_failures(Some(1))
            .outcome(|r: &Result<ChatResponse, LlmError>| match r {
                Err(e) if e.kind == ErrorKind::Server => Outcome::Ignored,
                Err(_) => Outcome::Failure,
                Ok(_) => Outcome::Success,
            }),
    );
    let handle = cb.handle();
    let service = cb.layer(Scripted::scripted([
        fail(ErrorKind::Server),
        fail(ErrorKind::Server),
        fail(ErrorKind::Timeout),
    ]));
    run(&service, 2).await;
    assert_eq!(handle.state(), CircuitState::Closed);
    run(&service, 1).await;
    assert_eq!(handle.state(), CircuitState::Open);
}

/// A rule of one's own sees every answer too (only the default rule's
/// verdict on an answer, a success, is taken without asking it).
#[tokio::test(start_paused = true)]
async fn a_custom_outcome_rule_judges_answers_too() {
    let cb = layer(
        CircuitBreakerConfig::new("p")
            .consecutive_failures(Some(2))
            .outcome(|r: &Result<ChatResponse, LlmError>| match r {
                // An empty answer is as bad as an error here.
                Ok(answer) if answer.text().is_empty() => Outcome::Failure,
                Ok(_) => Outcome::Success,
                Err(_) => Outcome::Failure,
            }),
    );
    let handle = cb.handle();
    let empty = tower::service_fn(|r: ChatRequest| async move {
        Ok::<_, LlmError>(ChatResponse::new(&r.model, ""))
    });
    let service = cb.layer(empty);
    run(&service, 1).await;
    assert_eq!(handle.state(), CircuitState::Closed);
    assert_eq!(
        handle.counts().failures,
        1,
        "the answer was judged a failure"
    );
    run(&service, 1).await;
    assert_eq!(handle.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_failure_rate_over_the_last_calls_trips_after_the_minimum() {
    let cb = layer(
        CircuitBreakerConfig::new("p")
            .consecutive_failures(None)
            .failure_rate(RateRule::new(RateWindow::Calls(10), 0.5, 10)),
    );
    let handle = cb.handle();
    // Alternating: 50% from the start, but below the 10-call minimum for 9 calls.
    let steps = (0..20).map(|i| {
        if i % 2 == 0 {
            fail(ErrorKind::Server)
        } else {
            Step::Answer
        }
    });
    let service = cb.layer(Scripted::scripted(steps));
    run(&service, 9).await;
    assert_eq!(handle.state(), CircuitState::Closed);
    run(&service, 1).await; // a success: the rule is only checked on failures
    assert_eq!(handle.state(), CircuitState::Closed);
    run(&service, 1).await; // 11th call, a failure: 5 of the last 10
    assert_eq!(handle.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_failure_rate_over_time_forgets_old_calls() {
    let cb = layer(
        CircuitBreakerConfig::new("p")
            .consecutive_failures(None)
            .failure_rate(RateRule::new(RateWindow::Time(S(10)), 0.6, 4)),
    );
    let handle = cb.handle();
    let service = cb.layer(Scripted::scripted([
        fail(ErrorKind::Server),
        fail(ErrorKind::Server),
        Step::Answer,
        Step::Answer,
        fail(ErrorKind::Server),
        fail(ErrorKind::Server),
        fail(ErrorKind::Server),
    ]));
    run(&service, 2).await; // t=0: 2 failures
    tokio::time::advance(S(11)).await; // they leave the window
    run(&service, 2).await; // 2 successes
    run(&service, 2).await; // 2 of 4 failed: 50% < 60%
    assert_eq!(handle.state(), CircuitState::Closed);
    run(&service, 1).await; // 3 of 5: 60%
    assert_eq!(handle.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_count_as_failures_when_asked() {
    let cb = layer(
        CircuitBreakerConfig::new("p")
            .consecutive_failures(Some(2))
            .slow_call(S(2)),
    );
    let handle = cb.handle();
    let service = cb.layer(Scripted::scripted([Step::Slow(S(3))]));
    run(&service, 1).await;
    assert_eq!(handle.counts().failures, 1);
    run(&service, 1).await;
    assert_eq!(handle.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn operators_can_force_open_disable_and_reset() {
    let fake = Scripted::scripted([fail(ErrorKind::Server)]);
    let cb = layer(CircuitBreakerConfig::new("p").consecutive_failures(Some(1)));
    let handle = cb.handle();
    let service = cb.layer(fake.clone());

    handle.force_open();
    assert_eq!(handle.state(), CircuitState::ForcedOpen);
    tokio::time::advance(S(3600)).await;
    let err = service.clone().oneshot(request()).await.unwrap_err();
    assert_eq!((err.kind, err.retry_after), (ErrorKind::CircuitOpen, None));
    assert!(err.message.contains("forced open"));
    assert_eq!(fake.calls(), 0);

    handle.disable();
    run(&service, 5).await;
    assert_eq!(
        handle.state(),
        CircuitState::Disabled,
        "failures don't trip a disabled breaker"
    );
    assert_eq!(fake.calls(), 5);

    handle.reset();
    assert_eq!(handle.state(), CircuitState::Closed);
    run(&service, 1).await;
    assert_eq!(handle.state(), CircuitState::Open);
    handle.reset();
    assert!(handle.is_call_permitted());
    assert_eq!(handle.counts().transitions, 5);
}

#[tokio::test(start_paused = true)]
async fn the_handle_tells_a_fallback_chain_to_skip() {
    use crate::health::TargetHealth;
    let cb = layer(
        CircuitBreakerConfig::new("p")
            .consecutive_failures(Some(1))
            .break_duration(S(8)),
    );
    let handle = cb.handle();
    assert_eq!(handle.unavailable_for(), None);
    run(&cb.layer(Scripted::scripted([fail(ErrorKind::Server)])), 1).await;
    assert_eq!(handle.unavailable_for(), Some(S(8)));
    tokio::time::advance(S(8)).await;
    assert_eq!(
        handle.unavailable_for(),
        None,
        "the next call would be a probe"
    );
}

#[test]
fn unworkable_configs_are_clear_errors() {
    use InvalidCircuitBreaker as E;
    let bad = [
        (
            CircuitBreakerConfig::new("p").consecutive_failures(Some(0)),
            E::ZeroConsecutive,
        ),
        (
            CircuitBreakerConfig::new("p").failure_rate(RateRule::new(
                RateWindow::Calls(10),
                1.5,
                1,
            )),
            E::Rate(1.5),
        ),
        (
            CircuitBreakerConfig::new("p").failure_rate(RateRule::new(
                RateWindow::Calls(0),
                0.5,
                1,
            )),
            E::Window(RateWindow::Calls(0)),
        ),
        (
            CircuitBreakerConfig::new("p").half_open_probes(0),
            E::ZeroProbes,
        ),
        (
            CircuitBreakerConfig::new("p").break_growth(0.5, S(60)),
            E::Growth(0.5),
        ),
        (
            CircuitBreakerConfig::new("p").break_duration(Duration::ZERO),
            E::BreakDuration,
        ),
    ];
    for (config, want) in bad {
        assert_eq!(CircuitBreakerLayer::new(config).unwrap_err(), want);
    }
    assert!(E::ZeroConsecutive.to_string().contains("at least 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_are_all_counted_exactly() {
    let fake = Scripted::scripted([Step::Answer]);
    let cb = layer(CircuitBreakerConfig::new("p"));
    let handle = cb.handle();
    let service = cb.layer(fake.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let service = service.clone();
        tasks.spawn(async move {
            for _ in 0..500 {
                service.clone().oneshot(request()).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let counts = handle.counts();
    assert_eq!(counts.successes, 4_000);
    assert_eq!(fake.calls(), 4_000);
    assert_eq!(
        (counts.failures, counts.ignored, counts.rejected),
        (0, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_never_exceed_the_probe_limit() {
    // The target holds every call until released, so probes stay in flight.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let reached = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let inner = {
        let (gate, reached, failing) = (gate.clone(), reached.clone(), failing.clone());
        tower::service_fn(move |r: ChatRequest| {
            let (gate, reached, failing) = (gate.clone(), reached.clone(), failing.clone());
            async move {
                if failing.load(Ordering::SeqCst) {
                    return Err(LlmError::new(ErrorKind::Server, "down"));
                }
                reached.fetch_add(1, Ordering::SeqCst);
                let _permit = gate
                    .acquire()
                    .await
                    .map_err(|_| LlmError::new(ErrorKind::Server, "closed"))?;
                Ok(ChatResponse::new(&r.model, "ok"))
            }
        })
    };
    let cb = layer(
        CircuitBreakerConfig::new("p")
            .consecutive_failures(Some(1))
            .break_duration(Duration::from_nanos(1))
            .half_open_probes(3)
            .success_threshold(100),
    );
    let handle = cb.handle();
    let service = cb.layer(inner);
    assert!(service.clone().oneshot(request()).await.is_err());
    failing.store(false, Ordering::SeqCst);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let service = service.clone();
        tasks.spawn(async move { service.oneshot(request()).await });
    }
    // Wait (without sleeping) until three probes are in flight.
    while reached.load(Ordering::SeqCst) < 3 {
        tokio::task::yield_now().await;
    }
    // Let the rest of the callers finish being refused.
    while handle.counts().rejected < 61 {
        tokio::task::yield_now().await;
    }
    assert_eq!(reached.load(Ordering::SeqCst), 3);
    gate.add_permits(3);
    let (mut ok, mut refused) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::CircuitOpen);
                refused += 1;
            }
        }
    }
    assert_eq!((ok, refused), (3, 61));
    assert_eq!(handle.counts().successes, 3);
}

/// Issue 9: a burst that arrives while the only probe is in flight waits
/// for its verdict instead of being turned away (298 of 300 got the static
/// answer before), and is refused at once when the probe fails.
#[tokio::test(start_paused = true)]
async fn a_burst_during_a_probe_waits_for_its_verdict() {
    for probe_succeeds in [true, false] {
        let probe = if probe_succeeds {
            Step::Slow(S(2)) // answers "late", a success, after 2 s
        } else {
            fail(ErrorKind::Server)
        };
        let fake = Scripted::scripted([fail(ErrorKind::Server), probe, Step::Answer]);
        let cb = layer(
            CircuitBreakerConfig::new("p")
                .consecutive_failures(Some(1))
                .break_duration(S(1)),
        );
        let handle = cb.handle();
        let service = cb.layer(fake.clone());
        run(&service, 1).await;
        tokio::time::advance(S(1)).await;
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..300 {
            let s = service.clone();
            tasks.spawn(async move { s.oneshot(request()).await });
        }
        let (mut ok, mut refused, mut probe_failed) = (0, 0, 0);
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(_) => ok += 1,
                Err(e) if e.kind == ErrorKind::CircuitOpen => refused += 1,
                Err(e) => {
                    assert_eq!(e.kind, ErrorKind::Server, "the probe's own failure");
                    probe_failed += 1;
                }
            }
        }
        if probe_succeeds {
            assert_eq!((ok, refused, probe_failed), (300, 0, 0));
            assert_eq!(started.elapsed(), S(2), "the probe's 2 s, then all at once");
            assert_eq!(handle.state(), CircuitState::Closed);
            assert_eq!(handle.counts().rejected, 0, "waiting is not a refusal");
        } else {
            assert_eq!((ok, refused, probe_failed), (0, 299, 1));
            assert_eq!(fake.calls(), 2, "only the probe reached the target");
            assert_eq!(handle.state(), CircuitState::Open);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_wait_for_a_verdict_is_bounded() {
    let fake = Scripted::scripted([fail(ErrorKind::Server), Step::Slow(S(3600))]);
    let cb = layer(
        CircuitBreakerConfig::new("p")
            .consecutive_failures(Some(1))
            .break_duration(S(1))
            .half_open_wait(S(3)),
    );
    let service = cb.layer(fake.clone());
    run(&service, 1).await;
    tokio::time::advance(S(1)).await;
    let probe = tokio::spawn(service.clone().oneshot(request()));
    tokio::task::yield_now().await;
    let started = Instant::now();
    let err = service.clone().oneshot(request()).await.unwrap_err();
    assert_eq!(started.elapsed(), S(3));
    assert_eq!(err.kind, ErrorKind::CircuitOpen);
    probe.abort();
}

/// A service that once waited for a verdict (and was then let through by a
/// closed circuit) waits its full `half_open_wait` again the next time the
/// probes are busy: its earlier timer, long expired, is not reused.
#[tokio::test(start_paused = true)]
async fn a_second_wait_for_a_verdict_starts_its_own_timer() {
    let fake = Scripted::scripted([
        fail(ErrorKind::Server),
        Step::Slow(S(2)), // the first probe: a success after 2 s
        Step::Answer,     // the waiter's call, through the closed circuit
        fail(ErrorKind::Server),
        Step::Slow(S(3600)), // the second probe, still in flight
    ]);
    let cb = layer(
        CircuitBreakerConfig::new("p")
            .consecutive_failures(Some(1))
            .break_duration(S(1))
            .half_open_wait(S(5)),
    );
    let handle = cb.handle();
    let service = cb.layer(fake.clone());
    run(&service, 1).await;
    tokio::time::advance(S(1)).await;
    let first_probe = tokio::spawn(service.clone().oneshot(request()));
    tokio::task::yield_now().await;

    let mut waiter = service.clone();
    let started = Instant::now();
    waiter.ready().await.unwrap();
    assert_eq!(started.elapsed(), S(2), "waited for the probe's verdict");
    assert_eq!(handle.state(), CircuitState::Closed);
    assert!(waiter.call(request()).await.is_ok());
    assert!(first_probe.await.unwrap().is_ok());

    // Open again, and past the (grown) break, so that the first wait's
    // 5 s timer would long have fired.
    assert!(service.clone().oneshot(request()).await.is_err());
    assert_eq!(handle.state(), CircuitState::Open);
    tokio::time::advance(S(4)).await;
    let second_probe = tokio::spawn(service.clone().oneshot(request()));
    tokio::task::yield_now().await;
    assert_eq!(handle.state(), CircuitState::HalfOpen);

    let started = Instant::now();
    waiter.ready().await.unwrap();
    assert_eq!(started.elapsed(), S(5), "a full wait of its own");
    let err = waiter.call(request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::CircuitOpen);
    assert_eq!(
        fake.calls(),
        5,
        "the waiter never reached the target busy probing"
    );
    second_probe.abort();
}

#[tokio::test(start_paused = true)]
async fn a_breaker_without_a_trip_rule_is_off() {
    let fake = Scripted::scripted([fail_after(ErrorKind::RateLimited, 429, S(7))]);
    let cb = layer(CircuitBreakerConfig::off("p"));
    let handle = cb.handle();
    let service = cb.layer(fake.clone());
    let results = run(&service, 20).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap_err().kind == ErrorKind::RateLimited)
    );
    assert_eq!(fake.calls(), 20, "every call went through");
    assert_eq!(handle.state(), CircuitState::Disabled);
    assert!(handle.is_call_permitted());
    // Without a trip rule but with the cooldown, only 429s open it.
    let cb = layer(CircuitBreakerConfig::new("q").consecutive_failures(None));
    assert_eq!(cb.handle().state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn open_for_opens_a_closed_circuit_for_that_long() {
    let fake = Scripted::scripted([Step::Answer]);
    let cb = layer(CircuitBreakerConfig::new("p"));
    let handle = cb.handle();
    let service = cb.layer(fake.clone());
    handle.open_for(S(5));
    assert_eq!(handle.state(), CircuitState::Open);
    let refused = service.clone().oneshot(request()).await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::CircuitOpen);
    assert_eq!(fake.calls(), 0);
    tokio::time::advance(S(5)).await;
    service.clone().oneshot(request()).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
    // A forced-open circuit is left as it is.
    handle.force_open();
    handle.open_for(S(1));
    assert_eq!(handle.state(), CircuitState::ForcedOpen);
}

#[tokio::test(start_paused = true)]
async fn breaks_start_short_grow_to_their_cap_and_are_jittered() {
    use crate::health::TargetHealth;
    // The defaults: 5 s, doubled by each failed probe, at most 15 s, up
    // to a fifth taken off at random.
    let config = CircuitBreakerConfig::new("p").consecutive_failures(Some(1));
    let mut first_breaks = Vec::new();
    for _ in 0..20 {
        let cb = CircuitBreakerLayer::new(config.clone()).unwrap();
        let handle = cb.handle();
        let service = cb.layer(Scripted::scripted(std::iter::repeat_n(
            fail(ErrorKind::Server),
            10,
        )));
        let mut breaks = Vec::new();
        for _ in 0..6 {
            run(&service, 1).await;
            let wait = handle.unavailable_for().expect("open");
            breaks.push(wait);
            tokio::time::advance(wait).await;
        }
        for (wait, full) in breaks.iter().zip([5, 10, 15, 15, 15, 15]) {
            let full = S(full);
            assert!(
                *wait <= full && *wait >= full.mul_f64(0.8),
                "{breaks:?}: {wait:?} against {full:?}"
            );
        }
        first_breaks.push(breaks[0]);
    }
    first_breaks.sort();
    first_breaks.dedup();
    assert!(first_breaks.len() > 10, "jittered: {first_breaks:?}");
    assert_eq!(
        CircuitBreakerLayer::new(config.break_jitter(1.0)).unwrap_err(),
        InvalidCircuitBreaker::Jitter(1.0)
    );
}
