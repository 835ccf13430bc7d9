//! Drop-in, part 1 (issue 31): the provider clients over a user's own tower
//! HTTP client. Here that is hyper-util's client behind a real tower-http
//! layer (setting a header) and a counting layer, under the full stack,
//! against the mock on loopback; and transports that hang, trickle or lie
//! about their length, to show that what staunch bounds still holds over a
//! foreign transport.

use bytes::Bytes;
use http_body_util::{Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use staunch::budget::{BudgetConfig, BudgetLayer};
use staunch::core::{
    ChatRequest, ChatResponse, Deadline, ErrorKind, FinishReason, LlmError, Message, StreamEvent,
    ToolDefinition,
};
use staunch::degrade::DegradeConfig;
use staunch::fallback::Fallback;
use staunch::quota::QuotaConfig;
use staunch::retry::{NoJitter, RetryConfig};
use staunch::validate::ValidateConfig;
use staunch::{ServiceBuilderExt, TargetBuilder};
use staunch_mock::{Fault, MockServer, Route, Scenario};
use staunch_providers::{Anthropic, AnthropicConfig, ApiKey, HttpOptions, OpenAi, OpenAiConfig};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::set_header::SetRequestHeaderLayer;

fn ask() -> ChatRequest {
    ChatRequest::new("gpt-4o", vec![Message::user("Tell me something")]).with_max_tokens(32)
}

fn client_over(options: HttpOptions, base: &str) -> OpenAi {
    OpenAi::new(
        OpenAiConfig::new()
            .base_url(base)
            .api_key(ApiKey::new("sk-drop-in-TOPSECRET"))
            .http(options),
    )
    .expect("a client")
}

fn weather() -> ToolDefinition {
    ToolDefinition::new(
        "get_weather",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    )
    .with_description("Current weather in a city")
}

/// The full recommended stack (instrument > degrade > budget > fallback >
/// per target: validate > breaker > retry > quota > attempt timeout) over
/// two clients that both send through the user's transport: hyper-util's
/// client under tower-http's set-header and a counting layer. A 429 is
/// retried, a stream streams, a tool call's broken arguments are asked
/// again, a hung primary falls back: every request the mock saw went out
/// through the user's transport, and it counted each.
#[tokio::test(start_paused = true)]
async fn drop_in_every_attempt_goes_through_the_users_transport() {
    let mut scenario = Scenario::default();
    scenario.openai.script = vec![
        Fault::RateLimit { retry_after: 1.0 },
        Fault::Ok,
        Fault::Ok,
        Fault::BadToolArguments,
        Fault::Ok,
        Fault::ServerError,
        Fault::ServerError,
    ];
    let mock = MockServer::start(scenario).await.expect("a mock");

    // The user's client: hyper-util's, with tower-http setting a header
    // and a layer of theirs counting what goes out.
    let sent = Arc::new(AtomicUsize::new(0));
    let counted = sent.clone();
    let users = ServiceBuilder::new()
        .layer(SetRequestHeaderLayer::overriding(
            http::header::HeaderName::from_static("x-users-transport"),
            http::HeaderValue::from_static("yes"),
        ))
        .map_request(move |request: http::Request<Full<Bytes>>| {
            counted.fetch_add(1, Ordering::SeqCst);
            request
        })
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let options = HttpOptions::new().transport(users);
    let openai = client_over(options.clone(), &mock.openai_base_url());
    let anthropic = Anthropic::new(
        AnthropicConfig::new()
            .base_url(mock.anthropic_base_url())
            .api_key(ApiKey::new("sk-ant-drop-in-TOPSECRET"))
            .http(options),
    )
    .expect("a client");

    let retry = || {
        RetryConfig::new()
            .no_budget()
            .max_retries(1)
            .jitter(NoJitter)
    };
    let quota = || {
        QuotaConfig::new("drop-in")
            .requests_per_minute(600)
            .tokens_per_minute(1_000_000)
    };
    let (primary, _) = TargetBuilder::new("openai", openai)
        .model("gpt-4o")
        .retry(retry())
        .quota(quota())
        .expect("a quota")
        .validate(ValidateConfig::new())
        .attempt_timeout(Duration::from_secs(10))
        .build()
        .expect("a target");
    let (backup, _) = TargetBuilder::new("anthropic", anthropic)
        .model("claude-sonnet-4-5")
        .retry(retry())
        .validate(ValidateConfig::new())
        .build()
        .expect("a target");
    let stack = ServiceBuilder::new()
        .instrument()
        .degrade(DegradeConfig::new().static_answer("Try again soon."))
        .budget(
            BudgetLayer::new(BudgetConfig::new().per_request_tokens(100_000)).expect("a budget"),
        )
        .service(Fallback::new([primary, backup]).expect("a chain"));

    // A 429, retried.
    let answer = stack.clone().oneshot(ask()).await.expect("an answer");
    assert_eq!(answer.meta.attempts, 2, "the 429 was retried");
    // A stream.
    let streamed = stack
        .clone()
        .oneshot(ask().with_stream(true))
        .await
        .expect("a stream")
        .collect()
        .await
        .expect("the whole stream");
    assert!(!streamed.text().is_empty());
    // Tools: broken arguments are asked again, the second call is whole.
    let tools = ChatRequest::new("gpt-4o", vec![Message::user("Weather in Paris?")])
        .with_tools([weather()])
        .with_max_tokens(64);
    let called = stack.clone().oneshot(tools).await.expect("a tool call");
    assert_eq!(called.finish_reason, FinishReason::ToolCalls);
    assert!(called.calls()[0].arguments_json().expect("json")["city"].is_string());
    // The primary down: the backup answers, through the same transport.
    let backed = stack.oneshot(ask()).await.expect("the backup");
    assert_eq!(backed.meta.target.as_deref(), Some("anthropic"));

    let stats = mock.stats();
    let on_the_wire = stats.requests_to(Route::OpenAi) + stats.requests_to(Route::Anthropic);
    assert_eq!(
        (
            stats.requests_to(Route::OpenAi),
            stats.requests_to(Route::Anthropic)
        ),
        (7, 1)
    );
    assert_eq!(
        sent.load(Ordering::SeqCst) as u64,
        on_the_wire,
        "every attempt, streams, tool calls and the fallback included"
    );
    assert!(
        stats
            .recent
            .iter()
            .all(|r| r.headers.get("x-users-transport").map(String::as_str) == Some("yes")),
        "the user's layer set its header on every request"
    );
}

/// A transport that never answers: the request's deadline still bounds
/// the call, and a stream's first-token and header timeouts still apply.
#[tokio::test(start_paused = true)]
async fn drop_in_a_hanging_transport_is_bounded_by_the_deadline_and_first_token_timeout() {
    let hang = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        std::future::pending::<Result<http::Response<Full<Bytes>>, Infallible>>().await
    });
    let openai = client_over(
        HttpOptions::new()
            .first_token_timeout(Duration::from_secs(5))
            .transport(hang),
        "http://unused.invalid/v1",
    );
    let started = Instant::now();
    let err = openai
        .clone()
        .oneshot(ask().with_extension(Deadline::after(Duration::from_secs(3))))
        .await
        .unwrap_err();
    assert!(err.is_deadline_exceeded(), "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(3));

    let started = Instant::now();
    let err = openai.oneshot(ask().with_stream(true)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(5));

    // The header timeout, when it is the shorter, cuts first.
    let openai = client_over(
        HttpOptions::new()
            .header_timeout(Duration::from_secs(2))
            .transport(hang),
        "http://unused.invalid/v1",
    );
    let started = Instant::now();
    let err = openai.oneshot(ask().with_stream(true)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(err.message.contains("no response headers"), "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

/// A transport whose stream trickles a first token and then stalls: the
/// idle timeout still ends the stream with a timeout, never a clean end.
#[tokio::test(start_paused = true)]
async fn drop_in_a_trickling_transport_still_ends_a_stalled_stream_with_a_timeout() {
    let trickle = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        let first = Bytes::from_static(
            b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
        );
        let frames = one_frame_then_silence(first);
        Ok::<_, Infallible>(
            http::Response::builder()
                .header("content-type", "text/event-stream")
                .body(StreamBody::new(frames))
                .expect("a response"),
        )
    });
    let openai = client_over(
        HttpOptions::new()
            .idle_timeout(Duration::from_secs(2))
            .transport(trickle),
        "http://unused.invalid/v1",
    );
    let mut answer: ChatResponse = openai.oneshot(ask().with_stream(true)).await.unwrap();
    let mut stream = answer.take_stream().expect("a stream");
    let mut text = String::new();
    let mut ended = None;
    while let Some(item) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        match item {
            Ok(StreamEvent::TextDelta(t)) => text.push_str(&t),
            Ok(_) => {}
            Err(e) => {
                ended = Some(e);
                break;
            }
        }
    }
    assert_eq!(text, "Hel");
    assert_eq!(ended.expect("a classified end").kind, ErrorKind::Timeout);
}

/// A transport that says a body is longer than it is: the answer is a
/// truncated response, not a parse of half a body; and an error body with
/// the key echoed back never shows the key.
#[tokio::test(start_paused = true)]
async fn drop_in_a_lying_transport_is_caught_and_keys_stay_masked() {
    let liar = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        let half = Bytes::from_static(b"{\"id\":\"c\",\"object\":\"chat.comp");
        Ok::<_, Infallible>(
            http::Response::builder()
                .header("content-type", "application/json")
                .body(StreamBody::new(broken_after(half)))
                .expect("a response"),
        )
    });
    let openai = client_over(
        HttpOptions::new().transport(liar),
        "http://unused.invalid/v1",
    );
    let err = openai.oneshot(ask()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::TruncatedResponse, "{err}");

    let echo = tower::service_fn(|request: http::Request<Full<Bytes>>| async move {
        let key = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = format!(
            r#"{{"error":{{"message":"bad key {key}","type":"invalid_request_error","code":"invalid_api_key"}}}}"#
        );
        Ok::<_, Infallible>(
            http::Response::builder()
                .status(401)
                .body(Full::new(Bytes::from(body)))
                .expect("a response"),
        )
    });
    let openai = client_over(
        HttpOptions::new().transport(echo),
        "http://unused.invalid/v1",
    );
    let err: LlmError = openai.oneshot(ask()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Authentication);
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("TOPSECRET"), "the key leaked: {shown}");
}

/// A transport whose body claims to be small (its `content-length` and its
/// size hint say 64 bytes) and goes on and on: the size bound still stops
/// reading at the limit; and a stream with one endless event is stopped at
/// the event bound.
#[tokio::test(start_paused = true)]
async fn drop_in_a_transport_lying_about_a_long_body_is_cut_at_the_size_bound() {
    let endless = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(
            http::Response::builder()
                .header("content-type", "application/json")
                .header("content-length", "64")
                .body(Claims64(endless_frames(Bytes::from(vec![b' '; 16 * 1024]))))
                .expect("a response"),
        )
    });
    let openai = client_over(
        HttpOptions::new()
            .max_response_bytes(256 * 1024)
            .transport(endless),
        "http://unused.invalid/v1",
    );
    let err = openai.oneshot(ask()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::MalformedResponse, "{err}");
    assert!(err.message.contains("262144-byte limit"), "{err}");

    let endless_event = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        let frames = endless_frames(Bytes::from_static(b"data: {\"id\":\"aaaaaaaaaaaaaaaa"));
        Ok::<_, Infallible>(
            http::Response::builder()
                .header("content-type", "text/event-stream")
                .body(Claims64(frames))
                .expect("a response"),
        )
    });
    let openai = client_over(
        HttpOptions::new()
            .max_event_bytes(64 * 1024)
            .transport(endless_event),
        "http://unused.invalid/v1",
    );
    let outcome = match openai.oneshot(ask().with_stream(true)).await {
        Err(e) => Err(e),
        Ok(answer) => answer.collect().await,
    };
    let err = outcome.expect_err("the event bound");
    assert_eq!(err.kind, ErrorKind::MalformedResponse, "{err}");
}

/// A transport whose body ends, cleanly, before the length it declared:
/// a truncated answer (the next attempt may arrive whole), not one parsed
/// from what came.
#[tokio::test(start_paused = true)]
async fn drop_in_a_transport_ending_short_of_its_length_is_a_truncated_answer() {
    let short = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        let whole = r#"{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}]}"#;
        Ok::<_, Infallible>(
            http::Response::builder()
                .header("content-type", "application/json")
                .header("content-length", (whole.len() + 100).to_string())
                .body(Full::new(Bytes::from_static(whole.as_bytes())))
                .expect("a response"),
        )
    });
    let openai = client_over(
        HttpOptions::new().transport(short),
        "http://unused.invalid/v1",
    );
    let err = openai.oneshot(ask()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::TruncatedResponse, "{err}");
    assert!(err.message.contains("content-length"), "{err}");
}

/// A body that says it is 64 bytes long, whatever it carries.
struct Claims64(Frames);

impl http_body::Body for Claims64 {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        futures_core::Stream::poll_next(self.0.as_mut(), cx)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(64)
    }
}

/// `chunk`, again and again, forever.
fn endless_frames(chunk: Bytes) -> Frames {
    Box::pin(stream_from_fn(move |_| {
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(chunk.clone()))))
    }))
}

type Frames = std::pin::Pin<
    Box<dyn futures_core::Stream<Item = Result<http_body::Frame<Bytes>, std::io::Error>> + Send>,
>;

/// One frame, then nothing ever again.
fn one_frame_then_silence(first: Bytes) -> Frames {
    let mut sent = false;
    Box::pin(stream_from_fn(move |cx| {
        let _ = cx;
        if sent {
            std::task::Poll::Pending
        } else {
            sent = true;
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data(first.clone()))))
        }
    }))
}

/// One frame, then a broken connection.
fn broken_after(first: Bytes) -> Frames {
    let mut step = 0;
    Box::pin(stream_from_fn(move |_| {
        step += 1;
        match step {
            1 => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(first.clone())))),
            _ => std::task::Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the connection closed mid-body",
            )))),
        }
    }))
}

/// A stream of `next`'s items.
fn stream_from_fn<T, F>(next: F) -> impl futures_core::Stream<Item = T> + Send
where
    F: FnMut(&mut std::task::Context<'_>) -> std::task::Poll<Option<T>> + Send + Unpin,
{
    struct FromFn<F>(F);
    impl<T, F> futures_core::Stream for FromFn<F>
    where
        F: FnMut(&mut std::task::Context<'_>) -> std::task::Poll<Option<T>> + Unpin,
    {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            (self.0)(cx)
        }
    }
    FromFn(next)
}
