//! What the stack costs a streamed answer, in one run:
//!
//! - per event: a long answer (about 1 700 events) read to its end, by the
//!   bare OpenAI client and through the full recommended stack, over the
//!   mock on loopback with `stream_token_ms = 0` (the clients' SSE parser is
//!   private to `staunch-providers`, so parsing is measured with the client
//!   around it); the difference divided by the events read. The same again
//!   in memory (a provider that hands out a ready stream of as many events),
//!   where nothing but the stack's own per-event work differs;
//! - time to first token: from the call to the first content event of a
//!   short answer, bare client against full stack, on loopback (the rest of
//!   each stream is read outside the timing, so the connection is reused).
//!
//! On a shared machine two separate criterion runs of a 30 ms loopback read
//! drift apart by more than the stack costs, so both loopback comparisons
//! are also made paired (bare and stack alternating, round by round); the
//! table gives the median difference and its standard error. The in-memory
//! figure is the precise one for the per-event cost.
//!
//! The full stack is the chaos demo's (b): instrument > degrade (static
//! answer) > budget > fallback over three `TargetBuilder` targets (circuit
//! breaker, retry, per-attempt timeout). No tracing subscriber and no
//! metrics recorder are installed. After the run it prints a table of
//! medians, read back from criterion's estimates of this run.

mod support;

use criterion::Criterion;
use staunch::budget::{BudgetConfig, BudgetLayer};
use staunch::circuit_breaker::CircuitBreakerConfig;
use staunch::core::{
    ChatRequest, ChatResponse, LlmError, Message, Price, StreamEvent, ToolCall, Usage,
};
use staunch::degrade::DegradeConfig;
use staunch::fallback::Fallback;
use staunch::observe::InstrumentLayer;
use staunch::retry::RetryConfig;
use staunch::{ServiceBuilderExt, TargetBuilder};
use staunch_mock::{MockServer, Scenario};
use staunch_providers::{HttpOptions, OpenAi, OpenAiConfig};
use staunch_test::{FakeProvider, Streamed};
use std::future::{Future, poll_fn};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use support::fresh_median;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};

const GROUP: &str = "streaming";

type Client = BoxCloneSyncService<ChatRequest, ChatResponse, LlmError>;

/// The full recommended stack over `provider` (three targets on it).
fn full_stack<S>(provider: S) -> Client
where
    S: Service<ChatRequest, Response = ChatResponse, Error = LlmError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let target = |name: &'static str, model: &'static str| {
        TargetBuilder::new(name, provider.clone())
            .breaker(CircuitBreakerConfig::new(name))
            .retry(RetryConfig::new())
            .attempt_timeout(Duration::from_secs(30))
            .model(model)
            .context_window(128_000)
            .price(Price::per_million(2.5, 10.0))
            .build()
            .expect("valid target")
            .0
    };
    let chain = Fallback::new([
        target("openai", "gpt-4o"),
        target("anthropic", "claude-sonnet-4-5"),
        target("mini", "gpt-4o-mini"),
    ])
    .expect("three targets");
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(InstrumentLayer::new())
            .degrade(DegradeConfig::new().static_answer("later"))
            .budget(
                BudgetLayer::new(
                    BudgetConfig::new()
                        .per_request_tokens(1_000_000)
                        .window_tokens(u64::MAX / 2)
                        .default_price(Price::per_million(2.5, 10.0)),
                )
                .expect("valid budget"),
            )
            .service(chain),
    )
}

/// A short question: a streamed answer of about ten events.
fn short() -> ChatRequest {
    ChatRequest::new(
        "gpt-4o",
        vec![Message::user("Say something short, please.")],
    )
    .with_max_tokens(64)
    .with_stream(true)
}

/// A conversation ending with 20 tool results of 500 characters: the mock
/// quotes them all, about 1 700 streamed events.
fn long() -> ChatRequest {
    let words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do ".repeat(9);
    let calls: Vec<ToolCall> = (0..20)
        .map(|i| ToolCall::new(format!("call_{i}"), "lookup", "{}"))
        .collect();
    let mut messages = vec![
        Message::user("Look these up."),
        Message::assistant_tool_calls("", calls),
    ];
    messages.extend((0..20).map(|i| Message::tool_result(format!("call_{i}"), words.clone())));
    ChatRequest::new("gpt-4o", messages)
        .with_max_tokens(4_000)
        .with_stream(true)
}

/// Calls `client` and reads the whole streamed answer: the events read.
async fn read_all(client: &Client, request: ChatRequest) -> u64 {
    let mut answer = client.clone().oneshot(request).await.expect("an answer");
    let mut stream = answer.take_stream().expect("a stream");
    let mut events = 0;
    let mut finished = false;
    while let Some(item) = poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        let event = item.expect("an unbroken stream");
        finished |= matches!(event, StreamEvent::Finish(_));
        black_box(&event);
        events += 1;
    }
    assert!(finished, "a complete stream");
    events
}

/// Calls `client`, times the first content event, then reads the rest
/// (untimed, so the connection goes back to the pool).
async fn first_token(client: &Client, request: ChatRequest) -> Duration {
    let started = Instant::now();
    let mut answer = client.clone().oneshot(request).await.expect("an answer");
    let mut stream = answer.take_stream().expect("a stream");
    let first = poll_fn(|cx| stream.as_mut().poll_next(cx)).await;
    let elapsed = started.elapsed();
    assert!(matches!(first, Some(Ok(ref e)) if e.is_content()));
    while poll_fn(|cx| stream.as_mut().poll_next(cx)).await.is_some() {}
    elapsed
}

/// `rounds` alternating calls of `measure` on the bare client and on the
/// stack (which goes first alternates too): the per-round differences,
/// stack minus bare, in ns, sorted. Pairing cancels the drift of a shared
/// machine's load, which two separate criterion runs do not.
fn paired<F, Fut>(
    runtime: &tokio::runtime::Runtime,
    bare: &Client,
    stack: &Client,
    rounds: usize,
    measure: F,
) -> Vec<f64>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = Duration>,
{
    runtime.block_on(async {
        let mut diffs: Vec<f64> = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let (b, s) = if round % 2 == 0 {
                let b = measure(bare.clone()).await;
                (b, measure(stack.clone()).await)
            } else {
                let s = measure(stack.clone()).await;
                (measure(bare.clone()).await, s)
            };
            diffs.push(s.as_nanos() as f64 - b.as_nanos() as f64);
        }
        diffs.sort_by(f64::total_cmp);
        diffs
    })
}

/// The median of sorted `values`, and its standard error estimated from
/// the interquartile range (σ ≈ IQR / 1.35, se ≈ 1.25 σ / √n).
fn median_and_error(values: &[f64]) -> (f64, f64) {
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    let sigma = (at(0.75) - at(0.25)) / 1.35;
    (at(0.5), 1.25 * sigma / (values.len() as f64).sqrt())
}

/// A provider that answers at once with a ready stream of `texts` text
/// events, then usage and finish.
fn in_memory_stream(texts: usize) -> FakeProvider {
    let fake = FakeProvider::new("fake").unrecorded();
    fake.script(
        [],
        Streamed::chunks(texts).usage(Usage::new(12, texts as u64)),
    );
    fake
}

/// One in-memory call read to its end, polled with a no-op waker (every
/// layer is ready at once; `Pending` is polled again at once).
fn read_in_memory(client: &mut Client, request: &ChatRequest) -> u64 {
    let mut cx = Context::from_waker(Waker::noop());
    while client.poll_ready(&mut cx).is_pending() {}
    let mut future = pin!(client.call(request.clone()));
    let mut answer = loop {
        if let Poll::Ready(result) = future.as_mut().poll(&mut cx) {
            break result.expect("an answer");
        }
    };
    let mut stream = answer.take_stream().expect("a stream");
    let mut events = 0;
    loop {
        match stream.as_mut().poll_next(&mut cx) {
            Poll::Ready(Some(item)) => {
                black_box(item.expect("an unbroken stream"));
                events += 1;
            }
            Poll::Ready(None) => return events,
            Poll::Pending => {}
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let scenario = Scenario {
        stream_token_ms: 0,
        ..Scenario::default()
    };
    let server = runtime
        .block_on(MockServer::start(scenario))
        .expect("mock server");
    let bare: Client = BoxCloneSyncService::new(
        OpenAi::new(
            OpenAiConfig::new()
                .base_url(server.openai_base_url())
                .no_api_key()
                .http(HttpOptions::new()),
        )
        .expect("client"),
    );
    let stack = full_stack(bare.clone());

    // Both read the same stream.
    let (loopback_events, stack_events) = runtime.block_on(async {
        (
            read_all(&bare, long()).await,
            read_all(&stack, long()).await,
        )
    });
    assert_eq!(
        loopback_events, stack_events,
        "the stack passes every event"
    );
    const IN_MEMORY_TEXTS: usize = 2_000;
    let in_memory = in_memory_stream(IN_MEMORY_TEXTS);
    let in_memory_events = IN_MEMORY_TEXTS as u64 + 2;

    let started = std::time::SystemTime::now();
    let mut criterion = Criterion::default().configure_from_args();
    {
        let mut group = criterion.benchmark_group(GROUP);
        group.sample_size(30);
        for (id, client) in [
            ("loopback_bare_read", &bare),
            ("loopback_stack_read", &stack),
        ] {
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(read_all(client, long()).await);
                        }
                        start.elapsed()
                    })
                })
            });
        }
        for (id, client) in [
            ("loopback_bare_first_token", &bare),
            ("loopback_stack_first_token", &stack),
        ] {
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += first_token(client, short()).await;
                        }
                        total
                    })
                })
            });
        }
        let request = short();
        let mut in_memory_bare: Client = BoxCloneSyncService::new(in_memory.clone());
        let mut in_memory_stack = full_stack(in_memory);
        for (id, client) in [
            ("in_memory_bare_read", &mut in_memory_bare),
            ("in_memory_stack_read", &mut in_memory_stack),
        ] {
            group.bench_function(id, |b| {
                b.iter(|| black_box(read_in_memory(client, &request)))
            });
        }
        group.finish();
    }
    criterion.final_summary();

    let m = |id: &str| fresh_median(GROUP, id, started);

    // The same two comparisons on loopback, paired round by round (when
    // their benches ran: not filtered out).
    const READ_ROUNDS: usize = 60;
    const FIRST_TOKEN_ROUNDS: usize = 2_000;
    let read_diffs = m("loopback_stack_read").map(|_| {
        paired(&runtime, &bare, &stack, READ_ROUNDS, |client| async move {
            let started = Instant::now();
            black_box(read_all(&client, long()).await);
            started.elapsed()
        })
    });
    let first_token_diffs = m("loopback_stack_first_token").map(|_| {
        paired(
            &runtime,
            &bare,
            &stack,
            FIRST_TOKEN_ROUNDS,
            |client| async move { first_token(&client, short()).await },
        )
    });
    drop(server);

    eprintln!();
    eprintln!("| streaming ({GROUP}) | bare | full stack | stack over bare | goal |");
    eprintln!("|---|---:|---:|---:|---:|");
    if let (Some(bare), Some(stack)) = (m("loopback_bare_read"), m("loopback_stack_read")) {
        let per_event = (stack - bare) / loopback_events as f64;
        eprintln!(
            "| long answer read on loopback ({loopback_events} events) | {:.1} µs | {:.1} µs | {:+.1} µs = {per_event:+.0} ns/event ({:.3}×) | ≤ 100 ns/event |",
            bare / 1e3,
            stack / 1e3,
            (stack - bare) / 1e3,
            stack / bare
        );
    }
    if let (Some(bare), Some(stack)) = (m("in_memory_bare_read"), m("in_memory_stack_read")) {
        let per_event = (stack - bare) / in_memory_events as f64;
        eprintln!(
            "| same in memory, no wire ({in_memory_events} events) | {:.1} µs | {:.1} µs | {:+.1} µs = {per_event:+.1} ns/event ({:.2}×) | ≤ 100 ns/event |",
            bare / 1e3,
            stack / 1e3,
            (stack - bare) / 1e3,
            stack / bare
        );
    }
    if let (Some(bare), Some(stack)) = (
        m("loopback_bare_first_token"),
        m("loopback_stack_first_token"),
    ) {
        eprintln!(
            "| time to first token on loopback | {:.1} µs | {:.1} µs | {:+.1} µs ({:.3}×) | < 50 µs |",
            bare / 1e3,
            stack / 1e3,
            (stack - bare) / 1e3,
            stack / bare
        );
    }
    if let Some(diffs) = read_diffs {
        let (median, error) = median_and_error(&diffs);
        let per = |ns: f64| ns / loopback_events as f64;
        eprintln!(
            "| long answer read on loopback, {READ_ROUNDS} paired rounds: median of stack − bare (± se) | | | {:+.1} µs = {:+.0} ± {:.0} ns/event | ≤ 100 ns/event |",
            median / 1e3,
            per(median),
            per(error)
        );
    }
    if let Some(diffs) = first_token_diffs {
        let (median, error) = median_and_error(&diffs);
        eprintln!(
            "| time to first token on loopback, {FIRST_TOKEN_ROUNDS} paired rounds: median of stack − bare (± se) | | | {:+.1} ± {:.1} µs | < 50 µs |",
            median / 1e3,
            error / 1e3
        );
    }
    eprintln!(
        "(per-event figures divide the whole difference, the stack's per-call work included, by the events read)"
    );
}
