//! The closed-state success path: a ready in-memory provider called
//! directly, through staunch's circuit breaker, and through the closed
//! breakers of `tower-resilience-circuitbreaker` and `failsafe`, all in one
//! run; single-threaded, and with two threads calling one shared breaker at
//! once (one iteration = one call on each thread, timed as wall time).
//!
//! Every variant is driven the same way: `poll_ready`, `call`, and polls of
//! the response future with a no-op waker until it is ready (at once,
//! unless a breaker's lock is contended).

mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use staunch::core::{ChatRequest, ChatResponse, LlmError};
use staunch_test::FakeProvider;
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use support::{call_once, in_memory, own_copy, request};
use tower::{Layer, Service};

/// failsafe has no tower layer: this wraps each call's future in its
/// breaker, the way its futures interface is meant to be used.
#[derive(Clone)]
struct Failsafe<B> {
    breaker: B,
    inner: FakeProvider,
}

impl<B> Service<ChatRequest> for Failsafe<B>
where
    B: failsafe::futures::CircuitBreaker + Clone,
{
    type Response = ChatResponse;
    type Error = failsafe::Error<LlmError>;
    type Future = failsafe::futures::ResponseFuture<
        staunch_test::FakeFuture,
        B::FailurePolicy,
        B::Instrument,
        failsafe::Any,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        self.breaker.call(self.inner.call(request))
    }
}

/// Wall time of `iters` rounds in which two threads each make one call on
/// their own clone of `service` (sharing its breaker).
fn contended<S>(service: &S, request: &ChatRequest, iters: u64) -> Duration
where
    S: Service<ChatRequest, Response = ChatResponse> + Clone + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(3));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let mut service = service.clone();
            let request = own_copy(request);
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    black_box(call_once(&mut service, &request));
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for t in threads {
        t.join().expect("bench thread");
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let request = request();
    let provider = in_memory();
    let ours = CircuitBreakerLayer::new(CircuitBreakerConfig::new("bench"))
        .expect("valid")
        .layer(provider.clone());
    let resilience = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .build()
        .expect("valid")
        .layer(provider.clone());
    let failsafe = Failsafe {
        breaker: failsafe::Config::new().build(),
        inner: provider.clone(),
    };

    let mut group = c.benchmark_group("circuit_breaker_closed");
    {
        let mut s = provider.clone();
        group.bench_function("raw", |b| b.iter(|| black_box(call_once(&mut s, &request))));
        let mut s = ours.clone();
        group.bench_function("staunch", |b| {
            b.iter(|| black_box(call_once(&mut s, &request)))
        });
        let mut s = resilience.clone();
        group.bench_function("tower_resilience", |b| {
            b.iter(|| black_box(call_once(&mut s, &request)))
        });
        let mut s = failsafe.clone();
        group.bench_function("failsafe", |b| {
            b.iter(|| black_box(call_once(&mut s, &request)))
        });
    }
    group.bench_function("raw_2_threads", |b| {
        b.iter_custom(|iters| contended(&provider, &request, iters))
    });
    group.bench_function("staunch_2_threads", |b| {
        b.iter_custom(|iters| contended(&ours, &request, iters))
    });
    group.bench_function("tower_resilience_2_threads", |b| {
        b.iter_custom(|iters| contended(&resilience, &request, iters))
    });
    group.bench_function("failsafe_2_threads", |b| {
        b.iter_custom(|iters| contended(&failsafe, &request, iters))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
