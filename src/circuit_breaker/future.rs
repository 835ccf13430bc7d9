//! The circuit breaker response future and the permit it carries.

use super::state::{Admission, Breaker};
use crate::into_llm::to_llm;
use crate::stream_watch::StreamEnd;
use pin_project_lite::pin_project;
use staunch_core::{Answer, BoxError, LlmError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::time::Instant;

thread_local! {
    static BREAKER_REFS: crate::ref_pool::RefPools<Breaker> =
        const { crate::ref_pool::RefPools::new() };
}

/// An admission held from `poll_ready` to the call's end. Dropped before
/// the call ends (the caller gave up, an outer timeout fired), it gives back
/// a probe slot and counts the call as ignored, never as a success.
pub(crate) struct Permit {
    /// From this thread's pool (`ref_pool`), given back when the permit
    /// ends: `None` only while it is being dropped.
    breaker: Option<Arc<Breaker>>,
    admission: Admission,
    // Whether the call was made, and (only when a slow-call rule is set,
    // to keep the clock off the hot path) when it started.
    called: bool,
    started: Option<Instant>,
    settled: bool,
}

impl Permit {
    #[inline]
    pub(crate) fn new(breaker: &Arc<Breaker>, admission: Admission) -> Self {
        Permit {
            breaker: Some(crate::ref_pool::take(&BREAKER_REFS, breaker)),
            admission,
            called: false,
            started: None,
            settled: false,
        }
    }

    #[inline]
    pub(crate) fn admission(&self) -> Admission {
        self.admission
    }

    pub(crate) fn discard(mut self) {
        self.settled = true;
    }

    #[inline]
    fn elapsed(&self) -> std::time::Duration {
        self.started.map_or_else(Default::default, |s| s.elapsed())
    }

    #[inline]
    fn complete<A: Answer>(&mut self, result: &Result<A, LlmError>) {
        if let Some(breaker) = &self.breaker {
            breaker.complete(self.admission, result, self.elapsed());
        }
        self.settled = true;
    }

    /// Settles a call that answered, if the breaker judges answers by the
    /// default rule (every answer a success); false when its rule must see
    /// the answer, so [`complete`](Self::complete) is still to be called.
    #[inline]
    fn answered(&mut self) -> bool {
        match &self.breaker {
            Some(breaker) if !breaker.config.custom_outcome => {
                breaker.succeeded(self.admission, None, self.elapsed());
                self.settled = true;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn record(&mut self, outcome: super::Outcome) {
        if let Some(breaker) = &self.breaker {
            breaker.record(self.admission, outcome, None, self.elapsed());
        }
        self.settled = true;
    }

    /// The breaker's rule for judging an outcome.
    fn outcome_rule(&self) -> Option<Arc<super::config::OutcomeFn>> {
        self.breaker.as_ref().map(|b| b.config.outcome.clone())
    }

    #[inline]
    pub(crate) fn start(&mut self) {
        self.called = true;
        if self
            .breaker
            .as_ref()
            .is_some_and(|b| b.config.slow_call.is_some())
        {
            self.started = Some(Instant::now());
        }
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        let Some(breaker) = self.breaker.take() else {
            return;
        };
        if !self.settled {
            match self.admission {
                Admission::Probe { epoch } => {
                    breaker.release_probe(epoch);
                    if self.called {
                        breaker.stats.ignored.add(1);
                    }
                }
                Admission::Normal { .. } | Admission::Pass => {
                    // A permit taken in poll_ready but never used for a
                    // call (the service was dropped) is not a call at all.
                    if self.called {
                        breaker.stats.ignored.add(1);
                    }
                }
                Admission::Rejected { .. } => {}
            }
        }
        crate::ref_pool::give(&BREAKER_REFS, breaker);
    }
}

pin_project! {
    /// The response future of [`CircuitBreaker`](super::CircuitBreaker).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        permit: Option<Permit>,
        error: Option<LlmError>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn rejected(error: LlmError) -> Self {
        ResponseFuture {
            inner: None,
            permit: None,
            error: Some(error),
        }
    }

    #[inline]
    pub(super) fn running(inner: F, mut permit: Permit) -> Self {
        permit.start();
        ResponseFuture {
            inner: Some(inner),
            permit: Some(permit),
            error: None,
        }
    }
}

impl<F, A, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<A, E>>,
    A: Answer,
    E: Into<BoxError>,
{
    type Output = Result<A, LlmError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Err(this.error.take().unwrap_or_else(|| {
                LlmError::new(
                    staunch_core::ErrorKind::CircuitOpen,
                    "circuit breaker future polled after completion",
                )
            })));
        };
        let mut result = ready!(inner.poll(cx)).map_err(to_llm);
        if let Some(mut permit) = this.permit.take() {
            match &mut result {
                Ok(response) if response.is_streaming() && response.as_chat().is_some() => {
                    judge_at_end(response, permit);
                }
                // The default rule's verdict on an answer, without asking it.
                Ok(_) if permit.answered() => {}
                _ => permit.complete(&result),
            }
        }
        Poll::Ready(result)
    }
}

/// A streamed answer is judged at its end: a break after the commit point
/// is a failure of this target.
#[inline(never)]
fn judge_at_end<A: Answer>(response: &mut A, mut permit: Permit) {
    let Some(response) = response.as_chat_mut() else {
        return; // Not reached: the caller checked. Counted as ignored.
    };
    let outcome = permit.outcome_rule();
    crate::stream_watch::watch(response, move |end, _| match end {
        StreamEnd::Complete => permit.record(super::Outcome::Success),
        StreamEnd::Broke(error) => {
            let verdict = outcome
                .as_ref()
                .map_or(super::Outcome::Failure, |rule| rule(&Err(shallow(error))));
            permit.record(verdict);
        }
        // Permit's drop: the call counts as ignored.
        StreamEnd::Dropped => drop(permit),
    });
}

use super::state::shallow;
