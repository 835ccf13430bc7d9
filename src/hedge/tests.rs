//! Unit tests of the hedge: who wins, what is cancelled and counted, the
//! budget, the deadline and the non-idempotent mark.

use super::*;
use crate::Deadline;
use crate::test_support::{Scripted, Step, fail, request};
use staunch_core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Usage};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, ServiceExt};

fn fixed(after_ms: u64) -> HedgeLayer {
    HedgeLayer::new(
        HedgeConfig::new()
            .after(HedgeAfter::Fixed(Duration::from_millis(after_ms)))
            .budget(HedgeBudget::new(Duration::from_secs(10), 100, 1.0).unwrap()),
    )
    .unwrap()
}

/// A provider whose calls take the scripted times (then 100 ms) and that
/// counts calls dropped before they answered.
#[derive(Clone)]
struct Timed {
    delays: Arc<std::sync::Mutex<Vec<Duration>>>,
    calls: Arc<AtomicUsize>,
    cancelled: Arc<AtomicUsize>,
}

impl Timed {
    fn new(delays: impl IntoIterator<Item = Duration>) -> Self {
        let mut delays: Vec<Duration> = delays.into_iter().collect();
        delays.reverse();
        Timed {
            delays: Arc::new(std::sync::Mutex::new(delays)),
            calls: Arc::default(),
            cancelled: Arc::default(),
        }
    }
}

struct TimedCall {
    sleep: Pin<Box<tokio::time::Sleep>>,
    model: String,
    cancelled: Arc<AtomicUsize>,
    done: bool,
}

impl Future for TimedCall {
    type Output = Result<ChatResponse, LlmError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.done = true;
        Poll::Ready(Ok(ChatResponse::new(self.model.clone(), "ok")))
    }
}

impl Drop for TimedCall {
    fn drop(&mut self) {
        if !self.done {
            self.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl tower_service::Service<ChatRequest> for Timed {
    type Response = ChatResponse;
    type Error = LlmError;
    type Future = TimedCall;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, r: ChatRequest) -> TimedCall {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = self
            .delays
            .lock()
            .unwrap()
            .pop()
            .unwrap_or(Duration::from_millis(100));
        TimedCall {
            sleep: Box::pin(tokio::time::sleep(delay)),
            model: r.model.clone(),
            cancelled: self.cancelled.clone(),
            done: false,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_first_attempt_is_hedged_and_cancelled_when_the_second_answers() {
    let provider = Timed::new([staunch_test::HANG]);
    let service = fixed(500).layer(provider.clone());
    let started = tokio::time::Instant::now();
    let answer = service
        .oneshot(request().with_max_tokens(10))
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(600));
    assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
    assert_eq!(provider.cancelled.load(Ordering::SeqCst), 1, "the hung one");
    assert_eq!(answer.meta.attempts, 2);
    let prompt = request().estimated_input_tokens();
    assert_eq!(answer.meta.failed_usage, Usage::new(prompt, 0));
}

#[tokio::test(start_paused = true)]
async fn a_first_attempt_that_answers_before_the_delay_is_alone() {
    let provider = Timed::new([Duration::from_millis(300)]);
    let answer = fixed(500)
        .layer(provider.clone())
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
    assert_eq!(answer.meta.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn the_first_attempt_may_still_win_and_the_hedge_is_cancelled() {
    let provider = Timed::new([Duration::from_millis(700), Duration::from_secs(10)]);
    let started = tokio::time::Instant::now();
    let answer = fixed(500)
        .layer(provider.clone())
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(700));
    assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
    assert_eq!(provider.cancelled.load(Ordering::SeqCst), 1, "the hedge");
    assert_eq!(answer.meta.attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn an_error_before_the_hedge_is_the_call_s_error() {
    let provider = Scripted::scripted([fail(ErrorKind::RateLimited)]);
    let error = fixed(500)
        .layer(provider.clone())
        .oneshot(request())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::RateLimited);
    assert_eq!(provider.calls(), 1, "errors are not slowness");
}

#[tokio::test(start_paused = true)]
async fn a_failure_while_the_other_runs_waits_for_the_other() {
    // The first hangs; the hedge fails; the first then answers after all
    // (the fake's hang is an hour, then a 504: so use a slow answer).
    let provider = Scripted::scripted([
        Step::Slow(Duration::from_secs(3)),
        Step::Fail {
            kind: ErrorKind::Overloaded,
            status: Some(529),
            retry_after: None,
            should_retry: None,
            spent: Usage::new(3, 0),
        },
    ]);
    let answer = fixed(500)
        .layer(provider.clone())
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(provider.calls(), 2);
    assert_eq!(answer.meta.attempts, 2);
    assert_eq!(answer.meta.failed_usage, Usage::new(3, 0));

    // Both fail: the later error, with both counted.
    let provider = Scripted::scripted([
        Step::Hang,
        Step::Fail {
            kind: ErrorKind::Overloaded,
            status: Some(529),
            retry_after: None,
            should_retry: None,
            spent: Usage::new(3, 0),
        },
    ]);
    let error = fixed(500)
        .layer(provider)
        .oneshot(request())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Timeout, "the hang's 504 came last");
    assert_eq!(error.attempts, 2);
    assert_eq!(error.spent, Usage::new(3, 0));
}

#[tokio::test(start_paused = true)]
async fn a_non_idempotent_call_is_never_hedged() {
    let provider = Timed::new([Duration::from_secs(5)]);
    let answer = fixed(500)
        .layer(provider.clone())
        .oneshot(request().with_extension(NonIdempotent))
        .await
        .unwrap();
    assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
    assert_eq!(answer.meta.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn no_hedge_when_the_deadline_leaves_it_no_time() {
    // 500 ms delay: a hedge needs 1 s of deadline.
    let provider = Timed::new([Duration::from_millis(800)]);
    let answer = fixed(500)
        .layer(provider.clone())
        .oneshot(request().with_extension(Deadline::after(Duration::from_millis(900))))
        .await
        .unwrap();
    assert_eq!(provider.calls.load(Ordering::SeqCst), 1, "not planned");
    assert_eq!(answer.meta.attempts, 1);

    // With room, it is sent; both are cut at the deadline.
    let provider = Timed::new([staunch_test::HANG, staunch_test::HANG]);
    let started = tokio::time::Instant::now();
    let error = fixed(500)
        .layer(provider.clone())
        .oneshot(request().with_extension(Deadline::after(Duration::from_secs(3))))
        .await
        .unwrap_err();
    assert!(error.is_deadline_exceeded(), "{error}");
    assert_eq!(started.elapsed(), Duration::from_secs(3), "never past it");
    assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn hedges_stay_within_five_percent_of_calls() {
    // Every call is slow enough to hedge; the default budget caps it.
    let layer =
        HedgeLayer::new(HedgeConfig::new().after(HedgeAfter::Fixed(Duration::from_millis(100))))
            .unwrap();
    let provider = Timed::new(std::iter::repeat_n(Duration::from_millis(300), 10_000));
    let service = layer.layer(provider.clone());
    let calls = 1_000;
    for _ in 0..calls {
        service.clone().oneshot(request()).await.unwrap();
    }
    let extra = provider.calls.load(Ordering::SeqCst) - calls;
    assert!(extra > 0, "some were hedged");
    assert!(extra * 100 <= calls * 5, "{extra} extra calls for {calls}");
}

#[tokio::test(start_paused = true)]
async fn the_delay_is_the_observed_p95_once_enough_answers_were_seen() {
    let layer = HedgeLayer::new(
        HedgeConfig::new()
            .min_samples(20)
            .budget(HedgeBudget::new(Duration::from_secs(10), 100, 1.0).unwrap()),
    )
    .unwrap();
    let provider = Timed::new(std::iter::repeat_n(Duration::from_millis(200), 19));
    let service = layer.layer(provider.clone());
    for _ in 0..19 {
        service.clone().oneshot(request()).await.unwrap();
    }
    assert_eq!(layer.current_delay(), None, "too few answers");
    // The 20th is slow, but there is no p95 yet: not hedged.
    *provider.delays.lock().unwrap() = vec![Duration::from_secs(1)];
    service.clone().oneshot(request()).await.unwrap();
    assert_eq!(provider.calls.load(Ordering::SeqCst), 20);
    let p95 = layer.current_delay().expect("20 answers");
    assert!(
        p95 >= Duration::from_millis(200) && p95 < Duration::from_millis(230),
        "{p95:?}"
    );
    // Now a hung call is hedged after the p95.
    *provider.delays.lock().unwrap() = vec![staunch_test::HANG];
    let started = tokio::time::Instant::now();
    service.oneshot(request()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(provider.cancelled.load(Ordering::SeqCst), 1);
}

#[test]
fn invalid_settings_are_refused() {
    assert!(matches!(
        HedgeLayer::new(HedgeConfig::new().after(HedgeAfter::Quantile(0.0))),
        Err(InvalidHedge::Quantile(_))
    ));
    assert!(matches!(
        HedgeLayer::new(HedgeConfig::new().after(HedgeAfter::Quantile(f64::NAN))),
        Err(InvalidHedge::Quantile(_))
    ));
    assert!(HedgeLayer::new(HedgeConfig::new().window(Duration::ZERO)).is_err());
    assert!(HedgeBudget::new(Duration::ZERO, 0, 0.05).is_err());
    assert!(HedgeBudget::new(Duration::from_secs(1), 0, -1.0).is_err());
    assert!(HedgeBudget::new(Duration::from_secs(1), u32::MAX, 0.05).is_err());
}

#[tokio::test(start_paused = true)]
async fn a_stream_is_hedged_before_its_first_token_and_never_after() {
    use staunch_test::Streamed;
    // The first stream's first token is 10 s away; the hedge's, 100 ms.
    let provider = Scripted::scripted([
        Streamed::chunks(3).gap(Duration::from_secs(10)),
        Streamed::chunks(3).gap(Duration::from_millis(100)),
    ]);
    let started = tokio::time::Instant::now();
    let answer = fixed(500)
        .layer(provider.clone())
        .oneshot(request().with_stream(true))
        .await
        .unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(600),
        "the hedge's first token"
    );
    assert_eq!(answer.meta.attempts, 2);
    assert_eq!(answer.collect().await.unwrap().text(), " lorem ipsum lorem");

    // Committed at 100 ms, then slow between tokens: that is the stream's
    // body, which is never hedged.
    let provider = Scripted::scripted([Streamed::chunks(3).gap(Duration::from_millis(100))]);
    let answer = fixed(50)
        .layer(provider.clone())
        .oneshot(request().with_stream(true))
        .await
        .unwrap();
    // (The fixed 50 ms delay hedged the first token once: one extra call
    // at most, and none once content streams.)
    let calls = provider.calls();
    answer.collect().await.unwrap();
    assert_eq!(
        provider.calls(),
        calls,
        "nothing hedged after the commit point"
    );
}
