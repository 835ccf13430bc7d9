//! The shared quota against a real redis-server.

mod common;

use common::RedisServer;
use staunch_core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message, Usage};
use staunch_redis::{Limit, RedisConnection, SharedQuota, SharedQuotaConfig, SharedQuotaHandle};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{ServiceExt, service_fn};

type Client = BoxCloneSyncService<ChatRequest, ChatResponse, LlmError>;

/// A provider that bills `input + output` tokens per answer.
fn provider(input: u64, output: u64) -> Client {
    BoxCloneSyncService::new(service_fn(move |req: ChatRequest| async move {
        let mut usage = Usage::default();
        usage.input_tokens = input;
        usage.output_tokens = output;
        Ok::<_, LlmError>(ChatResponse::new(req.model, "ok").with_usage(usage))
    }))
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
