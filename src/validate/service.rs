//! The validate service.

use super::ValidateConfig;
use super::future::ResponseFuture;
use crate::into_llm::to_llm;
use staunch_core::{BoxError, Call, LlmError, TypedCall};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Checks every answer of the inner service before it counts as a success,
/// asking again on a failed check and failing with `ValidationFailed` when
/// the retries are spent. See the [module docs](super).
///
/// The inner service is cloned for a second ask (as tower's retry does), so
/// it should be cheap to clone.
pub struct Validate<S> {
    inner: S,
    config: Arc<ValidateConfig>,
}

impl<S> Validate<S> {
    /// Wraps `inner` with the checks of `config`.
    pub fn new(inner: S, config: ValidateConfig) -> Self {
        Self::from_shared(inner, Arc::new(config))
    }

    pub(super) fn from_shared(inner: S, config: Arc<ValidateConfig>) -> Self {
        Validate { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Validate<S> {
    fn clone(&self) -> Self {
        Validate {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Validate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validate")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

/// Over a [`TypedCall`] only: the checks read the request's tools and
/// output format, which a raw `HttpCall` does not expose, so over one the
/// layer would pass every answer unchecked; it does not compile instead.
impl<S, C> Service<C> for Validate<S>
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

impl<S> Validate<S> {
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
        // The ready service answers first; a clone is kept for a second ask.
        let spare = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, spare.clone());
        ResponseFuture::new(ready, spare, request, self.config.clone())
    }
}

#[cfg(feature = "target")]
impl<S, C> crate::any_call::ServeAnyCall<C> for Validate<S>
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
