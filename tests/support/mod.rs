//! A scripted fake provider for the integration tests: it plays a script of
//! outcomes, overflows like a real model when the prompt is larger than its
//! context window, and records every call.
#![allow(dead_code)]

/// The loopback helpers are the providers crate's own: one copy for both
/// test suites.
#[path = "../../crates/staunch-providers/tests/support/mod.rs"]
pub mod wire;

use staunch::core::{ChatRequest, ChatResponse, ErrorKind, FinishReason, LlmError, Usage};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::Service;

/// One outcome.
#[derive(Clone, Debug)]
pub enum Step {
    /// A complete answer.
    Answer,
    /// An error of `kind` with an HTTP `status` and an optional `Retry-After`.
    Fail(ErrorKind, u16, Option<Duration>),
    /// A 200 whose answer the content filter stopped.
    Filtered,
    /// No answer for an hour.
    Hang,
    /// A complete answer after this long.
    Slow(Duration),
}

/// A provider called `name` with an optional context window.
#[derive(Clone)]
pub struct Provider {
    name: &'static str,
    window: Option<u64>,
    script: Arc<Mutex<VecDeque<Step>>>,
    otherwise: Arc<Mutex<Step>>,
    calls: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Provider {
    pub fn new(name: &'static str) -> Self {
        Provider {
            name,
            window: None,
            script: Arc::default(),
            otherwise: Arc::new(Mutex::new(Step::Answer)),
            calls: Arc::default(),
        }
    }

    pub fn window(mut self, tokens: u64) -> Self {
        self.window = Some(tokens);
        self
    }

    /// Plays `steps` for the next calls, then `then` for every call after.
    pub fn script(&self, steps: impl IntoIterator<Item = Step>, then: Step) {
        *self.script.lock().unwrap() = steps.into_iter().collect();
        *self.otherwise.lock().unwrap() = then;
    }

    pub fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    pub fn call_times(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().iter().map(|c| c.0).collect()
    }

    pub fn models(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.1.clone())
            .collect()
    }
}

impl Service<ChatRequest> for Provider {
    type Response = ChatResponse;
    type Error = LlmError;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, LlmError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        self.calls
            .lock()
            .unwrap()
            .push((Instant::now(), request.model.clone()));
        let prompt = request.estimated_input_tokens();
        let step = match self.window {
            Some(window) if prompt > window => {
                Step::Fail(ErrorKind::ContextLengthExceeded, 400, None)
            }
            _ => self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| self.otherwise.lock().unwrap().clone()),
        };
        let name = self.name;
        Box::pin(async move {
            let fail = |kind: ErrorKind, status: u16| {
                LlmError::new(kind, format!("{name} says {status}"))
                    .with_status(status)
                    .with_provider(name)
                    .with_model(request.model.clone())
            };
            match step {
                Step::Answer => {
                    let mut r = ChatResponse::new(request.model.clone(), format!("{name} answers"))
                        .with_usage(Usage::new(prompt, 20));
                    r.meta.provider = Some(name.to_owned());
                    r.meta.model = Some(request.model.clone());
                    Ok(r)
                }
                Step::Fail(kind, status, retry_after) => {
                    let mut e = fail(kind, status);
                    e.retry_after = retry_after;
                    Err(e)
                }
                Step::Filtered => {
                    let _ = FinishReason::ContentFilter;
                    Err(fail(ErrorKind::ContentFiltered, 200).with_spent(Usage::new(prompt, 3)))
                }
                Step::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Err(fail(ErrorKind::Timeout, 504))
                }
                Step::Slow(after) => {
                    tokio::time::sleep(after).await;
                    let mut r = ChatResponse::new(request.model.clone(), format!("{name} answers"))
                        .with_usage(Usage::new(prompt, 20));
                    r.meta.provider = Some(name.to_owned());
                    r.meta.model = Some(request.model.clone());
                    Ok(r)
                }
            }
        })
    }
}
