//! The retry service.

use super::RetryConfig;
use super::attempt::Attempt;
use super::future::ResponseFuture;
use super::policy::LlmPolicy;
use staunch_core::{BoxError, Call, LlmError};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Retries failed LLM calls with exponential backoff and full jitter,
/// honouring `Retry-After`, a retry budget and the request's deadline.
///
/// Built on [`tower::retry::Retry`]. The inner service may fail with any
/// error tower produces (`BoxError`, tower's `Elapsed`, an [`LlmError`]);
/// `Retry` fails with [`LlmError`], whose `attempts` and `spent` cover every
/// attempt. On success it adds to [`ResponseMeta`](staunch_core::ResponseMeta)
/// the failed attempts, the time waited and the failed attempts' tokens. It
/// starts the request's clock ([`ChatRequest::start_clock`](staunch_core::ChatRequest::start_clock)), so the latency
/// the answer carries runs from before the first attempt.
///
/// The inner service is cloned for each request (tower's retry contract),
/// so it should be cheap to clone (`Arc` inside, or a `BoxCloneService`).
pub struct Retry<S> {
    inner: tower::retry::Retry<LlmPolicy, Attempt<S>>,
}

impl<S> Retry<S> {
    /// Wraps `inner` with the retry behaviour of `config`.
    pub fn new(inner: S, config: RetryConfig) -> Self {
        Self::from_shared(Arc::new(config), inner)
    }

    pub(super) fn from_shared(config: Arc<RetryConfig>, inner: S) -> Self {
        Retry {
            inner: tower::retry::Retry::new(LlmPolicy::new(config), Attempt::new(inner)),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref().get_ref()
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        self.inner.get_mut().get_mut()
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner.into_inner().into_inner()
    }
}

impl<S: Clone> Clone for Retry<S> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Retry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", self.get_ref())
            .finish_non_exhaustive()
    }
}

impl<S, C> Service<C> for Retry<S>
where
    C: Call,
    S: Service<C, Response = C::Answer> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = C::Answer;
    type Error = LlmError;
    type Future = ResponseFuture<S, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut request: C) -> Self::Future {
        request.start_clock();
        ResponseFuture::new(self.inner.call(request))
    }
}
