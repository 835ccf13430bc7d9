//! The validate response future: ask, check, ask again.

use super::ValidateConfig;
use super::check::{self, Invalid};
use crate::into_llm::to_llm;
use crate::metrics as names;
use pin_project_lite::pin_project;
use staunch_core::{Answer, BoxError, Call, ChatRequest, ChatResponse, ErrorKind, LlmError, Usage};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower::util::Oneshot;
use tower_service::Service;

pin_project! {
    #[project = StateProj]
    enum State<S, F, C>
    where
        S: Service<C>,
    {
        First { #[pin] call: F },
        Again { #[pin] call: Oneshot<S, C> },
    }
}

pin_project! {
    /// The response future of [`Validate`](super::Validate).
    pub struct ResponseFuture<S, C = ChatRequest>
    where
        S: Service<C>,
    {
        #[pin]
        state: State<S, S::Future, C>,
        spare: S,
        request: C,
        config: Arc<ValidateConfig>,
        // Answers rejected so far, the calls they took, and their tokens.
        rejected: u32,
        rejected_calls: u32,
        spent: Usage,
    }
}

impl<S, C> ResponseFuture<S, C>
where
    C: Call,
    S: Service<C>,
{
    pub(super) fn new(mut ready: S, spare: S, request: C, config: Arc<ValidateConfig>) -> Self {
        let call = ready.call(request.clone());
        ResponseFuture {
            state: State::First { call },
            spare,
            request,
            config,
            rejected: 0,
            rejected_calls: 0,
            spent: Usage::default(),
        }
    }
}

/// Checks a chat answer; the checks are about tool calls and structured
/// output, which only chat has, so any other operation's answer passes.
fn validate<C: Call>(
    config: &ValidateConfig,
    request: &C,
    answer: &C::Answer,
) -> Result<(), Invalid> {
    let request = (request as &dyn std::any::Any).downcast_ref::<ChatRequest>();
    match (request, answer.as_chat()) {
        (Some(request), Some(answer)) => validate_chat(config, request, answer),
        _ => Ok(()),
    }
}

fn validate_chat(
    config: &ValidateConfig,
    request: &ChatRequest,
    answer: &ChatResponse,
) -> Result<(), Invalid> {
    if config.tool_arguments {
        check::tool_calls(request, answer)?;
    }
    if config.json_output {
        check::json_output(request, answer)?;
    }
    config.custom(request, answer)
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
            let result = match this.state.as_mut().project() {
                StateProj::First { call } => ready!(call.poll(cx)).map_err(to_llm),
                StateProj::Again { call } => ready!(call.poll(cx)).map_err(to_llm),
            };
            let mut answer = match result {
                Ok(answer) => answer,
                Err(mut error) => {
                    error.add_attempts(*this.rejected_calls);
                    error.spent += *this.spent;
                    return Poll::Ready(Err(error));
                }
            };
            let invalid = match validate(this.config, this.request, &answer) {
                Ok(()) => {
                    answer
                        .meta_mut()
                        .absorb_failed_attempts(*this.rejected_calls, *this.spent);
                    return Poll::Ready(Ok(answer));
                }
                Err(invalid) => invalid,
            };
            crate::metrics::counter!(names::VALIDATION_FAILURES, "reason" => invalid.reason.as_str())
                .increment(1);
            tracing::debug!(
                target: "staunch::validate",
                reason = invalid.reason.as_str(),
                rejected = *this.rejected + 1,
                "answer failed validation"
            );
            *this.rejected += 1;
            *this.rejected_calls = this.rejected_calls.saturating_add(answer.meta().attempts);
            *this.spent += answer.total_usage();
            if *this.rejected <= this.config.retries {
                let service = this.spare.clone();
                this.state.set(State::Again {
                    call: Oneshot::new(service, this.request.clone()),
                });
                continue;
            }
            let meta = answer.meta();
            let mut error = LlmError::new(
                ErrorKind::ValidationFailed,
                format!(
                    "the answer failed validation {} time(s): {invalid}",
                    *this.rejected
                ),
            )
            .with_spent(*this.spent)
            .with_attempts(*this.rejected_calls);
            error.provider = meta.provider.clone();
            error.model = Some(answer.answered_model().to_owned());
            error.target = meta.target.as_deref().map(str::to_owned);
            return Poll::Ready(Err(error));
        }
    }
}
