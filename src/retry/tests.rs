use super::*;
use crate::Deadline;
use crate::test_support::{Scripted, Step, fail, fail_after, request};
use staunch_core::{ErrorClass, ErrorKind, LlmError, Usage};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

fn exact() -> RetryConfig {
    RetryConfig::new().jitter(NoJitter).no_budget()
}

fn gaps(calls: &[Instant]) -> Vec<Duration> {
    calls.windows(2).map(|w| w[1] - w[0]).collect()
}

const MS: fn(u64) -> Duration = Duration::from_millis;

#[tokio::test(start_paused = true)]
async fn backoff_doubles_from_the_base_and_is_capped_before_jitter() {
    let fake = Scripted::scripted([
        fail(ErrorKind::Overloaded),
        fail(ErrorKind::Server),
        fail(ErrorKind::RateLimited),
        fail(ErrorKind::Timeout),
        fail(ErrorKind::Connect),
        Step::Answer,
    ]);
    let config = exact()
        .max_retries(5)
        .base_delay(MS(500))
        .max_delay(MS(3000));
    let response = Retry::new(fake.clone(), config)
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(
        gaps(&fake.call_times()),
        [MS(500), MS(1000), MS(2000), MS(3000), MS(3000)]
    );
    assert_eq!(response.meta.attempts, 6);
    assert_eq!(response.meta.retry_wait, MS(9500));
    assert_eq!(response.meta.latency, MS(9500));
}

#[tokio::test(start_paused = true)]
async fn jitter_draws_below_the_capped_bound() {
    // A jitter that halves the bound makes the draw visible and exact.
    let fake = Scripted::scripted([
        fail(ErrorKind::Server),
        fail(ErrorKind::Server),
        fail(ErrorKind::Server),
        Step::Answer,
    ]);
    let config = exact()
        .max_retries(3)
        .base_delay(MS(400))
        .max_delay(MS(1000))
        .jitter(|bound: Duration| bound / 2);
    Retry::new(fake.clone(), config)
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(gaps(&fake.call_times()), [MS(200), MS(400), MS(500)]);
}

#[test]
fn seeded_jitter_is_reproducible_and_bounded() {
    let (a, b) = (SeededJitter::new(7), SeededJitter::new(7));
    let bound = Duration::from_secs(8);
    let xs: Vec<_> = (0..100).map(|_| a.jitter(bound)).collect();
    let ys: Vec<_> = (0..100).map(|_| b.jitter(bound)).collect();
    assert_eq!(xs, ys);
    assert!(xs.iter().all(|d| *d <= bound));
    assert!(xs.iter().any(|d| *d < bound / 2) && xs.iter().any(|d| *d > bound / 2));
    assert!((0..1000).all(|_| FullJitter.jitter(MS(5)) <= MS(5)));
    assert_eq!(FullJitter.jitter(Duration::ZERO), Duration::ZERO);
    // A closure can't push a delay over the bound.
    let wild = |_: Duration| Duration::from_secs(3600);
    assert_eq!(wild.jitter(MS(10)), MS(10));
}

#[test]
fn backoff_bound_saturates_instead_of_overflowing() {
    let config = RetryConfig::new()
        .base_delay(Duration::from_secs(1))
        .max_delay(Duration::from_secs(30));
    assert_eq!(config.backoff_bound(0), Duration::from_secs(1));
    assert_eq!(config.backoff_bound(4), Duration::from_secs(16));
    assert_eq!(config.backoff_bound(40), Duration::from_secs(30));
    assert_eq!(config.backoff_bound(u32::MAX), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn retry_after_wins_over_backoff() {
    let fake = Scripted::scripted([
        fail_after(ErrorKind::RateLimited, 429, MS(7_250)),
        fail_after(ErrorKind::Overloaded, 529, MS(10)),
        Step::Answer,
    ]);
    let response = Retry::new(fake.clone(), exact())
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(gaps(&fake.call_times()), [MS(7_250), MS(10)]);
    assert_eq!(response.meta.retry_wait, MS(7_260));
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_cap_gives_up_at_once() {
    let fake = Scripted::scripted([
        fail_after(ErrorKind::RateLimited, 429, Duration::from_secs(300)),
        Step::Answer,
    ]);
    let start = Instant::now();
    let err = Retry::new(
        fake.clone(),
        exact().max_retry_after(Duration::from_secs(60)),
    )
    .oneshot(request())
    .await
    .unwrap_err();
    assert_eq!(fake.calls(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(
        err.retry_after,
        Some(Duration::from_secs(300)),
        "kept for the fallback layer"
    );
}

#[tokio::test(start_paused = true)]
async fn unavailable_and_fatal_errors_are_never_retried() {
    for kind in ErrorKind::ALL {
        if kind.class() == ErrorClass::Transient {
            continue;
        }
        let fake = Scripted::scripted([fail(kind), Step::Answer]);
        let err = Retry::new(fake.clone(), exact().max_retries(5))
            .oneshot(request())
            .await
            .unwrap_err();
        assert_eq!(fake.calls(), 1, "{kind} was retried");
        assert_eq!(err.kind, kind);
        assert_eq!(err.attempts, 1);
    }
}

#[tokio::test(start_paused = true)]
async fn every_transient_kind_is_retried() {
    for kind in ErrorKind::ALL {
        if kind.class() != ErrorClass::Transient {
            continue;
        }
        let fake = Scripted::scripted([fail(kind), Step::Answer]);
        let response = Retry::new(fake.clone(), exact())
            .oneshot(request())
            .await
            .unwrap();
        assert_eq!(fake.calls(), 2, "{kind} was not retried");
        assert_eq!(response.meta.attempts, 2);
    }
}

#[tokio::test(start_paused = true)]
async fn max_retries_counts_retries_after_the_first_attempt() {
    for max in [0u32, 1, 2, 4] {
        let fake = Scripted::scripted([fail(ErrorKind::Server)]);
        let err = Retry::new(fake.clone(), exact().max_retries(max))
            .oneshot(request())
            .await
            .unwrap_err();
        assert_eq!(fake.calls() as u32, max + 1);
        assert_eq!(err.attempts, max + 1);
        assert_eq!(err.kind, ErrorKind::Server);
    }
}

#[tokio::test(start_paused = true)]
async fn x_should_retry_overrides_the_class() {
    // `false` vetoes a retry of a 503.
    let mut veto = fail(ErrorKind::Overloaded);
    if let Step::Fail {
        status,
        should_retry,
        ..
    } = &mut veto
    {
        *status = Some(503);
        *should_retry = Some(false);
    }
    let fake = Scripted::scripted([veto, Step::Answer]);
    assert!(
        Retry::new(fake.clone(), exact())
            .oneshot(request())
            .await
            .is_err()
    );
    assert_eq!(fake.calls(), 1);

    // `true` asks for a retry of a 400.
    let mut force = fail(ErrorKind::InvalidRequest);
    if let Step::Fail {
        status,
        should_retry,
        ..
    } = &mut force
    {
        *status = Some(400);
        *should_retry = Some(true);
    }
    let fake = Scripted::scripted([force, Step::Answer]);
    assert!(
        Retry::new(fake.clone(), exact())
            .oneshot(request())
            .await
            .is_ok()
    );
    assert_eq!(fake.calls(), 2);

    // Without an HTTP status, `true` can't come from a server: ignored.
    let mut local = fail(ErrorKind::BudgetExhausted);
    if let Step::Fail { should_retry, .. } = &mut local {
        *should_retry = Some(true);
    }
    let fake = Scripted::scripted([local, Step::Answer]);
    assert!(
        Retry::new(fake.clone(), exact())
            .oneshot(request())
            .await
            .is_err()
    );
    assert_eq!(fake.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_custom_classifier_decides() {
    let fake = Scripted::scripted([fail(ErrorKind::ModelNotFound), Step::Answer]);
    let config = exact().classify(|e: &LlmError| match e.kind {
        ErrorKind::ModelNotFound => ErrorClass::Transient,
        _ => e.class(),
    });
    Retry::new(fake.clone(), config)
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn no_wait_passes_the_deadline() {
    let fake = Scripted::scripted([fail(ErrorKind::Server)]);
    let start = Instant::now();
    let deadline = Deadline::after(MS(1_200));
    let config = exact().max_retries(10).base_delay(MS(500));
    let err = Retry::new(fake.clone(), config)
        .oneshot(request().with_extension(deadline))
        .await
        .unwrap_err();
    // 0 ms: fail; wait 500 ms; 500 ms: fail; a 1 s wait would end at 1.5 s > 1.2 s.
    assert_eq!(fake.call_times(), [start, start + MS(500)]);
    assert_eq!(err.attempts, 2);
    assert!(Instant::now() < deadline.instant());

    // A Retry-After that would pass the deadline also ends it.
    let fake = Scripted::scripted([
        fail_after(ErrorKind::RateLimited, 429, Duration::from_secs(5)),
        Step::Answer,
    ]);
    let err = Retry::new(fake.clone(), exact())
        .oneshot(request().with_extension(Deadline::after(Duration::from_secs(4))))
        .await
        .unwrap_err();
    assert_eq!((fake.calls(), err.kind), (1, ErrorKind::RateLimited));
}

#[tokio::test(start_paused = true)]
async fn tokens_of_failed_attempts_are_reported() {
    let truncated = Step::Fail {
        kind: ErrorKind::TruncatedResponse,
        status: Some(200),
        retry_after: None,
        should_retry: None,
        spent: Usage::new(100, 40),
    };
    let fake = Scripted::scripted([truncated.clone(), truncated.clone(), Step::Answer]);
    let response = Retry::new(fake, exact()).oneshot(request()).await.unwrap();
    assert_eq!(response.meta.attempts, 3);
    assert_eq!(response.meta.failed_usage, Usage::new(200, 80));
    assert_eq!(response.usage, Usage::new(10, 5));
    assert_eq!(response.total_usage(), Usage::new(210, 85));
    assert_eq!(response.meta.retry_wait, MS(1500));

    let fake = Scripted::scripted([truncated]);
    let err = Retry::new(fake, exact())
        .oneshot(request())
        .await
        .unwrap_err();
    assert_eq!(err.attempts, 3);
    assert_eq!(err.spent, Usage::new(300, 120));
    assert_eq!(err.total_spent(), Usage::new(300, 120));
}

#[tokio::test(start_paused = true)]
async fn nested_retries_add_up_attempts_and_tokens() {
    let costly = Step::Fail {
        kind: ErrorKind::Server,
        status: Some(500),
        retry_after: None,
        should_retry: None,
        spent: Usage::new(1, 1),
    };
    let fake = Scripted::scripted([costly]);
    let inner = Retry::new(fake.clone(), exact().max_retries(1));
    let err = Retry::new(inner, exact().max_retries(2))
        .oneshot(request())
        .await
        .unwrap_err();
    assert_eq!(fake.calls(), 6);
    assert_eq!(err.attempts, 6);
    assert_eq!(err.spent, Usage::new(6, 6));
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_inside_is_retried() {
    let fake = Scripted::scripted([Step::Slow(Duration::from_secs(600)), Step::Answer]);
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(exact()))
        .timeout(Duration::from_secs(2))
        .service(fake.clone());
    let start = Instant::now();
    let response = service.oneshot(request()).await.unwrap();
    assert_eq!(response.text(), "fake answers");
    assert_eq!(response.meta.attempts, 2);
    assert_eq!(
        fake.call_times(),
        [start, start + Duration::from_millis(2_500)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_total_timeout_outside_ends_the_loop() {
    let fake = Scripted::scripted([fail(ErrorKind::Overloaded)]);
    let service = ServiceBuilder::new()
        .timeout(Duration::from_secs(2))
        .layer(RetryLayer::new(exact().max_retries(10)))
        .service(fake.clone());
    let start = Instant::now();
    let err = LlmError::from_box(service.oneshot(request()).await.unwrap_err());
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    // Attempts at 0, 0.5 s and 1.5 s; the 2 s wait after that was cut short.
    assert_eq!(fake.calls(), 3);
}

/// Drives `n` concurrent requests through `service` against a provider that
/// always fails, and returns how many calls reached the provider.
async fn storm(config: RetryConfig, n: usize) -> usize {
    let fake = Scripted::scripted([fail_after(ErrorKind::Overloaded, 529, MS(100))]);
    let service = Retry::new(fake.clone(), config);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let svc = service.clone();
        tasks.spawn(async move { svc.oneshot(request()).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert!(result.unwrap().is_err());
    }
    fake.calls()
}

#[tokio::test(start_paused = true)]
async fn the_budget_stops_a_retry_storm() {
    let unbounded = storm(RetryConfig::new().no_budget(), 1_000).await;
    assert_eq!(unbounded, 3_000, "two retries each without a budget");

    // The default budget: 20% of requests plus 1 retry/s over 10 s.
    let bounded = storm(RetryConfig::new(), 1_000).await;
    let amplification = bounded as f64 / 1_000.0;
    println!(
        "calls for 1000 failing requests: {bounded} (x{amplification:.2}); without a budget: {unbounded}"
    );
    assert!(bounded > 1_000, "some retries are allowed");
    assert!(
        bounded <= 1_000 + 200 + 10,
        "{bounded} calls: budget exceeded"
    );

    // A budget with no floor and no fraction forbids every retry.
    let none = RetryBudget::new(Duration::from_secs(10), 0, 0.0).unwrap();
    assert_eq!(storm(RetryConfig::new().budget(none), 100).await, 100);
}

#[tokio::test(start_paused = true)]
async fn the_budget_is_shared_by_clones_of_the_layer() {
    let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.0).unwrap();
    let layer = RetryLayer::new(exact().budget(budget));
    let fake = Scripted::scripted([fail(ErrorKind::Server), Step::Answer]);
    let a = tower::Layer::layer(&layer, fake.clone());
    assert!(a.oneshot(request()).await.is_err());
    assert_eq!(fake.calls(), 1);
}

#[test]
fn invalid_budgets_are_clear_errors() {
    assert_eq!(
        RetryBudget::new(MS(500), 1, 0.2).unwrap_err(),
        InvalidRetryBudget::Window(MS(500))
    );
    assert!(matches!(
        RetryBudget::new(Duration::from_secs(61), 1, 0.2),
        Err(InvalidRetryBudget::Window(_))
    ));
    assert!(matches!(
        RetryBudget::new(Duration::from_secs(10), 1, -0.1),
        Err(InvalidRetryBudget::Fraction(_))
    ));
    assert!(matches!(
        RetryBudget::new(Duration::from_secs(10), 1, f32::NAN),
        Err(InvalidRetryBudget::Fraction(_))
    ));
    assert!(matches!(
        RetryBudget::new(Duration::from_secs(10), u32::MAX, 0.2),
        Err(InvalidRetryBudget::Floor(_))
    ));
    let msg = RetryBudget::new(Duration::ZERO, 1, 0.2)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("between 1 s and 60 s"), "{msg}");
}

#[tokio::test(start_paused = true)]
async fn success_on_the_first_try_is_reported_plainly() {
    let fake = Scripted::scripted([Step::Answer]);
    let response = Retry::new(fake.clone(), RetryConfig::new())
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(fake.calls(), 1);
    assert_eq!(response.meta.attempts, 1);
    assert_eq!(response.meta.retry_wait, Duration::ZERO);
    assert!(response.meta.failed_usage.is_zero());
}

#[test]
fn an_attempt_in_flight_is_cut_by_the_deadline_with_its_own_giveup_reason() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let fake = Scripted::scripted([Step::Slow(Duration::from_secs(3600))]);
    let (err, recorded) = staunch_test::metrics::capture(|| {
        runtime.block_on(async {
            let started = Instant::now();
            // No per-attempt timeout at all: only the deadline bounds it.
            let err = Retry::new(fake.clone(), exact())
                .oneshot(request().with_extension(Deadline::after(Duration::from_secs(2))))
                .await
                .unwrap_err();
            assert_eq!(started.elapsed(), Duration::from_secs(2));
            err
        })
    });
    assert_eq!(fake.calls(), 1, "no retry after the deadline");
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert!(err.is_deadline_exceeded());
    assert!(err.to_string().contains("deadline"), "{err}");
    let giveups: Vec<Vec<String>> = recorded
        .series(crate::observe::names::RETRY_GIVEUPS)
        .into_iter()
        .filter(|(_, n)| *n == 1)
        .map(|(labels, _)| labels)
        .collect();
    assert_eq!(giveups, [["reason=deadline_passed"]]);
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_that_answers_before_the_deadline_is_kept() {
    let fake = Scripted::scripted([Step::Slow(Duration::from_millis(1_999))]);
    let response = Retry::new(fake.clone(), exact())
        .oneshot(request().with_extension(Deadline::after(Duration::from_secs(2))))
        .await
        .unwrap();
    assert_eq!(response.text(), "fake answers");
    assert_eq!(response.meta.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn x_should_retry_false_is_the_public_class_too() {
    let e = LlmError::new(ErrorKind::Overloaded, "busy")
        .with_status(529)
        .with_should_retry(false);
    assert_eq!(e.class(), ErrorClass::Unavailable);
    let e = LlmError::new(ErrorKind::Authentication, "later")
        .with_status(401)
        .with_should_retry(true);
    assert_eq!(e.class(), ErrorClass::Transient);
}

/// A scripted provider that counts its clones and is ready only when told.
#[derive(Clone)]
struct Counted {
    inner: Scripted,
    clones: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
    readied: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    waiting: std::sync::Arc<std::sync::Mutex<Option<std::task::Waker>>>,
}

impl Counted {
    fn new(inner: Scripted) -> Self {
        Counted {
            inner,
            clones: Default::default(),
            ready: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            readied: Default::default(),
            waiting: Default::default(),
        }
    }

    fn set_ready(&self, ready: bool) {
        self.ready.store(ready, std::sync::atomic::Ordering::SeqCst);
        if let Some(waker) = self.waiting.lock().unwrap().take() {
            waker.wake();
        }
    }

    fn clones(&self) -> usize {
        self.clones.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn counted_clone(&self) -> Self {
        self.clones
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Counted {
            inner: self.inner.clone(),
            clones: self.clones.clone(),
            ready: self.ready.clone(),
            readied: self.readied.clone(),
            waiting: self.waiting.clone(),
        }
    }
}

/// Wraps `Counted` so that `Clone` counts.
struct Counting(Counted);

impl Clone for Counting {
    fn clone(&self) -> Self {
        Counting(self.0.counted_clone())
    }
}

impl tower_service::Service<staunch_core::ChatRequest> for Counting {
    type Response = staunch_core::ChatResponse;
    type Error = LlmError;
    type Future = <Scripted as tower_service::Service<staunch_core::ChatRequest>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), LlmError>> {
        if !self.0.ready.load(std::sync::atomic::Ordering::SeqCst) {
            *self.0.waiting.lock().unwrap() = Some(cx.waker().clone());
            return std::task::Poll::Pending;
        }
        self.0
            .readied
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.inner.poll_ready(cx)
    }

    fn call(&mut self, request: staunch_core::ChatRequest) -> Self::Future {
        self.0.inner.call(request)
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_that_succeeds_at_once_clones_no_service_and_a_retry_clones_one() {
    let fake = Scripted::scripted([
        Step::Answer,
        Step::Answer,
        fail(ErrorKind::Overloaded),
        Step::Answer,
    ]);
    let counted = Counted::new(fake.clone());
    let mut retry = Retry::new(Counting(counted.counted_clone()), exact());
    let before = counted.clones();
    // The first call keeps one clone, the spare that retries are cloned from.
    retry.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(counted.clones() - before, 1, "the spare, once");
    retry.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(counted.clones() - before, 1, "a success clones nothing");
    let answer = retry.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(answer.meta.attempts, 2);
    assert_eq!(counted.clones() - before, 2, "one clone for the retry");
    assert_eq!(fake.call_times().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_its_service_to_be_ready() {
    let fake = Scripted::scripted([fail(ErrorKind::Overloaded), Step::Answer]);
    let counted = Counted::new(fake.clone());
    let mut retry = Retry::new(
        Counting(counted.counted_clone()),
        exact().base_delay(MS(100)),
    );
    retry.ready().await.unwrap();
    let readied = counted.readied.load(std::sync::atomic::Ordering::SeqCst);
    // The retry's service will not be ready until told.
    counted.set_ready(false);
    let call = tokio::spawn(retry.call(request()));
    tokio::time::sleep(MS(1_000)).await;
    assert_eq!(fake.call_times().len(), 1, "no second call before ready");
    assert!(!call.is_finished());
    counted.set_ready(true);
    let answer = call.await.unwrap().unwrap();
    assert_eq!(answer.meta.attempts, 2);
    assert_eq!(fake.call_times().len(), 2);
    assert_eq!(
        counted.readied.load(std::sync::atomic::Ordering::SeqCst),
        readied + 1,
        "the retry readied its service once"
    );
}

#[tokio::test(start_paused = true)]
async fn with_no_retries_allowed_no_copy_of_the_request_is_kept() {
    let fake = Scripted::scripted([fail(ErrorKind::Overloaded)]);
    let counted = Counted::new(fake.clone());
    let mut retry = Retry::new(Counting(counted.counted_clone()), exact().max_retries(0));
    let before = counted.clones();
    let error = retry
        .ready()
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Overloaded);
    assert_eq!(error.attempts, 1);
    assert_eq!(counted.clones(), before, "no spare without retries");
}
