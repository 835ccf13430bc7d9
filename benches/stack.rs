//! The whole recommended stack on the success path, against the same ready
//! in-memory provider called directly, in one run.
//!
//! instrument > degrade > budget > fallback (3 targets) > per target:
//! circuit breaker > retry > tower timeout > tower concurrency limit > provider.
//! (tower's rate limit is not `Clone`; in a stack it sits behind a `Buffer`,
//! whose channel hop would dominate this measurement, so the bench uses the
//! concurrency limit in its place.)

mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use staunch::ServiceBuilderExt;
use staunch::budget::{BudgetConfig, BudgetLayer};
use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use staunch::core::Price;
use staunch::degrade::DegradeConfig;
use staunch::fallback::{Fallback, Target};
use staunch::observe::InstrumentLayer;
use staunch::retry::RetryConfig;
use staunch_test::FakeProvider;
use std::hint::black_box;
use std::time::Duration;
use support::{call_once, in_memory, request};
use tower::ServiceBuilder;

fn target(name: &'static str, provider: FakeProvider, model: &'static str) -> Target {
    let breaker = CircuitBreakerLayer::new(CircuitBreakerConfig::new(name)).expect("valid");
    let health = breaker.handle();
    let service = ServiceBuilder::new()
        .circuit_breaker(breaker)
        .llm_retry(RetryConfig::new())
        .timeout(Duration::from_secs(30))
        .concurrency_limit(1_000)
        .service(provider);
    Target::new(name, service)
        .model(model)
        .context_window(128_000)
        .price(Price::per_million(2.5, 10.0))
        .health(health)
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let request = request();
    let provider = in_memory();

    let mut group = c.benchmark_group("stack_success_path");
    let mut raw = provider.clone();
    group.bench_function("raw", |b| {
        b.iter(|| black_box(call_once(&mut raw, &request)))
    });

    let chain = Fallback::new([
        target("openai", provider.clone(), "gpt-4o"),
        target("anthropic", provider.clone(), "claude-sonnet-4-5"),
        target("mini", provider, "gpt-4o-mini"),
    ])
    .expect("three targets");
    let mut stack = ServiceBuilder::new()
        .layer(InstrumentLayer::new())
        .degrade(DegradeConfig::new().static_answer("later"))
        .budget(
            BudgetLayer::new(
                BudgetConfig::new()
                    .per_request_tokens(100_000)
                    .window_tokens(u64::MAX / 2)
                    .default_price(Price::per_million(2.5, 10.0)),
            )
            .expect("valid"),
        )
        .service(chain);
    group.bench_function("full_stack", |b| {
        b.iter(|| black_box(call_once(&mut stack, &request)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
