use super::*;
use crate::Deadline;
use crate::retry::{NoJitter, RetryConfig, RetryLayer};
use crate::test_support::{Scripted, Step, fail, request};
use staunch_core::{ChatRequest, ErrorKind, Price, QualityTier, Usage};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};

fn chain(targets: impl IntoIterator<Item = Target>) -> Fallback {
    Fallback::new(targets).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_first_target_answers_at_full_quality() {
    let (a, b) = (
        Scripted::scripted([Step::Answer]),
        Scripted::scripted([Step::Answer]),
    );
    let response = chain([Target::new("a", a.clone()), Target::new("b", b.clone())])
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!((a.calls(), b.calls()), (1, 0));
    let meta = &response.meta;
    assert_eq!(meta.target.as_deref(), Some("a"));
    assert_eq!(meta.model.as_deref(), Some("gpt-4o"));
    assert_eq!(
        (meta.tier, meta.fallback_depth, meta.attempts),
        (QualityTier::Full, 0, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn transient_and_unavailable_errors_move_on_with_the_model_rewritten() {
    let a = Scripted::scripted([fail(ErrorKind::Overloaded)]);
    let b = Scripted::scripted([fail(ErrorKind::QuotaExhausted)]);
    let c = Scripted::scripted([Step::Answer]);
    let response = chain([
        Target::new("anthropic", a.clone()).model("claude-sonnet-4-5"),
        Target::new("openai", b.clone()),
        Target::new("mini", c.clone()).model("gpt-4o-mini"),
    ])
    .oneshot(request())
    .await
    .unwrap();
    assert_eq!(a.models(), ["claude-sonnet-4-5"]);
    assert_eq!(b.models(), ["gpt-4o"]);
    assert_eq!(c.models(), ["gpt-4o-mini"]);
    let meta = &response.meta;
    assert_eq!(meta.target.as_deref(), Some("mini"));
    assert_eq!(meta.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(
        (meta.tier, meta.fallback_depth, meta.attempts),
        (QualityTier::Reduced, 2, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn a_fatal_error_stops_the_chain() {
    let a = Scripted::scripted([fail(ErrorKind::Server)]);
    let b = Scripted::scripted([fail(ErrorKind::InvalidRequest)]);
    let c = Scripted::scripted([Step::Answer]);
    let err = chain([
        Target::new("a", a.clone()),
        Target::new("b", b.clone()),
        Target::new("c", c.clone()),
    ])
    .oneshot(request())
    .await
    .unwrap_err();
    assert_eq!((a.calls(), b.calls(), c.calls()), (1, 1, 0));
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
    assert_eq!(err.target.as_deref(), Some("b"));
    assert_eq!(err.earlier.len(), 1);
    assert_eq!(err.earlier[0].kind, ErrorKind::Server);
    assert_eq!(err.attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn when_every_target_fails_each_error_is_reported_in_order() {
    let spent = Step::Fail {
        kind: ErrorKind::TruncatedResponse,
        status: Some(200),
        retry_after: None,
        should_retry: None,
        spent: Usage::new(50, 20),
    };
    let a = Scripted::scripted([fail(ErrorKind::RateLimited)]);
    let b = Scripted::scripted([spent]);
    let c = Scripted::scripted([fail(ErrorKind::Authentication)]);
    let err = chain([
        Target::new("a", a),
        Target::new("b", b),
        Target::new("c", c),
    ])
    .oneshot(request())
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Authentication);
    let kinds: Vec<_> = err
        .earlier
        .iter()
        .map(|e| (e.kind, e.target.clone().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            (ErrorKind::RateLimited, "a".to_owned()),
            (ErrorKind::TruncatedResponse, "b".to_owned())
        ]
    );
    assert_eq!(err.attempts, 3);
    assert_eq!(err.total_spent(), Usage::new(50, 20));
    let shown = err.to_string();
    assert!(
        shown.starts_with(
            "authentication from fake/gpt-4o at target c: scripted; after 3 attempts; earlier target 1: rate_limited from fake/gpt-4o at target a"
        ),
        "{shown}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_target_is_skipped_without_a_call() {
    let open = Arc::new(AtomicBool::new(true));
    let a = Scripted::scripted([Step::Answer]);
    let b = Scripted::scripted([Step::Answer]);
    let health = {
        let open = open.clone();
        move || {
            open.load(Ordering::SeqCst)
                .then_some(Duration::from_secs(12))
        }
    };
    let service = chain([
        Target::new("a", a.clone()).health(health),
        Target::new("b", b.clone()),
    ]);
    let response = service.clone().oneshot(request()).await.unwrap();
    assert_eq!((a.calls(), b.calls()), (0, 1));
    assert_eq!(response.meta.target.as_deref(), Some("b"));
    assert_eq!(
        (response.meta.fallback_depth, response.meta.attempts),
        (1, 1)
    );

    // Every target unavailable: the error says so, and nothing was called.
    let lone = chain([Target::new("a", a.clone()).health(|| Some(Duration::from_secs(3)))]);
    let err = lone.oneshot(request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::CircuitOpen);
    assert_eq!(
        (err.retry_after, err.attempts),
        (Some(Duration::from_secs(3)), 0)
    );
    assert_eq!(a.calls(), 0);

    // Healthy again: the first target answers.
    open.store(false, Ordering::SeqCst);
    let response = service.oneshot(request()).await.unwrap();
    assert_eq!(response.meta.target.as_deref(), Some("a"));
}

#[tokio::test(start_paused = true)]
async fn after_a_context_overflow_only_larger_windows_are_tried() {
    let small = Scripted::scripted([fail(ErrorKind::ContextLengthExceeded)]);
    let same = Scripted::scripted([Step::Answer]);
    let unknown_small = Scripted::scripted([Step::Answer]);
    let large = Scripted::scripted([Step::Answer]);
    let response = chain([
        Target::new("small", small.clone()).context_window(8_192),
        Target::new("same", same.clone()).context_window(8_192),
        Target::new("smaller", unknown_small.clone()).context_window(4_096),
        Target::new("large", large.clone()).context_window(200_000),
    ])
    .oneshot(request())
    .await
    .unwrap();
    assert_eq!(
        (
            small.calls(),
            same.calls(),
            unknown_small.calls(),
            large.calls()
        ),
        (1, 0, 0, 1)
    );
    assert_eq!(response.meta.target.as_deref(), Some("large"));
    assert_eq!(response.meta.fallback_depth, 3);
    assert_eq!(response.meta.attempts, 2, "skipped targets cost no attempt");
}

#[tokio::test(start_paused = true)]
async fn retries_tokens_and_cost_of_every_target_are_reported() {
    let truncated = Step::Fail {
        kind: ErrorKind::TruncatedResponse,
        status: Some(200),
        retry_after: None,
        should_retry: None,
        spent: Usage::new(1_000, 500),
    };
    let a = Scripted::scripted([truncated]);
    let b = Scripted::scripted([fail(ErrorKind::Server), Step::Answer]);
    let retry = RetryLayer::new(
        RetryConfig::new()
            .jitter(NoJitter)
            .no_budget()
            .max_retries(1),
    );
    let response = chain([
        Target::new(
            "a",
            ServiceBuilder::new()
                .layer(retry.clone())
                .service(a.clone()),
        )
        .price(Price::per_million(2.0, 10.0)),
        Target::new("b", ServiceBuilder::new().layer(retry).service(b.clone()))
            .price(Price::per_million(1.0, 4.0)),
    ])
    .oneshot(request())
    .await
    .unwrap();
    assert_eq!((a.calls(), b.calls()), (2, 2));
    let meta = &response.meta;
    assert_eq!(meta.attempts, 4);
    assert_eq!(meta.failed_usage, Usage::new(2_000, 1_000));
    assert_eq!(response.usage, Usage::new(10, 5));
    // a: 2000 in, 1000 out at 2/10 per million; b: 10 in, 5 out at 1/4.
    let want = (2_000.0 * 2.0 + 1_000.0 * 10.0 + 10.0 * 1.0 + 5.0 * 4.0) / 1e6;
    assert!(
        (meta.cost.unwrap() - want).abs() < 1e-12,
        "{:?} vs {want}",
        meta.cost
    );
    assert_eq!(
        meta.latency,
        Duration::from_secs(1),
        "a's and b's one backoff each"
    );
}

#[tokio::test(start_paused = true)]
async fn no_target_starts_after_the_deadline() {
    let a = Scripted::scripted([Step::Slow(Duration::from_secs(10)), Step::Answer]);
    let b = Scripted::scripted([Step::Answer]);
    let slow_then_fail = ServiceBuilder::new()
        .timeout(Duration::from_secs(5))
        .service(a.clone());
    // Without a split, the first target may use the whole deadline.
    let err = chain([
        Target::new("a", slow_then_fail),
        Target::new("b", b.clone()),
    ])
    .deadline_split(DeadlineSplit::Off)
    .oneshot(request().with_extension(Deadline::after(Duration::from_secs(5))))
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert_eq!(b.calls(), 0);

    let err = chain([Target::new("b", b.clone())])
        .oneshot(request().with_extension(Deadline::after(Duration::ZERO)))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert!(err.is_deadline_exceeded());
    assert!(err.message.contains("deadline"), "{}", err.message);
    assert_eq!(b.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_hung_primary_leaves_the_next_target_its_share() {
    // Issue 9's case: 5 s deadline, 2 s per-attempt timeout, retries on a
    // hung primary; the healthy second target must still answer in time.
    let a = Scripted::scripted([Step::Slow(Duration::from_secs(600))]);
    let b = Scripted::scripted([Step::Answer]);
    let primary = ServiceBuilder::new()
        .layer(RetryLayer::new(
            RetryConfig::new().jitter(NoJitter).no_budget(),
        ))
        .timeout(Duration::from_secs(2))
        .service(a.clone());
    let started = tokio::time::Instant::now();
    let response = chain([
        Target::new("a", primary.clone()),
        Target::new("b", b.clone()),
    ])
    .oneshot(request().with_extension(Deadline::after(Duration::from_secs(5))))
    .await
    .unwrap();
    // a gets 2.5 s: its 2 s attempt times out, and a 0.5 s backoff would
    // reach the end of its share, so the chain moves on at once.
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!((a.calls(), b.calls()), (1, 1));
    assert_eq!(response.meta.target.as_deref(), Some("b"));
    assert_eq!(response.meta.fallback_depth, 1);

    // With 6 s, a's share is 3 s: the retry starts at 2.5 s and is cut at
    // 3 s, before its own 2 s timeout, and b answers in time.
    let started = tokio::time::Instant::now();
    let response = chain([Target::new("a", primary), Target::new("b", b.clone())])
        .oneshot(request().with_extension(Deadline::after(Duration::from_secs(6))))
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!((a.calls(), b.calls()), (3, 2));
    assert_eq!(response.meta.target.as_deref(), Some("b"));
    assert_eq!(response.meta.attempts, 3);
}

#[tokio::test(start_paused = true)]
async fn a_target_without_its_own_timeout_is_cut_at_its_share() {
    let a = Scripted::scripted([Step::Slow(Duration::from_secs(600))]);
    let b = Scripted::scripted([Step::Slow(Duration::from_secs(600))]);
    let c = Scripted::scripted([Step::Answer]);
    let started = tokio::time::Instant::now();
    let response = chain([
        Target::new("a", a.clone()),
        Target::new("b", b.clone()),
        Target::new("c", c.clone()),
    ])
    .deadline_split(DeadlineSplit::Equal)
    .oneshot(request().with_extension(Deadline::after(Duration::from_secs(9))))
    .await
    .unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(6),
        "3 s each for a and b"
    );
    assert_eq!(response.meta.target.as_deref(), Some("c"));
    assert_eq!(response.meta.attempts, 3);
}

#[tokio::test(start_paused = true)]
async fn the_last_healthy_target_gets_all_that_is_left_and_no_more() {
    let a = Scripted::scripted([Step::Slow(Duration::from_secs(600))]);
    let b = Scripted::scripted([Step::Answer]);
    let started = tokio::time::Instant::now();
    // b's circuit is open: a is the last target that may be called.
    let err = chain([
        Target::new("a", a.clone()),
        Target::new("b", b.clone()).health(|| Some(Duration::from_secs(30))),
    ])
    .oneshot(request().with_extension(Deadline::after(Duration::from_secs(4))))
    .await
    .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(4));
    assert_eq!(b.calls(), 0);
    let cut = err
        .earlier
        .iter()
        .chain([&err])
        .find(|e| e.target.as_deref() == Some("a"));
    let cut = cut.expect("a's error is in the chain");
    assert_eq!(cut.kind, ErrorKind::Timeout);
    assert_eq!(
        cut.deadline_exceeded_scope(),
        Some(crate::DeadlineScope::Request)
    );
}

#[tokio::test(start_paused = true)]
async fn layers_nest_into_a_chain() {
    let a = Scripted::scripted([fail(ErrorKind::Overloaded)]);
    let b = Scripted::scripted([fail(ErrorKind::RateLimited)]);
    let c = Scripted::scripted([Step::Answer]);
    let service = ServiceBuilder::new()
        .layer(FallbackLayer::new(
            Target::new("c", c.clone()).model("gpt-4o-mini"),
        ))
        .layer(FallbackLayer::new(Target::new("b", b.clone())).primary_name("a"))
        .service(a.clone());
    let response = service.oneshot(request()).await.unwrap();
    assert_eq!((a.calls(), b.calls(), c.calls()), (1, 1, 1));
    let meta = &response.meta;
    assert_eq!(meta.target.as_deref(), Some("c"));
    assert_eq!(meta.model.as_deref(), Some("gpt-4o-mini"));
    // Nested chains count the targets passed over just as a flat chain would.
    assert_eq!(
        (meta.fallback_depth, meta.attempts, meta.tier),
        (2, 3, QualityTier::Reduced)
    );
}

#[test]
fn an_empty_chain_is_refused() {
    assert_eq!(
        Fallback::<ChatRequest>::new([]).unwrap_err(),
        InvalidChain::Empty
    );
}

/// Issue 9: every target half-open with its probe in flight. The burst
/// waits for the first target's verdict instead of failing at once.
#[tokio::test(start_paused = true)]
async fn a_burst_while_every_target_is_probed_waits_for_a_verdict() {
    use crate::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
    use tower::Layer;
    let mut handles = Vec::new();
    let mut targets = Vec::new();
    let mut fakes = Vec::new();
    for name in ["a", "b"] {
        // Fails once (opening the circuit), then its probe answers after 1 s.
        let fake = Scripted::scripted([
            fail(ErrorKind::Server),
            Step::Slow(Duration::from_secs(1)),
            Step::Answer,
        ]);
        let breaker = CircuitBreakerLayer::new(
            CircuitBreakerConfig::new(name)
                .consecutive_failures(Some(1))
                .break_duration(Duration::from_secs(5)),
        )
        .unwrap();
        let handle = breaker.handle();
        let service = breaker.layer(fake.clone());
        // Open it.
        let _ = service.clone().oneshot(request()).await;
        targets.push(Target::new(name, service).health(handle.clone()));
        handles.push(handle);
        fakes.push(fake);
    }
    let chain = chain(targets);
    tokio::time::advance(Duration::from_secs(5)).await;
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..300 {
        let chain = chain.clone();
        tasks.spawn(async move {
            chain
                .oneshot(request().with_extension(Deadline::after(Duration::from_secs(10))))
                .await
        });
    }
    let mut answered = 0;
    while let Some(r) = tasks.join_next().await {
        if r.unwrap().is_ok() {
            answered += 1;
        }
    }
    assert_eq!(answered, 300, "every request got an answer");
    assert!(started.elapsed() <= Duration::from_secs(1));
    assert!(handles.iter().all(|h| h.state() == CircuitState::Closed));
}

/// A target's service that counts the copies made of it, and can refuse
/// readiness.
struct Counted {
    inner: Scripted,
    copies: Arc<std::sync::atomic::AtomicUsize>,
    unready: bool,
}

impl Counted {
    fn new(inner: Scripted) -> Self {
        Counted {
            inner,
            copies: Arc::default(),
            unready: false,
        }
    }

    fn copies(&self) -> usize {
        self.copies.load(Ordering::SeqCst)
    }

    /// The service to hand to a target: the same counter and script.
    fn service(&self) -> Self {
        Counted {
            inner: self.inner.clone(),
            copies: self.copies.clone(),
            unready: self.unready,
        }
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.copies.fetch_add(1, Ordering::SeqCst);
        self.service()
    }
}

impl Service<ChatRequest> for Counted {
    type Response = staunch_core::ChatResponse;
    type Error = staunch_core::LlmError;
    type Future = <Scripted as Service<ChatRequest>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        if self.unready {
            return std::task::Poll::Ready(Err(staunch_core::LlmError::new(
                ErrorKind::Connect,
                "the client is shut down",
            )));
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        self.inner.call(request)
    }
}

#[tokio::test(start_paused = true)]
async fn a_chain_used_for_many_requests_copies_a_ready_targets_service_once() {
    let counted = Counted::new(Scripted::scripted(std::iter::repeat_n(Step::Answer, 4)));
    let mut service = chain([Target::new("a", counted.service())]);
    for _ in 0..3 {
        let answer = service.ready().await.unwrap().call(request()).await;
        assert_eq!(answer.unwrap().meta.target.as_deref(), Some("a"));
    }
    assert_eq!(counted.inner.calls(), 3);
    assert_eq!(counted.copies(), 1, "one copy, kept for every request");
    // A clone of the chain keeps no copy of its own yet: its first request
    // makes one.
    let mut clone = service.clone();
    clone.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(counted.copies(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_target_that_is_not_ready_at_once_is_waited_for_and_keeps_no_slot() {
    // One slot: the first request holds it for ten seconds, the next two
    // find the target not ready and must wait for it with their own waker.
    let provider = Scripted::scripted([
        Step::Slow(Duration::from_secs(10)),
        Step::Answer,
        Step::Answer,
        Step::Answer,
    ]);
    let limited = ServiceBuilder::new()
        .concurrency_limit(1)
        .service(provider.clone());
    let mut service = chain([Target::new("a", limited)]);
    let mut calls = Vec::new();
    for _ in 0..3 {
        service.ready().await.unwrap();
        calls.push(tokio::spawn(service.call(request())));
    }
    tokio::time::sleep(Duration::from_secs(11)).await;
    // No further request on this chain: had it kept a place in the limit's
    // queue, the slot the first call frees could go to that place and the
    // second and third would wait for ever.
    for call in calls {
        let answer = tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .expect("every waiting call gets the slot in its turn")
            .unwrap();
        assert_eq!(answer.unwrap().meta.target.as_deref(), Some("a"));
    }
    assert_eq!(provider.calls(), 3);
    // And the slot is free for the next request.
    let answer = service.ready().await.unwrap().call(request()).await;
    assert!(answer.is_ok());
    assert_eq!(provider.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_target_whose_readiness_fails_is_passed_over() {
    let mut down = Counted::new(Scripted::scripted([Step::Answer]));
    down.unready = true;
    let backup = Scripted::scripted([Step::Answer, Step::Answer]);
    let mut service = chain([
        Target::new("down", down.service()),
        Target::new("backup", backup.clone()),
    ]);
    for _ in 0..2 {
        let answer = service
            .ready()
            .await
            .unwrap()
            .call(request())
            .await
            .unwrap();
        assert_eq!(answer.meta.target.as_deref(), Some("backup"));
        assert_eq!(answer.meta.fallback_depth, 1);
    }
    assert_eq!((down.inner.calls(), backup.calls()), (0, 2));
}
