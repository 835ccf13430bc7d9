//! The cap on model requests served at once (`[server] max_concurrency`).
//!
//! [`ApiLimitLayer`] holds each request to the model API (`/v1/...` and
//! `/v1beta/models/...`) until one of `max_concurrency` slots is free, and
//! keeps the slot until the answer's head is ready, as tower's concurrency
//! limit would. A request that waits has not been routed yet, so its body
//! stays unread. Operations (`/healthz`, `/readyz`, `/metrics`) and
//! unknown paths never wait: a saturated gateway still answers its health
//! checks.
//!
//! One layer around the router rather than tower's limit around each model
//! route: there, every request cloned the route's boxed service and the
//! limit's semaphore handle (an allocation each). Here a free slot is
//! taken without allocating; only a request that must wait allocates the
//! wait.

use axum::extract::Request;
use axum::response::Response;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tower::{Layer, Service};

/// Applies [`ApiLimit`]; its clones share the slots.
#[derive(Clone, Debug)]
pub(crate) struct ApiLimitLayer {
    slots: Arc<Semaphore>,
}

impl ApiLimitLayer {
    /// `max` slots (at least one).
    pub(crate) fn new(max: usize) -> Self {
        ApiLimitLayer {
            slots: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }
}

impl<S> Layer<S> for ApiLimitLayer {
    type Service = ApiLimit<S>;

    fn layer(&self, inner: S) -> ApiLimit<S> {
        ApiLimit {
            inner,
            slots: self.slots.clone(),
        }
    }
}

/// Holds model requests until a slot is free (the module's docs).
#[derive(Clone, Debug)]
pub(crate) struct ApiLimit<S> {
    inner: S,
    slots: Arc<Semaphore>,
}

/// The model API's routes, as the router registers them: every request to
/// one of them takes a slot.
pub(crate) mod routes {
    /// OpenAI's chat completions.
    pub(crate) const CHAT: &str = "/v1/chat/completions";
    /// OpenAI's embeddings.
    pub(crate) const EMBEDDINGS: &str = "/v1/embeddings";
    /// Anthropic's messages.
    pub(crate) const MESSAGES: &str = "/v1/messages";
    /// OpenAI's Responses API.
    pub(crate) const RESPONSES: &str = "/v1/responses";
    /// OpenAI's model list.
    pub(crate) const MODELS: &str = "/v1/models";
    /// Gemini's `models/{model}:generateContent` and the streaming one.
    pub(crate) const GEMINI: &str = "/v1beta/models/{*rest}";
    /// [`GEMINI`] without its catch-all.
    pub(super) const GEMINI_PREFIX: &str = "/v1beta/models/";
}

/// Whether a request to `path` takes a slot: the paths of the model API's
/// routes, whatever the method (a wrong method is answered 405 within the
/// slot, as before).
fn limited(path: &str) -> bool {
    use routes::*;
    matches!(path, CHAT | EMBEDDINGS | MESSAGES | RESPONSES | MODELS)
        || path
            .strip_prefix(GEMINI_PREFIX)
            .is_some_and(|rest| !rest.is_empty())
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

impl<S> Service<Request> for ApiLimit<S>
where
    S: Service<Request, Response = Response> + Clone,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if !limited(request.uri().path()) {
            return ResponseFuture::running(self.inner.call(request), None);
        }
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => ResponseFuture::running(self.inner.call(request), Some(permit)),
            // The slots are never closed; served without one if they were.
            Err(TryAcquireError::Closed) => ResponseFuture::running(self.inner.call(request), None),
            Err(TryAcquireError::NoPermits) => {
                // The service readied for this call is taken with the
                // request; the one left behind is readied again before its
                // next call, as tower's contract asks.
                let clone = self.inner.clone();
                let service = std::mem::replace(&mut self.inner, clone);
                ResponseFuture {
                    state: State::Waiting {
                        acquire: Some(Box::pin(self.slots.clone().acquire_owned())),
                        permit: None,
                        call: Some((service, request)),
                    },
                }
            }
        }
    }
}

pin_project! {
    /// The future of [`ApiLimit`].
    pub(crate) struct ResponseFuture<S, F> {
        #[pin]
        state: State<S, F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F> {
        // No slot was free: waiting for one (then for the service), with
        // the service and the request to call it with.
        Waiting {
            acquire: Option<Acquire>,
            permit: Option<OwnedSemaphorePermit>,
            call: Option<(S, Request)>,
        },
        // Called; the slot (if this request takes one) is held until the
        // answer's head is ready.
        Running {
            #[pin]
            future: F,
            permit: Option<OwnedSemaphorePermit>,
        },
    }
}

impl<S, F> ResponseFuture<S, F> {
    fn running(future: F, permit: Option<OwnedSemaphorePermit>) -> Self {
        ResponseFuture {
            state: State::Running { future, permit },
        }
    }
}

impl<S, F> Future for ResponseFuture<S, F>
where
    S: Service<Request, Response = Response, Future = F>,
    F: Future<Output = Result<Response, S::Error>>,
{
    type Output = Result<Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Waiting {
                    acquire,
                    permit,
                    call,
                } => {
                    if let Some(waiting) = acquire.as_mut() {
                        // Only a closed semaphore fails: served without a slot.
                        *permit = ready!(waiting.as_mut().poll(cx)).ok();
                        *acquire = None;
                    }
                    // The call is taken only below, as the state moves on:
                    // always here while waiting.
                    if let Some((service, _)) = call.as_mut() {
                        ready!(service.poll_ready(cx))?;
                    }
                    let Some((mut service, request)) = call.take() else {
                        return Poll::Pending;
                    };
                    let future = service.call(request);
                    let permit = permit.take();
                    state.set(State::Running { future, permit });
                }
                StateProj::Running { future, permit } => {
                    let answer = ready!(future.poll(cx));
                    drop(permit.take());
                    return Poll::Ready(answer);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_model_api_takes_slots_and_operations_do_not() {
        use super::routes::*;
        assert_eq!(GEMINI, format!("{GEMINI_PREFIX}{{*rest}}"));
        for path in [
            CHAT,
            EMBEDDINGS,
            MESSAGES,
            RESPONSES,
            MODELS,
            "/v1beta/models/gemini-2.5-flash:generateContent",
        ] {
            assert!(super::limited(path), "{path}");
        }
        for path in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/",
            "/v1",
            "/v1/models/",
            "/v1/chat/completions/x",
            "/v1beta/models/",
            "/v2/chat/completions",
        ] {
            assert!(!super::limited(path), "{path}");
        }
    }
}
