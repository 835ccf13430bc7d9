//! The hedging service and its response future.

use super::layer::Shared;
use super::{HEDGES, HedgeRoute, NonIdempotent};
use crate::deadline::{Bounded, Deadline};
use crate::into_llm::to_llm;
use crate::metrics::counter;
use pin_project_lite::pin_project;
use staunch_core::{Answer, BoxError, Call, ChatRequest, LlmError, Usage};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};
use tower::util::Oneshot;
use tower_service::Service;

/// Sends a second attempt of a call that runs longer than the observed
/// p95 (or a fixed delay) and answers with whichever answers first (see
/// the [module](super)).
#[derive(Clone)]
pub struct Hedge<S> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for Hedge<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("inner", &self.inner)
            .field("delay", &self.shared.delay())
            .finish()
    }
}

pin_project! {
    /// The hedge waiting for its moment: the timer, and the service and
    /// call it will send.
    struct Planned<S, C> {
        #[pin]
        timer: Sleep,
        spare: Option<(S, C)>,
    }
}

pin_project! {
    /// The response future of [`Hedge`].
    pub struct ResponseFuture<S, C = ChatRequest>
    where
        S: Service<C>,
        C: Call,
    {
        #[pin]
        first: Option<Bounded<S::Future>>,
        #[pin]
        second: Option<Bounded<Oneshot<S, C>>>,
        planned: Option<Pin<Box<Planned<S, C>>>>,
        shared: Arc<Shared>,
        deadline: Option<Deadline>,
        started: Instant,
        second_started: Instant,
        // The first failure, while the other attempt runs on.
        failed: Option<LlmError>,
        // The call's input estimate: what a cancelled attempt is counted to
        // have spent.
        prompt: u64,
    }
}

impl<S, C> fmt::Debug for ResponseFuture<S, C>
where
    S: Service<C>,
    C: Call,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("first", &self.first.is_some())
            .field("second", &self.second.is_some())
            .field("planned", &self.planned.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, C> Service<C> for Hedge<S>
where
    C: Call,
    S: Service<C, Response = C::Answer> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = C::Answer;
    type Error = LlmError;
    type Future = ResponseFuture<S, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx).map_err(to_llm)
    }

    fn call(&mut self, mut request: C) -> ResponseFuture<S, C> {
        let shared = &self.shared;
        shared.config.budget.deposit();
        let deadline = Deadline::of(&request);
        let delay = if request.extensions().get::<NonIdempotent>().is_some() {
            None
        } else {
            shared.delay()
        };
        // The hedge must have its delay to answer before the deadline.
        let delay = delay.filter(|d| deadline.is_none_or(|dl| !dl.would_pass(d.saturating_mul(2))));
        let planned = delay.map(|delay| {
            // Both attempts time their answers from one start.
            request.start_clock();
            let route = HedgeRoute::default();
            let mut second = request.clone();
            second.extensions_mut().insert(route.for_second());
            request.extensions_mut().insert(route);
            Box::pin(Planned {
                timer: tokio::time::sleep(delay),
                spare: Some((self.inner.clone(), second)),
            })
        });
        let started = Instant::now();
        ResponseFuture {
            first: Some(Bounded::new(self.inner.call(request), deadline)),
            second: None,
            planned,
            shared: self.shared.clone(),
            deadline,
            started,
            second_started: started,
            failed: None,
            prompt: 0,
        }
    }
}

/// Folds the other attempt's failure into the last one.
fn both_failed(mut last: LlmError, other: Option<LlmError>) -> LlmError {
    if let Some(other) = other {
        last.add_attempts(other.attempts);
        let total = last.spent + other.total_spent();
        last = last.with_spent(total);
    }
    last
}

impl<S, C> Future for ResponseFuture<S, C>
where
    C: Call,
    S: Service<C, Response = C::Answer>,
    S::Error: Into<BoxError>,
{
    type Output = Result<C::Answer, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some(first) = this.first.as_mut().as_pin_mut()
                && let Poll::Ready(result) = first.poll(cx)
            {
                this.first.set(None);
                match result {
                    Ok(mut answer) => {
                        let hedged = this.second.is_some();
                        this.second.set(None);
                        if hedged {
                            counter!(HEDGES, "outcome" => "lost").increment(1);
                        }
                        settle(&mut answer, this.failed.take(), hedged, *this.prompt);
                        this.shared.latency.record(this.started.elapsed());
                        return Poll::Ready(Ok(answer));
                    }
                    Err(error) if this.second.is_some() => *this.failed = Some(error),
                    Err(error) => {
                        // Failed before any hedge: the error goes up to
                        // whatever retries or falls back.
                        *this.planned = None;
                        return Poll::Ready(Err(both_failed(error, this.failed.take())));
                    }
                }
            }
            if let Some(second) = this.second.as_mut().as_pin_mut()
                && let Poll::Ready(result) = second.poll(cx)
            {
                this.second.set(None);
                match result {
                    Ok(mut answer) => {
                        let cancelled = this.first.is_some();
                        this.first.set(None);
                        counter!(HEDGES, "outcome" => "won").increment(1);
                        settle(&mut answer, this.failed.take(), cancelled, *this.prompt);
                        this.shared.latency.record(this.second_started.elapsed());
                        return Poll::Ready(Ok(answer));
                    }
                    Err(error) if this.first.is_some() => *this.failed = Some(error),
                    Err(error) => return Poll::Ready(Err(both_failed(error, this.failed.take()))),
                }
            }
            let Some(planned) = this.planned.as_mut() else {
                return Poll::Pending;
            };
            if planned.as_mut().project().timer.poll(cx).is_pending() {
                return Poll::Pending;
            }
            let spare = planned.as_mut().project().spare.take();
            *this.planned = None;
            let Some((service, request)) = spare else {
                return Poll::Pending;
            };
            if this.first.is_none() {
                return Poll::Pending;
            }
            if let Some(d) = this.deadline
                && d.would_pass(this.started.elapsed())
            {
                counter!(HEDGES, "outcome" => "deadline").increment(1);
                continue;
            }
            if !this.shared.config.budget.withdraw() {
                counter!(HEDGES, "outcome" => "budget").increment(1);
                tracing::debug!(target: "staunch::hedge", "hedge budget spent; waiting for the first attempt");
                continue;
            }
            tracing::debug!(
                target: "staunch::hedge",
                model = request.model(),
                after = ?this.started.elapsed(),
                "hedging a slow call"
            );
            counter!(HEDGES, "outcome" => "sent").increment(1);
            *this.prompt = request.estimated_input_tokens();
            *this.second_started = Instant::now();
            let deadline = *this.deadline;
            this.second
                .set(Some(Bounded::new(Oneshot::new(service, request), deadline)));
        }
    }
}

/// The winner's answer, with the other attempt's spend: its failure's, or
/// (`cancelled`: it was still running and is dropped) its prompt.
fn settle<A: Answer>(answer: &mut A, failed: Option<LlmError>, cancelled: bool, prompt: u64) {
    let meta = answer.meta_mut();
    if let Some(e) = failed {
        meta.absorb_failed_attempts(e.attempts, e.total_spent());
    }
    if cancelled {
        meta.absorb_failed_attempts(1, Usage::new(prompt, 0));
    }
}
