//! The batch-splitting response future: the parts, one after another.

use crate::into_llm::to_llm;
use pin_project_lite::pin_project;
use staunch_core::{Answer, BoxError, Call, ChatRequest, ErrorKind, LlmError, Usage};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower::util::Oneshot;
use tower_service::Service;

/// A split batch in flight: the part being asked, the parts left and the
/// answers so far.
struct Parts<S, C: Call>
where
    S: Service<C>,
{
    current: Pin<Box<Oneshot<S, C>>>,
    left: VecDeque<C>,
    spare: S,
    answers: Vec<C::Answer>,
}

pin_project! {
    #[project = Proj]
    enum State<S, C>
    where
        C: Call,
        S: Service<C>,
    {
        Whole { #[pin] call: S::Future },
        // Boxed: the common path (no split) stays small.
        Parts { parts: Box<Parts<S, C>> },
        Done,
    }
}

pin_project! {
    /// The response future of [`SplitBatch`](super::SplitBatch).
    pub struct ResponseFuture<S, C = ChatRequest>
    where
        C: Call,
        S: Service<C>,
    {
        #[pin]
        state: State<S, C>,
    }
}

impl<S, C> ResponseFuture<S, C>
where
    C: Call,
    S: Service<C>,
{
    pub(super) fn whole(call: S::Future) -> Self {
        ResponseFuture {
            state: State::Whole { call },
        }
    }

    pub(super) fn parts(ready: S, spare: S, parts: Vec<C>) -> Self {
        let mut left: VecDeque<C> = parts.into();
        let Some(first) = left.pop_front() else {
            return ResponseFuture { state: State::Done };
        };
        let answers = Vec::with_capacity(left.len() + 1);
        ResponseFuture {
            state: State::Parts {
                parts: Box::new(Parts {
                    current: Box::pin(Oneshot::new(ready, first)),
                    left,
                    spare,
                    answers,
                }),
            },
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
        let mut state = self.project().state;
        match state.as_mut().project() {
            Proj::Whole { call } => call.poll(cx).map_err(to_llm),
            Proj::Done => Poll::Ready(Err(LlmError::new(
                ErrorKind::Other,
                "batch future polled after completion",
            ))),
            Proj::Parts { parts } => loop {
                match ready!(parts.current.as_mut().poll(cx)) {
                    Ok(answer) => parts.answers.push(answer),
                    Err(error) => {
                        // The parts answered so far were billed and took
                        // calls: the error says so.
                        let mut error = to_llm(error);
                        let (calls, spent) = parts.answers.iter().fold(
                            (0u32, Usage::default()),
                            |(calls, spent), a| {
                                (
                                    calls.saturating_add(a.meta().attempts),
                                    spent + a.total_usage(),
                                )
                            },
                        );
                        error.add_attempts(calls);
                        error.spent += spent;
                        state.set(State::Done);
                        return Poll::Ready(Err(error));
                    }
                }
                match parts.left.pop_front() {
                    Some(next) => {
                        parts.current = Box::pin(Oneshot::new(parts.spare.clone(), next));
                    }
                    None => {
                        let answers = std::mem::take(&mut parts.answers);
                        state.set(State::Done);
                        return Poll::Ready(C::join_answers(answers).ok_or_else(|| {
                            LlmError::new(
                                ErrorKind::Other,
                                "the call split into parts but cannot join their answers",
                            )
                        }));
                    }
                }
            },
        }
    }
}
