//! Streams over loopback, through the real OpenAI and Anthropic clients and
//! the mock, on paused time: every fault of a stream, in both dialects,
//! asserting exactly what the caller received. The caller gets the complete
//! answer, or an error before any content (which the chain handles), or the
//! content so far followed by a classified error — never a truncated answer
//! that looks complete.

mod support;

use staunch::TargetBuilder;
use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitState};
use staunch::core::{
    ChatRequest, ChatResponse, ErrorClass, ErrorKind, FinishReason, LlmError, Message, StreamEvent,
    ToolDefinition,
};
use staunch::fallback::{ContinuationOrder, Fallback};
use staunch::retry::RetryConfig;
use staunch_mock::{Fault, MockServer, Route, Scenario, StreamErrorKind};
use staunch_providers::{Anthropic, AnthropicConfig, ApiKey, HttpOptions, OpenAi, OpenAiConfig};
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

type Client = BoxCloneSyncService<ChatRequest, ChatResponse, LlmError>;

fn options() -> HttpOptions {
    HttpOptions::new()
        .first_token_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(2))
}

async fn mock(openai: Vec<Fault>, anthropic: Vec<Fault>) -> MockServer {
    let mut scenario = Scenario::default();
    scenario.openai.script = openai;
    scenario.anthropic.script = anthropic;
    MockServer::start(scenario).await.expect("mock server")
}

fn client(mock: &MockServer, route: Route) -> Client {
    match route {
        Route::OpenAi => BoxCloneSyncService::new(
            OpenAi::new(
                OpenAiConfig::new()
                    .base_url(mock.openai_base_url())
                    .api_key(ApiKey::new("sk-test"))
                    .http(options()),
            )
            .unwrap(),
        ),
        _ => BoxCloneSyncService::new(
            Anthropic::new(
                AnthropicConfig::new()
                    .base_url(mock.anthropic_base_url())
                    .api_key(ApiKey::new("sk-ant-test"))
                    .http(options()),
            )
            .unwrap(),
        ),
    }
}

fn ask() -> ChatRequest {
    ChatRequest::new("mock", vec![Message::user("Tell me something")])
        .with_max_tokens(64)
        .with_stream(true)
}

/// What the caller received: the text, how many content events, whether
/// the stream finished, and the error that ended it.
struct Received {
    text: String,
    content_events: usize,
    finished: Option<FinishReason>,
    error: Option<LlmError>,
}

async fn read(mut answer: ChatResponse) -> Received {
    let mut stream = answer.take_stream().expect("a streamed answer");
    let mut got = Received {
        text: String::new(),
        content_events: 0,
        finished: None,
        error: None,
    };
    while let Some(item) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        match item {
            Ok(StreamEvent::TextDelta(t)) => {
                got.content_events += 1;
                got.text.push_str(&t);
            }
            Ok(StreamEvent::ToolCallDelta { .. }) => got.content_events += 1,
            Ok(StreamEvent::Finish(reason)) => got.finished = Some(reason),
            Ok(_) => {}
            Err(e) => {
                got.error = Some(e);
                break;
            }
        }
    }
    got
}

/// The answer the mock gives without a stream, for comparison.
async fn plain_text(mock: &MockServer, route: Route) -> String {
    let answer = client(mock, route)
        .oneshot(ask().with_stream(false))
        .await
        .unwrap();
    answer.text().into_owned()
}

const ROUTES: [Route; 2] = [Route::OpenAi, Route::Anthropic];

#[tokio::test(start_paused = true)]
async fn a_normal_stream_is_the_complete_answer() {
    for route in ROUTES {
        let mock = mock(vec![], vec![]).await;
        let want = plain_text(&mock, route).await;
        let answer = client(&mock, route).oneshot(ask()).await.unwrap();
        assert!(answer.is_streaming());
        assert_eq!(answer.meta.provider.as_deref(), Some(route.as_str()));
        let got = read(answer).await;
        assert!(got.error.is_none(), "{route:?}: {:?}", got.error);
        assert_eq!(got.text, want, "{route:?}");
        assert!(got.content_events > 1, "{route:?}: streamed in pieces");
        assert_eq!(got.finished, Some(FinishReason::Stop), "{route:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_tool_call_streams_in_fragments_that_collect_to_valid_arguments() {
    let weather = ToolDefinition::new(
        "get_weather",
        serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    );
    for route in ROUTES {
        let mock = mock(vec![], vec![]).await;
        let answer = client(&mock, route)
            .oneshot(ask().with_tools([weather.clone()]))
            .await
            .unwrap();
        let answer = answer.collect().await.unwrap();
        assert_eq!(answer.finish_reason, FinishReason::ToolCalls, "{route:?}");
        let call = &answer.calls()[0];
        assert_eq!(call.name, "get_weather");
        assert!(!call.id.is_empty());
        assert!(
            call.arguments_json().unwrap()["city"].is_string(),
            "{route:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_token_fails_before_the_commit_point_and_the_chain_moves_on() {
    let mock = mock(vec![Fault::SlowFirstToken { ms: 20_000 }], vec![]).await;
    let started = Instant::now();
    let err = client(&mock, Route::OpenAi)
        .oneshot(ask())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert_eq!(
        err.class(),
        ErrorClass::Unavailable,
        "not retried on the same target"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(5));

    mock.reset();
    let (openai, _) = TargetBuilder::new("openai", client(&mock, Route::OpenAi))
        .build()
        .unwrap();
    let (anthropic, _) = TargetBuilder::new("anthropic", client(&mock, Route::Anthropic))
        .build()
        .unwrap();
    let answer = Fallback::new([openai, anthropic])
        .unwrap()
        .oneshot(ask())
        .await
        .unwrap();
    assert_eq!(answer.meta.target.as_deref(), Some("anthropic"));
    assert_eq!(mock.stats().requests_to(Route::OpenAi), 1, "asked once");
    let got = read(answer).await;
    assert!(got.error.is_none() && got.finished.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_stall_after_content_ends_with_a_timeout_never_a_clean_end() {
    for route in ROUTES {
        let stall = vec![Fault::StallAfter { tokens: 3 }];
        let mock = match route {
            Route::OpenAi => mock(stall, vec![]).await,
            _ => mock(vec![], stall).await,
        };
        let answer = client(&mock, route).oneshot(ask()).await.unwrap();
        let got = read(answer).await;
        assert_eq!(got.content_events, 3, "{route:?}");
        assert!(got.finished.is_none());
        let error = got.error.expect("a stall is an error");
        assert_eq!(error.kind, ErrorKind::Timeout, "{route:?}");
        assert!(error.message.contains("stalled"), "{}", error.message);
        assert!(error.spent.output_tokens > 0, "the usage so far, estimated");
    }
}

#[tokio::test(start_paused = true)]
async fn a_cut_connection_ends_with_a_truncated_response() {
    for route in ROUTES {
        let cut = vec![Fault::CutAfter { tokens: 2 }];
        let mock = match route {
            Route::OpenAi => mock(cut, vec![]).await,
            _ => mock(vec![], cut).await,
        };
        let got = read(client(&mock, route).oneshot(ask()).await.unwrap()).await;
        assert_eq!(got.content_events, 2, "{route:?}");
        let error = got.error.expect("a cut is an error");
        assert_eq!(error.kind, ErrorKind::TruncatedResponse, "{route:?}");
        assert!(got.finished.is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn one_malformed_event_is_skipped_and_a_missing_terminator_is_complete() {
    for route in ROUTES {
        for fault in [Fault::MalformedEventAt { n: 2 }, Fault::NoTerminator] {
            let script = vec![fault.clone()];
            let mock = match route {
                Route::OpenAi => mock(script, vec![]).await,
                _ => mock(vec![], script).await,
            };
            let want = plain_text(&mock, route).await;
            mock.reset();
            let got = read(client(&mock, route).oneshot(ask()).await.unwrap()).await;
            assert!(got.error.is_none(), "{route:?} {fault:?}: {:?}", got.error);
            assert_eq!(got.text, want, "{route:?} {fault:?}");
            assert_eq!(got.finished, Some(FinishReason::Stop));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_error_event_mid_stream_is_classified() {
    for (route, kind, want) in [
        (
            Route::Anthropic,
            StreamErrorKind::Overloaded,
            ErrorKind::Overloaded,
        ),
        (
            Route::Anthropic,
            StreamErrorKind::RateLimit,
            ErrorKind::RateLimited,
        ),
        (Route::OpenAi, StreamErrorKind::Server, ErrorKind::Server),
        (
            Route::OpenAi,
            StreamErrorKind::RateLimit,
            ErrorKind::RateLimited,
        ),
    ] {
        let script = vec![Fault::ErrorEventAt { n: 2, kind }];
        let mock = match route {
            Route::OpenAi => mock(script, vec![]).await,
            _ => mock(vec![], script).await,
        };
        let got = read(client(&mock, route).oneshot(ask()).await.unwrap()).await;
        assert_eq!(got.content_events, 2, "{route:?}");
        assert_eq!(
            got.error.expect("an error").kind,
            want,
            "{route:?} {kind:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_error_in_the_first_frame_is_an_ordinary_error_and_the_breaker_sees_post_commit_breaks()
{
    for route in ROUTES {
        let script = vec![Fault::ErrorFirstFrame];
        let mock = match route {
            Route::OpenAi => mock(script, vec![]).await,
            _ => mock(vec![], script).await,
        };
        let err = client(&mock, route).oneshot(ask()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Overloaded, "{route:?}");
        assert!(err.class().is_retryable());
    }

    // A target whose streams break after content: its breaker opens.
    let mock = mock(vec![Fault::CutAfter { tokens: 1 }; 4], vec![]).await;
    let (target, circuit) = TargetBuilder::new("openai", client(&mock, Route::OpenAi))
        .breaker(CircuitBreakerConfig::new("openai").consecutive_failures(Some(2)))
        .retry(RetryConfig::new().max_retries(0))
        .build()
        .unwrap();
    let chain = Fallback::new([target]).unwrap();
    for _ in 0..2 {
        let got = read(chain.clone().oneshot(ask()).await.unwrap()).await;
        assert!(got.error.is_some());
    }
    assert_eq!(circuit.state(), CircuitState::Open);
}

/// A chain whose second target accepts a prefill.
fn continuing_chain(mock: &MockServer) -> Fallback {
    let (openai, _) = TargetBuilder::new("openai", client(mock, Route::OpenAi))
        .retry(RetryConfig::new().max_retries(0))
        .build()
        .unwrap();
    let (anthropic, _) = TargetBuilder::new("anthropic", client(mock, Route::Anthropic))
        .accepts_prefill(true)
        .build()
        .unwrap();
    Fallback::new([openai, anthropic]).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_broken_text_stream_continues_on_a_prefill_target_from_where_it_stopped() {
    let mock = mock(vec![Fault::CutAfter { tokens: 3 }], vec![]).await;
    let want = plain_text(&mock, Route::OpenAi).await;
    mock.reset();
    let answer = continuing_chain(&mock).oneshot(ask()).await.unwrap();
    assert_eq!(answer.meta.target.as_deref(), Some("openai"));
    let mut stream = answer.take_stream_for_test();
    let mut text = String::new();
    let mut continued = Vec::new();
    while let Some(item) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        match item.expect("continued, not broken") {
            StreamEvent::TextDelta(t) => text.push_str(&t),
            StreamEvent::Continued { target } => continued.push(target),
            _ => {}
        }
    }
    assert_eq!(text, want, "the whole answer, no word twice");
    assert_eq!(continued, ["anthropic"]);
    // What Anthropic was asked: the conversation with the text so far as
    // the assistant's prefill.
    let stats = mock.stats();
    let sent = stats
        .recent
        .iter()
        .find(|r| r.route == Route::Anthropic)
        .expect("the continuation reached Anthropic");
    let last = sent.body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["role"], "assistant");
    assert!(want.starts_with(last["content"].as_str().unwrap()));

    // Collected, the answer says it was continued.
    mock.reset();
    let collected = continuing_chain(&mock)
        .oneshot(ask())
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(collected.text(), want);
    assert_eq!(collected.meta.continuations, ["anthropic"]);
}

#[tokio::test(start_paused = true)]
async fn when_nothing_can_continue_the_caller_gets_the_original_break() {
    let mock = mock(vec![Fault::CutAfter { tokens: 3 }], vec![]).await;
    let mut scenario = mock.scenario();
    scenario.anthropic.reject_prefill = true;
    mock.set_scenario(scenario);
    let got = read(continuing_chain(&mock).oneshot(ask()).await.unwrap()).await;
    assert_eq!(got.content_events, 3);
    assert_eq!(
        got.error.expect("the break").kind,
        ErrorKind::TruncatedResponse
    );
    assert_eq!(
        mock.stats().requests_to(Route::Anthropic),
        1,
        "asked, and it refused"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_carried_tool_calls_is_never_continued() {
    let mock = mock(vec![Fault::CutAfter { tokens: 2 }], vec![]).await;
    let weather = ToolDefinition::new(
        "get_weather",
        serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    );
    let got = read(
        continuing_chain(&mock)
            .oneshot(ask().with_tools([weather]))
            .await
            .unwrap(),
    )
    .await;
    assert!(got.error.is_some());
    assert_eq!(mock.stats().requests_to(Route::Anthropic), 0);
}

trait TakeStream {
    fn take_stream_for_test(self) -> staunch::core::EventStream;
}

impl TakeStream for ChatResponse {
    fn take_stream_for_test(mut self) -> staunch::core::EventStream {
        self.take_stream().expect("a streamed answer")
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_upstream_is_abandoned_after_the_header_timeout_and_not_asked_again() {
    let mock = mock(vec![Fault::Hang], vec![]).await;
    let silent = BoxCloneSyncService::new(
        OpenAi::new(
            OpenAiConfig::new()
                .base_url(mock.openai_base_url())
                .api_key(ApiKey::new("sk-test"))
                .http(options().header_timeout(Duration::from_secs(3))),
        )
        .unwrap(),
    );
    let started = Instant::now();
    let err = silent.clone().oneshot(ask()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert_eq!(
        err.class(),
        ErrorClass::Unavailable,
        "next target, not again"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(3));

    mock.reset();
    let (openai, _) = TargetBuilder::new("openai", silent).build().unwrap();
    let (anthropic, _) = TargetBuilder::new("anthropic", client(&mock, Route::Anthropic))
        .build()
        .unwrap();
    let answer = Fallback::new([openai, anthropic])
        .unwrap()
        .oneshot(ask())
        .await
        .unwrap();
    assert_eq!(answer.meta.target.as_deref(), Some("anthropic"));
    assert_eq!(mock.stats().requests_to(Route::OpenAi), 1, "asked once");
}

/// The first-token timeout runs from the request, as documented: an
/// upstream that accepts and sends nothing, not even headers, is given up
/// on at the first-token timeout (5 s here), not at the longer header
/// timeout, and the chain moves on after one attempt.
#[tokio::test(start_paused = true)]
async fn a_silent_upstream_is_given_up_on_at_the_first_token_timeout() {
    let mock = mock(vec![Fault::Hang], vec![]).await;
    let silent = BoxCloneSyncService::new(
        OpenAi::new(
            OpenAiConfig::new()
                .base_url(mock.openai_base_url())
                .api_key(ApiKey::new("sk-test"))
                .http(options().header_timeout(Duration::from_secs(60))),
        )
        .unwrap(),
    );
    let started = Instant::now();
    let err = silent.clone().oneshot(ask()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert!(err.message.contains("first-token timeout"), "{err}");
    assert_eq!(err.class(), ErrorClass::Unavailable);
    assert_eq!(started.elapsed(), Duration::from_secs(5));

    mock.reset();
    let (openai, _) = TargetBuilder::new("openai", silent).build().unwrap();
    let (anthropic, _) = TargetBuilder::new("anthropic", client(&mock, Route::Anthropic))
        .build()
        .unwrap();
    let started = Instant::now();
    let answer = Fallback::new([openai, anthropic])
        .unwrap()
        .oneshot(ask())
        .await
        .unwrap();
    assert_eq!(answer.meta.target.as_deref(), Some("anthropic"));
    assert_eq!(mock.stats().requests_to(Route::OpenAi), 1, "asked once");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "one first-token timeout, not three: {:?}",
        started.elapsed()
    );
}

/// A chain of two targets that both accept a prefill, in `order`.
fn two_prefill_targets(mock: &MockServer, order: ContinuationOrder) -> Fallback {
    let (openai, _) = TargetBuilder::new("openai", client(mock, Route::OpenAi))
        .retry(RetryConfig::new().max_retries(0))
        .accepts_prefill(true)
        .build()
        .unwrap();
    let (anthropic, _) = TargetBuilder::new("anthropic", client(mock, Route::Anthropic))
        .accepts_prefill(true)
        .build()
        .unwrap();
    Fallback::new([openai, anthropic])
        .unwrap()
        .continuation_order(order)
}

/// After a stall, the target that stalled is the last place to continue:
/// by default the next target continues at once, after one idle timeout
/// (2 s here), where going back to the stalled one costs a second.
#[tokio::test(start_paused = true)]
async fn a_stalled_stream_continues_on_the_next_target_not_the_one_that_stalled() {
    let stalls = || {
        vec![
            Fault::StallAfter { tokens: 3 },
            Fault::StallAfter { tokens: 3 },
        ]
    };
    let mock = mock(stalls(), vec![]).await;
    let want = plain_text(&mock, Route::OpenAi).await;

    mock.reset();
    let started = Instant::now();
    let chain = two_prefill_targets(&mock, ContinuationOrder::NextFirst);
    let collected = chain.oneshot(ask()).await.unwrap().collect().await.unwrap();
    assert_eq!(collected.text(), want, "the whole answer, no word twice");
    assert_eq!(collected.meta.continuations, ["anthropic"]);
    assert_eq!(
        mock.stats().requests_to(Route::OpenAi),
        1,
        "not asked again"
    );
    let next_first = started.elapsed();

    // The old order goes back to the stalled target, which stalls again.
    let mock = self::mock(stalls(), vec![]).await;
    let started = Instant::now();
    let chain = two_prefill_targets(&mock, ContinuationOrder::SameFirst);
    let collected = chain.oneshot(ask()).await.unwrap().collect().await.unwrap();
    assert_eq!(collected.text(), want);
    assert_eq!(collected.meta.continuations, ["openai", "openai"]);
    let same_first = started.elapsed();
    assert!(
        next_first < Duration::from_secs(3) && same_first >= Duration::from_secs(4),
        "one idle timeout ({next_first:?}) against two ({same_first:?})"
    );
}

/// After a cut, the target that was cut continues only when nothing after
/// it can; after a stall it never does.
#[tokio::test(start_paused = true)]
async fn the_serving_target_continues_its_own_stream_only_after_a_cut() {
    let only = |mock: &MockServer| {
        let (anthropic, _) = TargetBuilder::new("anthropic", client(mock, Route::Anthropic))
            .accepts_prefill(true)
            .build()
            .unwrap();
        Fallback::new([anthropic]).unwrap()
    };
    let mock = mock(vec![], vec![Fault::CutAfter { tokens: 3 }]).await;
    let want = plain_text(&mock, Route::Anthropic).await;
    mock.reset();
    let collected = only(&mock)
        .oneshot(ask())
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(collected.text(), want);
    assert_eq!(collected.meta.continuations, ["anthropic"]);

    let mock = self::mock(vec![], vec![Fault::StallAfter { tokens: 3 }]).await;
    let got = read(only(&mock).oneshot(ask()).await.unwrap()).await;
    assert_eq!(got.content_events, 3);
    assert_eq!(got.error.expect("the stall").kind, ErrorKind::Timeout);
    assert_eq!(mock.stats().requests_to(Route::Anthropic), 1);
}

/// A continued answer bills every segment: the part that broke and the
/// continuation's prompt (the prefill included) and output, not only the
/// last segment's.
#[tokio::test(start_paused = true)]
async fn a_continued_stream_reports_the_usage_of_every_segment() {
    let mock = mock(vec![Fault::CutAfter { tokens: 3 }], vec![]).await;
    let alone = client(&mock, Route::Anthropic)
        .oneshot(ask().with_stream(false))
        .await
        .unwrap()
        .usage;
    mock.reset();
    let collected = continuing_chain(&mock)
        .oneshot(ask())
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(collected.meta.continuations, ["anthropic"]);
    // The broken segment's prompt and the continuation's prompt (the
    // question again, plus the prefill) were both billed.
    assert!(
        collected.usage.input_tokens > 2 * alone.input_tokens - 2,
        "{:?} against {alone:?} for one request alone",
        collected.usage
    );
    // Every token of the answer was billed, in one segment or the other.
    assert!(
        collected.usage.output_tokens >= alone.output_tokens,
        "{:?} against {alone:?}",
        collected.usage
    );
}
