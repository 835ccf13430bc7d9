//! The batch-splitting service.

use super::future::ResponseFuture;
use crate::into_llm::to_llm;
use staunch_core::{BoxError, Call, LlmError, TypedCall};
use std::task::{Context, Poll};
use tower_service::Service;

/// Sends a batch call that is too large as several that fit, one after
/// another, and joins their answers in order (see the [module](super)).
#[derive(Clone, Debug)]
pub struct SplitBatch<S> {
    pub(super) inner: S,
    pub(super) max_inputs: usize,
    pub(super) max_tokens: u64,
}

impl<S> SplitBatch<S> {
    /// `inner`, with batches split to at most `max_inputs` inputs and about
    /// `max_tokens` estimated tokens per request.
    pub fn new(inner: S, max_inputs: usize, max_tokens: u64) -> Self {
        tower_layer::Layer::layer(&super::SplitBatchLayer::new(max_inputs, max_tokens), inner)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Over a [`TypedCall`] only: a raw `HttpCall`'s body is not a batch
/// staunch can split, so over one the layer would send every call whole;
/// it does not compile instead.
impl<S, C> Service<C> for SplitBatch<S>
where
    C: TypedCall,
    S: Service<C, Response = C::Answer> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = C::Answer;
    type Error = LlmError;
    type Future = ResponseFuture<S, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.ready(cx)
    }

    #[inline]
    fn call(&mut self, request: C) -> Self::Future {
        self.start(request)
    }
}

impl<S> SplitBatch<S> {
    fn ready<C>(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>>
    where
        S: Service<C>,
        S::Error: Into<BoxError>,
    {
        self.inner.poll_ready(cx).map_err(to_llm)
    }

    fn start<C>(&mut self, request: C) -> ResponseFuture<S, C>
    where
        C: Call,
        S: Service<C, Response = C::Answer> + Clone,
        S::Error: Into<BoxError>,
    {
        match request.split_batch(self.max_inputs, self.max_tokens) {
            None => ResponseFuture::whole(self.inner.call(request)),
            Some(parts) => {
                tracing::debug!(
                    target: "staunch::batch",
                    parts = parts.len(),
                    model = request.model(),
                    "splitting a batch"
                );
                // The ready service sends the first part; clones the rest.
                let spare = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, spare.clone());
                ResponseFuture::parts(ready, spare, parts)
            }
        }
    }
}

#[cfg(feature = "target")]
impl<S, C> crate::any_call::ServeAnyCall<C> for SplitBatch<S>
where
    C: Call,
    S: Service<C, Response = C::Answer> + Clone,
    S::Error: Into<BoxError>,
{
    type Future = ResponseFuture<S, C>;

    fn poll_ready_any(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.ready(cx)
    }

    fn call_any(&mut self, request: C) -> Self::Future {
        self.start(request)
    }
}
