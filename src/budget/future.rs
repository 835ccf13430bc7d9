//! The budget response future and the settlement of a request's spend.

use super::layer::Shared;
use super::window::{Tick, ticks};
use crate::into_llm::to_llm;
use pin_project_lite::pin_project;
use staunch_core::{Answer, BoxError, LlmError, Price, Usage};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

/// A request's reservation in the window. Settling records the real spend;
/// dropping it unsettled (the caller gave up) releases the reservation and
/// records nothing.
pub(crate) struct Settle {
    shared: Arc<Shared>,
    price: Option<Price>,
    reserved: (u64, f64),
    settled: bool,
    /// The request's input estimate, for a stream that reports no usage.
    pub(crate) input_estimate: u64,
    /// The request's start, in the window's time: an answer came
    /// `latency` after it.
    started: Tick,
}

impl Settle {
    pub(crate) fn new(
        shared: Arc<Shared>,
        price: Option<Price>,
        reserved: (u64, f64),
        started: Tick,
    ) -> Self {
        Settle {
            shared,
            price,
            reserved,
            settled: false,
            input_estimate: 0,
            started,
        }
    }

    /// Moves the reservation out (into a stream's watcher), leaving this
    /// one settled.
    fn take(&mut self) -> Settle {
        let taken = Settle {
            shared: self.shared.clone(),
            price: self.price,
            reserved: self.reserved,
            settled: self.settled,
            input_estimate: self.input_estimate,
            started: self.started,
        };
        self.settled = true;
        taken
    }

    /// Records `usage` in the window: at `latency` after the request's
    /// start for an answer that measured it, else now.
    fn settle(&mut self, usage: Usage, cost: Option<f64>, latency: Duration) {
        let cost = cost.unwrap_or_else(|| self.price.map_or(0.0, |p| p.cost(&usage)));
        let now = if latency.is_zero() {
            self.shared.clock.now()
        } else {
            self.started.saturating_add(ticks(latency))
        };
        let mut window = self.shared.window_at(now);
        release(&mut window, self.reserved);
        window.record(now, usage.total(), cost);
        self.settled = true;
    }
}

fn release(window: &mut super::window::Window, (tokens, cost): (u64, f64)) {
    window.reserved_tokens = window.reserved_tokens.saturating_sub(tokens);
    window.reserved_cost = (window.reserved_cost - cost).max(0.0);
}

impl Drop for Settle {
    fn drop(&mut self) {
        if !self.settled && self.reserved != (0, 0.0) {
            release(&mut self.shared.window(), self.reserved);
        }
    }
}

pin_project! {
    /// The response future of [`Budget`](super::Budget).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = Proj]
    enum State<F> {
        // Refused before any call.
        Refused { error: Option<LlmError> },
        // Running; settles its spend when done.
        Running {
            #[pin]
            inner: F,
            settle: Settle,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn refused(error: LlmError, scope: &'static str) -> Self {
        tracing::info!(target: "staunch::budget", scope, message = %error, "refused");
        crate::metrics::counter!(crate::metrics::BUDGET_REFUSALS, "scope" => scope).increment(1);
        ResponseFuture {
            state: State::Refused { error: Some(error) },
        }
    }

    pub(super) fn running(inner: F, settle: Settle) -> Self {
        ResponseFuture {
            state: State::Running { inner, settle },
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            Proj::Refused { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                LlmError::new(
                    staunch_core::ErrorKind::BudgetExhausted,
                    "budget refusal polled again after completion",
                )
            }))),
            Proj::Running { inner, settle } => {
                let mut result = ready!(inner.poll(cx)).map_err(to_llm);
                match &mut result {
                    Ok(response) if response.is_streaming() && response.as_chat().is_some() => {
                        let Some(response) = response.as_chat_mut() else {
                            return Poll::Ready(result);
                        };
                        // Settled with the streamed usage when the stream
                        // ends, broken or dropped streams included.
                        let mut settle = settle.take();
                        let failed = response.meta.failed_usage;
                        let input = settle.input_estimate;
                        crate::stream_watch::watch(response, move |end, tally| {
                            let usage = match end {
                                crate::stream_watch::StreamEnd::Broke(error)
                                    if !error.spent.is_zero() =>
                                {
                                    error.spent
                                }
                                _ => tally.usage_or_estimate(input),
                            };
                            settle.settle(usage + failed, None, Duration::ZERO);
                        });
                    }
                    Ok(response) => settle.settle(
                        response.total_usage(),
                        response.meta().cost,
                        response.meta().latency,
                    ),
                    Err(error) => settle.settle(error.total_spent(), None, Duration::ZERO),
                }
                Poll::Ready(result)
            }
        }
    }
}
