//! Every layer over streamed answers, with scripted streams on paused time:
//! the breaker counts a break after the commit point as a failure, the
//! budget settles with the streamed usage, degrade answers a streamed
//! request with a one-event stream, observe records time to first token and
//! stream errors, and nothing retries or restarts once content went out.

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
use staunch_test::{FakeProvider, Step, fail_status, stream};
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};

/// Each chunk comes this long after the one before.
const GAP: Duration = Duration::from_millis(10);

/// A complete stream of `words`, reporting 100 tokens in and 40 out.
fn complete(words: &[&str]) -> Step {
    stream(words.iter().copied())
        .gap(GAP)
        .usage(Usage::new(100, 40))
        .into()
}

/// `words`, then a break of `kind` billed 100 tokens in and 7 out.
fn broken(words: &[&str], kind: ErrorKind) -> Step {
    stream(words.iter().copied())
        .gap(GAP)
        .breaks(kind)
        .usage(Usage::new(100, 7))
        .into()
}

/// A streaming provider that plays `steps`, the last one again after.
fn provider(steps: impl IntoIterator<Item = Step>) -> FakeProvider {
    FakeProvider::scripted(steps)
}

/// A failure before the commit point: a 529 before the first token.
fn overloaded() -> Step {
    fail_status(ErrorKind::Overloaded, 529)
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
    let provider = provider([broken(&["Once ", "upon "], ErrorKind::Overloaded)]);
    let breaker =
        CircuitBreakerLayer::new(CircuitBreakerConfig::new("p").consecutive_failures(Some(1)))
            .unwrap();
    let handle = breaker.handle();
    let service = ServiceBuilder::new()
        .circuit_breaker(breaker)
        .llm_retry(RetryConfig::new().jitter(NoJitter).no_budget())
        .service(provider.clone());
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
    let provider = provider([complete(&["a", "b"]), complete(&["c", "d"])]);
    let breaker = CircuitBreakerLayer::new(CircuitBreakerConfig::new("p")).unwrap();
    let handle = breaker.handle();
    let service = ServiceBuilder::new()
        .circuit_breaker(breaker)
        .service(provider.clone());
    let (text, error) = drain(service.clone().oneshot(ask()).await.unwrap()).await;
    assert_eq!((text.as_str(), error.is_none()), ("ab", true));
    assert_eq!(handle.counts().successes, 1);
    drop(service.oneshot(ask()).await.unwrap());
    assert_eq!(handle.counts().ignored, 1);
    assert_eq!(handle.counts().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn before_the_commit_point_the_chain_falls_back_as_for_any_call() {
    let primary = provider([overloaded()]);
    let backup = provider([complete(&["from ", "backup"])]);
    let chain = Fallback::new([
        Target::new("primary", primary.clone()),
        Target::new("backup", backup.clone()),
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
    let provider = provider([complete(&["one"]), broken(&["two"], ErrorKind::Network)]);
    let budget = BudgetLayer::new(
        BudgetConfig::new()
            .window(Duration::from_secs(60))
            .window_tokens(1_000_000),
    )
    .unwrap();
    let handle = budget.handle();
    let service = ServiceBuilder::new()
        .layer(budget)
        .service(provider.clone());
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
    let provider = provider([overloaded()]);
    let service = ServiceBuilder::new()
        .degrade(DegradeConfig::new().static_answer("Please retry shortly."))
        .service(provider.clone());
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let ((), recorded) = staunch_test::metrics::capture(|| {
        runtime.block_on(async {
            let provider = provider([complete(&["a"]), broken(&["b"], ErrorKind::Timeout)]);
            let service = ServiceBuilder::new().instrument().service(provider);
            drain(service.clone().oneshot(ask()).await.unwrap()).await;
            drain(service.oneshot(ask()).await.unwrap()).await;
        })
    });
    let find = |name: &str| recorded.series(name);
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
