//! Scripted fake providers for the layers' unit tests.

use staunch_core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message, Usage};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Service};

/// One scripted outcome of the fake provider.
#[derive(Clone)]
pub(crate) enum Step {
    Ok,
    Fail {
        kind: ErrorKind,
        status: Option<u16>,
        retry_after: Option<Duration>,
        should_retry: Option<bool>,
        spent: Usage,
    },
    Hang(Duration),
}

pub(crate) fn fail(kind: ErrorKind) -> Step {
    Step::Fail {
        kind,
        status: None,
        retry_after: None,
        should_retry: None,
        spent: Usage::default(),
    }
}

pub(crate) fn fail_after(kind: ErrorKind, status: u16, retry_after: Duration) -> Step {
    Step::Fail {
        kind,
        status: Some(status),
        retry_after: Some(retry_after),
        should_retry: None,
        spent: Usage::default(),
    }
}

/// A fake provider that plays a script (the last step repeats) and records
/// the instant of every call.
#[derive(Clone)]
pub(crate) struct Scripted {
    steps: Arc<Mutex<VecDeque<Step>>>,
    calls: Arc<Mutex<Vec<Instant>>>,
    models: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    pub(crate) fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Scripted {
            steps: Arc::new(Mutex::new(steps.into_iter().collect())),
            calls: Arc::default(),
            models: Arc::default(),
        }
    }

    pub(crate) fn calls(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().clone()
    }

    /// The model asked in each call.
    pub(crate) fn models(&self) -> Vec<String> {
        self.models.lock().unwrap().clone()
    }

    pub(crate) fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

impl Service<ChatRequest> for Scripted {
    type Response = ChatResponse;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<ChatResponse, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        self.calls.lock().unwrap().push(Instant::now());
        self.models.lock().unwrap().push(req.model.clone());
        let step = {
            let mut steps = self.steps.lock().unwrap();
            if steps.len() > 1 {
                steps.pop_front().unwrap()
            } else {
                steps.front().cloned().unwrap()
            }
        };
        Box::pin(async move {
            match step {
                Step::Ok => Ok(ChatResponse::new(req.model, "ok").with_usage(Usage::new(10, 5))),
                Step::Fail {
                    kind,
                    status,
                    retry_after,
                    should_retry,
                    spent,
                } => {
                    let mut e = LlmError::new(kind, "scripted").with_spent(spent);
                    e.status = status;
                    e.retry_after = retry_after;
                    e.should_retry = should_retry;
                    Err(e.into())
                }
                Step::Hang(d) => {
                    tokio::time::sleep(d).await;
                    Ok(ChatResponse::new(req.model, "late"))
                }
            }
        })
    }
}

pub(crate) fn request() -> ChatRequest {
    ChatRequest::new("gpt-4o", vec![Message::user("hello")])
}
