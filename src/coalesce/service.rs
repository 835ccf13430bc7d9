//! The coalescing service: one upstream call per key in flight.

use super::CoalesceLayer;
use crate::fingerprint::Fingerprint;
use crate::into_llm::to_llm;
use staunch_core::{Answer, BoxError, Call, ChatRequest, LlmError, Operation};
use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use tokio::sync::watch;
use tower::ServiceExt;
use tower_service::Service;

/// What a shared call ends with: each caller takes a copy.
type Outcome = Arc<dyn Any + Send + Sync>;

/// One call in flight: its result when it comes, and how many callers
/// joined it.
struct Flight {
    result: watch::Receiver<Option<Outcome>>,
    callers: Arc<AtomicUsize>,
}

/// The calls in flight, by fingerprint.
#[derive(Default)]
pub(crate) struct InFlight {
    calls: Mutex<HashMap<u128, Flight>>,
}

impl InFlight {
    pub(crate) fn len(&self) -> usize {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Shares one upstream call among identical calls in flight at once (see
/// the [module](super)).
#[derive(Clone)]
pub struct Coalesce<S> {
    pub(super) inner: S,
    pub(super) layer: CoalesceLayer,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Coalesce<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalesce")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

/// The response future of [`Coalesce`]: the inner call's, or the wait for
/// a shared one (boxed, as the layer is opt-in and the wait owns a
/// channel).
pub type ResponseFuture<A> = Pin<Box<dyn Future<Output = Result<A, LlmError>> + Send>>;

impl<S> Coalesce<S> {
    /// Whether `call` may share another's answer.
    fn shares<C: Call>(&self, call: &C) -> bool {
        if call.is_stream() {
            return false;
        }
        match C::OPERATION {
            Operation::Embeddings => true,
            _ => match (
                &self.layer.chat_when,
                (call as &dyn Any).downcast_ref::<ChatRequest>(),
            ) {
                (Some(rule), Some(chat)) => rule(chat),
                _ => false,
            },
        }
    }
}

impl<S, C> Service<C> for Coalesce<S>
where
    C: Call + Fingerprint,
    C::Answer: Clone + Sync,
    S: Service<C, Response = C::Answer> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = C::Answer;
    type Error = LlmError;
    type Future = ResponseFuture<C::Answer>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx).map_err(to_llm)
    }

    fn call(&mut self, request: C) -> Self::Future {
        // Sharing runs the call on a task: outside a tokio runtime (where
        // no task can be spawned) the call goes on alone.
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime) if self.shares(&request) => runtime,
            _ => {
                let call = self.inner.call(request);
                return Box::pin(async move { call.await.map_err(to_llm) });
            }
        };
        let key = request.fingerprint();
        let in_flight = self.layer.in_flight.clone();
        let (result, callers) = {
            let mut calls = in_flight
                .calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match calls.get(&key) {
                Some(flight) => {
                    flight.callers.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target: "staunch::coalesce", model = request.model(), "sharing a call in flight");
                    (flight.result.clone(), flight.callers.clone())
                }
                None => {
                    let (send, result) = watch::channel(None);
                    let callers = Arc::new(AtomicUsize::new(1));
                    calls.insert(
                        key,
                        Flight {
                            result: result.clone(),
                            callers: callers.clone(),
                        },
                    );
                    // The call runs on its own task: no caller's
                    // cancellation cancels it for the others.
                    let inner = self.inner.clone();
                    let table = in_flight.clone();
                    runtime.spawn(async move {
                        let outcome: Result<C::Answer, LlmError> =
                            inner.oneshot(request).await.map_err(to_llm);
                        // Later calls start afresh.
                        table
                            .calls
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(&key);
                        let _ = send.send(Some(Arc::new(outcome) as Outcome));
                    });
                    (result, callers)
                }
            }
        };
        Box::pin(wait::<C::Answer>(result, callers))
    }
}

/// Waits for the shared call's end and takes a copy of its outcome.
async fn wait<A: Answer + Clone>(
    mut result: watch::Receiver<Option<Outcome>>,
    callers: Arc<AtomicUsize>,
) -> Result<A, LlmError> {
    let outcome = match result.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone(),
        Err(_) => None,
    };
    let Some(outcome) = outcome else {
        return Err(LlmError::new(
            staunch_core::ErrorKind::Other,
            "the shared call ended without an outcome",
        ));
    };
    let shared = callers.load(Ordering::Relaxed) > 1;
    match outcome.downcast_ref::<Result<A, LlmError>>() {
        Some(Ok(answer)) => {
            let mut answer = answer.clone();
            if shared {
                answer.meta_mut().mark_shared();
            }
            Ok(answer)
        }
        Some(Err(error)) => Err(error.duplicate()),
        None => Err(LlmError::new(
            staunch_core::ErrorKind::Other,
            "the shared call answered with another type",
        )),
    }
}
