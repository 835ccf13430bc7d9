//! The retry response future.

use super::attempt::Attempt;
use super::policy::LlmPolicy;
use pin_project_lite::pin_project;
use staunch_core::{BoxError, ChatRequest, ChatResponse, LlmError};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::time::Instant;
use tower_service::Service;

type Inner<S> = tower::retry::future::ResponseFuture<LlmPolicy, Attempt<S>, ChatRequest>;

pin_project! {
    /// The response future of [`Retry`](super::Retry): tower's retry loop,
    /// plus the latency of the whole loop on success.
    pub struct ResponseFuture<S>
    where
        S: Service<ChatRequest, Response = ChatResponse>,
        S::Error: Into<BoxError>,
    {
        #[pin]
        inner: Inner<S>,
        started: Instant,
    }
}

impl<S> ResponseFuture<S>
where
    S: Service<ChatRequest, Response = ChatResponse>,
    S::Error: Into<BoxError>,
{
    #[inline]
    pub(super) fn new(inner: Inner<S>, started: Instant) -> Self {
        ResponseFuture { inner, started }
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<ChatRequest, Response = ChatResponse> + Clone,
    S::Error: Into<BoxError>,
{
    type Output = Result<ChatResponse, LlmError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = ready!(this.inner.poll(cx));
        if let Ok(response) = &mut result {
            response.meta.latency = this.started.elapsed();
        }
        Poll::Ready(result)
    }
}
