//! The degradation service.

use super::DegradeConfig;
use super::config::NoDegrade;
use super::future::{ForStatic, ModelName, ResponseFuture};
use super::layer::Shared;
use crate::deadline::Deadline;
use crate::fingerprint::Fingerprint;
use crate::into_llm::to_llm;
use staunch_core::{BoxError, Call, LlmError, Operation};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Always answers unless the request itself is wrong: the inner stack's
/// answer when it has one, else a cached answer to the same request
/// ([`QualityTier::Cached`](staunch_core::QualityTier)), else a configured
/// static answer ([`QualityTier::Static`](staunch_core::QualityTier)), else
/// the error.
///
/// The static answer is not served for a context overflow or a content
/// filter hit: those fail the same way on retry, so the caller gets the
/// error (a cached answer to the identical request is still served).
///
/// Put it outermost. Successful `Full` and `Reduced` answers are cached
/// under a fingerprint of the whole request (model, every message in full,
/// sampling parameters, stop sequences, extras). `Fatal` errors, and every
/// error of a request marked [`NoDegrade`], pass through untouched.
/// Degraded answers carry a warning that says why, the attempts and tokens
/// the failure cost, and bill no tokens of their own.
#[derive(Clone)]
pub struct Degrade<S> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared>,
}

impl<S> Degrade<S> {
    /// Wraps `inner` with its own cache.
    pub fn new(inner: S, config: DegradeConfig) -> Self {
        tower_layer::Layer::layer(&super::DegradeLayer::new(config), inner)
    }

    /// Answers in the cache now.
    pub fn cached_answers(&self) -> u64 {
        self.shared.cache.as_ref().map_or(0, |c| c.len())
    }

    /// Forgets every cached answer.
    pub fn clear_cache(&self) {
        if let Some(cache) = &self.shared.cache {
            cache.clear();
        }
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

impl<S: fmt::Debug> fmt::Debug for Degrade<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Degrade")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish()
    }
}

impl<S, C> Service<C> for Degrade<S>
where
    C: Call + Fingerprint,
    C::Answer: Clone + Sync,
    S: Service<C, Response = C::Answer>,
    S::Error: Into<BoxError>,
{
    type Response = C::Answer;
    type Error = LlmError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx).map_err(to_llm)
    }

    fn call(&mut self, mut request: C) -> Self::Future {
        let deadline = Deadline::of(&request);
        // With neither a cache nor a static answer there is nothing to
        // degrade to and nothing to remember: the answer or the error passes
        // through as it is, without the bookkeeping.
        let shared = &self.shared;
        if (shared.cache.is_none() && shared.config.static_answer.is_none())
            || request.extensions().get::<NoDegrade>().is_some()
        {
            return ResponseFuture::pass_through(self.inner.call(request), deadline);
        }
        // The fingerprint is the cache key: without a cache, no need to
        // hash the whole conversation.
        let key = self.shared.cache.as_ref().map(|_| request.fingerprint());
        // A static text needs only the model it answers as (kept inline
        // when short); an answer built from the request needs the request
        // (a clone: one reference count).
        let for_static = match &shared.config.static_answer {
            // Static answers are text: chat's alone.
            None => None,
            Some(_) if C::OPERATION != Operation::Chat => None,
            Some(answer) if answer.needs_request() => Some(ForStatic::Request(request.clone())),
            Some(_) => Some(ForStatic::Model(ModelName::new(request.model()))),
        };
        let started = request.start_clock();
        let stream = request.is_stream();
        ResponseFuture::degrading(
            self.inner.call(request),
            deadline,
            self.shared.clone(),
            key,
            for_static,
            stream,
            started,
        )
    }
}
