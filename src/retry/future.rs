//! The retry response future.

use super::attempt::Attempt;
use super::policy::LlmPolicy;
use pin_project_lite::pin_project;
use staunch_core::{BoxError, Call, ChatRequest, LlmError};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_service::Service;

type Inner<S, C> = tower::retry::future::ResponseFuture<LlmPolicy, Attempt<S>, C>;

pin_project! {
    /// The response future of [`Retry`](super::Retry): tower's retry loop,
    /// for a call of type `C` (a chat completion unless said otherwise).
    pub struct ResponseFuture<S, C = ChatRequest>
    where
        C: Call,
        S: Service<C, Response = C::Answer>,
        S::Error: Into<BoxError>,
    {
        #[pin]
        inner: Inner<S, C>,
    }
}

impl<S, C> ResponseFuture<S, C>
where
    C: Call,
    S: Service<C, Response = C::Answer>,
    S::Error: Into<BoxError>,
{
    #[inline]
    pub(super) fn new(inner: Inner<S, C>) -> Self {
        ResponseFuture { inner }
    }
}

impl<S, C> Future for ResponseFuture<S, C>
where
    C: Call,
    S: Service<C, Response = C::Answer> + Clone,
    S::Error: Into<BoxError>,
{
    type Output = Result<C::Answer, LlmError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}
