//! Breaker state shared between replicas through a real redis-server.

use staunch::TargetBuilder;
use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerHandle, CircuitState};
use staunch::fallback::{Fallback, Target};
use staunch::retry::RetryConfig;
use staunch_core::{ChatRequest, ErrorKind, Message};
use staunch_redis::SharedBreakers;
use staunch_test::redis::RedisServer;
use staunch_test::{FakeProvider, Step, fail_status};
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;

struct Replica {
    chain: Fallback,
    handle: CircuitBreakerHandle,
    shared: SharedBreakers,
    /// This replica's primary: its calls, and a script that takes it down
    /// ([`Replica::down`]) and up again.
    primary: FakeProvider,
}

impl Replica {
    /// Makes this replica's primary fail (a 529) or answer again.
    fn down(&self, down: bool) {
        if down {
            self.primary
                .script([], fail_status(ErrorKind::Overloaded, 529));
        } else {
            self.primary.script([], Step::Answer);
        }
    }
}

async fn replica(url: &str) -> Replica {
    replica_breaking_for(url, Duration::from_secs(30)).await
}

async fn replica_breaking_for(url: &str, break_duration: Duration) -> Replica {
    let shared = SharedBreakers::connect(url, "test")
        .await
        .expect("valid url");
    shared.poll_interval(Duration::from_millis(500));
    let primary = FakeProvider::new("primary");
    let (target, handle) = TargetBuilder::new("primary", primary.clone())
        .retry(RetryConfig::new().max_retries(0))
        .breaker(
            CircuitBreakerConfig::new("primary")
                .consecutive_failures(Some(2))
                .break_duration(break_duration)
                .break_jitter(0.0)
                .on_transition(shared.on_transition()),
        )
        .build()
        .expect("valid breaker");
    shared.share("primary", handle.clone());
    let backup = Target::new("backup", FakeProvider::new("backup").unrecorded());
    Replica {
        chain: Fallback::new([target, backup]).expect("two targets"),
        handle,
        shared,
        primary,
    }
}

async fn ask(chain: &Fallback) -> String {
    let answer = chain
        .clone()
        .oneshot(ChatRequest::new("m", vec![Message::user("hi")]))
        .await
        .expect("an answer");
    answer.meta.target.as_deref().unwrap_or_default().to_owned()
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
    replicas[0].down(true);
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
        let calls = r.primary.calls();
        assert_eq!(ask(&r.chain).await, "backup");
        assert_eq!(r.primary.calls(), calls);
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

/// Waits (at most `bound`) until `done`, else fails with `what`.
async fn within(bound: Duration, what: &str, done: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < bound, "{what} not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakers_keep_working_while_redis_is_down_and_share_again_after() {
    let mut server = RedisServer::start();
    let a = replica(&server.url()).await;
    let b = replica(&server.url()).await;
    within(Duration::from_secs(5), "first subscription", || {
        a.shared.is_connected() && b.shared.is_connected()
    })
    .await;
    server.kill();

    // Redis down: each breaker works on its own; requests are answered.
    a.down(true);
    for _ in 0..2 {
        assert_eq!(ask(&a.chain).await, "backup");
    }
    assert_eq!(a.handle.state(), CircuitState::Open);
    assert_eq!(ask(&b.chain).await, "primary");
    within(Duration::from_secs(5), "noticing Redis is down", || {
        !a.shared.is_connected() && !b.shared.is_connected()
    })
    .await;
    assert_eq!(
        a.shared.published(),
        0,
        "nothing answers: nothing published"
    );
    assert_eq!(b.handle.state(), CircuitState::Closed);

    // Redis back: the opening made while it was down is published now, and
    // b opens (the bound: resubscribing, at most 1 s apart, plus a retry
    // of the publication, at most 0.5 s apart).
    server.restart();
    let shared_in = within(Duration::from_secs(3), "the pending opening shared", || {
        b.handle.state() == CircuitState::Open
    })
    .await;
    assert_eq!(a.shared.published(), 1);
    assert_eq!(b.shared.received(), 1);
    assert_eq!(b.shared.published(), 0, "an opening received is not echoed");
    let calls = b.primary.calls();
    assert_eq!(ask(&b.chain).await, "backup");
    assert_eq!(b.primary.calls(), calls);
    within(Duration::from_secs(5), "resubscription", || {
        a.shared.is_connected() && b.shared.is_connected()
    })
    .await;

    // Reset by hand on both: b stays closed (the same opening, still in its
    // key, is not applied again by the next poll, 500 ms apart).
    a.handle.reset();
    b.handle.reset();
    a.down(false);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(b.handle.state(), CircuitState::Closed);
    assert_eq!(ask(&b.chain).await, "primary");

    // Shared the other way: b's own opening reaches a.
    b.down(true);
    for _ in 0..2 {
        assert_eq!(ask(&b.chain).await, "backup");
    }
    assert_eq!(b.handle.state(), CircuitState::Open);
    let seen_in = within(Duration::from_secs(2), "b's opening shared", || {
        a.handle.state() == CircuitState::Open
    })
    .await;
    assert_eq!(b.shared.published(), 1);
    assert_eq!(a.shared.received(), 1);
    eprintln!(
        "the opening made while Redis was down was shared {shared_in:?} after the restart; \
         a new one in {seen_in:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opening_redis_runs_after_its_break_is_over_opens_no_one() {
    let mut server = RedisServer::start();
    let a = replica_breaking_for(&server.url(), Duration::from_secs(2)).await;
    let b = replica_breaking_for(&server.url(), Duration::from_secs(2)).await;
    within(Duration::from_secs(5), "first subscription", || {
        a.shared.is_connected() && b.shared.is_connected()
    })
    .await;
    // Redis paused (SIGSTOP): a's opening is sent (and sent again, on new
    // connections, each time the publisher gives up waiting) and waits in
    // Redis' socket buffers, unanswered, until after its 2 s break is over.
    server.pause();
    a.down(true);
    for _ in 0..2 {
        assert_eq!(ask(&a.chain).await, "backup");
    }
    assert_eq!(a.handle.state(), CircuitState::Open);
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    server.resume();
    // Resumed, Redis runs the stale script: it publishes nothing, so b
    // stays closed (before, b opened for the break's full length then).
    within(Duration::from_secs(3), "resubscription", || {
        a.shared.is_connected() && b.shared.is_connected()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.shared.received(), 0);
    assert_eq!(b.handle.state(), CircuitState::Closed);
    assert_eq!(ask(&b.chain).await, "primary");
}
