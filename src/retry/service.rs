//! The retry service.

use super::RetryConfig;
use super::attempt::Attempt;
use super::future::ResponseFuture;
use staunch_core::{BoxError, Call, LlmError};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use tower_service::Service;

/// Retries failed LLM calls with exponential backoff and full jitter,
/// honouring `Retry-After`, a retry budget and the request's deadline.
///
/// The inner service may fail with any error tower produces (`BoxError`,
/// tower's `Elapsed`, an [`LlmError`]); `Retry` fails with [`LlmError`],
/// whose `attempts` and `spent` cover every attempt. On success it adds to
/// [`ResponseMeta`](staunch_core::ResponseMeta) the failed attempts, the
/// time waited and the failed attempts' tokens. It starts the request's
/// clock ([`ChatRequest::start_clock`](staunch_core::ChatRequest::start_clock)),
/// so the latency the answer carries runs from before the first attempt.
///
/// The first attempt goes to the service that `poll_ready` readied, as
/// tower's contract asks. A retry goes to a clone of the inner service,
/// driven to readiness before the call; that clone is taken when a retry
/// happens (from a copy kept since the first call), so a request that
/// succeeds at once clones no service. The inner service should therefore
/// be cheap to clone (`Arc` inside, or a `BoxCloneService`), and its clones
/// should share what matters (a breaker, a quota, a connection pool), as
/// tower's and staunch's services do. A copy of the request is kept for the
/// next attempt only while the configuration allows one.
pub struct Retry<S> {
    inner: Attempt<S>,
    shared: Arc<Shared<S>>,
}

/// What every clone of a `Retry` and every one of its futures shares.
pub(super) struct Shared<S> {
    pub(super) config: RetryConfig,
    /// A clone of the inner service, made at the first call, that retries
    /// are cloned from.
    spare: OnceLock<Mutex<Attempt<S>>>,
}

impl<S: Clone> Shared<S> {
    /// A clone of the inner service for a retry.
    pub(super) fn spare(&self) -> Option<Attempt<S>> {
        let spare = self.spare.get()?;
        Some(spare.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }
}

impl<S> Retry<S> {
    /// Wraps `inner` with the retry behaviour of `config`.
    pub fn new(inner: S, config: RetryConfig) -> Self {
        Retry {
            inner: Attempt::new(inner),
            shared: Arc::new(Shared {
                config,
                spare: OnceLock::new(),
            }),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }

    /// The inner service, mutably. Retries of calls made after the first
    /// go to clones of the inner service as it was at the first call.
    pub fn get_mut(&mut self) -> &mut S {
        self.inner.get_mut()
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner.into_inner()
    }
}

impl<S: Clone> Clone for Retry<S> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Retry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", self.get_ref())
            .field("config", &self.shared.config)
            .finish()
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
        let started = request.start_clock();
        let config = &self.shared.config;
        if let Some(budget) = &config.budget {
            budget.deposit_at(started);
        }
        let copy = if config.max_retries > 0 {
            self.shared
                .spare
                .get_or_init(|| Mutex::new(self.inner.clone()));
            Some(request.clone())
        } else {
            None
        };
        let first = self.inner.call(request);
        ResponseFuture::new(first, self.shared.clone(), copy)
    }
}
