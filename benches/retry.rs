//! Overhead of the retry layer on the success path: a ready in-memory
//! provider called directly, and the same provider behind `Retry` (with and
//! without the retry budget), measured in one run.

use criterion::{Criterion, criterion_group, criterion_main};
use staunch::core::{ChatRequest, ChatResponse, LlmError, Message, Usage};
use staunch::retry::{Retry, RetryConfig};
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tower::Service;

/// A provider that is always ready and answers at once. Like real clients
/// it is cheap to clone (an `Arc` inside): tower's retry clones it per call.
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

/// One call: readiness, call, and the single poll that completes it.
fn call_once<S>(service: &mut S, request: &ChatRequest) -> ChatResponse
where
    S: Service<ChatRequest, Response = ChatResponse>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match service.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => unreachable!("the in-memory provider is always ready"),
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

    let mut group = c.benchmark_group("retry_success_path");
    let mut raw = provider.clone();
    group.bench_function("raw", |b| {
        b.iter(|| black_box(call_once(&mut raw, &request)))
    });
    let mut wrapped = Retry::new(RetryConfig::new(), provider.clone());
    group.bench_function("retry", |b| {
        b.iter(|| black_box(call_once(&mut wrapped, &request)))
    });
    let mut unbudgeted = Retry::new(RetryConfig::new().no_budget(), provider);
    group.bench_function("retry_no_budget", |b| {
        b.iter(|| black_box(call_once(&mut unbudgeted, &request)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
