//! What the benches share: a provider that answers at once, and one way of
//! driving a call.

use staunch::core::{ChatRequest, ChatResponse, LlmError, Message, Usage};
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tower::Service;

/// A provider that is always ready and answers at once. Like real clients
/// it is cheap to clone (an `Arc` inside): tower's retry clones it per call.
#[derive(Clone)]
pub struct InMemory {
    answer: Arc<ChatResponse>,
}

impl InMemory {
    pub fn new() -> Self {
        InMemory {
            answer: Arc::new(
                ChatResponse::new("gpt-4o-2024-08-06", "hi").with_usage(Usage::new(12, 1)),
            ),
        }
    }
}

impl Service<ChatRequest> for InMemory {
    type Response = ChatResponse;
    type Error = LlmError;
    type Future = Ready<Result<ChatResponse, LlmError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: ChatRequest) -> Self::Future {
        ready(Ok(ChatResponse::clone(&self.answer)))
    }
}

/// The request every bench sends.
pub fn request() -> ChatRequest {
    ChatRequest::new(
        "gpt-4o",
        vec![Message::system("You are terse."), Message::user("Say hi")],
    )
    .with_max_tokens(16)
}

/// One call: `poll_ready`, `call`, and polls of the response future with a
/// no-op waker until it is ready. Every staunch layer here is ready at
/// once; a service that answers `Pending` (a peer whose lock is contended)
/// is polled again at once, so contention is charged to whoever causes it.
pub fn call_once<S>(service: &mut S, request: &ChatRequest) -> ChatResponse
where
    S: Service<ChatRequest, Response = ChatResponse>,
{
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match service.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => break,
            Poll::Ready(Err(_)) => panic!("the success path was refused"),
            Poll::Pending => std::hint::spin_loop(),
        }
    }
    let mut future = pin!(service.call(request.clone()));
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(response)) => return response,
            Poll::Ready(Err(_)) => panic!("the success path failed"),
            Poll::Pending => std::hint::spin_loop(),
        }
    }
}
