//! The validate service.

use super::ValidateConfig;
use super::future::ResponseFuture;
use crate::into_llm::to_llm;
use staunch_core::{BoxError, Call, LlmError};
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

impl<S, C> Service<C> for Validate<S>
where
    C: Call,
    S: Service<C, Response = C::Answer> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = C::Answer;
    type Error = LlmError;
    type Future = ResponseFuture<S, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx).map_err(to_llm)
    }

    fn call(&mut self, request: C) -> Self::Future {
        // The ready service answers first; a clone is kept for a second ask.
        let spare = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, spare.clone());
        ResponseFuture::new(ready, spare, request, self.config.clone())
    }
}
