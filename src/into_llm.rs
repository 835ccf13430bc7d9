//! Turning any inner service's error into an [`LlmError`].

use pin_project_lite::pin_project;
use staunch_core::{BoxError, LlmError};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower_service::Service;

/// Wraps a service whose error is anything tower produces (`BoxError`, a
/// tower timeout, an `LlmError`) so that it fails with [`LlmError`].
#[derive(Clone, Debug)]
pub(crate) struct IntoLlm<S> {
    inner: S,
}

impl<S> IntoLlm<S> {
    pub(crate) fn new(inner: S) -> Self {
        IntoLlm { inner }
    }
}

/// Converts an error the way every staunch layer does.
pub(crate) fn to_llm<E: Into<BoxError>>(error: E) -> LlmError {
    LlmError::from_box(error.into())
}

impl<S, R> Service<R> for IntoLlm<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = LlmError;
    type Future = IntoLlmFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx).map_err(to_llm)
    }

    #[inline]
    fn call(&mut self, request: R) -> Self::Future {
        IntoLlmFuture {
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    /// The future of [`IntoLlm`].
    pub(crate) struct IntoLlmFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, T, E> Future for IntoLlmFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, LlmError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(self.project().inner.poll(cx)).map_err(to_llm))
    }
}
