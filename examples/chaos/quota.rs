//! The `quota` scenario: four replicas of a service share one provider
//! account, whose quota the provider enforces, and the same skewed traffic
//! goes through them three times: (a) without quotas, (b) each replica
//! with a local `QuotaLayer` at a quarter of the limit, (c) the four
//! sharing one `staunch_redis::SharedQuotaLayer` through a Redis the demo
//! starts (skipped, with a note, when `redis-server` is not on the PATH).
//!
//! The mock has no per-window quota of its own, so the provider's quota is
//! a small wrapper in front of the OpenAI client, shared by the four
//! replicas as one account: a token bucket of `LIMIT` requests refilled
//! continuously at `LIMIT` per minute (how OpenAI and Anthropic describe
//! their limits). Beyond it, it answers 429 with `Retry-After` (the time
//! until the bucket has room) after the mock's latency, without calling
//! the mock. It sends no `x-ratelimit-*` headers, so the local quotas do
//! not learn from it; they only keep their own count.
//!
//! Each replica's stack is a fallback chain: `openai` (the limited
//! account; breaker, retry, quota, per-attempt timeout) then `anthropic`
//! (the mock's other route, unlimited), so whatever `openai` refuses is
//! answered by `anthropic`.

use super::{Args, counter_totals, html, pace};
use metrics_util::debugging::Snapshotter;
use serde::Serialize;
use staunch::TargetBuilder;
use staunch::circuit_breaker::CircuitBreakerHandle;
use staunch::core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message};
use staunch::fallback::{Fallback, Target};
use staunch::observe::names;
use staunch::quota::QuotaConfig;
use staunch_mock::MockServer;
use staunch_providers::{Anthropic, AnthropicConfig, HttpOptions, OpenAi, OpenAiConfig};
use staunch_redis::{RedisConnection, SharedQuotaConfig, SharedQuotaHandle, SharedQuotaLayer};
use staunch_test::redis::RedisServer;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

/// The provider account's quota: requests per minute, shared by every
/// replica.
const LIMIT: u64 = 120;
const REPLICAS: usize = 4;
/// How long a request may wait for room in a local quota.
const MAX_WAIT: Duration = Duration::from_millis(500);

type Client = BoxCloneSyncService<ChatRequest, ChatResponse, LlmError>;

/// Which replica serves request `i`: the traffic is skewed, 55% / 25% /
/// 15% / 5%, as a load balancer's often is.
fn replica_of(i: usize) -> usize {
    match i % 20 {
        0..=10 => 0,
        11..=15 => 1,
        16..=18 => 2,
        _ => 3,
    }
}

fn request(i: usize) -> ChatRequest {
    ChatRequest::new(
        "gpt-4o",
        vec![Message::user(format!(
            "Summarise support ticket #{} in one sentence.",
            i % 40
        ))],
    )
    .with_max_tokens(64)
}

// ---------------------------------------------------------------------------
// The provider's quota
// ---------------------------------------------------------------------------

/// What the provider saw during one run.
struct Account {
    bucket: Mutex<Bucket>,
    started: Mutex<Instant>,
    admitted: [AtomicU64; REPLICAS],
    refused: [AtomicU64; REPLICAS],
    /// Requests admitted in each second of the run.
    per_second: Mutex<Vec<u64>>,
    /// When the last request was admitted, since the start.
    last_admitted: Mutex<Duration>,
}

/// A token bucket of `LIMIT` requests, refilled at `LIMIT` per minute.
struct Bucket {
    room: f64,
    at: Instant,
}

impl Account {
    fn new() -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Account {
            bucket: Mutex::new(Bucket {
                room: LIMIT as f64,
                at: now,
            }),
            started: Mutex::new(now),
            admitted: Default::default(),
            refused: Default::default(),
            per_second: Mutex::new(Vec::new()),
            last_admitted: Mutex::new(Duration::ZERO),
        })
    }

    /// A full bucket, and the clock of the windows, from now.
    fn restart(&self) {
        let now = Instant::now();
        *self.bucket.lock().expect("bucket") = Bucket {
            room: LIMIT as f64,
            at: now,
        };
        *self.started.lock().expect("started") = now;
    }

    /// Admits one request now, or says how long until there is room.
    fn admit(&self, replica: usize) -> Result<(), Duration> {
        let rate = LIMIT as f64 / 60.0;
        let now = Instant::now();
        {
            let mut b = self.bucket.lock().expect("bucket");
            b.room = (b.room + now.duration_since(b.at).as_secs_f64() * rate).min(LIMIT as f64);
            b.at = now;
            if b.room < 1.0 {
                self.refused[replica].fetch_add(1, Ordering::Relaxed);
                return Err(Duration::from_secs_f64((1.0 - b.room) / rate));
            }
            b.room -= 1.0;
        }
        self.admitted[replica].fetch_add(1, Ordering::Relaxed);
        let since = now.duration_since(*self.started.lock().expect("started"));
        let second = since.as_secs() as usize;
        let mut windows = self.per_second.lock().expect("windows");
        if windows.len() <= second {
            windows.resize(second + 1, 0);
        }
        windows[second] += 1;
        let mut last = self.last_admitted.lock().expect("last");
        *last = (*last).max(since);
        Ok(())
    }

    fn total(counts: &[AtomicU64; REPLICAS]) -> u64 {
        counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// The OpenAI client behind the account's quota (one per replica; the
/// account is shared).
#[derive(Clone)]
struct Provider {
    inner: OpenAi,
    account: Arc<Account>,
    replica: usize,
}

impl Service<ChatRequest> for Provider {
    type Response = ChatResponse;
    type Error = LlmError;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, LlmError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        // Named: the client serves more than one kind of request.
        Service::<ChatRequest>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        match self.account.admit(self.replica) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(wait) => Box::pin(async move {
                // A round trip to be told no.
                tokio::time::sleep(Duration::from_millis(15)).await;
                Err(LlmError::new(
                    ErrorKind::RateLimited,
                    format!("Rate limit reached for requests per min (RPM): Limit {LIMIT}"),
                )
                .with_status(429)
                .with_retry_after(wait)
                .with_provider("openai"))
            }),
        }
    }
}

// ---------------------------------------------------------------------------
// The replicas
// ---------------------------------------------------------------------------

/// How a replica keeps to the account's quota.
#[derive(Clone)]
enum Keep {
    Nothing,
    Local,
    Shared(String),
}

fn http() -> HttpOptions {
    HttpOptions::new()
        .connect_timeout(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(2))
}

fn target(
    name: &'static str,
    client: Client,
    model: &'static str,
    quota: Option<QuotaConfig>,
) -> Result<(Target, CircuitBreakerHandle), Box<dyn std::error::Error>> {
    let mut builder = TargetBuilder::new(name, client)
        .breaker(super::demo_breaker(name))
        .retry(super::demo_retry())
        .attempt_timeout(Duration::from_millis(800))
        .model(model);
    if let Some(quota) = quota {
        builder = builder.quota(quota)?;
    }
    Ok(builder.build()?)
}

/// One replica's stack, its shared quota's handle in mode (c), and its
/// breakers.
type Replica = (Client, Option<SharedQuotaHandle>, [CircuitBreakerHandle; 2]);

/// One replica's stack, its shared quota's handle in mode (c), and its
/// breakers (`openai`, `anthropic`).
async fn replica(
    server: &MockServer,
    account: &Arc<Account>,
    index: usize,
    keep: &Keep,
) -> Result<Replica, Box<dyn std::error::Error>> {
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
    let provider = Provider {
        inner: openai,
        account: account.clone(),
        replica: index,
    };
    let (primary, shared) = match keep {
        Keep::Nothing => (
            target("openai", Client::new(provider), "gpt-4o", None)?,
            None,
        ),
        Keep::Local => {
            let quota = QuotaConfig::new("openai")
                .requests_per_minute(LIMIT / REPLICAS as u64)
                .max_wait(MAX_WAIT);
            (
                target("openai", Client::new(provider), "gpt-4o", Some(quota))?,
                None,
            )
        }
        Keep::Shared(url) => {
            // One connection per replica, as separate processes would have.
            let redis = RedisConnection::connect(url).await?;
            let layer = SharedQuotaLayer::new(
                SharedQuotaConfig::new("openai", redis)
                    .requests_per_minute(LIMIT)
                    .replicas(REPLICAS as u32)
                    // The same wait as the local quota's, so both compare alike.
                    .max_wait(MAX_WAIT)
                    // A loaded 2-core machine can be slower than the 50 ms default.
                    .timeout(Duration::from_millis(250)),
            );
            let handle = layer.handle();
            let client = Client::new(layer.layer(provider));
            (target("openai", client, "gpt-4o", None)?, Some(handle))
        }
    };
    let (backup, backup_breaker) = target(
        "anthropic",
        Client::new(anthropic),
        "claude-sonnet-4-5",
        None,
    )?;
    let (primary, primary_breaker) = primary;
    let chain = Fallback::new([primary, backup])?;
    Ok((
        Client::new(chain),
        shared,
        [primary_breaker, backup_breaker],
    ))
}

// ---------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------

#[derive(Default, Serialize)]
struct QuotaRun {
    name: &'static str,
    requests: u64,
    per_replica_requests: [u64; REPLICAS],
    provider_429s: u64,
    admitted: u64,
    per_replica_admitted: [u64; REPLICAS],
    admitted_per_second: Vec<u64>,
    /// What the provider's bucket allows from the start to the last
    /// admission: `LIMIT` at once plus `LIMIT` per minute.
    allowed: f64,
    refused_locally: u64,
    waited_locally: u64,
    /// Requests whose chain passed over `openai` while its breaker was
    /// open (a 429 or a refusal with `Retry-After` opens it for that long).
    skipped_breaker_open: u64,
    retries: u64,
    answered_by_openai: u64,
    answered_by_fallback: u64,
    errors: u64,
    p50_ms: f64,
    p99_ms: f64,
    wall_s: f64,
    /// Mode (c): decisions made in Redis, and made locally because Redis
    /// was slow or down.
    redis_decisions: Option<u64>,
    redis_fallbacks: Option<u64>,
    /// Every request and the breakers' states, for `--html`.
    #[serde(skip)]
    page: html::Side,
}

async fn run_one(
    name: &'static str,
    keep: Keep,
    server: &MockServer,
    args: &Args,
    snapshotter: &Snapshotter,
) -> Result<QuotaRun, Box<dyn std::error::Error>> {
    server.reset();
    let _ = counter_totals(snapshotter); // nothing of an earlier run counts
    let mut clients = Vec::new();
    let mut handles = Vec::new();
    let mut breakers = Vec::new();
    let account = Account::new();
    for i in 0..REPLICAS {
        let (client, handle, [a, b]) = replica(server, &account, i, &keep).await?;
        clients.push(client);
        handles.extend(handle);
        let replica = i + 1;
        breakers.push((format!("replica {replica} {}", a.name()), a));
        breakers.push((format!("replica {replica} {}", b.name()), b));
    }
    // The provider's bucket starts full when the traffic starts.
    account.restart();
    let mut run = QuotaRun {
        name,
        ..QuotaRun::default()
    };
    let mut latencies = Vec::new();
    let mut trace = Vec::new();
    let started = Instant::now();
    let watch = html::Watch::start(breakers, started);
    pace(
        name,
        args,
        |i| {
            let client = clients[replica_of(i)].clone();
            async move {
                let begun = Instant::now();
                let result = client.oneshot(request(i)).await;
                (
                    replica_of(i),
                    result,
                    begun.duration_since(started),
                    begun.elapsed(),
                )
            }
        },
        |(replica, result, sent, latency)| {
            run.requests += 1;
            run.per_replica_requests[replica] += 1;
            latencies.push(latency);
            trace.push(html::Request {
                sent,
                latency,
                outcome: match &result {
                    Ok(answer) => html::Outcome::Answered(answer.meta.tier),
                    Err(e) => html::Outcome::Error(e.kind.as_str().to_owned()),
                },
                depth: result.as_ref().ok().map(|a| a.meta.fallback_depth),
                model: result.as_ref().ok().map(|a| a.answered_model().to_owned()),
            });
            match result {
                Ok(answer) if answer.meta.target.as_deref() == Some("openai") => {
                    run.answered_by_openai += 1
                }
                Ok(_) => run.answered_by_fallback += 1,
                Err(_) => run.errors += 1,
            }
        },
    )
    .await;
    let tracks = watch.stop().await;
    run.wall_s = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    run.p50_ms = pick(0.50);
    run.p99_ms = pick(0.99);
    run.admitted = Account::total(&account.admitted);
    run.provider_429s = Account::total(&account.refused);
    for r in 0..REPLICAS {
        run.per_replica_admitted[r] = account.admitted[r].load(Ordering::Relaxed);
    }
    run.admitted_per_second = account.per_second.lock().expect("windows").clone();
    let last = *account.last_admitted.lock().expect("last");
    run.allowed = LIMIT as f64 * (1.0 + last.as_secs_f64() / 60.0);
    let totals = counter_totals(snapshotter);
    let total = |name: &str| totals.get(name).copied().unwrap_or(0);
    run.skipped_breaker_open = total(names::FALLBACK_SKIPS);
    run.retries = total(names::RETRIES);
    if handles.is_empty() {
        run.refused_locally = total(names::QUOTA_REFUSALS);
        run.waited_locally = total(names::QUOTA_WAITS);
    } else {
        run.refused_locally = handles.iter().map(|h| h.refused()).sum();
        run.waited_locally = handles.iter().map(|h| h.waited()).sum();
        run.redis_decisions = Some(handles.iter().map(|h| h.redis_decisions()).sum());
        run.redis_fallbacks = Some(handles.iter().map(|h| h.fallbacks()).sum());
    }
    run.page = html::Side {
        name: name.to_owned(),
        requests: trace,
        breakers: Some(tracks),
        facts: page_facts(&run),
        wall: started.elapsed(),
    };
    Ok(run)
}

/// The header card's numbers of one run on the `--html` page.
fn page_facts(r: &QuotaRun) -> Vec<(String, String)> {
    let mut facts = vec![
        (
            "provider calls (admitted + 429s)",
            (r.admitted + r.provider_429s).to_string(),
        ),
        ("429s from the provider", r.provider_429s.to_string()),
        (
            "admitted / allowed by its bucket",
            format!("{} / {:.0}", r.admitted, r.allowed.floor()),
        ),
        (
            "refused / waited in the replicas' quota",
            format!("{} / {}", r.refused_locally, r.waited_locally),
        ),
        (
            "openai passed over (breaker open)",
            r.skipped_breaker_open.to_string(),
        ),
        ("retries", r.retries.to_string()),
        (
            "answered by openai / fallback",
            format!("{} / {}", r.answered_by_openai, r.answered_by_fallback),
        ),
        ("errors reaching the caller", r.errors.to_string()),
        (
            "latency p50 / p99",
            format!("{:.0} / {:.0} ms", r.p50_ms, r.p99_ms),
        ),
        ("wall time", format!("{:.1} s", r.wall_s)),
    ];
    if let (Some(d), Some(f)) = (r.redis_decisions, r.redis_fallbacks) {
        facts.push(("Redis decisions / made locally", format!("{d} / {f}")));
    }
    facts
        .into_iter()
        .map(|(label, value)| (label.to_owned(), value))
        .collect()
}

// ---------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------

pub async fn run(
    args: Args,
    server: MockServer,
    snapshotter: Snapshotter,
) -> Result<(), Box<dyn std::error::Error>> {
    if !args.json {
        println!(
            "chaos scenario \"quota\": {} requests at {}/s, at most {} in flight, over {REPLICAS} replicas \
             (55% / 25% / 15% / 5% of the traffic), mock LLM server on {}",
            args.requests,
            args.rate,
            args.concurrency,
            server.url()
        );
        println!(
            "the provider account allows {LIMIT} requests/min, shared by the replicas: a token bucket of \
             {LIMIT} refilled at {LIMIT}/min, enforced by a wrapper in front of the mock's OpenAI route \
             (the mock has no per-window quota), 429 + Retry-After beyond it; refused requests fall back \
             to the mock's Anthropic route"
        );
    }
    let mut runs = vec![
        run_one("(a) no quota", Keep::Nothing, &server, &args, &snapshotter).await?,
        run_one(
            "(b) local quota x4",
            Keep::Local,
            &server,
            &args,
            &snapshotter,
        )
        .await?,
    ];
    // A redis-server on a free loopback port, killed on drop.
    let redis = RedisServer::try_start()?;
    let skipped = match &redis {
        Some(redis) => {
            runs.push(
                run_one(
                    "(c) shared (Redis)",
                    Keep::Shared(redis.url()),
                    &server,
                    &args,
                    &snapshotter,
                )
                .await?,
            );
            None
        }
        None => Some("(c) skipped: redis-server is not on the PATH (apt-get install redis-server)"),
    };
    drop(redis);
    let mut notes = vec![
        format!(
            "Four replicas share one provider account of {LIMIT} requests/min (a token bucket \
             in front of the mock's OpenAI route, 429 with Retry-After beyond it); what it \
             refuses falls back to the Anthropic route. The traffic is skewed over the \
             replicas: 55% / 25% / 15% / 5%."
        ),
        super::breaker_note(),
    ];
    notes.extend(skipped.map(str::to_owned));
    super::write_page(&args, runs.iter().map(|r| r.page.clone()).collect(), notes)?;

    if args.json {
        let report = serde_json::json!({
            "scenario": "quota",
            "seed": args.seed,
            "requests": args.requests,
            "concurrency": args.concurrency,
            "rate": args.rate,
            "limit_per_minute": LIMIT,
            "replicas": REPLICAS,
            "runs": runs,
            "skipped": skipped,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print(&runs);
    println!();
    println!(
        "(b): each replica {} requests/min, waiting at most {} ms; (c): one bucket of {LIMIT}/min in \
         Redis (one decision per request, no lease, waiting at most as long). Over a run shorter than a minute the bucket \
         allows {LIMIT} at once and then {}/s.",
        LIMIT / REPLICAS as u64,
        MAX_WAIT.as_millis(),
        LIMIT / 60
    );
    if let Some(note) = skipped {
        println!("{note}");
    }
    Ok(())
}

fn print(runs: &[QuotaRun]) {
    let col = |f: &dyn Fn(&QuotaRun) -> String| runs.iter().map(f).collect::<Vec<_>>();
    let per_replica =
        |v: &[u64; REPLICAS]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(" / ");
    let rows: Vec<(&str, Vec<String>)> = vec![
        ("requests", col(&|r| r.requests.to_string())),
        (
            "  per replica",
            col(&|r| per_replica(&r.per_replica_requests)),
        ),
        (
            "429s from the provider",
            col(&|r| r.provider_429s.to_string()),
        ),
        ("admitted by the provider", col(&|r| r.admitted.to_string())),
        (
            "  per replica",
            col(&|r| per_replica(&r.per_replica_admitted)),
        ),
        (
            "  allowed by its bucket",
            col(&|r| format!("{:.0}", r.allowed.floor())),
        ),
        (
            "refused by the replicas' quota",
            col(&|r| r.refused_locally.to_string()),
        ),
        ("  waited for room", col(&|r| r.waited_locally.to_string())),
        (
            "openai passed over (breaker open)",
            col(&|r| r.skipped_breaker_open.to_string()),
        ),
        ("retries", col(&|r| r.retries.to_string())),
        (
            "answered by openai / fallback",
            col(&|r| format!("{} / {}", r.answered_by_openai, r.answered_by_fallback)),
        ),
        ("errors reaching the caller", col(&|r| r.errors.to_string())),
        (
            "latency p50 / p99",
            col(&|r| format!("{:.0} / {:.0} ms", r.p50_ms, r.p99_ms)),
        ),
        ("wall time", col(&|r| format!("{:.1} s", r.wall_s))),
    ];
    println!();
    print!("{:<34}", "");
    for r in runs {
        print!(" {:>22}", r.name);
    }
    println!();
    println!("{}", "-".repeat(34 + 23 * runs.len()));
    for (label, values) in rows {
        print!("{label:<34}");
        for v in values {
            print!(" {v:>22}");
        }
        println!();
    }
    println!();
    println!("admitted by the provider per 1 s window (the aggregate rate of the replicas):");
    for r in runs {
        let windows: Vec<String> = r.admitted_per_second.iter().map(u64::to_string).collect();
        let extra = match (r.redis_decisions, r.redis_fallbacks) {
            (Some(d), Some(f)) => format!("   ({d} Redis decisions, {f} made locally)"),
            _ => String::new(),
        };
        println!("  {:<20} {}{extra}", r.name, windows.join(" "));
    }
}
