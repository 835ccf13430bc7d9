//! Where the nanoseconds go: the success path of each layer alone over the
//! same ready in-memory provider, and the whole recommended stack (the one
//! of `benches/stack.rs`), all in one run. After the run it prints a table
//! of medians and of each variant's overhead over `raw`, read back from
//! criterion's estimates of this run.
//!
//! No tracing subscriber and no metrics recorder are installed: this is the
//! cost of the layers themselves, not of an exporter.

mod support;

use bytes::Bytes;
use criterion::Criterion;
use http_body_util::Full;
use staunch::ServiceBuilderExt;
use staunch::budget::{BudgetConfig, BudgetLayer};
use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use staunch::core::{
    ChatRequest, ChatResponse, Embedding, EmbeddingRequest, EmbeddingResponse, LlmError, Price,
    Usage,
};
use staunch::degrade::{DegradeConfig, DegradeLayer};
use staunch::fallback::{Fallback, Target};
use staunch::http_call::{ClassifyHttpLayer, HttpCall};
use staunch::observe::InstrumentLayer;
use staunch::quota::{QuotaConfig, QuotaLayer};
use staunch::retry::{RetryConfig, RetryLayer};
use staunch_test::FakeProvider;
use std::hint::black_box;
use std::time::Duration;
use support::{call_once, fresh_median, in_memory, request};
use tower::{Layer, Service, ServiceBuilder};

const GROUP: &str = "layers_success_path";

/// The variants, in table order: (bench id, what it is).
const ROWS: &[(&str, &str)] = &[
    ("raw", "provider called directly"),
    ("instrument", "InstrumentLayer (no subscriber, no recorder)"),
    ("degrade", "DegradeLayer, defaults (cache off)"),
    ("degrade_static", "DegradeLayer, static answer"),
    (
        "degrade_cache",
        "DegradeLayer, cache on (10 000 answers, 10 min)",
    ),
    ("budget", "BudgetLayer, per-request and window caps"),
    ("fallback_1", "Fallback of one target"),
    ("circuit_breaker", "CircuitBreakerLayer, defaults"),
    ("retry", "RetryLayer, defaults (with retry budget)"),
    ("retry_no_budget", "RetryLayer, no retry budget"),
    (
        "retry_tower_resilience",
        "tower-resilience's RetryLayer, for comparison (issue 23)",
    ),
    ("quota", "QuotaLayer, RPM + TPM, reconciled"),
    ("tower_timeout", "tower TimeoutLayer (30 s), for scale"),
    ("full_stack", "the recommended stack (benches/stack.rs)"),
    (
        "full_stack_embeddings",
        "the same stack for an embeddings call (issue 23)",
    ),
    (
        "stack_chat",
        "retry + breaker + quota over the chat provider (issue 31)",
    ),
    (
        "http_raw",
        "a raw HTTP service under ClassifyHttpLayer alone, the HTTP path's raw (issue 31)",
    ),
    (
        "stack_http",
        "retry + breaker + quota over that raw HTTP service; over http_raw (issue 31)",
    ),
];

fn budget_layer() -> BudgetLayer {
    BudgetLayer::new(
        BudgetConfig::new()
            .per_request_tokens(100_000)
            .window_tokens(u64::MAX / 2)
            .default_price(Price::per_million(2.5, 10.0)),
    )
    .expect("valid")
}

fn target(name: &'static str, provider: FakeProvider, model: &'static str) -> Target {
    let breaker = CircuitBreakerLayer::new(CircuitBreakerConfig::new(name)).expect("valid");
    let health = breaker.handle();
    let service = ServiceBuilder::new()
        .circuit_breaker(breaker)
        .llm_retry(RetryConfig::new())
        .timeout(Duration::from_secs(30))
        .concurrency_limit(1_000)
        .service(provider);
    Target::new(name, service)
        .model(model)
        .context_window(128_000)
        .price(Price::per_million(2.5, 10.0))
        .health(health)
}

/// How the variants are driven: timed by criterion, or (for an
/// instruction-count profiler such as `valgrind --tool=callgrind`, where
/// wall time means nothing) one variant called a fixed number of times.
enum Runner<'a> {
    Criterion(&'a mut Criterion),
    Count { id: String, calls: u64 },
}

fn run<S>(c: &mut Runner<'_>, id: &str, mut service: S, request: &ChatRequest)
where
    S: Service<ChatRequest, Response = ChatResponse>,
{
    match c {
        Runner::Criterion(c) => {
            let mut group = c.benchmark_group(GROUP);
            group.bench_function(id, |b| {
                b.iter(|| black_box(call_once(&mut service, request)))
            });
            group.finish();
        }
        Runner::Count { id: only, calls } => {
            if only == id {
                for _ in 0..*calls {
                    black_box(call_once(&mut service, request));
                }
            }
        }
    }
}

fn bench(c: &mut Runner<'_>) {
    let request = request();
    let provider = in_memory();

    run(c, "raw", provider.clone(), &request);
    run(
        c,
        "instrument",
        InstrumentLayer::new().layer(provider.clone()),
        &request,
    );
    run(
        c,
        "degrade",
        DegradeLayer::new(DegradeConfig::new()).layer(provider.clone()),
        &request,
    );
    run(
        c,
        "degrade_static",
        DegradeLayer::new(DegradeConfig::new().static_answer("later")).layer(provider.clone()),
        &request,
    );
    run(
        c,
        "degrade_cache",
        DegradeLayer::new(DegradeConfig::new().cache(Duration::from_secs(600), 10_000))
            .layer(provider.clone()),
        &request,
    );
    run(
        c,
        "budget",
        budget_layer().layer(provider.clone()),
        &request,
    );
    run(
        c,
        "fallback_1",
        Fallback::new([Target::new("only", provider.clone())]).expect("one target"),
        &request,
    );
    run(
        c,
        "circuit_breaker",
        CircuitBreakerLayer::new(CircuitBreakerConfig::new("bench"))
            .expect("valid")
            .layer(provider.clone()),
        &request,
    );
    run(
        c,
        "retry",
        RetryLayer::new(RetryConfig::new()).layer(provider.clone()),
        &request,
    );
    run(
        c,
        "retry_no_budget",
        RetryLayer::new(RetryConfig::new().no_budget()).layer(provider.clone()),
        &request,
    );
    run(
        c,
        "retry_tower_resilience",
        tower_resilience_retry::RetryLayer::<ChatRequest, ChatResponse, LlmError>::builder()
            .max_attempts(3)
            .build()
            .layer(provider.clone()),
        &request,
    );
    run(
        c,
        "quota",
        QuotaLayer::new(
            QuotaConfig::new("bench")
                .requests_per_minute(1_000_000_000_000)
                .tokens_per_minute(1_000_000_000_000_000),
        )
        .expect("valid")
        .layer(provider.clone()),
        &request,
    );
    run(
        c,
        "tower_timeout",
        tower::timeout::TimeoutLayer::new(Duration::from_secs(30)).layer(provider.clone()),
        &request,
    );

    let chain = Fallback::new([
        target("openai", provider.clone(), "gpt-4o"),
        target("anthropic", provider.clone(), "claude-sonnet-4-5"),
        target("mini", provider, "gpt-4o-mini"),
    ])
    .expect("three targets");
    let stack = ServiceBuilder::new()
        .layer(InstrumentLayer::new())
        .degrade(DegradeConfig::new().static_answer("later"))
        .budget(budget_layer())
        .service(chain);
    run(c, "full_stack", stack, &request);

    // Issue 23: the same stack for an embeddings call, over an in-memory
    // provider answering a ready batch of three vectors.
    let embedder = tower::service_fn(|r: EmbeddingRequest| {
        let data = (0..3).map(|i| Embedding::new(i, vec![0.5; 16])).collect();
        std::future::ready(Ok::<_, LlmError>(
            EmbeddingResponse::new(&r.model, data).with_usage(Usage::new(12, 0)),
        ))
    });
    let embedding_target = |name: &'static str| {
        let breaker = CircuitBreakerLayer::new(CircuitBreakerConfig::new(name)).expect("valid");
        let health = breaker.handle();
        let service = ServiceBuilder::new()
            .circuit_breaker(breaker)
            .llm_retry(RetryConfig::new())
            .timeout(Duration::from_secs(10))
            .concurrency_limit(1_000)
            .service(embedder);
        Target::<EmbeddingRequest>::for_call(name, service)
            .model("text-embedding-3-small")
            .price(Price::per_million(0.02, 0.0))
            .health(health)
    };
    let chain = Fallback::new([
        embedding_target("openai"),
        embedding_target("second-key"),
        embedding_target("third-key"),
    ])
    .expect("three targets");
    let stack = ServiceBuilder::new()
        .layer(InstrumentLayer::new())
        .degrade(DegradeConfig::new())
        .budget(budget_layer())
        .service(chain);
    let embed = EmbeddingRequest::new("text-embedding-3-small", ["one", "two", "three"]);
    run_http(c, "full_stack_embeddings", stack, &embed);

    // Issue 31: the same three layers over the chat call and over a raw
    // HTTP service answering the same JSON at once (the classifier buffers
    // it and reads its usage), in the same run.
    let quota = || {
        QuotaLayer::new(
            QuotaConfig::new("bench")
                .requests_per_minute(1_000_000_000_000)
                .tokens_per_minute(1_000_000_000_000_000),
        )
        .expect("valid")
    };
    let breaker = || CircuitBreakerLayer::new(CircuitBreakerConfig::new("bench")).expect("valid");
    let chat = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryConfig::new()))
        .layer(breaker())
        .layer(quota())
        .service(in_memory());
    run(c, "stack_chat", chat, &request);
    let http_service = || {
        tower::service_fn(|_: http::Request<Full<Bytes>>| {
            std::future::ready(Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(HTTP_ANSWER)))
                    .expect("a response"),
            ))
        })
    };
    // The HTTP path's own raw: the service and the classifier every such
    // stack needs (it buffers the answer and reads its usage), so that
    // `stack_http` over it compares with `stack_chat` over `raw`.
    let http_raw = ServiceBuilder::new()
        .layer(ClassifyHttpLayer::new())
        .service(http_service());
    run_http(c, "http_raw", http_raw, &http_request());
    let http = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryConfig::new()))
        .layer(breaker())
        .layer(quota())
        .layer(ClassifyHttpLayer::new())
        .service(http_service());
    run_http(c, "stack_http", http, &http_request());
}

const HTTP_ANSWER: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13}}"#;

/// The bench request as the raw HTTP a user's client would send.
fn http_request() -> HttpCall {
    let body = br#"{"model":"gpt-4o","max_tokens":16,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hi"}]}"#;
    let request = http::Request::post("http://api.example/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Bytes::from_static(body))
        .expect("a request");
    HttpCall::new(request).expect("a call")
}

/// [`run`] for any call (raw HTTP, embeddings): the same driving, through
/// [`poll_call`].
fn run_http<S, R: Clone>(c: &mut Runner<'_>, id: &str, mut service: S, request: &R)
where
    S: Service<R>,
{
    match c {
        Runner::Criterion(c) => {
            let mut group = c.benchmark_group(GROUP);
            group.bench_function(id, |b| {
                b.iter(|| black_box(poll_call(&mut service, request)))
            });
            group.finish();
        }
        Runner::Count { id: only, calls } => {
            if only == id {
                for _ in 0..*calls {
                    black_box(poll_call(&mut service, request));
                }
            }
        }
    }
}

/// `support::call_once` for any request type.
fn poll_call<S, R: Clone>(service: &mut S, request: &R) -> S::Response
where
    S: Service<R>,
{
    use std::task::{Context, Poll, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match service.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => break,
            Poll::Ready(Err(_)) => panic!("the success path was refused"),
            Poll::Pending => std::hint::spin_loop(),
        }
    }
    let mut future = std::pin::pin!(service.call(request.clone()));
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(response)) => return response,
            Poll::Ready(Err(_)) => panic!("the success path failed"),
            Poll::Pending => std::hint::spin_loop(),
        }
    }
}

fn print_table(started: std::time::SystemTime) {
    let Some(raw) = fresh_median(GROUP, "raw", started) else {
        return; // raw was filtered out of this run: nothing to compare to.
    };
    println!();
    println!("| layer (alone over the provider) | median | over raw |");
    println!("|---|---:|---:|");
    let http_raw = fresh_median(GROUP, "http_raw", started);
    for (id, what) in ROWS {
        let Some(m) = fresh_median(GROUP, id, started) else {
            continue;
        };
        // The HTTP stack is compared with the HTTP path's own raw.
        let base = match (*id, http_raw) {
            ("stack_http", Some(http_raw)) => Some(http_raw),
            ("stack_http", None) | ("raw" | "http_raw", _) => None,
            _ => Some(raw),
        };
        let over = base.map_or_else(|| "—".to_owned(), |base| format!("{:+.0} ns", m - base));
        println!("| `{id}`: {what} | {m:.0} ns | {over} |");
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    // `LAYERS_COUNT=<id>:<calls>`: call one variant that many times, no
    // timing (`scripts/count-layers.sh`); `LAYERS_COUNT=list`: the ids.
    if let Ok(spec) = std::env::var("LAYERS_COUNT") {
        if spec == "list" {
            for (id, _) in ROWS {
                println!("{id}");
            }
            return;
        }
        let parsed = spec
            .split_once(':')
            .and_then(|(id, calls)| Some((id, calls.parse::<u64>().ok()?)))
            .filter(|(id, _)| ROWS.iter().any(|(row, _)| row == id));
        let Some((id, calls)) = parsed else {
            eprintln!(
                "LAYERS_COUNT={spec:?}: expected <id>:<calls>, with <id> one of: {}",
                ROWS.iter()
                    .map(|(id, _)| *id)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            std::process::exit(2);
        };
        bench(&mut Runner::Count {
            id: id.to_owned(),
            calls,
        });
        return;
    }
    let started = std::time::SystemTime::now();
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut Runner::Criterion(&mut criterion));
    criterion.final_summary();
    print_table(started);
}
