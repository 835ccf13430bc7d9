//! The retry response future.

use super::attempt::Attempt;
use super::policy::LlmPolicy;
use pin_project_lite::pin_project;
use staunch_core::{BoxError, ChatRequest, ChatResponse, LlmError};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_service::Service;

type Inner<S> = tower::retry::future::ResponseFuture<LlmPolicy, Attempt<S>, ChatRequest>;

pin_project! {
    /// The response future of [`Retry`](super::Retry): tower's retry loop.
    pub struct ResponseFuture<S>
    where
        S: Service<ChatRequest, Response = ChatResponse>,
        S::Error: Into<BoxError>,
    {
        #[pin]
        inner: Inner<S>,
    }
}

impl<S> ResponseFuture<S>
where
    S: Service<ChatRequest, Response = ChatResponse>,
    S::Error: Into<BoxError>,
{
    #[inline]
    pub(super) fn new(inner: Inner<S>) -> Self {
        ResponseFuture { inner }
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
        self.project().inner.poll(cx)
    }
}
