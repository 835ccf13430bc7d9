//! Drives a simulated flaky LLM provider through staunch's retry layer and
//! prints what happened to every request: attempts, time waited, outcome.
//!
//! ```text
//! cargo run --example flaky -- [--requests N] [--seed S]
//! ```
//!
//! The provider is an in-process tower service that fails the way real ones
//! do, chosen by a seeded generator: 429 with `Retry-After`, 529 overloaded,
//! 500, hangs that the per-attempt timeout cuts, context overflow (not
//! retryable) and invalid requests (fatal). Delays are scaled down to
//! milliseconds so the run takes a few seconds.

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use staunch::core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message, Usage};
use staunch::retry::{RetryBudget, RetryConfig, RetryLayer};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// What the simulated provider does with one call.
fn simulate(rng: &mut SmallRng) -> Result<Duration, LlmError> {
    let roll: u32 = rng.random_range(0..100);
    let fail = |kind: ErrorKind, status: u16, msg: &str| {
        LlmError::new(kind, msg)
            .with_status(status)
            .with_provider("sim")
    };
    match roll {
        0..=14 => Err(
            fail(ErrorKind::RateLimited, 429, "Rate limit reached; try again")
                .with_retry_after(Duration::from_millis(rng.random_range(50..=150))),
        ),
        15..=24 => Err(fail(ErrorKind::Overloaded, 529, "Overloaded")),
        25..=31 => Err(fail(ErrorKind::Server, 500, "internal server error")),
        32..=36 => Ok(Duration::from_secs(5)), // a hang: the timeout cuts it
        37..=38 => Err(fail(
            ErrorKind::ContextLengthExceeded,
            400,
            "prompt is too long: 210000 tokens > 200000 maximum",
        )),
        39 => Err(fail(
            ErrorKind::InvalidRequest,
            400,
            "max_tokens: must be positive",
        )),
        _ => Ok(Duration::from_millis(rng.random_range(5..=30))),
    }
}

/// The outcome of every attempt of one request, shared by the attempts'
/// clones of the request through its extensions.
#[derive(Clone, Default)]
struct Trail(Arc<Mutex<Vec<String>>>);

impl Trail {
    fn push(&self, step: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(step);
    }

    fn render(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).join(" > ")
    }
}

/// The retry layer alone, over a provider that fails at random.
#[derive(clap::Parser)]
#[command(name = "flaky", args_override_self = true)]
struct Args {
    /// Requests to send.
    #[arg(long, value_name = "N", default_value_t = 24)]
    requests: usize,
    /// The seed of the provider's failures.
    #[arg(long, value_name = "S", default_value_t = 7)]
    seed: u64,
}

#[tokio::main]
async fn main() {
    let args: Args = clap::Parser::parse();
    let rng = Arc::new(Mutex::new(SmallRng::seed_from_u64(args.seed)));
    let provider = service_fn(move |req: ChatRequest| {
        let outcome = simulate(&mut rng.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(trail) = req.extensions.get::<Trail>() {
            trail.push(match &outcome {
                Ok(d) if *d >= Duration::from_secs(1) => "hang".to_owned(),
                Ok(_) => "ok".to_owned(),
                Err(e) => e
                    .status
                    .map_or_else(|| e.kind.to_string(), |s| s.to_string()),
            });
        }
        async move {
            let delay = outcome?;
            tokio::time::sleep(delay).await;
            let words = req
                .messages
                .iter()
                .map(|m| m.content.byte_len() as u64)
                .sum::<u64>()
                / 4;
            Ok::<_, LlmError>(
                ChatResponse::new(req.model.clone(), "Here is your answer.")
                    .with_usage(Usage::new(words + 8, 6)),
            )
        }
    });

    let retry = RetryConfig::new()
        .max_retries(3)
        .base_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(200))
        .max_retry_after(Duration::from_secs(1))
        .budget(RetryBudget::new(Duration::from_secs(10), 5, 0.5).expect("valid budget"));
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(retry))
        .timeout(Duration::from_millis(150)) // per attempt
        .service(provider);

    println!(
        "{} requests against a simulated flaky provider (seed {}), retry: 3 retries, 20 ms base, 200 ms cap, 150 ms per-attempt timeout\n",
        args.requests, args.seed
    );
    println!(
        "{:>3}  {:<7} {:>8} {:>7}  {:<24} outcome",
        "#", "result", "attempts", "waited", "attempts seen"
    );
    let started = Instant::now();
    let mut ok = 0usize;
    let mut calls = 0u32;
    for i in 0..args.requests {
        let trail = Trail::default();
        let request = ChatRequest::new(
            "sim-large",
            vec![Message::user(format!("Summarise ticket #{i}"))],
        )
        .with_extension(trail.clone());
        let result: Result<ChatResponse, LlmError> = client.clone().oneshot(request).await;
        match result {
            Ok(response) => {
                ok += 1;
                calls += response.meta.attempts;
                println!(
                    "{i:>3}  {:<7} {:>8} {:>5}ms  {:<24} answered in {} ms, {} tokens",
                    "ok",
                    response.meta.attempts,
                    response.meta.retry_wait.as_millis(),
                    trail.render(),
                    response.meta.latency.as_millis(),
                    response.usage.total(),
                );
            }
            Err(error) => {
                calls += error.attempts;
                println!(
                    "{i:>3}  {:<7} {:>8} {:>7}  {:<24} {} ({}): {}",
                    "FAILED",
                    error.attempts,
                    "-",
                    trail.render(),
                    error.kind,
                    error.class(),
                    error.message
                );
            }
        }
    }
    println!(
        "\n{ok}/{} answered with {calls} provider calls in {:.1} s (without staunch: one call each, and every failure above would have reached the caller).\nFailures left are the ones retrying cannot fix: not transient, or retries spent.",
        args.requests,
        started.elapsed().as_secs_f64()
    );
}
