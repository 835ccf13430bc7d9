//! The whole recommended stack on the success path, against the same ready
//! in-memory provider called directly, in one run.
//!
//! instrument > degrade > budget > fallback (3 targets) > per target:
//! circuit breaker > retry > tower timeout > tower concurrency limit > provider.
//! (tower's rate limit is not `Clone`; in a stack it sits behind a `Buffer`,
//! whose channel hop would dominate this measurement, so the bench uses the
//! concurrency limit in its place.)

use criterion::{Criterion, criterion_group, criterion_main};
use staunch::ServiceBuilderExt;
use staunch::budget::{BudgetConfig, BudgetLayer};
use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use staunch::core::{ChatRequest, ChatResponse, LlmError, Message, Price, Usage};
use staunch::degrade::DegradeConfig;
use staunch::fallback::{Fallback, Target};
use staunch::observe::InstrumentLayer;
use staunch::retry::RetryConfig;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{Service, ServiceBuilder};

#[derive(Clone)]
struct InMemory {
    answer: Arc<ChatResponse>,
}

impl Service<ChatRequest> for InMemory {
    type Response = ChatResponse;
    type Error = LlmError;
    type Future = Ready<Result<ChatResponse, LlmError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: ChatRequest) -> Self::Future {
        ready(Ok(ChatResponse::clone(&self.answer)))
    }
}

fn call_once<S>(service: &mut S, request: &ChatRequest) -> ChatResponse
where
    S: Service<ChatRequest, Response = ChatResponse>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match service.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => unreachable!("every layer is ready at once here"),
    }
    let mut future = pin!(service.call(request.clone()));
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        other => panic!(
            "the success path must complete at once: {:?}",
            other.map(|r| r.err())
        ),
    }
}

fn target(name: &'static str, provider: InMemory, model: &'static str) -> Target {
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
    let request = ChatRequest::new(
        "gpt-4o",
        vec![Message::system("You are terse."), Message::user("Say hi")],
    )
    .with_max_tokens(16);
    let provider = InMemory {
        answer: Arc::new(
            ChatResponse::new("gpt-4o-2024-08-06", "hi").with_usage(Usage::new(12, 1)),
        ),
    };

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
