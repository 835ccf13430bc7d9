//! The instrumentation response future.

use super::names;
use crate::into_llm::to_llm;
use pin_project_lite::pin_project;
use staunch_core::{BoxError, ChatResponse, LlmError, Usage};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::time::Instant;
use tracing::Span;

pin_project! {
    /// The response future of [`Instrument`](super::Instrument).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        started: Instant,
        done: bool,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.done {
                this.span.record("outcome", "cancelled");
                metrics::counter!(names::REQUESTS, "outcome" => "cancelled", "tier" => "none", "kind" => "none", "class" => "none").increment(1);
                metrics::histogram!(names::REQUEST_DURATION, "outcome" => "cancelled")
                    .record(this.started.elapsed().as_secs_f64());
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, span: Span) -> Self {
        ResponseFuture {
            inner,
            span,
            started: Instant::now(),
            done: false,
        }
    }
}

fn count_tokens(provider: &str, model: &str, usage: Usage) {
    if usage.input_tokens > 0 {
        metrics::counter!(names::TOKENS, "provider" => provider.to_owned(), "model" => model.to_owned(), "direction" => "input")
            .increment(usage.input_tokens);
    }
    if usage.output_tokens > 0 {
        metrics::counter!(names::TOKENS, "provider" => provider.to_owned(), "model" => model.to_owned(), "direction" => "output")
            .increment(usage.output_tokens);
    }
}

fn record_ok(span: &Span, response: &ChatResponse, seconds: f64) {
    let meta = &response.meta;
    let provider = meta.provider.as_deref().unwrap_or("unknown");
    let model = meta.model.as_deref().unwrap_or(&response.model);
    span.record("outcome", "ok");
    span.record("tier", meta.tier.as_str());
    span.record("provider", provider);
    span.record("answered_model", model);
    if let Some(target) = &meta.target {
        span.record("target", target.as_str());
    }
    span.record("attempts", meta.attempts);
    span.record("fallback_depth", meta.fallback_depth);
    span.record("latency_ms", seconds * 1e3);
    metrics::counter!(names::REQUESTS, "outcome" => "ok", "tier" => meta.tier.as_str(), "kind" => "none", "class" => "none")
        .increment(1);
    metrics::histogram!(names::FALLBACK_DEPTH).record(f64::from(meta.fallback_depth));
    metrics::histogram!(names::REQUEST_DURATION, "outcome" => "ok").record(seconds);
    count_tokens(provider, model, response.total_usage());
    if let Some(cost) = meta.cost {
        metrics::histogram!(names::REQUEST_COST, "provider" => provider.to_owned()).record(cost);
    }
}

fn record_err(span: &Span, error: &LlmError, seconds: f64) {
    span.record("outcome", "error");
    span.record("tier", "none");
    span.record("error_kind", error.kind.as_str());
    if let Some(status) = error.status {
        span.record("status", status);
    }
    if let Some(provider) = &error.provider {
        span.record("provider", provider.as_str());
    }
    span.record("attempts", error.attempts);
    span.record("latency_ms", seconds * 1e3);
    metrics::counter!(names::REQUESTS, "outcome" => "error", "tier" => "none", "kind" => error.kind.as_str(), "class" => error.class().as_str())
        .increment(1);
    metrics::histogram!(names::REQUEST_DURATION, "outcome" => "error").record(seconds);
    count_error_tokens(error);
}

/// Counts the tokens of a failed request where they were spent: each
/// target's error (and, for nested chains, theirs) under its own provider.
fn count_error_tokens(error: &LlmError) {
    count_tokens(
        error.provider.as_deref().unwrap_or("unknown"),
        error.model.as_deref().unwrap_or("unknown"),
        error.spent,
    );
    for earlier in &error.earlier {
        count_error_tokens(earlier);
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<ChatResponse, E>>,
    E: Into<BoxError>,
{
    type Output = Result<ChatResponse, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            ready!(this.inner.poll(cx)).map_err(to_llm)
        };
        *this.done = true;
        let seconds = this.started.elapsed().as_secs_f64();
        match &result {
            Ok(response) => record_ok(this.span, response, seconds),
            Err(error) => record_err(this.span, error, seconds),
        }
        Poll::Ready(result)
    }
}
