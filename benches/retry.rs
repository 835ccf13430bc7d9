//! Overhead of the retry layer on the success path: a ready in-memory
//! provider called directly, and the same provider behind `Retry` (with and
//! without the retry budget), measured in one run.

mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use staunch::retry::{Retry, RetryConfig};
use std::hint::black_box;
use support::{call_once, in_memory, request};

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
    let mut unbudgeted = Retry::new(provider, RetryConfig::new().no_budget());
    group.bench_function("retry_no_budget", |b| {
        b.iter(|| black_box(call_once(&mut unbudgeted, &request)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
