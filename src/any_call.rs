//! The layers that need a [`TypedCall`](staunch_core::TypedCall) (validate,
//! split batches), served over any [`Call`] for [`TargetBuilder`] alone.
//!
//! A built target's stack names every optional layer in its type, whether
//! it is set or not, so a `TargetBuilder` over an `HttpCall` would need
//! `Validate` and `SplitBatch` to serve `HttpCall`s even when neither is
//! set. Their public `Service` impls refuse calls that are not typed; this
//! adapter serves any call, and the builder's `validate` and
//! `split_batches` (the only ways to set one) require a typed call, so an
//! untyped call never meets a layer that would do nothing to it.
//!
//! [`TargetBuilder`]: crate::TargetBuilder

use staunch_core::{Call, LlmError};
use std::future::Future;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// A layer's service over any call: what its typed `Service` impl does.
pub(crate) trait ServeAnyCall<C: Call> {
    /// The future of one call.
    type Future: Future<Output = Result<C::Answer, LlmError>>;

    /// As `Service::poll_ready`.
    fn poll_ready_any(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>>;

    /// As `Service::call`.
    fn call_any(&mut self, request: C) -> Self::Future;
}

/// `T` serving any call.
#[derive(Clone, Debug)]
pub(crate) struct AnyCall<T>(T);

impl<T, C> Service<C> for AnyCall<T>
where
    C: Call,
    T: ServeAnyCall<C>,
{
    type Response = C::Answer;
    type Error = LlmError;
    type Future = T::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.0.poll_ready_any(cx)
    }

    #[inline]
    fn call(&mut self, request: C) -> T::Future {
        self.0.call_any(request)
    }
}

/// The layer `L`, its services serving any call.
#[derive(Clone, Debug)]
pub(crate) struct AnyCallLayer<L>(pub(crate) L);

impl<L: Layer<S>, S> Layer<S> for AnyCallLayer<L> {
    type Service = AnyCall<L::Service>;

    fn layer(&self, inner: S) -> AnyCall<L::Service> {
        AnyCall(self.0.layer(inner))
    }
}
