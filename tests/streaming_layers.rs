//! Every layer over streamed answers, with scripted streams on paused time:
//! the breaker counts a break after the commit point as a failure, the
//! budget settles with the streamed usage, degrade answers a streamed
//! request with a one-event stream, observe records time to first token and
//! stream errors, and nothing retries or restarts once content went out.

use futures_core::Stream;
use staunch::ServiceBuilderExt;
use staunch::budget::{BudgetConfig, BudgetLayer};
use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
use staunch::core::{
    ChatRequest, ChatResponse, ErrorKind, FinishReason, LlmError, Message, QualityTier,
    StreamEvent, Usage,
};
use staunch::degrade::DegradeConfig;
use staunch::fallback::{Fallback, Target};
use staunch::retry::{NoJitter, RetryConfig};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// A scripted stream: each item after its delay.
struct Scripted {
    items: VecDeque<(Duration, Result<StreamEvent, LlmError>)>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stream for Scripted {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some((delay, _)) = this.items.front() else {
            return Poll::Ready(None);
        };
        let delay = *delay;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.sleep = None;
        Poll::Ready(this.items.pop_front().map(|(_, item)| item))
    }
}

use std::future::Future;

fn text(t: &str) -> Result<StreamEvent, LlmError> {
    Ok(StreamEvent::TextDelta(t.to_owned()))
}

fn complete(words: &[&str]) -> Vec<(Duration, Result<StreamEvent, LlmError>)> {
    let mut items: Vec<_> = words
        .iter()
        .map(|w| (Duration::from_millis(10), text(w)))
        .collect();
    items.push((Duration::ZERO, Ok(StreamEvent::Usage(Usage::new(100, 40)))));
    items.push((Duration::ZERO, Ok(StreamEvent::Finish(FinishReason::Stop))));
    items
}

fn broken(words: &[&str], kind: ErrorKind) -> Vec<(Duration, Result<StreamEvent, LlmError>)> {
    let mut items: Vec<_> = words
        .iter()
        .map(|w| (Duration::from_millis(10), text(w)))
        .collect();
    items.push((
        Duration::from_millis(10),
        Err(LlmError::new(kind, "mid-stream").with_spent(Usage::new(100, 7))),
    ));
    items
}

type Script = Vec<(Duration, Result<StreamEvent, LlmError>)>;

/// A streaming provider: each call plays the next script once, or fails
/// before the commit point with `Err` (a last failure repeats).
#[derive(Clone)]
struct Provider {
    scripts: Arc<Mutex<VecDeque<Result<Script, ErrorKind>>>>,
    calls: Arc<AtomicU32>,
}

impl Provider {
    fn new(
        scripts: impl IntoIterator<
            Item = Result<Vec<(Duration, Result<StreamEvent, LlmError>)>, ErrorKind>,
        >,
    ) -> Self {
        Provider {
            scripts: Arc::new(Mutex::new(scripts.into_iter().collect())),
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn service(&self) -> tower::util::BoxCloneSyncService<ChatRequest, ChatResponse, LlmError> {
        let this = self.clone();
        tower::util::BoxCloneSyncService::new(service_fn(move |request: ChatRequest| {
            this.calls.fetch_add(1, Ordering::SeqCst);
            let script = {
                // Each stream plays once; a failure repeats.
                let mut scripts = this.scripts.lock().unwrap();
                match scripts.front() {
                    Some(Err(kind)) if scripts.len() == 1 => Err(*kind),
                    _ => scripts.pop_front().unwrap_or(Ok(Vec::new())),
                }
            };
            async move {
                assert!(request.stream, "the request asked for a stream");
                match script {
                    Err(kind) => {
                        Err(LlmError::new(kind, "before the first token").with_status(529))
                    }
                    Ok(items) => {
                        let stream = Scripted {
                            items: items.into(),
                            sleep: None,
                        };
                        Ok(ChatResponse::streaming(request.model, Box::pin(stream)))
                    }
                }
            }
        }))
    }
}

fn ask() -> ChatRequest {
    ChatRequest::new("gpt-4o", vec![Message::user("Tell me a story")])
        .with_max_tokens(100)
        .with_stream(true)
}

/// Reads a stream to its end: the text, and the error if it broke.
async fn drain(mut answer: ChatResponse) -> (String, Option<LlmError>) {
    let mut stream = answer.take_stream().expect("a streamed answer");
    let mut text = String::new();
    while let Some(item) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        match item {
            Ok(StreamEvent::TextDelta(t)) => text.push_str(&t),
            Ok(_) => {}
            Err(e) => return (text, Some(e)),
        }
    }
    (text, None)
}

#[tokio::test(start_paused = true)]
async fn a_break_after_the_commit_point_is_a_failure_of_the_target_and_never_retried() {
    let provider = Provider::new([Ok(broken(&["Once ", "upon "], ErrorKind::Overloaded))]);
    let breaker =
        CircuitBreakerLayer::new(CircuitBreakerConfig::new("p").consecutive_failures(Some(1)))
            .unwrap();
    let handle = breaker.handle();
    let service = ServiceBuilder::new()
        .circuit_breaker(breaker)
        .llm_retry(RetryConfig::new().jitter(NoJitter).no_budget())
        .service(provider.service());
    let answer = service.oneshot(ask()).await.unwrap();
    assert_eq!(
        handle.state(),
        CircuitState::Closed,
        "judged at the stream's end"
    );
    let (text, error) = drain(answer).await;
    assert_eq!(text, "Once upon ", "no text twice: nothing restarted");
    assert_eq!(error.unwrap().kind, ErrorKind::Overloaded);
    assert_eq!(provider.calls(), 1, "no retry once content went out");
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(handle.counts().failures, 1);
}

#[tokio::test(start_paused = true)]
async fn a_complete_stream_is_a_success_and_a_dropped_one_is_ignored() {
    let provider = Provider::new([Ok(complete(&["a", "b"])), Ok(complete(&["c", "d"]))]);
    let breaker = CircuitBreakerLayer::new(CircuitBreakerConfig::new("p")).unwrap();
    let handle = breaker.handle();
    let service = ServiceBuilder::new()
        .circuit_breaker(breaker)
        .service(provider.service());
    let (text, error) = drain(service.clone().oneshot(ask()).await.unwrap()).await;
    assert_eq!((text.as_str(), error.is_none()), ("ab", true));
    assert_eq!(handle.counts().successes, 1);
    drop(service.oneshot(ask()).await.unwrap());
    assert_eq!(handle.counts().ignored, 1);
    assert_eq!(handle.counts().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn before_the_commit_point_the_chain_falls_back_as_for_any_call() {
    let primary = Provider::new([Err(ErrorKind::Overloaded)]);
    let backup = Provider::new([Ok(complete(&["from ", "backup"]))]);
    let chain = Fallback::new([
        Target::new("primary", primary.service()),
        Target::new("backup", backup.service()),
    ])
    .unwrap();
    let answer = chain.oneshot(ask()).await.unwrap();
    assert_eq!(answer.meta.target.as_deref(), Some("backup"));
    assert_eq!(answer.meta.tier, QualityTier::Reduced);
    let (text, error) = drain(answer).await;
    assert_eq!((text.as_str(), error.is_none()), ("from backup", true));
}

#[tokio::test(start_paused = true)]
async fn the_budget_settles_with_the_streamed_usage_partial_streams_included() {
    let provider = Provider::new([
        Ok(complete(&["one"])),
        Ok(broken(&["two"], ErrorKind::Network)),
    ]);
    let budget = BudgetLayer::new(
        BudgetConfig::new()
            .window(Duration::from_secs(60))
            .window_tokens(1_000_000),
    )
    .unwrap();
    let handle = budget.handle();
    let service = ServiceBuilder::new()
        .layer(budget)
        .service(provider.service());
    let answer = service.clone().oneshot(ask()).await.unwrap();
    assert_eq!(
        handle.window_tokens(),
        0,
        "nothing settled before the stream ends"
    );
    drain(answer).await;
    assert_eq!(handle.window_tokens(), 140, "the usage the stream reported");
    let (_, error) = drain(service.oneshot(ask()).await.unwrap()).await;
    assert!(error.is_some());
    assert_eq!(
        handle.window_tokens(),
        140 + 107,
        "the broken stream's spend too"
    );
}

#[tokio::test(start_paused = true)]
async fn degrade_answers_a_streamed_request_with_a_one_event_stream() {
    let provider = Provider::new([Err(ErrorKind::Overloaded)]);
    let service = ServiceBuilder::new()
        .degrade(DegradeConfig::new().static_answer("Please retry shortly."))
        .service(provider.service());
    let mut answer = service.oneshot(ask()).await.unwrap();
    assert_eq!(answer.meta.tier, QualityTier::Static);
    assert!(
        answer.is_streaming(),
        "the caller asked for a stream and gets one"
    );
    let collected = std::mem::replace(&mut answer, ChatResponse::new("x", ""))
        .collect()
        .await
        .unwrap();
    assert_eq!(collected.text(), "Please retry shortly.");
    assert_eq!(collected.finish_reason, FinishReason::Stop);
}

#[test]
fn observe_records_time_to_first_token_and_stream_errors() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let provider =
                Provider::new([Ok(complete(&["a"])), Ok(broken(&["b"], ErrorKind::Timeout))]);
            let service = ServiceBuilder::new()
                .instrument()
                .service(provider.service());
            drain(service.clone().oneshot(ask()).await.unwrap()).await;
            drain(service.oneshot(ask()).await.unwrap()).await;
        })
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let find = |name: &str| {
        snapshot
            .iter()
            .filter(|(k, ..)| k.key().name() == name)
            .map(|(k, _, _, v)| {
                (
                    k.key()
                        .labels()
                        .map(|l| format!("{}={}", l.key(), l.value()))
                        .collect::<Vec<_>>(),
                    match v {
                        DebugValue::Histogram(values) => values.len() as u64,
                        DebugValue::Counter(n) => *n,
                        _ => 0,
                    },
                )
            })
            .collect::<Vec<_>>()
    };
    let ttft = find("staunch_time_to_first_token_seconds");
    assert_eq!(ttft[0].1, 2, "two first tokens timed: {ttft:?}");
    let errors = find("staunch_stream_errors_total");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].0.contains(&"kind=timeout".to_owned()),
        "{errors:?}"
    );
    assert_eq!(errors[0].1, 1);
}
