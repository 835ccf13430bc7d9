//! The shared quota's response future.

use super::state::{Grant, Quota};
use pin_project_lite::pin_project;
use staunch_core::{Answer, BoxError, Call, ChatRequest, LlmError};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower_service::Service;

pub(super) type Decision = Pin<Box<dyn Future<Output = Result<Grant, LlmError>> + Send>>;

pin_project! {
    #[project = StateProj]
    enum State<S, F, C> {
        // Waiting for the shared decision.
        Admitting {
            decision: Decision,
            service: Option<S>,
            request: Option<C>,
        },
        // Admitted: the inner call.
        Calling {
            #[pin]
            call: F,
            grant: Grant,
        },
        // Refused before calling.
        Refused {
            error: Option<LlmError>,
        },
    }
}

pin_project! {
    /// The response future of [`SharedQuota`](super::SharedQuota): the
    /// admission (when it needs Redis), then the inner call, whose usage
    /// settles the token reservation.
    pub struct ResponseFuture<S, C = ChatRequest>
    where
        S: Service<C>,
    {
        #[pin]
        state: State<S, S::Future, C>,
        quota: Option<Arc<Quota>>,
    }
}

impl<C, S: Service<C>> ResponseFuture<S, C> {
    pub(super) fn calling(call: S::Future, quota: Arc<Quota>, grant: Grant) -> Self {
        ResponseFuture {
            state: State::Calling { call, grant },
            quota: Some(quota),
        }
    }

    pub(super) fn refused(error: LlmError) -> Self {
        ResponseFuture {
            state: State::Refused { error: Some(error) },
            quota: None,
        }
    }

    pub(super) fn admitting(decision: Decision, service: S, request: C, quota: Arc<Quota>) -> Self {
        ResponseFuture {
            state: State::Admitting {
                decision,
                service: Some(service),
                request: Some(request),
            },
            quota: Some(quota),
        }
    }
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
            match this.state.as_mut().project() {
                StateProj::Admitting {
                    decision,
                    service,
                    request,
                } => {
                    let grant = match ready!(decision.as_mut().poll(cx)) {
                        Ok(grant) => grant,
                        Err(refused) => return Poll::Ready(Err(refused)),
                    };
                    let (Some(mut service), Some(request)) = (service.take(), request.take())
                    else {
                        return Poll::Ready(Err(LlmError::new(
                            staunch_core::ErrorKind::Other,
                            "shared quota future polled after completion",
                        )));
                    };
                    let call = service.call(request);
                    this.state.set(State::Calling { call, grant });
                }
                StateProj::Calling { call, grant } => {
                    let result = ready!(call.poll(cx)).map_err(|e| LlmError::from_box(e.into()));
                    if let Some(quota) = this.quota.take() {
                        settle(&quota, *grant, &result);
                    }
                    return Poll::Ready(result);
                }
                StateProj::Refused { error } => {
                    return Poll::Ready(Err(error.take().unwrap_or_else(|| {
                        LlmError::new(
                            staunch_core::ErrorKind::Other,
                            "shared quota future polled after completion",
                        )
                    })));
                }
            }
        }
    }
}

/// Settles the token reservation: with the billed usage of a complete
/// answer, with what a failure spent; a streamed answer keeps its
/// reservation (its usage is known only at its end).
fn settle<A: Answer>(quota: &Arc<Quota>, grant: Grant, result: &Result<A, LlmError>) {
    if grant.tokens == 0 {
        return;
    }
    let used = match result {
        Ok(response) if !response.is_streaming() => {
            let u = &response.usage();
            let total = u.input_tokens + u.output_tokens;
            if total == 0 {
                // No usage reported: keep the reservation.
                return;
            }
            total
        }
        Ok(_) => return,
        Err(error) => {
            let spent = error.total_spent();
            spent.input_tokens + spent.output_tokens
        }
    };
    quota.settle(grant, used);
}

impl<C, S: Service<C>> fmt::Debug for ResponseFuture<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
