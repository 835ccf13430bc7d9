//! Overhead of the retry layer on the success path: a ready in-memory
//! provider called directly, the same provider behind `Retry` (with and
//! without the retry budget), and behind `tower-resilience-retry`'s retry
//! (three attempts, no budget), measured in one run.

mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use staunch::core::{ChatRequest, ChatResponse, LlmError};
use staunch::retry::{Retry, RetryConfig};
use std::hint::black_box;
use support::{call_once, in_memory, request};
use tower::Layer;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let request = request();
    let provider = in_memory();

    let mut group = c.benchmark_group("retry_success_path");
    let mut raw = provider.clone();
    group.bench_function("raw", |b| {
        b.iter(|| black_box(call_once(&mut raw, &request)))
    });
    let mut wrapped = Retry::new(provider.clone(), RetryConfig::new());
    group.bench_function("retry", |b| {
        b.iter(|| black_box(call_once(&mut wrapped, &request)))
    });
    let mut unbudgeted = Retry::new(provider.clone(), RetryConfig::new().no_budget());
    group.bench_function("retry_no_budget", |b| {
        b.iter(|| black_box(call_once(&mut unbudgeted, &request)))
    });
    let mut resilience =
        tower_resilience_retry::RetryLayer::<ChatRequest, ChatResponse, LlmError>::builder()
            .max_attempts(3)
            .build()
            .layer(provider);
    group.bench_function("tower_resilience", |b| {
        b.iter(|| black_box(call_once(&mut resilience, &request)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
