//! The retry response future: the retry loop itself.

use super::attempt::{Attempt, AttemptFuture};
use super::policy::Progress;
use super::service::Shared;
use pin_project_lite::pin_project;
use staunch_core::{BoxError, Call, ChatRequest, ErrorKind, LlmError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::time::Sleep;
use tower_service::Service;

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt in flight.
        Calling { #[pin] attempt: AttemptFuture<F> },
        // Waiting out the backoff or the server's Retry-After. Boxed: a
        // `Sleep` is larger than the rest of the future, and only a retry
        // pays for it.
        Waiting { sleep: Pin<Box<Sleep>> },
        // Driving the retry's service to readiness.
        Readying,
    }
}

pin_project! {
    /// The response future of [`Retry`](super::Retry), for a call of type
    /// `C` (a chat completion unless said otherwise): the attempt in
    /// flight, and what the next one needs.
    pub struct ResponseFuture<S, C = ChatRequest>
    where
        C: Call,
        S: Service<C, Response = C::Answer>,
        S::Error: Into<BoxError>,
    {
        #[pin]
        state: State<S::Future>,
        shared: Arc<Shared<S>>,
        // The request for the next attempt, while one may be made.
        next: Option<C>,
        // What only a request that failed once needs, boxed at its first
        // failure so that the future a success moves through the layers
        // above stays small.
        retrying: Option<Box<Retrying<S>>>,
    }
}

/// The retry loop's state after a first failure.
struct Retrying<S> {
    // The service retries go to, cloned at the first retry.
    service: Option<Attempt<S>>,
    progress: Progress,
}

impl<S, C> ResponseFuture<S, C>
where
    C: Call,
    S: Service<C, Response = C::Answer>,
    S::Error: Into<BoxError>,
{
    #[inline]
    pub(super) fn new(
        first: AttemptFuture<S::Future>,
        shared: Arc<Shared<S>>,
        next: Option<C>,
    ) -> Self {
        ResponseFuture {
            state: State::Calling { attempt: first },
            shared,
            next,
            retrying: None,
        }
    }
}

impl<S, C> Future for ResponseFuture<S, C>
where
    C: Call,
    S: Service<C, Response = C::Answer> + Clone,
    S::Error: Into<BoxError>,
{
    type Output = Result<C::Answer, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { attempt } => {
                    let mut result = ready!(attempt.poll(cx));
                    if this.retrying.is_none() {
                        if result.is_ok() {
                            // The first attempt answered: nothing to add.
                            return Poll::Ready(result);
                        }
                        *this.retrying = Some(Box::new(Retrying {
                            service: None,
                            progress: Progress::default(),
                        }));
                    }
                    let Some(retrying) = this.retrying.as_mut() else {
                        return Poll::Ready(Err(lost("state")));
                    };
                    let config = &this.shared.config;
                    match retrying
                        .progress
                        .after(config, this.next.as_mut(), &mut result)
                    {
                        None => return Poll::Ready(result),
                        Some(wait) => this.state.set(State::Waiting {
                            sleep: Box::pin(tokio::time::sleep(wait)),
                        }),
                    }
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Readying);
                }
                StateProj::Readying => {
                    let Some(retrying) = this.retrying.as_mut() else {
                        return Poll::Ready(Err(lost("state")));
                    };
                    if retrying.service.is_none() {
                        retrying.service = this.shared.spare();
                    }
                    let Some(service) = retrying.service.as_mut() else {
                        return Poll::Ready(Err(lost("service")));
                    };
                    ready!(service.poll_ready(cx))?;
                    let Some(request) = this.next.take() else {
                        return Poll::Ready(Err(lost("request")));
                    };
                    if retrying.progress.may_retry_again(&this.shared.config) {
                        *this.next = Some(request.clone());
                    }
                    let attempt = service.call(request);
                    this.state.set(State::Calling { attempt });
                }
            }
        }
    }
}

/// A retry decided without what it needs: the loop keeps a copy of the
/// request whenever a retry may be decided and makes the spare service at
/// the first call, so this is a defect, reported rather than panicked on.
#[cold]
fn lost(what: &str) -> LlmError {
    LlmError::new(
        ErrorKind::Other,
        format!("retry: no {what} for the next attempt"),
    )
}
