//! The instrumentation service.

use super::future::ResponseFuture;
use crate::into_llm::to_llm;
use staunch_core::{BoxError, Call, LlmError};
use std::task::{Context, Poll};
use tokio::time::Instant;
use tower_service::Service;

/// Wraps a logical request in a `llm.request` tracing span (fields: the
/// requested `model`; on completion `outcome`, `tier`, `provider`,
/// `answered_model`, `target`, `attempts`, `fallback_depth`, `error_kind`,
/// `status`, `latency_ms`) and records the request metrics of
/// [`names`](super::names) when it ends: [`REQUESTS`](super::names::REQUESTS),
/// [`REQUEST_DURATION`](super::names::REQUEST_DURATION),
/// [`TOKENS`](super::names::TOKENS) and
/// [`REQUEST_COST`](super::names::REQUEST_COST). A request dropped before it
/// ends is counted as `cancelled`.
#[derive(Clone, Debug)]
pub struct Instrument<S> {
    pub(super) inner: S,
    pub(super) spans: bool,
    pub(super) span_outcome: bool,
}

impl<S> Instrument<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Instrument {
            inner,
            spans: true,
            span_outcome: true,
        }
    }

    /// Whether each request gets its `llm.request` span (default `true`);
    /// see [`InstrumentLayer::spans`](super::InstrumentLayer::spans).
    pub fn spans(mut self, on: bool) -> Self {
        self.spans = on;
        self
    }

    /// Whether the `llm.request` span gets the request's outcome fields
    /// when the request ends (default `true`); see
    /// [`InstrumentLayer::span_outcome`](super::InstrumentLayer::span_outcome).
    pub fn span_outcome(mut self, record: bool) -> Self {
        self.span_outcome = record;
        self
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C> Service<C> for Instrument<S>
where
    C: Call,
    S: Service<C, Response = C::Answer>,
    S::Error: Into<BoxError>,
{
    type Response = C::Answer;
    type Error = LlmError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx).map_err(to_llm)
    }

    fn call(&mut self, mut request: C) -> Self::Future {
        // The first layer to see the request starts its clock: the answer's
        // latency then runs from this same start, and is this request's
        // duration. Inside another such layer (per target, say) this one
        // times itself.
        let (started, owns_clock) = match request.started() {
            None => (request.start_clock(), true),
            Some(_) => (Instant::now(), false),
        };
        let span = if self.spans {
            request_span(&request)
        } else {
            tracing::Span::none()
        };
        let (operation, model) = (
            request.operation(),
            super::request_model::shared(request.model()),
        );
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        ResponseFuture::new(
            future,
            span,
            started,
            owns_clock,
            self.span_outcome,
            operation,
            model,
        )
    }
}

/// The `llm.request` span of `request`.
fn request_span<C: Call>(request: &C) -> tracing::Span {
    // The GenAI attributes' names are `semconv::attr`'s (a test checks
    // them against this declaration).
    tracing::info_span!(
        target: "staunch",
        "llm.request",
        // OpenTelemetry's span name: `{operation} {model}` (formatted
        // only when a subscriber wants the span).
        otel.name = %format_args!("{} {}", request.operation().as_str(), request.model()),
        otel.kind = "client",
        gen_ai.operation.name = request.operation().as_str(),
        gen_ai.request.model = request.model(),
        // Signed: OpenTelemetry has no unsigned integers.
        gen_ai.request.max_tokens = request
            .max_output_tokens()
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        gen_ai.request.stream = request.is_stream(),
        gen_ai.provider.name = tracing::field::Empty,
        gen_ai.response.model = tracing::field::Empty,
        gen_ai.response.id = tracing::field::Empty,
        gen_ai.response.finish_reasons = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        error.type = tracing::field::Empty,
        server.address = tracing::field::Empty,
        server.port = tracing::field::Empty,
        model = request.model(),
        outcome = tracing::field::Empty,
        tier = tracing::field::Empty,
        provider = tracing::field::Empty,
        answered_model = tracing::field::Empty,
        target = tracing::field::Empty,
        attempts = tracing::field::Empty,
        fallback_depth = tracing::field::Empty,
        error_kind = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    )
}
