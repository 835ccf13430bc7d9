//! The `tail` scenario: one model on two deployments, each its own mock
//! server. `slow` has a heavy latency tail (10 % of its answers take 2–4 s
//! more) and an account that allows `LIMIT` requests per 1 s window (429
//! with `Retry-After` beyond it); `healthy` has neither. Both answer with
//! the same skewed latency otherwise (100 ms plus 0–450 ms: p50 about
//! 220 ms, p99 about 550 ms), as a real deployment's latency is never
//! constant.
//!
//! The same requests go, at the same pace, through:
//!
//! 1. each deployment alone (a caller stuck with `slow`, and `healthy`'s
//!    own p99, the goal's yardstick);
//! 2. a [`Balance`] of both (power of two choices over peak-EWMA latency),
//!    each deployment behind its own breaker, retry and attempt timeout;
//! 3. that balance under a [`HedgeLayer`]: once a call has run longer than
//!    the p95 of the answers seen, one more attempt goes to the other
//!    deployment, within a budget of 5 % of calls.
//!
//! The mock has no request rate limit of its own, so `slow`'s account is a
//! small wrapper in front of its client (as in `quota.rs`): fixed 1 s
//! windows of `LIMIT` requests, as Azure OpenAI counts its per-minute
//! limits in short windows; beyond it, a 429 with `Retry-After` until the
//! window ends, without calling the mock.

use super::{Args, html, pace};
use metrics_util::debugging::{DebugValue, Snapshotter};
use serde::Serialize;
use staunch::TargetBuilder;
use staunch::balance::{Balance, BalanceConfig, Deployment, FAILOVERS};
use staunch::circuit_breaker::CircuitBreakerHandle;
use staunch::core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message};
use staunch::hedge::{HEDGES, HedgeAfter, HedgeBudget, HedgeConfig, HedgeLayer};
use staunch::observe::names;
use staunch_mock::{Fault, MockServer, RandomFault, Route, Scenario};
use staunch_providers::{HttpOptions, OpenAi, OpenAiConfig};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

type Client = BoxCloneSyncService<ChatRequest, ChatResponse, LlmError>;

/// Requests `slow`'s account admits per window.
pub const LIMIT: u64 = 40;
/// The account's window.
const WINDOW: Duration = Duration::from_secs(1);
/// The goals of issue 25.
const P99_FACTOR: f64 = 1.5;
const EXTRA_CALLS_PCT: f64 = 5.0;
/// The base latency of both deployments, in ms.
const BASE_MS: u64 = 100;
/// Extra latency on top of the base (ms) and its chance in percent; the
/// rest of the answers get none. A skewed spread, as real latencies are.
const SPREAD: [(u64, f64); 9] = [
    (40, 20.0),
    (80, 20.0),
    (120, 15.0),
    (160, 12.0),
    (200, 9.0),
    (250, 6.0),
    (300, 4.0),
    (380, 2.5),
    (450, 1.5),
];
/// `slow`'s tail: 10 % of its answers take 2, 3 or 4 s more.
const TAIL: [(u64, f64); 3] = [(2_000, 3.4), (3_000, 3.3), (4_000, 3.3)];

/// Random faults that give each extra latency of `table` (ms, percent of
/// all requests) its share: the mock draws its faults in order and the
/// first that hits wins, so each probability is the share over what the
/// earlier ones left.
fn latencies(table: &[(u64, f64)]) -> Vec<RandomFault> {
    let mut left = 100.0;
    let mut faults = Vec::new();
    for &(ms, percent) in table {
        let probability = if left > 0.0 {
            (percent / left).min(1.0)
        } else {
            0.0
        };
        left -= percent;
        faults.push(RandomFault {
            probability,
            fault: Fault::Latency { ms },
        });
    }
    faults
}

fn scenario(seed: u64, table: &[(u64, f64)]) -> Scenario {
    let mut s = Scenario {
        seed,
        latency_ms: BASE_MS,
        ..Scenario::default()
    };
    s.openai.random = latencies(table);
    s
}

/// The slow deployment's mock: the tail, then the common spread.
pub fn slow(seed: u64) -> Scenario {
    let rest = 100.0 - TAIL.iter().map(|t| t.1).sum::<f64>();
    let table: Vec<(u64, f64)> = TAIL
        .iter()
        .copied()
        .chain(SPREAD.iter().map(|&(ms, p)| (ms, p * rest / 100.0)))
        .collect();
    scenario(seed, &table)
}

/// The healthy deployment's mock: the common spread only.
pub fn healthy(seed: u64) -> Scenario {
    scenario(seed.wrapping_add(1), &SPREAD)
}

fn request(i: usize) -> ChatRequest {
    ChatRequest::new(
        "gpt-4o",
        vec![
            Message::system("You are a support agent. Be brief."),
            Message::user(format!(
                "Summarise support ticket #{} in one sentence.",
                i % 40
            )),
        ],
    )
    .with_max_tokens(64)
}

// ---------------------------------------------------------------------------
// The slow deployment's account
// ---------------------------------------------------------------------------

/// Fixed windows of `LIMIT` requests.
struct Account {
    window: Mutex<(Instant, u64)>,
    refused: AtomicU64,
}

impl Account {
    fn new() -> Arc<Self> {
        Arc::new(Account {
            window: Mutex::new((Instant::now(), 0)),
            refused: AtomicU64::new(0),
        })
    }

    /// Admits one request now, or says how long until the next window.
    fn admit(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut w = self.window.lock().expect("window");
        let passed = now.duration_since(w.0).as_nanos() / WINDOW.as_nanos();
        if passed > 0 {
            w.0 += WINDOW * passed as u32;
            w.1 = 0;
        }
        if w.1 >= LIMIT {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err((w.0 + WINDOW).saturating_duration_since(now));
        }
        w.1 += 1;
        Ok(())
    }
}

/// A deployment's client, behind its account's limit when it has one.
#[derive(Clone)]
struct Provider {
    inner: OpenAi,
    account: Option<Arc<Account>>,
}

impl Service<ChatRequest> for Provider {
    type Response = ChatResponse;
    type Error = LlmError;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, LlmError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Service::<ChatRequest>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        match self.account.as_ref().map_or(Ok(()), |a| a.admit()) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(wait) => Box::pin(async move {
                // A round trip to be told no.
                tokio::time::sleep(Duration::from_millis(10)).await;
                Err(LlmError::new(
                    ErrorKind::RateLimited,
                    format!("Requests to this deployment exceeded {LIMIT} per second"),
                )
                .with_status(429)
                .with_retry_after(wait)
                .with_provider("openai"))
            }),
        }
    }
}

// ---------------------------------------------------------------------------
// The stacks
// ---------------------------------------------------------------------------

/// Which run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    SlowAlone,
    HealthyAlone,
    Balanced,
    Hedged,
}

impl Mode {
    const ALL: [Mode; 4] = [
        Mode::SlowAlone,
        Mode::HealthyAlone,
        Mode::Balanced,
        Mode::Hedged,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::SlowAlone => "(1) slow alone",
            Mode::HealthyAlone => "(1) healthy alone",
            Mode::Balanced => "(2) balanced",
            Mode::Hedged => "(3) balanced + hedged",
        }
    }
}

/// One deployment: its client behind its own breaker, retry and attempt
/// timeout.
fn deployment(
    name: &'static str,
    server: &MockServer,
    account: Option<Arc<Account>>,
) -> Result<(Deployment, CircuitBreakerHandle), Box<dyn std::error::Error>> {
    let inner = OpenAi::new(
        OpenAiConfig::new()
            .base_url(server.openai_base_url())
            .no_api_key()
            .http(
                HttpOptions::new()
                    .connect_timeout(Duration::from_secs(1))
                    .request_timeout(Duration::from_secs(10)),
            ),
    )?;
    Ok(TargetBuilder::new(name, Provider { inner, account })
        .breaker(super::demo_breaker(name))
        // A deployment that asks for a longer wait is left to the other:
        // its breaker opens for the wait and the balancer moves the call on.
        .retry(super::demo_retry().max_retry_after(Duration::from_millis(100)))
        // Longer than the tail: the tail is slowness to route around, not
        // a failure.
        .attempt_timeout(Duration::from_secs(8))
        .model("gpt-4o")
        .build_deployment()?)
}

/// A run's breakers, by name.
type Breakers = Vec<(String, CircuitBreakerHandle)>;

/// The client of `mode` and the breakers it has.
fn client(
    mode: Mode,
    slow: &MockServer,
    healthy: &MockServer,
    account: &Arc<Account>,
    seed: u64,
) -> Result<(Client, Breakers), Box<dyn std::error::Error>> {
    let config = BalanceConfig::new("gpt-4o").seed(seed);
    let mut deployments = Vec::new();
    let mut breakers = Vec::new();
    if mode != Mode::HealthyAlone {
        let (d, b) = deployment("slow", slow, Some(account.clone()))?;
        deployments.push(d);
        breakers.push(("slow".to_owned(), b));
    }
    if mode != Mode::SlowAlone {
        let (d, b) = deployment("healthy", healthy, None)?;
        deployments.push(d);
        breakers.push(("healthy".to_owned(), b));
    }
    // A balance of one is the deployment's stack with its name in the
    // answer's meta.
    let balance = Balance::new(config, deployments)?;
    let client = if mode == Mode::Hedged {
        let hedge = HedgeLayer::new(
            HedgeConfig::new()
                .after(HedgeAfter::Quantile(0.95))
                .budget(HedgeBudget::default()),
        )?;
        Client::new(hedge.layer(balance))
    } else {
        Client::new(balance)
    };
    Ok((client, breakers))
}

// ---------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------

/// What one run measured.
#[derive(Clone, Default, Serialize)]
pub struct TailRun {
    pub name: &'static str,
    pub requests: u64,
    pub answered: u64,
    /// Answers by the deployment that gave them.
    pub answered_by: BTreeMap<String, u64>,
    /// Errors that reached the callers, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Errors with status 429 (or kind `rate_limited`) that reached callers.
    pub caller_429s: u64,
    /// Calls that reached a provider (cancelled hedges and 429s included).
    pub provider_calls: u64,
    pub provider_429s: u64,
    pub hedges_sent: u64,
    pub hedges_won: u64,
    pub hedges_refused_by_budget: u64,
    pub retries: u64,
    pub failovers: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub wall_s: f64,
    #[serde(skip)]
    latencies: Vec<Duration>,
    #[serde(skip)]
    page: html::Side,
}

impl TailRun {
    /// Provider calls beyond one per request, in percent of requests.
    pub fn extra_calls_pct(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        (self.provider_calls as f64 - self.requests as f64) * 100.0 / self.requests as f64
    }

    fn record(
        &mut self,
        result: &Result<ChatResponse, LlmError>,
        sent: Duration,
        latency: Duration,
    ) {
        self.requests += 1;
        self.latencies.push(latency);
        match result {
            Ok(answer) => {
                self.answered += 1;
                let by = answer.meta.deployment.as_deref().unwrap_or("(not said)");
                *self.answered_by.entry(by.to_owned()).or_default() += 1;
            }
            Err(e) => {
                *self.errors.entry(e.kind.as_str().to_owned()).or_default() += 1;
                if e.status == Some(429) || e.kind == ErrorKind::RateLimited {
                    self.caller_429s += 1;
                }
            }
        }
        self.page.requests.push(html::Request {
            sent,
            latency,
            outcome: match result {
                Ok(answer) => html::Outcome::Answered(answer.meta.tier),
                Err(e) => html::Outcome::Error(e.kind.as_str().to_owned()),
            },
            depth: result.as_ref().ok().map(|a| a.meta.fallback_depth),
            model: result.as_ref().ok().map(|a| {
                format!(
                    "{} @ {}",
                    a.answered_model(),
                    a.meta.deployment.as_deref().unwrap_or("?")
                )
            }),
        });
    }

    fn finish(&mut self, wall: Duration) {
        self.wall_s = wall.as_secs_f64();
        self.latencies.sort_unstable();
        self.p50_ms = quantile_ms(&self.latencies, 0.50);
        self.p99_ms = quantile_ms(&self.latencies, 0.99);
    }
}

/// The `q` quantile of sorted `latencies` (nearest rank), in ms.
fn quantile_ms(latencies: &[Duration], q: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
    latencies[i].as_secs_f64() * 1e3
}

/// Counters by name and by (name, outcome label), from one snapshot (a
/// snapshot drains the counters).
fn counters(snapshotter: &Snapshotter) -> BTreeMap<(String, String), u64> {
    let mut totals = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if let DebugValue::Counter(n) = value {
            let name = key.key().name().to_owned();
            let outcome = key
                .key()
                .labels()
                .find(|l| l.key() == "outcome")
                .map(|l| l.value().to_owned())
                .unwrap_or_default();
            *totals.entry((name.clone(), String::new())).or_default() += n;
            if !outcome.is_empty() {
                *totals.entry((name, outcome)).or_default() += n;
            }
        }
    }
    totals
}

async fn run_one(
    mode: Mode,
    slow: &MockServer,
    healthy: &MockServer,
    args: &Args,
    snapshotter: &Snapshotter,
) -> Result<TailRun, Box<dyn std::error::Error>> {
    slow.reset();
    healthy.reset();
    let _ = counters(snapshotter); // nothing of an earlier run counts
    let account = Account::new();
    let (client, breakers) = client(mode, slow, healthy, &account, args.seed)?;
    let mut run = TailRun {
        name: mode.name(),
        ..TailRun::default()
    };
    let started = Instant::now();
    let watch = html::Watch::start(breakers, started);
    pace(
        mode.name(),
        args,
        |i| {
            let client = client.clone();
            async move {
                let begun = Instant::now();
                let result = client.oneshot(request(i)).await;
                (result, begun.duration_since(started), begun.elapsed())
            }
        },
        |(result, sent, latency)| run.record(&result, sent, latency),
    )
    .await;
    let tracks = watch.stop().await;
    run.finish(started.elapsed());
    run.provider_429s = account.refused.load(Ordering::Relaxed);
    run.provider_calls = slow.stats().requests_to(Route::OpenAi)
        + healthy.stats().requests_to(Route::OpenAi)
        + run.provider_429s;
    let totals = counters(snapshotter);
    let get = |name: &str, outcome: &str| {
        totals
            .get(&(name.to_owned(), outcome.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    run.retries = get(names::RETRIES, "");
    run.failovers = get(FAILOVERS, "");
    run.hedges_sent = get(HEDGES, "sent");
    run.hedges_won = get(HEDGES, "won");
    run.hedges_refused_by_budget = get(HEDGES, "budget");
    run.page.name = mode.name().to_owned();
    run.page.breakers = Some(tracks);
    run.page.wall = started.elapsed();
    Ok(run)
}

// ---------------------------------------------------------------------------
// The goals
// ---------------------------------------------------------------------------

/// Issue 25's goals for one run, against the healthy deployment's p99.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Goals {
    /// p99 over the healthy deployment's own p99.
    pub p99_ratio: f64,
    /// p99 within 1.5× the healthy deployment's own.
    pub p99_ok: bool,
    pub extra_calls_pct: f64,
    /// Extra provider calls at most 5 % of requests.
    pub extra_calls_ok: bool,
    /// No 429 reached a caller.
    pub no_429_ok: bool,
}

impl Goals {
    pub fn of(run: &TailRun, healthy_p99_ms: f64) -> Goals {
        let p99_ratio = if healthy_p99_ms > 0.0 {
            run.p99_ms / healthy_p99_ms
        } else {
            f64::INFINITY
        };
        let extra_calls_pct = run.extra_calls_pct();
        Goals {
            p99_ratio,
            p99_ok: p99_ratio <= P99_FACTOR,
            extra_calls_pct,
            extra_calls_ok: extra_calls_pct <= EXTRA_CALLS_PCT,
            no_429_ok: run.caller_429s == 0,
        }
    }

    pub fn all(&self) -> bool {
        self.p99_ok && self.extra_calls_ok && self.no_429_ok
    }
}

fn facts(run: &TailRun, goals: &Goals) -> Vec<(String, String)> {
    let yes = |ok: bool| if ok { "met" } else { "missed" };
    let mut facts = vec![
        (
            "answered".to_owned(),
            format!("{} / {}", run.answered, run.requests),
        ),
        ("answered by".to_owned(), by(run)),
        (
            "latency p50 / p99".to_owned(),
            format!("{:.0} / {:.0} ms", run.p50_ms, run.p99_ms),
        ),
        (
            "provider calls (extra)".to_owned(),
            format!("{} ({:+.1} %)", run.provider_calls, goals.extra_calls_pct),
        ),
        (
            "hedges sent / won".to_owned(),
            format!("{} / {}", run.hedges_sent, run.hedges_won),
        ),
        (
            "429s at the providers / seen by callers".to_owned(),
            format!("{} / {}", run.provider_429s, run.caller_429s),
        ),
        ("other errors seen by callers".to_owned(), errors(run)),
        ("wall time".to_owned(), format!("{:.1} s", run.wall_s)),
    ];
    // The goals are the balanced runs'.
    if run.name.starts_with("(1)") {
        return facts;
    }
    facts.push((
        "goals: p99 ≤ 1.5× healthy, extra ≤ 5 %, no 429".to_owned(),
        format!(
            "{} ({:.2}×), {}, {}",
            yes(goals.p99_ok),
            goals.p99_ratio,
            yes(goals.extra_calls_ok),
            yes(goals.no_429_ok)
        ),
    ));
    facts
}

fn by(run: &TailRun) -> String {
    let n = |d: &str| run.answered_by.get(d).copied().unwrap_or(0);
    format!("{} slow / {} healthy", n("slow"), n("healthy"))
}

fn errors(run: &TailRun) -> String {
    let other: Vec<String> = run
        .errors
        .iter()
        .filter(|(kind, _)| kind.as_str() != ErrorKind::RateLimited.as_str())
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    if other.is_empty() {
        "0".to_owned()
    } else {
        other.join(", ")
    }
}

// ---------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------

pub async fn run(
    args: Args,
    slow_server: MockServer,
    snapshotter: Snapshotter,
) -> Result<(), Box<dyn std::error::Error>> {
    let healthy_server = MockServer::start(healthy(args.seed)).await?;
    if !args.json {
        println!(
            "chaos scenario \"tail\" (seed {}): {} requests per run at {}/s, at most {} in flight; \
             one model on two deployments, each its own mock LLM server ({} and {})",
            args.seed,
            args.requests,
            args.rate,
            args.concurrency,
            slow_server.url(),
            healthy_server.url()
        );
        println!(
            "both answer in {BASE_MS} ms + 0–450 ms (skewed); \"slow\" adds 2–4 s to 10 % of its \
             answers and allows {LIMIT} requests per 1 s window (429 + Retry-After beyond)"
        );
    }
    let mut runs = Vec::new();
    for mode in Mode::ALL {
        runs.push(run_one(mode, &slow_server, &healthy_server, &args, &snapshotter).await?);
    }
    let healthy_p99 = runs[1].p99_ms;
    let goals: Vec<Goals> = runs.iter().map(|r| Goals::of(r, healthy_p99)).collect();
    for (run, goals) in runs.iter_mut().zip(&goals) {
        run.page.facts = facts(run, goals);
    }
    super::write_page(
        &args,
        runs.iter().map(|r| r.page.clone()).collect(),
        vec![
            format!(
                "One model on two deployments, each its own mock server: \"slow\" adds 2–4 s \
                 to 10 % of its answers and allows {LIMIT} requests per 1 s window (429 with \
                 Retry-After beyond); \"healthy\" has neither. (1) each alone; (2) a Balance \
                 of both (p2c over peak-EWMA latency), each deployment behind its own breaker, \
                 retry and attempt timeout; (3) the balance under a HedgeLayer (after the p95 \
                 of the answers seen, budget 5 % of calls). \"Answered by model\" names the \
                 deployment after the @."
            ),
            super::breaker_note(),
        ],
    )?;
    if args.json {
        let report = serde_json::json!({
            "scenario": "tail",
            "seed": args.seed,
            "requests": args.requests,
            "concurrency": args.concurrency,
            "rate": args.rate,
            "slow_limit_per_second": LIMIT,
            "healthy_p99_ms": healthy_p99,
            "runs": runs,
            "goals": goals,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print(&runs, &goals);
    Ok(())
}

fn print(runs: &[TailRun], goals: &[Goals]) {
    let col = |f: &dyn Fn(&TailRun, &Goals) -> String| {
        runs.iter()
            .zip(goals)
            .map(|(r, g)| f(r, g))
            .collect::<Vec<_>>()
    };
    // The goals are the balanced runs'; the runs of one deployment are
    // the baselines (and the healthy one the yardstick).
    let yes = |r: &TailRun, ok: bool| {
        if r.name.starts_with("(1)") {
            "-"
        } else if ok {
            "met"
        } else {
            "MISSED"
        }
        .to_owned()
    };
    let rows: Vec<(&str, Vec<String>)> = vec![
        ("requests", col(&|r, _| r.requests.to_string())),
        ("answered", col(&|r, _| r.answered.to_string())),
        (
            "  by slow / healthy",
            col(&|r, _| {
                let n = |d: &str| r.answered_by.get(d).copied().unwrap_or(0);
                format!("{} / {}", n("slow"), n("healthy"))
            }),
        ),
        (
            "latency p50 (ms, all requests)",
            col(&|r, _| format!("{:.0}", r.p50_ms)),
        ),
        ("latency p99 (ms)", col(&|r, _| format!("{:.0}", r.p99_ms))),
        (
            "  p99 / healthy p99",
            col(&|_, g| format!("{:.2}×", g.p99_ratio)),
        ),
        ("provider calls", col(&|r, _| r.provider_calls.to_string())),
        (
            "  per request",
            col(&|r, _| format!("{:.3}", r.provider_calls as f64 / r.requests.max(1) as f64)),
        ),
        (
            "  extra calls",
            col(&|_, g| format!("{:+.1} %", g.extra_calls_pct)),
        ),
        (
            "  hedges sent / won",
            col(&|r, _| format!("{} / {}", r.hedges_sent, r.hedges_won)),
        ),
        (
            "  hedges refused by budget",
            col(&|r, _| r.hedges_refused_by_budget.to_string()),
        ),
        (
            "  retries / failovers",
            col(&|r, _| format!("{} / {}", r.retries, r.failovers)),
        ),
        (
            "429s at the providers",
            col(&|r, _| r.provider_429s.to_string()),
        ),
        (
            "429s seen by callers",
            col(&|r, _| r.caller_429s.to_string()),
        ),
        ("other errors seen by callers", col(&|r, _| errors(r))),
        ("wall time", col(&|r, _| format!("{:.1} s", r.wall_s))),
        (
            "goal: p99 ≤ 1.5× healthy p99",
            col(&|r, g| yes(r, g.p99_ok)),
        ),
        (
            "goal: extra calls ≤ 5 %",
            col(&|r, g| yes(r, g.extra_calls_ok)),
        ),
        (
            "goal: no 429 reaching a caller",
            col(&|r, g| yes(r, g.no_429_ok)),
        ),
    ];
    println!();
    print!("{:<32}", "");
    for r in runs {
        print!(" {:>22}", r.name);
    }
    println!();
    println!("{}", "-".repeat(32 + 23 * runs.len()));
    for (label, values) in rows {
        print!("{label:<32}");
        for v in values {
            print!(" {v:>22}");
        }
        println!();
    }
    println!();
    let hedged = &goals[goals.len() - 1];
    println!(
        "balanced + hedged: {}",
        if hedged.all() {
            "every goal met".to_owned()
        } else {
            let missed: Vec<&str> = [
                (hedged.p99_ok, "p99 ≤ 1.5× the healthy deployment's"),
                (hedged.extra_calls_ok, "extra calls ≤ 5 %"),
                (hedged.no_429_ok, "no 429 reaching a caller"),
            ]
            .iter()
            .filter(|(ok, _)| !ok)
            .map(|(_, what)| *what)
            .collect();
            format!("missed: {} (see the README)", missed.join("; "))
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chance of each latency after the mock's in-order draws.
    fn marginals(faults: &[RandomFault]) -> Vec<f64> {
        let mut left = 1.0;
        faults
            .iter()
            .map(|f| {
                let hit = left * f.probability;
                left -= hit;
                hit * 100.0
            })
            .collect()
    }

    #[test]
    fn each_latency_gets_its_share_of_all_requests() {
        let got = marginals(&latencies(&SPREAD));
        for (g, (_, want)) in got.iter().zip(SPREAD) {
            assert!((g - want).abs() < 1e-9, "{got:?}");
        }
        let slow = slow(1).openai.random;
        let got = marginals(&slow);
        let tail: f64 = got[..3].iter().sum();
        assert!((tail - 10.0).abs() < 1e-9, "10 % in the tail: {got:?}");
        assert!(got.iter().sum::<f64>() < 100.0, "some get no extra");
        assert!(slow.iter().all(|f| (0.0..=1.0).contains(&f.probability)));
    }

    fn run(requests: u64, calls: u64, p99_ms: f64, caller_429s: u64) -> TailRun {
        TailRun {
            requests,
            provider_calls: calls,
            p99_ms,
            caller_429s,
            ..TailRun::default()
        }
    }

    #[test]
    fn the_goals_hold_at_their_bounds_and_not_past_them() {
        let g = Goals::of(&run(1_000, 1_050, 600.0, 0), 400.0);
        assert!(g.all(), "{g:?}");
        assert!((g.extra_calls_pct - 5.0).abs() < 1e-9);
        let g = Goals::of(&run(1_000, 1_051, 601.0, 1), 400.0);
        assert!(!g.p99_ok && !g.extra_calls_ok && !g.no_429_ok, "{g:?}");
        // No yardstick: the p99 goal can't hold.
        assert!(!Goals::of(&run(10, 10, 1.0, 0), 0.0).p99_ok);
    }

    #[test]
    fn the_account_refuses_past_its_limit_until_the_next_window() {
        let account = Account::new();
        for _ in 0..LIMIT {
            account.admit().unwrap();
        }
        let wait = account.admit().unwrap_err();
        assert!(wait <= WINDOW && wait > Duration::ZERO);
        assert_eq!(account.refused.load(Ordering::Relaxed), 1);
        // The window has passed.
        account.window.lock().unwrap().0 -= WINDOW;
        account.admit().unwrap();
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let l: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&l, 0.5), 51.0);
        assert_eq!(quantile_ms(&l, 0.99), 99.0);
        assert_eq!(quantile_ms(&[], 0.99), 0.0);
    }
}
