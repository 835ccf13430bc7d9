//! One attempt of the retry loop: error conversion, the deadline's cut and an
//! `llm.attempt` span.

use crate::deadline::{self, Bounded, Deadline};
use crate::into_llm::to_llm;
use pin_project_lite::pin_project;
use staunch_core::{Answer, BoxError, Call, LlmError};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower_service::Service;
use tracing::Span;

/// The 1-based number of the attempt a request clone is sent as; set by the
/// retry policy on the clone it sends next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AttemptNumber(pub(crate) u32);

/// Wraps the service below the retry loop: each call runs in its own
/// `llm.attempt` span, is cut when the request's [`Deadline`] comes (so an
/// attempt runs for at most `min(its own timeout, time left)`), is not
/// started once the deadline has passed, and any error becomes an
/// [`LlmError`].
#[derive(Clone, Debug)]
pub(crate) struct Attempt<S> {
    inner: S,
}

impl<S> Attempt<S> {
    pub(crate) fn new(inner: S) -> Self {
        Attempt { inner }
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    pub(crate) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C> Service<C> for Attempt<S>
where
    C: Call,
    S: Service<C, Response = C::Answer>,
    S::Error: Into<BoxError>,
{
    type Response = C::Answer;
    type Error = LlmError;
    type Future = AttemptFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx).map_err(to_llm)
    }

    #[inline]
    fn call(&mut self, request: C) -> Self::Future {
        let attempt = request
            .extensions()
            .get::<AttemptNumber>()
            .map_or(1, |n| n.0);
        let span = tracing::debug_span!(
            target: "staunch::retry",
            "llm.attempt",
            model = %request.model(),
            attempt,
            outcome = tracing::field::Empty,
            provider = tracing::field::Empty,
            error_kind = tracing::field::Empty,
            status = tracing::field::Empty,
        );
        let deadline = Deadline::of(&request);
        let inner = {
            let _entered = span.enter();
            deadline::start(deadline, || self.inner.call(request))
        };
        AttemptFuture { inner, span }
    }
}

pin_project! {
    /// The future of one attempt.
    pub(crate) struct AttemptFuture<F> {
        #[pin]
        inner: Bounded<F>,
        span: Span,
    }
}

impl<F, A, E> Future for AttemptFuture<F>
where
    F: Future<Output = Result<A, E>>,
    A: Answer,
    E: Into<BoxError>,
{
    type Output = Result<A, LlmError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            ready!(this.inner.poll(cx))
        };
        if !this.span.is_disabled() {
            match &result {
                Ok(response) => {
                    this.span.record("outcome", "ok");
                    if let Some(p) = &response.meta().provider {
                        this.span.record("provider", p.as_str());
                    }
                }
                Err(error) => {
                    this.span.record("outcome", "error");
                    this.span.record("error_kind", error.kind.as_str());
                    if let Some(p) = &error.provider {
                        this.span.record("provider", p.as_str());
                    }
                    if let Some(s) = error.status {
                        this.span.record("status", s);
                    }
                }
            }
        }
        Poll::Ready(result)
    }
}
