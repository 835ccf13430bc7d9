//! The quota service.

use super::future::{Reservation, ResponseFuture};
use super::state::{Refusal, Shared};
use crate::into_llm::to_llm;
use staunch_core::{BoxError, Call, Deadline, LlmError};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Admits requests to one target within its requests-per-minute and
/// tokens-per-minute (and per-day) limits, waiting for room when the wait
/// fits, refusing at once when it does not.
///
/// A refusal is an [`LlmError`] of kind
/// [`RateLimited`](staunch_core::ErrorKind::RateLimited) with `retry_after`
/// set to when room comes and `should_retry` false (final for this
/// target), made without calling the inner service; a request larger than
/// a whole token limit is refused with
/// [`RequestTooLarge`](staunch_core::ErrorKind::RequestTooLarge). See
/// [`QuotaConfig`](super::QuotaConfig) for the limits.
///
/// The inner service is cloned for a request that waits (it is called
/// after the wait), so it must be `Clone`, as every provider client is.
#[derive(Clone)]
pub struct Quota<S> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared>,
}

impl<S> Quota<S> {
    /// Wraps `inner` in a quota of its own enforcing `config`, or says why
    /// it can't be enforced. To share one quota between services, build a
    /// [`QuotaLayer`](super::QuotaLayer) and apply it to each.
    pub fn new(inner: S, config: super::QuotaConfig) -> Result<Self, super::InvalidQuota> {
        Ok(tower_layer::Layer::layer(
            &super::QuotaLayer::new(config)?,
            inner,
        ))
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// A handle on this service's limits.
    pub fn handle(&self) -> super::QuotaHandle {
        super::QuotaHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Quota<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quota")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish()
    }
}

impl<S, C> Service<C> for Quota<S>
where
    C: Call,
    S: Service<C, Response = C::Answer> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = C::Answer;
    type Error = LlmError;
    type Future = ResponseFuture<S, S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx).map_err(to_llm)
    }

    fn call(&mut self, request: C) -> Self::Future {
        // The fast lane: a thread's stock of permits taken ahead (see
        // `lease`), for roomy limits while the provider is not pushing back.
        // Streams take the exact path (their reconciliation is deferred).
        if !request.is_stream()
            && let Some(size) = self.shared.leasable()
        {
            let tokens = if size.tokens > 0 {
                self.shared.config.reservation(&request)
            } else {
                0
            };
            if let Some(leased) = super::lease::admit(&self.shared, size, tokens) {
                let reservation = Reservation::leased(leased);
                return ResponseFuture::running(self.inner.call(request), reservation);
            }
        }
        // Only the waiting path needs the deadline, and only token limits
        // the estimate.
        let tokens = if self.shared.counts_tokens() {
            self.shared.config.reservation(&request)
        } else {
            0
        };
        match self.shared.reserve(tokens, || Deadline::of(&request)) {
            Ok((ticket, None)) => {
                let mut reservation = Reservation::new(self.shared.clone(), ticket);
                if request.is_stream() {
                    reservation.input_estimate = request.estimated_input_tokens();
                }
                reservation.called = true;
                ResponseFuture::running(self.inner.call(request), reservation)
            }
            Ok((ticket, Some(until))) => {
                let mut reservation = Reservation::new(self.shared.clone(), ticket);
                if request.is_stream() {
                    reservation.input_estimate = request.estimated_input_tokens();
                }
                // The ready service goes with the request; a clone takes
                // its place here.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::waiting(ready, request, until, reservation)
            }
            Err(Refusal::TooLarge(error)) => {
                ResponseFuture::refused(&self.shared, error, "too_large")
            }
            Err(Refusal::Wait { error, reason }) => {
                ResponseFuture::refused(&self.shared, error, reason)
            }
        }
    }
}
