//! The circuit breaker service.

use super::future::{Permit, ResponseFuture};
use super::handle::CircuitBreakerHandle;
use super::state::{Admission, Breaker};
use crate::into_llm::to_llm;
use staunch_core::{BoxError, Call, ErrorKind, LlmError};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;
use tower_service::Service;

/// Fails fast while a target is down.
///
/// Closed, calls go through and their outcomes are counted; enough
/// failures (in a row, or as a rate over a window) open the circuit. Open,
/// every call fails at once with [`ErrorKind::CircuitOpen`], its
/// `retry_after` the time until the next probe, without touching the inner
/// service. After the break a few probe calls go through (half-open): enough
/// successes close the circuit, a failure opens it again.
///
/// Readiness follows tower's contract: the admission is decided in
/// `poll_ready` and held until `call` (like a concurrency-limit permit), so
/// the inner service is driven to readiness exactly when a call will be
/// made, and `poll_ready` itself never fails. A refused call does not poll
/// the inner service at all, so an open circuit holds no slot of an inner
/// concurrency limit. Clones share the circuit but not a held admission.
///
/// A call that finds the circuit half-open with every probe slot taken
/// waits in `poll_ready` for the probes' verdict, up to
/// [`half_open_wait`](super::CircuitBreakerConfig::half_open_wait): when
/// the probes close the circuit it goes through, when they open it again it
/// is refused. So a burst that arrives while a target is being probed is
/// not turned away wholesale.
pub struct CircuitBreaker<S> {
    inner: S,
    handle: CircuitBreakerHandle,
    permit: Option<Permit>,
    // While waiting for a half-open verdict: when to stop waiting.
    verdict_timer: Option<Pin<Box<Sleep>>>,
}

impl<S> CircuitBreaker<S> {
    pub(super) fn from_handle(handle: CircuitBreakerHandle, inner: S) -> Self {
        CircuitBreaker {
            inner,
            handle,
            permit: None,
            verdict_timer: None,
        }
    }

    /// Wraps `inner` in a breaker of its own configured by `config`, or says
    /// why the configuration can't work. To share one circuit between
    /// services, build a [`CircuitBreakerLayer`](super::CircuitBreakerLayer)
    /// and apply it to each.
    pub fn new(
        inner: S,
        config: super::CircuitBreakerConfig,
    ) -> Result<Self, super::InvalidCircuitBreaker> {
        Ok(tower_layer::Layer::layer(
            &super::CircuitBreakerLayer::new(config)?,
            inner,
        ))
    }

    /// The handle of this service's circuit.
    pub fn handle(&self) -> CircuitBreakerHandle {
        self.handle.clone()
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

impl<S: Clone> Clone for CircuitBreaker<S> {
    fn clone(&self) -> Self {
        CircuitBreaker {
            inner: self.inner.clone(),
            handle: self.handle.clone(),
            permit: None,
            verdict_timer: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for CircuitBreaker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("handle", &self.handle)
            .finish()
    }
}

impl<S, C> Service<C> for CircuitBreaker<S>
where
    C: Call,
    S: Service<C, Response = C::Answer>,
    S::Error: Into<BoxError>,
{
    type Response = C::Answer;
    type Error = LlmError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        let permit = match &mut self.permit {
            Some(permit) => permit,
            None => {
                let breaker = &self.handle.breaker;
                let admission = match breaker.closed_admission() {
                    // Closed: no verdict to wait for.
                    Some(admission) => {
                        if self.verdict_timer.is_some() {
                            self.verdict_timer = None;
                        }
                        admission
                    }
                    None => match wait_and_admit(breaker, &mut self.verdict_timer, cx) {
                        Poll::Ready(admission) => admission,
                        Poll::Pending => return Poll::Pending,
                    },
                };
                self.permit.insert(Permit::new(breaker, admission))
            }
        };
        if matches!(permit.admission(), Admission::Rejected { .. }) {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                // The call will not happen: give the admission back.
                self.permit = None;
                Poll::Ready(Err(to_llm(e)))
            }
            other => other.map_err(to_llm),
        }
    }

    #[inline]
    fn call(&mut self, mut request: C) -> Self::Future {
        let breaker = &self.handle.breaker;
        let permit = self
            .permit
            .take()
            .unwrap_or_else(|| Permit::new(breaker, breaker.acquire()));
        match permit.admission() {
            Admission::Rejected { wait, forced } => {
                permit.discard();
                ResponseFuture::rejected(refusal(&breaker.config.name, wait, forced))
            }
            Admission::Probe { .. } => {
                // One attempt: a retry layer below must not turn the probe
                // into a retry loop.
                request.extensions_mut().insert(crate::health::Probe);
                ResponseFuture::running(self.inner.call(request), permit)
            }
            Admission::Normal { .. } | Admission::Pass => {
                ResponseFuture::running(self.inner.call(request), permit)
            }
        }
    }
}

/// A call that found the circuit other than closed: waits, while the
/// circuit is half-open with every probe slot taken, for the probes'
/// verdict (up to `half_open_wait`), then asks for an admission. The wait
/// comes first so that one that ends well is not counted as a refusal.
fn wait_and_admit(
    breaker: &Breaker,
    verdict_timer: &mut Option<Pin<Box<Sleep>>>,
    cx: &mut Context<'_>,
) -> Poll<Admission> {
    let wait = breaker.config.half_open_wait;
    while !wait.is_zero() && breaker.probe_slots_taken() {
        let timer = verdict_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(wait)));
        if timer.as_mut().poll(cx).is_ready() {
            break; // Waited long enough: the admission below refuses.
        }
        if breaker.wait_for_verdict(cx.waker()) {
            return Poll::Pending;
        }
    }
    *verdict_timer = None;
    Poll::Ready(breaker.acquire())
}

/// The error of a refused call.
#[cold]
fn refusal(name: &str, wait: Option<Duration>, forced: bool) -> LlmError {
    let message = if forced {
        format!("circuit {name} is forced open")
    } else if wait.is_some() {
        format!("circuit {name} is open")
    } else {
        format!("circuit {name} is half-open and its probe slots are taken")
    };
    let mut error = LlmError::new(ErrorKind::CircuitOpen, message).with_attempts(0);
    error.retry_after = wait;
    error
}
