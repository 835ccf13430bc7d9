//! The quota layer's admitted path: a ready in-memory provider called
//! directly and through `QuotaLayer` (requests and tokens per minute, with
//! reconciliation; and requests per minute alone), on one thread and with
//! two threads calling one shared quota at once (one iteration = one call
//! on each thread, timed as wall time). The limits are far above what the
//! bench can reach, so every request is admitted at once.
//!
//! No tokio runtime is entered: with the dev-dependencies' `test-util`,
//! tokio's clock takes a lock inside a runtime, which production builds
//! never do. After the run it prints the medians and each variant's
//! overhead over `raw` with the same number of threads.

mod support;

use criterion::Criterion;
use staunch::core::{ChatRequest, ChatResponse};
use staunch::quota::{QuotaConfig, QuotaLayer};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};
use support::{call_once, fresh_median, in_memory, own_copy, request};
use tower::{Layer, Service};

const GROUP: &str = "quota_admitted";

/// (bench id, the raw variant it is compared with, what it is).
const ROWS: &[(&str, &str, &str)] = &[
    ("raw", "raw", "provider called directly"),
    ("quota", "raw", "QuotaLayer: RPM + TPM, reconciled"),
    ("quota_rpm", "raw", "QuotaLayer: RPM only"),
    ("raw_2_threads", "raw_2_threads", "provider, 2 threads"),
    (
        "quota_2_threads",
        "raw_2_threads",
        "RPM + TPM, 2 threads, one quota",
    ),
    (
        "quota_rpm_2_threads",
        "raw_2_threads",
        "RPM only, 2 threads, one quota",
    ),
];

/// Wall time of `iters` rounds in which two scoped threads each make one
/// call on their own clone of `service` (sharing its quota).
fn contended<S>(service: &S, request: &ChatRequest, iters: u64) -> Duration
where
    S: Service<ChatRequest, Response = ChatResponse> + Clone + Send,
{
    let barrier = Barrier::new(3);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let mut service = service.clone();
            let barrier = &barrier;
            let request = own_copy(request);
            scope.spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    black_box(call_once(&mut service, &request));
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // The scope joins both threads before it returns.
        start
    })
    .elapsed()
}

fn bench(c: &mut Criterion) {
    let request = request();
    let provider = in_memory();
    let both = QuotaLayer::new(
        QuotaConfig::new("bench")
            .requests_per_minute(1_000_000_000_000)
            .tokens_per_minute(1_000_000_000_000_000),
    )
    .expect("valid")
    .layer(provider.clone());
    let requests =
        QuotaLayer::new(QuotaConfig::new("bench-rpm").requests_per_minute(1_000_000_000_000))
            .expect("valid")
            .layer(provider.clone());

    let mut group = c.benchmark_group(GROUP);
    {
        let mut s = provider.clone();
        group.bench_function("raw", |b| b.iter(|| black_box(call_once(&mut s, &request))));
        let mut s = both.clone();
        group.bench_function("quota", |b| {
            b.iter(|| black_box(call_once(&mut s, &request)))
        });
        let mut s = requests.clone();
        group.bench_function("quota_rpm", |b| {
            b.iter(|| black_box(call_once(&mut s, &request)))
        });
    }
    group.bench_function("raw_2_threads", |b| {
        b.iter_custom(|iters| contended(&provider, &request, iters))
    });
    group.bench_function("quota_2_threads", |b| {
        b.iter_custom(|iters| contended(&both, &request, iters))
    });
    group.bench_function("quota_rpm_2_threads", |b| {
        b.iter_custom(|iters| contended(&requests, &request, iters))
    });
    group.finish();
}

fn main() {
    let started = std::time::SystemTime::now();
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();

    println!();
    println!("| variant | median per round | over raw |");
    println!("|---|---:|---:|");
    for (id, base, what) in ROWS {
        let Some(m) = fresh_median(GROUP, id, started) else {
            continue;
        };
        let over = match fresh_median(GROUP, base, started) {
            Some(raw) if base != id => format!("{:+.1} ns", m - raw),
            _ => "—".to_owned(),
        };
        println!("| `{id}`: {what} | {m:.1} ns | {over} |");
    }
}
