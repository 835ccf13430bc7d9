//! The shared quota against a real redis-server.

use staunch_core::{ChatRequest, ChatResponse, Deadline, ErrorKind, LlmError, Message, Usage};
use staunch_redis::{Limit, RedisConnection, SharedQuota, SharedQuotaConfig, SharedQuotaHandle};
use staunch_test::FakeProvider;
use staunch_test::redis::RedisServer;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

type Client = BoxCloneSyncService<ChatRequest, ChatResponse, LlmError>;

/// A provider that bills `input + output` tokens per answer.
fn provider(input: u64, output: u64) -> Client {
    BoxCloneSyncService::new(
        FakeProvider::new("fake")
            .bill(Usage::new(input, output))
            .unrecorded(),
    )
}

fn request(max_tokens: u32) -> ChatRequest {
    ChatRequest::new("m", vec![Message::user("hello there")]).with_max_tokens(max_tokens)
}

#[derive(Default)]
struct Tally {
    admitted: AtomicU64,
    tokens: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

/// Every stack sends requests from `tasks` tasks for `run`, pausing after
/// a refusal; returns the tally.
async fn burst(stacks: &[Client], tasks: usize, run: Duration, max_tokens: u32) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let end = Instant::now() + run;
    let mut joins = Vec::new();
    for stack in stacks {
        for _ in 0..tasks {
            let stack = stack.clone();
            let tally = tally.clone();
            joins.push(tokio::spawn(async move {
                while Instant::now() < end {
                    match stack.clone().oneshot(request(max_tokens)).await {
                        Ok(answer) => {
                            tally.admitted.fetch_add(1, Ordering::Relaxed);
                            let u = answer.usage;
                            tally
                                .tokens
                                .fetch_add(u.input_tokens + u.output_tokens, Ordering::Relaxed);
                        }
                        Err(e) if e.kind == ErrorKind::RateLimited => {
                            assert_eq!(e.should_retry, Some(false));
                            assert!(e.retry_after.is_some());
                            tally.refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(_) => {
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    for j in joins {
        j.await.expect("task");
    }
    tally
}

async fn stacks(
    url: &str,
    n: usize,
    configure: impl Fn(SharedQuotaConfig) -> SharedQuotaConfig,
    input: u64,
    output: u64,
) -> (Vec<Client>, Vec<SharedQuotaHandle>) {
    let mut clients = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..n {
        // One connection per replica, as separate processes would have.
        let redis = RedisConnection::connect(url).await.expect("valid url");
        let quota = SharedQuota::new(
            provider(input, output),
            configure(SharedQuotaConfig::new("openai", redis)),
        );
        handles.push(quota.handle());
        clients.push(BoxCloneSyncService::new(quota));
    }
    (clients, handles)
}

const WINDOW: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_millis(1500);

/// What a token bucket of `limit` per `WINDOW` allows over `elapsed`.
fn allowance(limit: u64, elapsed: Duration) -> f64 {
    limit as f64 * (1.0 + elapsed.as_secs_f64() / WINDOW.as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_stacks_share_one_request_limit_under_a_burst() {
    let server = RedisServer::start();
    const RPM: u64 = 200;
    for lease in [0, 5] {
        let prefix = format!("rpm-lease-{lease}");
        let (clients, handles) = stacks(
            &server.url(),
            4,
            |c| {
                c.requests(Limit {
                    amount: RPM,
                    per: WINDOW,
                })
                .lease(lease, 0)
                .replicas(4)
                .prefix(prefix.clone())
                .timeout(Duration::from_millis(500))
                // These measure the bucket under a burst: refuse, not wait.
                .max_wait(Duration::ZERO)
            },
            10,
            10,
        )
        .await;
        let started = Instant::now();
        let tally = burst(&clients, 8, RUN, 10).await;
        let elapsed = started.elapsed();
        let admitted = tally.admitted.load(Ordering::Relaxed);
        let bound = allowance(RPM, elapsed);
        eprintln!(
            "lease {lease}: admitted {admitted} requests of {RPM}/min in {elapsed:?} (bucket allows {bound:.1}), refused {}, redis decisions {}, leased {}",
            tally.refused.load(Ordering::Relaxed),
            handles.iter().map(|h| h.redis_decisions()).sum::<u64>(),
            handles.iter().map(|h| h.leased_admissions()).sum::<u64>(),
        );
        assert_eq!(tally.failed.load(Ordering::Relaxed), 0);
        assert!(handles.iter().all(|h| h.fallbacks() == 0), "{handles:?}");
        assert!(
            admitted as f64 <= bound * 1.05,
            "{admitted} > {bound} + 5 %"
        );
        assert!(
            admitted as f64 >= RPM as f64 * 0.95,
            "too few admitted: {admitted}"
        );
        if lease > 0 {
            assert!(handles.iter().map(|h| h.leased_admissions()).sum::<u64>() > 0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_stacks_share_one_token_limit_and_settle_usage() {
    let server = RedisServer::start();
    const TPM: u64 = 20_000;
    // A request reserves its prompt estimate plus max_tokens 200; the
    // provider bills 10 + 90 = 100, so half of each reservation comes back.
    for lease in [0, 1_000] {
        let prefix = format!("tpm-lease-{lease}");
        let (clients, handles) = stacks(
            &server.url(),
            4,
            |c| {
                c.tokens(Limit {
                    amount: TPM,
                    per: WINDOW,
                })
                .requests(Limit {
                    amount: 100_000,
                    per: WINDOW,
                })
                .lease(if lease > 0 { 10 } else { 0 }, lease)
                .replicas(4)
                .prefix(prefix.clone())
                .timeout(Duration::from_millis(500))
                .max_wait(Duration::ZERO)
            },
            10,
            90,
        )
        .await;
        let started = Instant::now();
        let tally = burst(&clients, 8, RUN, 200).await;
        let elapsed = started.elapsed();
        let tokens = tally.tokens.load(Ordering::Relaxed);
        let bound = allowance(TPM, elapsed);
        eprintln!(
            "lease {lease}: {} requests billed {tokens} tokens of {TPM}/min in {elapsed:?} (bucket allows {bound:.0}), refused {}, redis decisions {}",
            tally.admitted.load(Ordering::Relaxed),
            tally.refused.load(Ordering::Relaxed),
            handles.iter().map(|h| h.redis_decisions()).sum::<u64>(),
        );
        assert_eq!(tally.failed.load(Ordering::Relaxed), 0);
        assert!(tokens as f64 <= bound * 1.05, "{tokens} > {bound} + 5 %");
        // Refunds let the billed tokens reach the limit, not half of it.
        assert!(
            tokens as f64 >= TPM as f64 * 0.85,
            "too few tokens: {tokens}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_local_limiters_would_take_four_times_the_limit() {
    // No Redis on this port: every stack decides alone, each at the whole
    // limit (replicas = 1), as four unshared limiters would.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    const RPM: u64 = 200;
    let (clients, handles) = stacks(
        &format!("redis://127.0.0.1:{port}/"),
        4,
        |c| {
            c.requests(Limit {
                amount: RPM,
                per: WINDOW,
            })
            .replicas(1)
            .max_wait(Duration::ZERO)
        },
        10,
        10,
    )
    .await;
    let tally = burst(&clients, 8, RUN, 10).await;
    let admitted = tally.admitted.load(Ordering::Relaxed);
    eprintln!("unshared: admitted {admitted} requests of {RPM}/min");
    assert_eq!(tally.failed.load(Ordering::Relaxed), 0);
    assert!(admitted >= 4 * RPM * 95 / 100, "{admitted}");
    assert!(handles.iter().all(|h| !h.is_shared() && h.fallbacks() > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_fails_no_request_and_sharing_resumes() {
    let mut server = RedisServer::start();
    let (clients, handles) = stacks(
        &server.url(),
        4,
        |c| {
            c.requests(Limit {
                amount: 2_000,
                per: WINDOW,
            })
            .tokens(Limit {
                amount: 1_000_000,
                per: WINDOW,
            })
            .lease(2, 500)
            .replicas(4)
            .timeout(Duration::from_millis(50))
            .probe_interval(Duration::from_millis(200))
        },
        10,
        20,
    )
    .await;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut joins = Vec::new();
    for client in &clients {
        let client = client.clone();
        let tally = tally.clone();
        let stop = stop.clone();
        joins.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.clone().oneshot(request(50)).await {
                    Ok(_) => tally.admitted.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("failed: {e}");
                        tally.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before_kill = handles.iter().map(|h| h.redis_decisions()).sum::<u64>();
    assert!(before_kill > 0);
    server.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        handles.iter().all(|h| !h.is_shared() && h.fallbacks() > 0),
        "every replica falls back: {handles:?}"
    );
    let during = tally.admitted.load(Ordering::Relaxed);
    server.restart();
    let restarted = Instant::now();
    while !handles.iter().all(|h| h.is_shared()) {
        assert!(
            restarted.elapsed() < Duration::from_secs(5),
            "sharing did not resume: {handles:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed_in = restarted.elapsed();
    let decisions_at_resume = handles.iter().map(|h| h.redis_decisions()).sum::<u64>();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for j in joins {
        j.await.expect("task");
    }
    let after = handles.iter().map(|h| h.redis_decisions()).sum::<u64>();
    eprintln!(
        "admitted {} ({} by the restart), failed {}, fallbacks {:?}, sharing resumed {resumed_in:?} after the restart, redis decisions {before_kill} before the kill, {decisions_at_resume} at resume, {after} at the end",
        tally.admitted.load(Ordering::Relaxed),
        during,
        tally.failed.load(Ordering::Relaxed),
        handles.iter().map(|h| h.fallbacks()).collect::<Vec<_>>(),
    );
    assert_eq!(
        tally.failed.load(Ordering::Relaxed),
        0,
        "no request fails because Redis is down"
    );
    assert!(after > decisions_at_resume, "decisions are shared again");
    assert!(handles.iter().all(|h| h.outages() == 1));
}

/// Two replicas of one quota of `amount` requests per `per`, each with its
/// own connection, and the calls that reached their provider.
async fn two_replicas(
    url: &str,
    prefix: &str,
    amount: u64,
    per: Duration,
    max_wait: Duration,
) -> ([Client; 2], [SharedQuotaHandle; 2], FakeProvider) {
    let calls = FakeProvider::new("fake");
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let redis = RedisConnection::connect(url).await.expect("valid url");
        replicas.push(SharedQuota::new(
            BoxCloneSyncService::new(calls.clone()),
            SharedQuotaConfig::new("openai", redis)
                .requests(Limit { amount, per })
                .prefix(prefix.to_owned())
                .timeout(Duration::from_millis(500))
                .max_wait(max_wait),
        ));
    }
    let handles = [replicas[0].handle(), replicas[1].handle()];
    let [a, b] = [replicas.remove(0), replicas.remove(0)].map(BoxCloneSyncService::new);
    ([a, b], handles, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_shared_limit_waits_in_order_then_is_admitted() {
    let server = RedisServer::start();
    // Two requests per second: a bucket of 2, one more every 500 ms.
    let per = Duration::from_secs(1);
    let ([a, b], handles, calls) =
        two_replicas(&server.url(), "wait", 2, per, Duration::from_secs(2)).await;
    let started = Instant::now();
    for _ in 0..2 {
        a.clone().oneshot(request(10)).await.expect("room now");
    }
    assert!(started.elapsed() < Duration::from_millis(250));

    // Over the limit: b's request waits for the next slot, and a's next
    // one, asked after it, queues behind it on the other replica.
    let first = tokio::spawn(b.clone().oneshot(request(10)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = tokio::spawn(a.clone().oneshot(request(10)));
    first.await.expect("task").expect("admitted after a wait");
    let first_in = started.elapsed();
    second
        .await
        .expect("task")
        .expect("admitted after a longer wait");
    let second_in = started.elapsed();
    eprintln!("admitted after {first_in:?} and {second_in:?}");
    assert!(
        first_in >= Duration::from_millis(450) && first_in < Duration::from_millis(900),
        "the next slot is 500 ms away: {first_in:?}"
    );
    assert!(
        second_in >= Duration::from_millis(950) && second_in < Duration::from_millis(1_400),
        "the one after is 1 s away: {second_in:?}"
    );
    assert_eq!(calls.calls(), 4);
    assert_eq!(handles.iter().map(|h| h.waited()).sum::<u64>(), 2);
    assert!(
        handles
            .iter()
            .all(|h| h.refused() == 0 && h.fallbacks() == 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_longer_than_max_wait_or_the_deadline_is_refused_at_once_with_retry_after() {
    let server = RedisServer::start();
    // One request per 10 s: the next slot is 10 s away.
    let per = Duration::from_secs(10);
    let ([a, b], handles, calls) =
        two_replicas(&server.url(), "refuse", 1, per, Duration::from_millis(300)).await;
    a.clone().oneshot(request(10)).await.expect("room now");
    let asked = Instant::now();
    let refused = b
        .clone()
        .oneshot(request(10))
        .await
        .expect_err("10 s is longer than max_wait");
    assert!(
        asked.elapsed() < Duration::from_millis(250),
        "refused at once"
    );
    assert_eq!(refused.kind, ErrorKind::RateLimited);
    assert_eq!(refused.should_retry, Some(false));
    let retry_after = refused.retry_after.expect("retry_after");
    assert!(
        retry_after > Duration::from_secs(9) && retry_after <= per,
        "{retry_after:?}"
    );
    assert!(refused.message.contains("max_wait"), "{}", refused.message);

    // Within max_wait but past the request's deadline: refused the same way.
    let ([c, _], _, _) = two_replicas(&server.url(), "refuse", 1, per, per * 2).await;
    let refused = c
        .oneshot(request(10).with_extension(Deadline::after(Duration::from_secs(1))))
        .await
        .expect_err("the wait would reach the deadline");
    assert_eq!(refused.kind, ErrorKind::RateLimited);
    assert!(
        refused
            .retry_after
            .is_some_and(|r| r > Duration::from_secs(1))
    );
    assert!(refused.message.contains("deadline"), "{}", refused.message);
    assert_eq!(calls.calls(), 1, "a refusal calls nothing");
    assert_eq!(handles[1].refused(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_dropped_before_its_turn_gives_its_slot_back() {
    let server = RedisServer::start();
    // One request per 600 ms.
    let per = Duration::from_millis(600);
    let ([a, b], _, calls) =
        two_replicas(&server.url(), "drop", 1, per, Duration::from_secs(2)).await;
    let started = Instant::now();
    a.clone().oneshot(request(10)).await.expect("room now");
    // b's request waits for the slot at 600 ms, but gives up after 100 ms.
    let gave_up =
        tokio::time::timeout(Duration::from_millis(100), b.clone().oneshot(request(10))).await;
    assert!(gave_up.is_err(), "still waiting after 100 ms");
    // The slot goes back to Redis in the background: the key's TAT (and
    // so its TTL) moves from 1.2 s back to 600 ms.
    let client = redis::Client::open(server.url()).expect("valid url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis answers");
    let key = "drop:quota:{openai}:requests";
    loop {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("PTTL");
        if (0..=700).contains(&(ttl + started.elapsed().as_millis() as i64)) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(450),
            "slot not given back: TTL {ttl} ms"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Its slot is free again: the next request takes it, not the one after.
    a.clone().oneshot(request(10)).await.expect("admitted");
    let admitted_in = started.elapsed();
    eprintln!("the freed slot was taken after {admitted_in:?}");
    assert!(
        admitted_in >= Duration::from_millis(550) && admitted_in < Duration::from_millis(1_000),
        "the slot at 600 ms, not 1.2 s: {admitted_in:?}"
    );
    assert_eq!(calls.calls(), 2);
}

/// The phases of [`the_limit_holds_through_redis_faults`].
const PHASES: [&str; 5] = [
    "A Redis healthy",
    "B Redis paused (SIGSTOP)",
    "C healthy again (SIGCONT)",
    "D Redis killed",
    "E Redis restarted, empty",
];

/// What each phase saw, by phase index (the last: after the phases, while
/// the load stops).
#[derive(Default)]
struct Phases {
    /// Calls that reached the provider, by when they reached it.
    admitted: [AtomicU64; 6],
    /// Of those, what the provider's own bucket (the shared limit, empty
    /// when phase A starts) would have refused.
    over: [AtomicU64; 6],
    /// Quota refusals the callers saw (`RateLimited` with the wait).
    refused: [AtomicU64; 6],
    /// Any other error (a breaker's `CircuitOpen` included).
    failed: [AtomicU64; 6],
}

/// Five phases of 4 s (healthy, paused, healthy, killed, restarted empty)
/// over four replicas, each its own connection and the recommended stack
/// above its shared quota (default breaker, default retry), offered twice
/// the limit (300 requests per 10 s window), 40/30/20/10 % across the
/// replicas, with every default of the shared quota. Each phase admits at
/// most 5 % over what the limit allows in it (120), no caller sees a
/// breaker open for the quota's refusals, and sharing resumes within the
/// stated bound of Redis answering again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_holds_through_redis_faults() {
    use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
    use staunch::retry::{RetryConfig, RetryLayer};
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;
    use tower::Layer;

    const LIMIT: u64 = 300;
    const PER: Duration = Duration::from_secs(10);
    const PHASE: Duration = Duration::from_secs(4);
    const OFFERED_PER_SEC: f64 = 2.0 * LIMIT as f64 / 10.0;
    const SHARES: [f64; 4] = [0.4, 0.3, 0.2, 0.1];
    let allowed = LIMIT as f64 * PHASE.as_secs_f64() / PER.as_secs_f64();

    let mut server = RedisServer::start();
    let phases = Arc::new(Phases::default());
    let phase = Arc::new(AtomicUsize::new(0));
    // The provider's own bucket: `LIMIT` per `PER`, empty at the start
    // (as is the shared one, drained below), in seconds since `origin`.
    let origin = std::time::Instant::now();
    let provider_tat = Arc::new(Mutex::new(PER.as_secs_f64()));
    let interval = PER.as_secs_f64() / LIMIT as f64;

    // The shared bucket starts empty too, as after a saturated minute.
    let client = redis::Client::open(server.url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis answers");
    let _: i64 = redis::Script::new(
        r"local t = redis.call('TIME')
          local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
          redis.call('SET', KEYS[1], string.format('%.17g', now + ARGV[1]), 'PX', math.ceil(ARGV[1] / 1000) + 1)
          return 1",
    )
    .key("staunch:quota:{openai}:requests")
    .arg(PER.as_micros() as u64)
    .invoke_async(&mut conn)
    .await
    .expect("drained");

    let mut clients = Vec::new();
    let mut handles = Vec::new();
    for _ in SHARES {
        let seen = phases.clone();
        let now_in = phase.clone();
        let tat = provider_tat.clone();
        let provider = tower::service_fn(move |_: ChatRequest| {
            let p = now_in.load(Ordering::Acquire);
            seen.admitted[p].fetch_add(1, Ordering::Relaxed);
            let now = origin.elapsed().as_secs_f64();
            if let Ok(mut tat) = tat.lock() {
                let next = tat.max(now) + interval;
                // A little slack for timers firing late, none for excess.
                if next - now > PER.as_secs_f64() + interval * 0.5 {
                    seen.over[p].fetch_add(1, Ordering::Relaxed);
                } else {
                    *tat = next;
                }
            }
            async { Ok::<_, LlmError>(ChatResponse::new("m", "ok")) }
        });
        let redis = RedisConnection::connect(&server.url())
            .await
            .expect("valid url");
        let quota = SharedQuota::new(
            provider,
            SharedQuotaConfig::new("openai", redis)
                .requests(Limit {
                    amount: LIMIT,
                    per: PER,
                })
                .replicas(4),
        );
        handles.push(quota.handle());
        let stack = CircuitBreakerLayer::new(CircuitBreakerConfig::new("openai"))
            .expect("default breaker")
            .layer(RetryLayer::new(RetryConfig::new()).layer(quota));
        clients.push(BoxCloneSyncService::new(stack));
    }

    // The load: each replica its share of twice the limit, one request
    // per tick, each in its own task (a request may wait for its slot).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut drivers = Vec::new();
    for (client, share) in clients.iter().zip(SHARES) {
        let client = client.clone();
        let (stop, phases, phase, in_flight) = (
            stop.clone(),
            phases.clone(),
            phase.clone(),
            in_flight.clone(),
        );
        drivers.push(tokio::spawn(async move {
            let every = Duration::from_secs_f64(1.0 / (OFFERED_PER_SEC * share));
            let mut ticks = tokio::time::interval(every);
            while !stop.load(Ordering::Relaxed) {
                ticks.tick().await;
                let (client, phases, phase, in_flight) = (
                    client.clone(),
                    phases.clone(),
                    phase.clone(),
                    in_flight.clone(),
                );
                in_flight.fetch_add(1, Ordering::AcqRel);
                tokio::spawn(async move {
                    let result = client.oneshot(request(10)).await;
                    let p = phase.load(Ordering::Acquire);
                    match result {
                        Ok(_) => {}
                        Err(e) if e.is_quota_refusal() && e.kind == ErrorKind::RateLimited => {
                            assert!(e.retry_after.is_some(), "{e}");
                            phases.refused[p].fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("failed in phase {p}: {e}");
                            phases.failed[p].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    in_flight.fetch_sub(1, Ordering::AcqRel);
                });
            }
        }));
    }

    /// How long until every replica shares again (at most 5 s).
    async fn until_shared(handles: &[SharedQuotaHandle]) -> Duration {
        let from = Instant::now();
        while !handles.iter().all(|h| h.is_shared()) {
            if from.elapsed() > Duration::from_secs(5) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        from.elapsed()
    }

    // A: healthy.
    tokio::time::sleep(PHASE).await;
    // B: paused.
    server.pause();
    phase.store(1, Ordering::Release);
    tokio::time::sleep(PHASE).await;
    // C: healthy again.
    server.resume();
    phase.store(2, Ordering::Release);
    let c_started = Instant::now();
    let resumed_after_pause = until_shared(&handles).await;
    tokio::time::sleep(PHASE.saturating_sub(c_started.elapsed())).await;
    // D: killed.
    server.kill();
    phase.store(3, Ordering::Release);
    tokio::time::sleep(PHASE).await;
    // E: restarted, empty (the restart itself counts as D: still down).
    server.restart();
    phase.store(4, Ordering::Release);
    let e_started = Instant::now();
    let resumed_after_restart = until_shared(&handles).await;
    tokio::time::sleep(PHASE.saturating_sub(e_started.elapsed())).await;
    // Stop: what is still waiting gets its slot or gives it back, within
    // the longest wait (max_wait, 2 s); it is not counted in any phase.
    phase.store(5, Ordering::Release);
    stop.store(true, Ordering::Relaxed);
    for driver in drivers {
        driver.await.expect("driver");
    }
    let drained = Instant::now();
    while in_flight.load(Ordering::Acquire) > 0 {
        assert!(
            drained.elapsed() < Duration::from_secs(5),
            "every request ends within max_wait"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut table = String::from(
        "| phase | admitted (allowed 120) | vs allowed | over the provider's bucket | quota refusals | other errors |\n|---|---|---|---|---|---|\n",
    );
    for (p, name) in PHASES.iter().enumerate() {
        let admitted = phases.admitted[p].load(Ordering::Relaxed);
        table.push_str(&format!(
            "| {name} | {admitted} | {:+.1} % | {} | {} | {} |\n",
            (admitted as f64 / allowed - 1.0) * 100.0,
            phases.over[p].load(Ordering::Relaxed),
            phases.refused[p].load(Ordering::Relaxed),
            phases.failed[p].load(Ordering::Relaxed),
        ));
    }
    eprintln!(
        "{table}sharing resumed {resumed_after_pause:?} after SIGCONT, {resumed_after_restart:?} after the restart; charged again: {:?}; {handles:?}",
        handles
            .iter()
            .map(|h| h.charged_again())
            .collect::<Vec<_>>()
    );

    for (p, name) in PHASES.iter().enumerate() {
        let admitted = phases.admitted[p].load(Ordering::Relaxed);
        assert!(
            admitted as f64 <= allowed * 1.05,
            "{name}: {admitted} admitted, more than 5 % over {allowed}\n{table}"
        );
        assert!(
            phases.over[p].load(Ordering::Relaxed) as f64 <= allowed * 0.05,
            "{name}: the provider's bucket would refuse more than 5 %\n{table}"
        );
        assert_eq!(
            phases.failed[p].load(Ordering::Relaxed),
            0,
            "{name}: no request fails but by a quota refusal (no breaker opens)\n{table}"
        );
    }
    // Nor is the quota left unused: each phase admits most of what it allows.
    for (name, admitted) in PHASES.iter().zip(&phases.admitted).take(4) {
        assert!(
            admitted.load(Ordering::Relaxed) as f64 >= allowed * 0.8,
            "{name}: the quota was left unused\n{table}"
        );
    }
    // One probe charges, the next shares: two intervals, and a reconnect.
    let bound = 2 * SharedQuotaConfig::DEFAULT_PROBE_INTERVAL + Duration::from_millis(500);
    assert!(
        resumed_after_pause <= bound && resumed_after_restart <= bound,
        "sharing resumes within 2 × probe_interval + 0.5 s: {resumed_after_pause:?}, {resumed_after_restart:?}"
    );
    assert!(
        handles.iter().all(|h| h.charged_again() == 1),
        "every replica charged the restarted Redis once: {handles:?}"
    );
}
