//! The chaos demo: the same agent traffic through a naive client and
//! through the full staunch stack, against a mock LLM server that fails the
//! way real providers do.
//!
//! ```text
//! cargo run --release --example chaos -- [--scenario storm|outage|calm|stream|quota|tail]
//!     [--requests N] [--concurrency C] [--rate R] [--seed S] [--json] [--html FILE]
//! ```
//!
//! It starts the embedded mock server on 127.0.0.1 with two providers (an
//! OpenAI-compatible and an Anthropic-compatible route) under the named
//! scenario, and sends the same request mix twice: (a) through a bare
//! OpenAI client, as many agents do, and (b) through the recommended stack
//! over the real `OpenAi` and `Anthropic` clients (instrument > degrade >
//! budget > fallback gpt-4o -> claude-sonnet-4-5 -> gpt-4o-mini, each target
//! behind a circuit breaker, retry and a per-attempt timeout; Claude is
//! declared to accept an assistant prefill, so a streamed answer that
//! breaks after content is continued there). Then it prints both side by
//! side. Nothing leaves the machine.
//!
//! `--scenario stream` asks for every answer as a stream, against stream
//! faults (cuts, stalls, in-band error events, errors in the first frame,
//! slow first tokens), and reports for each side how many callers got the
//! complete answer, a clean error, or a truncated answer presented as
//! complete, and the time to the first token (see `streaming.rs`), and
//! how many of the stack's streams were continued after a break, and where.
//! The run fails (exit status 1) if the stack presented any truncated
//! answer as complete.
//!
//! `--scenario quota` sends the traffic (50 requests/s unless `--rate`
//! says otherwise) through four replicas of a stack that share one
//! provider account of 120 requests/min, three times: (a) without quotas,
//! (b) each replica with a local `QuotaLayer` at a quarter of the limit,
//! (c) the replicas sharing one `staunch_redis::SharedQuotaLayer` through
//! a Redis the demo starts on a free loopback port (skipped when
//! `redis-server` is not on the PATH). It prints the 429s the provider
//! sent, the requests it admitted and its admissions per second (see
//! `quota.rs`; the account's quota is a wrapper in front of the mock).
//!
//! `--scenario tail` runs one model on two deployments, each its own mock
//! server: `slow` adds 2–4 s to 10 % of its answers and allows 40
//! requests per 1 s window, `healthy` has neither. The same requests (800
//! at 100/s unless `--requests` and `--rate` say otherwise, at most 512 in
//! flight) go through each deployment alone, a `Balance` of both (each
//! deployment behind its own breaker and retry), and that balance under a
//! `HedgeLayer` (after the p95, budget 5 %). It prints p50/p99, provider
//! calls, the 429s at the providers and those that reached callers, and
//! whether issue 25's goals hold (see `tail.rs`).
//!
//! `--html FILE` also writes the run as one self-contained page (inline
//! SVG, nothing fetched): the requests over time by outcome and tier, the
//! circuit breakers' states as bands, both sides' latency CDFs and the
//! fallback depth of the answers (see `html.rs`; `scripts/chaos-html.sh`
//! screenshots it in a headless Chromium).

mod html;
mod quota;
mod report;
mod scenarios;
mod streaming;
mod tail;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use report::Run;
use staunch::budget::{BudgetConfig, BudgetLayer};
use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerHandle};
use staunch::core::{ChatRequest, ChatResponse, LlmError, Message, Price};
use staunch::degrade::DegradeConfig;
use staunch::fallback::{Fallback, Target};
use staunch::observe::{InstrumentLayer, names};
use staunch::retry::RetryConfig;
use staunch::{ServiceBuilderExt, TargetBuilder};
use staunch_mock::{MockServer, Route};
use staunch_providers::{Anthropic, AnthropicConfig, HttpOptions, OpenAi, OpenAiConfig};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

type Client = BoxCloneSyncService<ChatRequest, ChatResponse, LlmError>;

/// The chaos demo: the same agent traffic through a naive client and
/// through the full staunch stack, against a mock LLM server that fails the
/// way real providers do.
#[derive(clap::Parser)]
#[command(name = "chaos", args_override_self = true)]
struct Args {
    /// The faults (and, for `stream`, `quota` and `tail`, the kind of run).
    #[arg(long, default_value = "storm", value_parser = scenarios::NAMES)]
    scenario: String,
    /// Requests to send through each side [default: 300; 800 for `tail`].
    #[arg(long = "requests", value_name = "N")]
    requests_given: Option<usize>,
    /// `--requests`, or the scenario's default.
    #[arg(skip)]
    requests: usize,
    /// Requests in flight at most [default: 32; 512 for `tail`, whose
    /// slow answers would otherwise hold the pace back].
    #[arg(long = "concurrency", value_name = "C")]
    concurrency_given: Option<usize>,
    /// `--concurrency`, or the scenario's default.
    #[arg(skip)]
    concurrency: usize,
    /// Requests started per second [default: 100; 50 for `quota`].
    #[arg(long = "rate", value_name = "R", allow_negative_numbers = true)]
    rate_given: Option<f64>,
    /// `--rate`, or the scenario's default.
    #[arg(skip)]
    rate: f64,
    /// The seed of the mock's random faults.
    #[arg(long, value_name = "S", default_value_t = 42)]
    seed: u64,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the run as one self-contained HTML page (charts, no
    /// network) to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args: Args = clap::Parser::parse();
    // Slow enough for the provider's per-minute refill to show.
    let default_rate = if args.scenario == "quota" {
        50.0
    } else {
        100.0
    };
    args.rate = args.rate_given.unwrap_or(default_rate);
    let tail = args.scenario == "tail";
    args.requests = args.requests_given.unwrap_or(if tail { 800 } else { 300 });
    args.concurrency = args
        .concurrency_given
        .unwrap_or(if tail { 512 } else { 32 });
    if args.requests == 0 || args.concurrency == 0 {
        return Err("--requests and --concurrency must be at least 1".into());
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err("--rate must be a positive number of requests per second".into());
    }
    if scenarios::named(&args.scenario, 0).is_none() {
        return Err(format!(
            "unknown scenario {:?}; one of {}",
            args.scenario,
            scenarios::NAMES.join(", ")
        ));
    }
    Ok(args)
}

/// The agent traffic: a few dozen distinct questions asked repeatedly, and
/// every 25th request a long document that overflows gpt-4o's window.
fn request(i: usize) -> ChatRequest {
    let question = format!("Summarise support ticket #{} in one sentence.", i % 40);
    let mut messages = vec![Message::system("You are a support agent. Be brief.")];
    if i % 25 == 7 {
        messages.push(Message::user(format!(
            "{}\n\n{question}",
            "log line: request failed; ".repeat(1_400)
        )));
    } else {
        messages.push(Message::user(question));
    }
    ChatRequest::new("gpt-4o", messages).with_max_tokens(128)
}

fn price(model: &str) -> (f64, f64) {
    match model {
        m if m.starts_with("gpt-4o-mini") => (0.15, 0.60),
        m if m.starts_with("gpt-4o") => (2.50, 10.00),
        m if m.starts_with("claude") => (3.00, 15.00),
        _ => (0.0, 0.0),
    }
}

fn http() -> HttpOptions {
    // The stream limits bound streamed requests only (the `stream`
    // scenario); the others are bounded by `request_timeout`.
    HttpOptions::new()
        .connect_timeout(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(2))
        .header_timeout(Duration::from_secs(1))
        .first_token_timeout(Duration::from_millis(600))
        .idle_timeout(Duration::from_millis(400))
}

fn naive(server: &MockServer) -> Result<Client, Box<dyn std::error::Error>> {
    let client = OpenAi::new(
        OpenAiConfig::new()
            .base_url(server.openai_base_url())
            .no_api_key()
            .http(http()),
    )?;
    Ok(BoxCloneSyncService::new(client))
}

/// Whether a target continues an assistant prefill. Anthropic's Messages
/// API does (a trailing assistant turn is the start of the answer); OpenAI's
/// chat completions do not honour a trailing assistant message as one, so
/// the OpenAI targets are not declared, although the mock's OpenAI-shaped
/// route would continue one.
#[derive(Clone, Copy)]
enum Prefill {
    Accepted,
    NotHonoured,
}

fn target<S>(
    name: &'static str,
    client: S,
    model: &'static str,
    window: u64,
    prefill: Prefill,
) -> Result<(Target, CircuitBreakerHandle), Box<dyn std::error::Error>>
where
    S: tower::Service<ChatRequest, Response = ChatResponse, Error = LlmError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let (i, o) = price(model);
    Ok(TargetBuilder::new(name, client)
        .breaker(demo_breaker(name))
        .retry(demo_retry())
        .attempt_timeout(Duration::from_millis(800))
        .model(model)
        .context_window(window)
        .price(Price::per_million(i, o))
        .accepts_prefill(matches!(prefill, Prefill::Accepted))
        .build()?)
}

fn stack(
    server: &MockServer,
) -> Result<(Client, Vec<CircuitBreakerHandle>), Box<dyn std::error::Error>> {
    let openai = OpenAi::new(
        OpenAiConfig::new()
            .base_url(server.openai_base_url())
            .no_api_key()
            .http(http()),
    )?;
    let anthropic = Anthropic::new(
        AnthropicConfig::new()
            .base_url(server.anthropic_base_url())
            .http(http()),
    )?;
    // A stream that breaks after content on gpt-4o is continued on Claude,
    // the next target (`ContinuationOrder::NextFirst`); one that breaks on
    // Claude is continued on Claude again after a cut, never after a stall.
    let (a, ha) = target(
        "openai",
        openai.clone(),
        "gpt-4o",
        8_000,
        Prefill::NotHonoured,
    )?;
    let (b, hb) = target(
        "anthropic",
        anthropic,
        "claude-sonnet-4-5",
        200_000,
        Prefill::Accepted,
    )?;
    let (c, hc) = target(
        "openai-mini",
        openai,
        "gpt-4o-mini",
        8_000,
        Prefill::NotHonoured,
    )?;
    let chain = Fallback::new([a, b, c])?;
    let service = ServiceBuilder::new()
        .layer(InstrumentLayer::new())
        .degrade(
            DegradeConfig::new()
                .static_answer("Our assistant is busy right now; a person will follow up shortly."),
        )
        .budget(BudgetLayer::new(
            BudgetConfig::new().per_request_tokens(60_000),
        )?)
        .service(chain);
    Ok((BoxCloneSyncService::new(service), vec![ha, hb, hc]))
}

/// Sends the request mix through `client`: one request every `1/rate`
/// seconds, at most `concurrency` in flight, with a progress display;
/// send times count from `origin`.
async fn drive(label: &str, client: Client, args: &Args, origin: Instant, run: &mut Run) {
    pace(
        label,
        args,
        move |i| {
            let client = client.clone();
            async move {
                let started = Instant::now();
                let result = client.oneshot(request(i)).await;
                (result, started.duration_since(origin), started.elapsed())
            }
        },
        |(result, sent, latency)| run.record(&result, sent, latency, price),
    )
    .await;
}

/// The breakers of `stack()`, by name, for an [`html::Watch`].
fn named(breakers: &[CircuitBreakerHandle]) -> Vec<(String, CircuitBreakerHandle)> {
    breakers
        .iter()
        .map(|b| (b.name().to_owned(), b.clone()))
        .collect()
}

/// Writes the `--html` page, when asked for.
fn write_page(
    args: &Args,
    sides: Vec<html::Side>,
    notes: Vec<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let Some(path) = &args.html else {
        return Ok(());
    };
    let page = html::Page {
        title: format!("staunch chaos demo: scenario \"{}\"", args.scenario),
        subtitle: format!(
            "{} requests per side at {}/s, at most {} in flight, seed {}; the embedded mock LLM \
             server on 127.0.0.1 (nothing left the machine)",
            args.requests, args.rate, args.concurrency, args.seed
        ),
        sides,
        notes,
    };
    html::write(path, &page).map_err(|e| format!("--html {}: {e}", path.display()))?;
    eprintln!("chaos: wrote {}", path.display());
    Ok(())
}

/// The `--html` page's note on how the breakers' bands were drawn.
fn breaker_note() -> String {
    format!(
        "Breaker bands: each breaker's state read every {} ms during the run; a breaker that \
         changed state and back between two readings (a short half-open probe, say) shows a \
         thin amber tick at its last change. An open circuit whose break is over shows as open until the \
         next call turns it half-open.",
        html::SAMPLE_EVERY.as_millis()
    )
}

/// Runs `task(i)` for every request `i` of the mix: one every `1/rate`
/// seconds, at most `concurrency` in flight, with a progress display;
/// `record` gets each result as it comes.
async fn pace<T, F, Fut>(label: &str, args: &Args, mut task: F, mut record: impl FnMut(T))
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let tty = std::io::stderr().is_terminal() && !args.json;
    let total = args.requests as u64;
    let progress = {
        let (done, label) = (done.clone(), label.to_owned());
        tokio::spawn(async move {
            let mut last_tenth = 0;
            loop {
                let n = done.load(Ordering::Relaxed);
                if tty {
                    let width = 30;
                    let filled = (n * width / total.max(1)) as usize;
                    eprint!(
                        "\r  {label:<16} [{}{}] {n}/{total}",
                        "#".repeat(filled),
                        ".".repeat(width as usize - filled)
                    );
                    let _ = std::io::stderr().flush();
                } else if n * 10 / total.max(1) > last_tenth {
                    last_tenth = n * 10 / total.max(1);
                    eprintln!("  {label}: {n}/{total}");
                }
                if n >= total {
                    if tty {
                        eprintln!();
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    let start = tokio::time::Instant::now();
    for i in 0..args.requests {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / args.rate)).await;
        if tasks.len() >= args.concurrency
            && let Some(Ok(result)) = tasks.join_next().await
        {
            record(result);
        }
        let (future, done) = (task(i), done.clone());
        tasks.spawn(async move {
            let result = future.await;
            done.fetch_add(1, Ordering::Relaxed);
            result
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok(result) = joined {
            record(result);
        }
    }
    let _ = progress.await;
}

/// Counter totals by metric name. A snapshot drains the recorder's
/// counters, so take one and read every total from it.
fn counter_totals(snapshotter: &Snapshotter) -> std::collections::BTreeMap<String, u64> {
    let mut totals = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if let DebugValue::Counter(n) = value {
            *totals.entry(key.key().name().to_owned()).or_default() += n;
        }
    }
    totals
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("chaos: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).map_err(|e| format!("metrics recorder: {e}"))?;

    let scenario = scenarios::named(&args.scenario, args.seed).ok_or("unknown scenario")?;
    let server = MockServer::start(scenario).await?;
    if args.scenario == "stream" {
        return run_stream(args, server, snapshotter).await;
    }
    if args.scenario == "quota" {
        return quota::run(args, server, snapshotter).await;
    }
    if args.scenario == "tail" {
        return tail::run(args, server, snapshotter).await;
    }
    if !args.json {
        println!(
            "chaos scenario {:?} (seed {}): {} requests at {}/s, at most {} in flight, mock LLM server on {}",
            args.scenario,
            args.seed,
            args.requests,
            args.rate,
            args.concurrency,
            server.url()
        );
    }

    let mut naive_run = Run::new("(a) naive client");
    let started = Instant::now();
    drive(
        "naive client",
        naive(&server)?,
        &args,
        started,
        &mut naive_run,
    )
    .await;
    let stats = server.stats();
    naive_run.finish(
        started.elapsed(),
        stats.requests_to(Route::OpenAi) + stats.requests_to(Route::Anthropic),
    );

    // The same faults, drawn again from the start, for the stack.
    server.reset();
    let (client, breakers) = stack(&server)?;
    let mut stack_run = Run::new("(b) staunch stack");
    let started = Instant::now();
    let watch = html::Watch::start(named(&breakers), started);
    drive("staunch stack", client, &args, started, &mut stack_run).await;
    let tracks = watch.stop().await;
    let stats = server.stats();
    stack_run.finish(
        started.elapsed(),
        stats.requests_to(Route::OpenAi) + stats.requests_to(Route::Anthropic),
    );
    let totals = counter_totals(&snapshotter);
    let total = |name: &str| totals.get(name).copied().unwrap_or(0);
    stack_run.retries = total(names::RETRIES);
    stack_run.fallback_activations = total(names::FALLBACKS);
    stack_run.breaker_transitions = Some(breakers.iter().map(|b| b.counts().transitions).sum());

    if args.json {
        let report = serde_json::json!({
            "scenario": args.scenario,
            "seed": args.seed,
            "requests": args.requests,
            "concurrency": args.concurrency,
            "rate": args.rate,
            "naive": naive_run,
            "staunch": stack_run,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report::print(&naive_run, &stack_run);
        println!();
        for b in &breakers {
            let c = b.counts();
            println!(
                "breaker {:<12} now {:<9} successes {:>4}  failures {:>3}  refused {:>3}  transitions {}",
                b.name(),
                b.state().as_str(),
                c.successes,
                c.failures,
                c.rejected,
                c.transitions
            );
        }
    }
    write_page(
        &args,
        vec![naive_run.side(None), stack_run.side(Some(tracks))],
        vec![
            "(a) sends each request once through a bare OpenAI client; (b) sends the same \
             requests through the staunch stack (degrade > budget > fallback gpt-4o -> \
             claude-sonnet-4-5 -> gpt-4o-mini, each target behind a breaker, retry and a \
             per-attempt timeout), against the same faults drawn again from the start."
                .to_owned(),
            breaker_note(),
        ],
    )?;
    Ok(())
}

/// The `stream` scenario: the same streamed requests read by a naive
/// reader over the bare client, and through the stack.
async fn run_stream(
    args: Args,
    server: MockServer,
    snapshotter: Snapshotter,
) -> Result<(), Box<dyn std::error::Error>> {
    use streaming::{Reader, StreamRun};
    if !args.json {
        println!(
            "chaos scenario \"stream\" (seed {}): {} streamed requests at {}/s, at most {} in flight, mock LLM server on {}",
            args.seed,
            args.requests,
            args.rate,
            args.concurrency,
            server.url()
        );
    }
    let calls = |server: &MockServer| {
        let stats = server.stats();
        stats.requests_to(Route::OpenAi) + stats.requests_to(Route::Anthropic)
    };

    let mut naive_run = StreamRun::new("(a) naive client");
    let started = Instant::now();
    streaming::drive(
        "naive client",
        naive(&server)?,
        Reader::Naive,
        &args,
        started,
        &mut naive_run,
    )
    .await;
    naive_run.finish(started.elapsed(), calls(&server));

    server.reset();
    let _ = counter_totals(&snapshotter); // nothing of (a) counts for (b)
    let (client, breakers) = stack(&server)?;
    let mut stack_run = StreamRun::new("(b) staunch stack");
    let started = Instant::now();
    let watch = html::Watch::start(named(&breakers), started);
    streaming::drive(
        "staunch stack",
        client,
        Reader::Staunch,
        &args,
        started,
        &mut stack_run,
    )
    .await;
    let tracks = watch.stop().await;
    stack_run.finish(started.elapsed(), calls(&server));
    let totals = counter_totals(&snapshotter);
    let total = |name: &str| totals.get(name).copied().unwrap_or(0);
    stack_run.retries = total(names::RETRIES);
    stack_run.fallback_activations = total(names::FALLBACKS);

    let ok = stack_run.truncated_as_complete == 0;
    if args.json {
        let report = serde_json::json!({
            "scenario": args.scenario,
            "seed": args.seed,
            "requests": args.requests,
            "concurrency": args.concurrency,
            "rate": args.rate,
            "naive": naive_run,
            "staunch": stack_run,
            "staunch_never_truncated_as_complete": ok,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        streaming::print(&naive_run, &stack_run);
        println!();
        for b in &breakers {
            let c = b.counts();
            println!(
                "breaker {:<12} now {:<9} successes {:>4}  failures {:>3}  refused {:>3}  transitions {}",
                b.name(),
                b.state().as_str(),
                c.successes,
                c.failures,
                c.rejected,
                c.transitions
            );
        }
        println!();
        stack_run.print_clean_errors(10);
        if ok {
            println!(
                "check: the staunch stack presented no truncated answer as complete ({} of {} streams broke after content: {} continued to the whole answer, {} ended with a classified error)",
                stack_run.continued_complete + stack_run.errors_after_content,
                stack_run.requests,
                stack_run.continued_complete,
                stack_run.errors_after_content
            );
        } else {
            println!(
                "CHECK FAILED: the staunch stack presented {} truncated answers as complete",
                stack_run.truncated_as_complete
            );
        }
    }
    write_page(
        &args,
        vec![naive_run.side(None), stack_run.side(Some(tracks))],
        vec![
            "Every request asks for a stream. An answer counts as answered when its caller \
             got the whole answer; a clean error (before or after content) is an error of its \
             kind; \"truncated, shown as complete\" is a stream that stopped early and was held \
             as the answer. Latency is until the whole answer or the error."
                .to_owned(),
            breaker_note(),
        ],
    )?;
    if !ok {
        return Err(format!(
            "the staunch stack presented {} truncated answers as complete",
            stack_run.truncated_as_complete
        )
        .into());
    }
    Ok(())
}

/// Every scenario's breaker: open after 5 failures in a row, for 1 s.
fn demo_breaker(name: &str) -> CircuitBreakerConfig {
    CircuitBreakerConfig::new(name)
        .consecutive_failures(Some(5))
        .break_duration(Duration::from_secs(1))
}

/// Every scenario's retries: 2, from 50 ms up to 500 ms, honouring a
/// `Retry-After` of up to 1 s.
fn demo_retry() -> RetryConfig {
    RetryConfig::new()
        .max_retries(2)
        .base_delay(Duration::from_millis(50))
        .max_delay(Duration::from_millis(500))
        .max_retry_after(Duration::from_secs(1))
}
