//! `[shared]`: gateways in one process, as replicas, sharing a target's
//! quota and breaker through a real `redis-server` (started on a free
//! loopback port, killed at the end), and keeping on answering while it
//! is paused, killed and restarted empty. The provider is the mock.

mod common;

use serde_json::json;
use staunch_gateway::Gateway;
use staunch_gateway::config::Config;
use staunch_mock::{Fault, MockServer, Route, Scenario};
use staunch_test::http::{HttpClient, client, send};
use staunch_test::redis::RedisServer;
use std::time::{Duration, Instant};

/// Requests per minute of the shared target.
const LIMIT: u64 = 20;

/// `*` to `limited/primary` (the quota, no retry) then `spare/spare`, both
/// the mock (OpenAI's and Anthropic's routes, so that its counts tell
/// them apart), with `shared` as the `[shared]` table's body (none: no
/// table).
fn config(mock: &MockServer, shared: Option<&str>) -> Config {
    let shared = shared.map_or(String::new(), |body| format!("[shared]\n{body}"));
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"

{shared}

[providers.limited]
kind = "openai-compatible"
base_url = "{openai}"

[providers.spare]
kind = "anthropic"
base_url = "{anthropic}"

[[routes]]
model = "*"
  [[routes.targets]]
  provider = "limited"
  model = "primary"
  retry = {{ max_retries = 0 }}
  breaker = {{ consecutive_failures = 3, break_secs = 30, break_jitter = 0.0 }}
  quota = {{ requests_per_minute = {LIMIT}, max_wait_ms = 0 }}
  [[routes.targets]]
  provider = "spare"
  model = "spare"
"#,
        openai = mock.openai_base_url(),
        anthropic = mock.anthropic_base_url(),
    );
    Config::parse(&text, "shared.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn shared_table(redis: &RedisServer) -> String {
    format!("redis_url = \"{}\"\nreplicas = 2\n", redis.url())
}

/// Two gateways built from `config`, served on loopback: their base URLs.
async fn two_gateways(config: &Config) -> Vec<String> {
    let mut bases = Vec::new();
    for _ in 0..2 {
        let gateway = Gateway::build(config.clone()).await.expect("builds");
        bases.push(common::serve_in_process(&gateway).await);
        // Kept until the test ends: the server holds a clone.
        std::mem::forget(gateway);
    }
    bases
}

/// What the callers saw of a run.
#[derive(Debug, Default)]
struct Seen {
    answered: u64,
    errors: Vec<(u16, String)>,
    primary: u64,
    slowest: Duration,
}

/// Sends `n` chat requests, `concurrency` at a time, alternating between
/// the gateways.
async fn drive(http: &HttpClient, bases: &[String], n: usize, concurrency: usize) -> Seen {
    let body = json!({"model": "any", "messages": [{"role": "user", "content": "hi"}],
                      "max_tokens": 16})
    .to_string();
    let mut seen = Seen::default();
    for chunk in (0..n).collect::<Vec<_>>().chunks(concurrency) {
        let calls = chunk.iter().map(|i| {
            let url = format!("{}/v1/chat/completions", bases[i % bases.len()]);
            let (http, body) = (http.clone(), body.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let reply = send(&http, "POST", &url, &[], body).await;
                (reply, started.elapsed())
            })
        });
        let replies: Vec<_> = calls.collect();
        for call in replies {
            let (reply, took) = call.await.expect("the request task");
            seen.slowest = seen.slowest.max(took);
            if reply.status == 200 {
                seen.answered += 1;
                seen.primary += u64::from(reply.header("x-staunch-model") == "primary");
            } else {
                seen.errors.push((reply.status, reply.text));
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_over_one_redis_admit_the_limit_together() {
    let redis = RedisServer::start();
    let http = client();

    // Alone, each gateway admits its own LIMIT: twice the limit together.
    let mock = MockServer::start(Scenario::default()).await.unwrap();
    let bases = two_gateways(&config(&mock, None)).await;
    let seen = drive(&http, &bases, 3 * LIMIT as usize, 4).await;
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    assert_eq!(seen.primary, 2 * LIMIT, "{seen:?}");

    // Shared, they admit LIMIT together, and the rest falls back.
    let mock = MockServer::start(Scenario::default()).await.unwrap();
    let bases = two_gateways(&config(&mock, Some(&shared_table(&redis)))).await;
    let started = Instant::now();
    let seen = drive(&http, &bases, 3 * LIMIT as usize, 4).await;
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    assert_eq!(seen.answered, 3 * LIMIT);
    // The bucket refills LIMIT a minute: what the run's length adds.
    let refill = (LIMIT as f64 * started.elapsed().as_secs_f64() / 60.0).floor() as u64;
    assert!(
        (LIMIT - 1..=LIMIT + refill).contains(&seen.primary),
        "admitted {} (limit {LIMIT}, refill {refill})",
        seen.primary
    );
    let stats = mock.stats();
    assert_eq!(stats.requests_to(Route::OpenAi), seen.primary);
    assert_eq!(
        stats.requests_to(Route::Anthropic),
        3 * LIMIT - seen.primary
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_killed_or_restarted_redis_reaches_no_caller() {
    let mut redis = RedisServer::start();
    let http = client();
    let mock = MockServer::start(Scenario::default()).await.unwrap();
    let shared = shared_table(&redis) + "decision_timeout_ms = 50\n";
    let bases = two_gateways(&config(&mock, Some(&shared))).await;
    let started = Instant::now();

    // Shared: half the limit used.
    let mut total = drive(&http, &bases, LIMIT as usize / 2, 2).await;
    assert_eq!(total.primary, LIMIT / 2, "{total:?}");

    let mut phase = |seen: Seen, name: &str| {
        eprintln!(
            "{name}: {} answered, {} by the limited target, slowest {:?}",
            seen.answered, seen.primary, seen.slowest
        );
        assert!(seen.errors.is_empty(), "{name}: {:?}", seen.errors);
        // Redis never makes a caller wait: at most one decision timeout.
        assert!(
            seen.slowest < Duration::from_secs(1),
            "{name}: the slowest request took {:?}",
            seen.slowest
        );
        total.answered += seen.answered;
        total.primary += seen.primary;
        seen.primary
    };
    redis.pause();
    // Decided locally, each from its share of the room Redis had left.
    let admitted = phase(drive(&http, &bases, 30, 2).await, "paused");
    assert!(admitted > 0, "a paused Redis must not stop admissions");
    redis.resume();
    phase(drive(&http, &bases, 10, 2).await, "resumed");
    redis.kill();
    phase(drive(&http, &bases, 30, 2).await, "killed");
    redis.restart();
    // Let the replicas find it again and charge it with what they admitted.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    phase(drive(&http, &bases, 30, 2).await, "restarted empty");

    assert_eq!(total.answered, LIMIT / 2 + 100);
    // Every decision, shared or local, kept the fleet to the limit: the
    // local ones at LIMIT / 2 each from the shared bucket as last seen, and
    // the empty Redis charged again with the minute's admissions.
    let refill = (LIMIT as f64 * started.elapsed().as_secs_f64() / 60.0).ceil() as u64;
    assert!(
        total.primary <= LIMIT + refill,
        "admitted {} (limit {LIMIT}, refill {refill})",
        total.primary
    );
    assert_eq!(mock.stats().requests_to(Route::OpenAi), total.primary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_opened_on_one_gateway_opens_on_the_other() {
    let redis = RedisServer::start();
    let http = client();
    let mut scenario = Scenario::default();
    scenario.openai.script = vec![Fault::ServerError; 3];
    let mock = MockServer::start(scenario).await.unwrap();
    let bases = two_gateways(&config(&mock, Some(&shared_table(&redis)))).await;
    let circuit = |base: String| {
        let http = http.clone();
        async move {
            let reply = send(&http, "GET", &format!("{base}/readyz"), &[], "").await;
            reply.json()["routes"][0]["targets"][0]["circuit"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    assert_eq!(circuit(bases[1].clone()).await, "closed");

    // Three failures on the first gateway open its circuit; the callers
    // are answered by the spare.
    let seen = drive(&http, &bases[..1], 3, 1).await;
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    assert_eq!(circuit(bases[0].clone()).await, "open");

    // The second opens it within the pub/sub latency (the poll: 1 s).
    let deadline = Instant::now() + Duration::from_secs(2);
    while circuit(bases[1].clone()).await != "open" {
        assert!(Instant::now() < deadline, "the opening never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... so it skips the target without calling it.
    let seen = drive(&http, &bases[1..], 3, 1).await;
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    assert_eq!(seen.primary, 0);
    assert_eq!(mock.stats().requests_to(Route::OpenAi), 3);
}
