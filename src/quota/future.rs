//! The quota response future and the reconciliation of a reservation.

use super::lease::Leased;
use super::state::{Shared, Ticket};
use crate::into_llm::to_llm;
use crate::stream_watch::{StreamEnd, watch};
use pin_project_lite::pin_project;
use staunch_core::{Answer, BoxError, Call, ChatRequest, ErrorKind, LlmError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

/// A request's reservation. Before the call, dropping it (a waiter that
/// gave up) returns everything it reserved. Once the provider was called,
/// the request counts whatever happens, and its token reservation is
/// reconciled with what was billed.
pub(crate) struct Reservation {
    hold: Hold,
    pub(crate) called: bool,
    pub(crate) input_estimate: u64,
}

/// Where a reservation was taken.
enum Hold {
    /// From the buckets, exactly (a ticket to refund or reconcile; boxed,
    /// so that the fast lane's future stays small).
    Exact {
        shared: Arc<Shared>,
        ticket: Box<Ticket>,
    },
    /// From this thread's stock (`None` once given back).
    Leased(Option<Leased>),
}

impl Reservation {
    pub(crate) fn new(shared: Arc<Shared>, ticket: Ticket) -> Self {
        Reservation {
            hold: Hold::Exact {
                shared,
                ticket: Box::new(ticket),
            },
            called: false,
            input_estimate: 0,
        }
    }

    pub(crate) fn leased(leased: Leased) -> Self {
        Reservation {
            hold: Hold::Leased(Some(leased)),
            called: true,
            input_estimate: 0,
        }
    }

    /// The quota's state (`None` once a lease was given back).
    pub(crate) fn shared(&self) -> Option<&Shared> {
        match &self.hold {
            Hold::Exact { shared, .. } => Some(shared),
            Hold::Leased(leased) => leased.as_ref().map(|l| &*l.shared),
        }
    }

    fn settle(&mut self, billed: u64) {
        match &mut self.hold {
            Hold::Exact { shared, ticket } => shared.settle(ticket, billed),
            Hold::Leased(leased) => {
                if let Some(leased) = leased.take() {
                    leased.settle(Some(billed));
                }
            }
        }
    }

    /// Takes in the rate-limit headers and 429s the answer carries.
    fn observe<A: Answer>(&self, result: &Result<A, LlmError>) {
        let Some(shared) = self.shared() else { return };
        let headers = match result {
            Ok(response) => response.meta().rate_limit_headers.as_ref(),
            Err(error) => error.rate_limit_headers.as_ref(),
        };
        if let Some(headers) = headers {
            super::layer::observe(shared, &super::Observed::from_headers(headers));
        }
        if let Err(error) = result
            && shared.config.pause_on_rate_limit
            && error.kind == ErrorKind::RateLimited
            && error.status.is_some()
            && let Some(wait) = error.retry_after.filter(|w| !w.is_zero())
        {
            super::layer::observe(shared, &super::Observed::new().retry_after(wait));
        }
    }

    fn finish<A: Answer>(mut self, result: &mut Result<A, LlmError>) {
        self.observe(result);
        match result {
            Ok(response) if response.is_streaming() && response.as_chat().is_some() => {
                let Some(response) = response.as_chat_mut() else {
                    return;
                };
                // Reconciled with the streamed usage when the stream ends,
                // broken or dropped streams included.
                let failed = response.meta.failed_usage;
                let input = self.input_estimate;
                watch(response, move |end, tally| {
                    let usage = match end {
                        StreamEnd::Broke(error) if !error.spent.is_zero() => error.spent,
                        _ => tally.usage_or_estimate(input),
                    };
                    self.settle((usage + failed).total());
                });
            }
            Ok(response) => {
                let usage = response.total_usage();
                // No usage reported: nothing to reconcile with, so the
                // reservation stands.
                if !usage.is_zero() {
                    self.settle(usage.total());
                }
            }
            Err(error) => {
                // A provider that answered with an error status, or said
                // what it billed, is taken at its word; a call cut without
                // an answer (timeout, reset) may have been billed in full,
                // so its reservation stands.
                let spent = error.total_spent();
                if error.status.is_some() || !spent.is_zero() || error.kind == ErrorKind::Connect {
                    self.settle(spent.total());
                }
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        match &mut self.hold {
            Hold::Exact { shared, ticket } => {
                if !self.called {
                    shared.refund(ticket);
                }
            }
            // Never called: all of it goes back. Called but not reconciled
            // (no usage reported, or cut mid-call): the reservation stands.
            Hold::Leased(leased) => {
                if let Some(leased) = leased.take() {
                    let billed = self.called.then_some(leased.tokens);
                    leased.settle(billed);
                }
            }
        }
    }
}

/// A request waiting for its slot.
struct Waiting<S, C> {
    sleep: Pin<Box<Sleep>>,
    service: Option<S>,
    request: Option<C>,
    reservation: Option<Reservation>,
}

pin_project! {
    /// The response future of [`Quota`](super::Quota).
    pub struct ResponseFuture<S, F, C = ChatRequest> {
        #[pin]
        state: State<S, F, C>,
    }
}

pin_project! {
    #[project = Proj]
    enum State<S, F, C> {
        // Refused before any call.
        Refused { error: Option<LlmError> },
        // Waiting for its slot; the ready inner service and the request go
        // with it.
        // (Boxed: the admitted path's future stays small.)
        Waiting { waiting: Box<Waiting<S, C>> },
        // Called; reconciles its reservation when done.
        Running {
            #[pin]
            inner: F,
            reservation: Option<Reservation>,
        },
    }
}

impl<S, F, C> ResponseFuture<S, F, C> {
    pub(super) fn refused(shared: &Shared, error: LlmError, reason: &'static str) -> Self {
        tracing::info!(target: "staunch::quota", quota = %shared.config.name, reason, message = %error, "refused");
        crate::metrics::counter!(
            crate::metrics::QUOTA_REFUSALS,
            "quota" => shared.config.name.clone(),
            "reason" => reason
        )
        .increment(1);
        ResponseFuture {
            state: State::Refused { error: Some(error) },
        }
    }

    pub(super) fn running(inner: F, reservation: Reservation) -> Self {
        ResponseFuture {
            state: State::Running {
                inner,
                reservation: Some(reservation),
            },
        }
    }

    pub(super) fn waiting(
        service: S,
        request: C,
        until: Instant,
        reservation: Reservation,
    ) -> Self {
        crate::metrics::counter!(
            crate::metrics::QUOTA_WAITS,
            "quota" => reservation.shared().map_or_else(String::new, |s| s.config.name.clone())
        )
        .increment(1);
        ResponseFuture {
            state: State::Waiting {
                waiting: Box::new(Waiting {
                    sleep: Box::pin(tokio::time::sleep_until(until)),
                    service: Some(service),
                    request: Some(request),
                    reservation: Some(reservation),
                }),
            },
        }
    }
}

fn spent() -> LlmError {
    LlmError::new(ErrorKind::Other, "quota future polled after completion")
}

impl<S, F, C, E> Future for ResponseFuture<S, F, C>
where
    C: Call,
    S: Service<C, Response = C::Answer, Error = E, Future = F>,
    F: Future<Output = Result<C::Answer, E>>,
    E: Into<BoxError>,
{
    type Output = Result<C::Answer, LlmError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut state = self.as_mut().project().state;
            match state.as_mut().project() {
                Proj::Refused { error } => {
                    return Poll::Ready(Err(error.take().unwrap_or_else(spent)));
                }
                Proj::Waiting { waiting } => {
                    let Waiting {
                        sleep,
                        service,
                        request,
                        reservation,
                    } = &mut **waiting;
                    ready!(sleep.as_mut().poll(cx));
                    let Some(ready_service) = service.as_mut() else {
                        return Poll::Ready(Err(spent()));
                    };
                    if let Err(error) = ready!(ready_service.poll_ready(cx)) {
                        // Never called: the reservation goes back.
                        reservation.take();
                        service.take();
                        return Poll::Ready(Err(to_llm(error)));
                    }
                    let (Some(request), Some(mut reservation)) =
                        (request.take(), reservation.take())
                    else {
                        return Poll::Ready(Err(spent()));
                    };
                    reservation.called = true;
                    let inner = ready_service.call(request);
                    state.set(State::Running {
                        inner,
                        reservation: Some(reservation),
                    });
                }
                Proj::Running { inner, reservation } => {
                    let mut result = ready!(inner.poll(cx)).map_err(to_llm);
                    if let Some(reservation) = reservation.take() {
                        reservation.finish(&mut result);
                    }
                    return Poll::Ready(result);
                }
            }
        }
    }
}
