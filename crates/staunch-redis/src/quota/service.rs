//! The shared quota's layer, service and handle.

use super::config::SharedQuotaConfig;
use super::future::ResponseFuture;
use super::state::{Admission, Patience, Quota};
use staunch_core::{BoxError, Call, Deadline, LlmError};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Admits each request against a quota shared through Redis, then calls
/// the inner service. Over the limit, a request waits for its slot (taken
/// at once, in the order requests reach Redis) when the wait fits
/// `max_wait` and its [`Deadline`]; else it is refused with `RateLimited`
/// (and `retry_after`, `should_retry = Some(false)`) without calling the
/// inner service.
pub struct SharedQuota<S> {
    inner: S,
    quota: Arc<Quota>,
}

impl<S> SharedQuota<S> {
    /// Wraps `inner` in a quota configured by `config`.
    pub fn new(inner: S, config: SharedQuotaConfig) -> Self {
        SharedQuota {
            inner,
            quota: Arc::new(Quota::new(config)),
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

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// A handle on the quota, shared by every clone.
    pub fn handle(&self) -> SharedQuotaHandle {
        SharedQuotaHandle {
            quota: self.quota.clone(),
        }
    }
}

impl<S: Clone> Clone for SharedQuota<S> {
    fn clone(&self) -> Self {
        SharedQuota {
            inner: self.inner.clone(),
            quota: self.quota.clone(),
        }
    }
}

impl<S> fmt::Debug for SharedQuota<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedQuota")
            .field("config", &self.quota.config)
            .finish_non_exhaustive()
    }
}

impl<S, C> Service<C> for SharedQuota<S>
where
    C: Call,
    S: Service<C, Response = C::Answer> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = C::Answer;
    type Error = LlmError;
    type Future = ResponseFuture<S, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| LlmError::from_box(e.into()))
    }

    fn call(&mut self, request: C) -> Self::Future {
        let tokens = self.quota.estimate(&request);
        let patience = Patience::new(self.quota.config.max_wait, Deadline::of(&request));
        let decision: super::future::Decision = match self.quota.decide_now(tokens, patience) {
            Some(Ok(Admission::Now(grant))) => {
                return ResponseFuture::calling(
                    self.inner.call(request),
                    self.quota.clone(),
                    grant,
                );
            }
            Some(Err(refused)) => return ResponseFuture::refused(refused),
            Some(Ok(Admission::Later(waiter))) => Box::pin(async move { Ok(waiter.wait().await) }),
            None => Box::pin(self.quota.clone().decide(tokens, patience)),
        };
        // The readied service goes with the request; this one keeps a clone.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::admitting(decision, ready, request, self.quota.clone())
    }
}

/// Applies [`SharedQuota`]; every service it builds shares one quota.
#[derive(Clone)]
pub struct SharedQuotaLayer {
    quota: Arc<Quota>,
}

impl SharedQuotaLayer {
    /// A layer for the quota `config` describes.
    pub fn new(config: SharedQuotaConfig) -> Self {
        SharedQuotaLayer {
            quota: Arc::new(Quota::new(config)),
        }
    }

    /// A handle on the quota.
    pub fn handle(&self) -> SharedQuotaHandle {
        SharedQuotaHandle {
            quota: self.quota.clone(),
        }
    }
}

impl fmt::Debug for SharedQuotaLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedQuotaLayer")
            .field("config", &self.quota.config)
            .finish()
    }
}

impl<S> Layer<S> for SharedQuotaLayer {
    type Service = SharedQuota<S>;

    fn layer(&self, inner: S) -> SharedQuota<S> {
        SharedQuota {
            inner,
            quota: self.quota.clone(),
        }
    }
}

/// A cheap view of one shared quota: whether it is shared right now, and
/// how its decisions were made.
#[derive(Clone)]
pub struct SharedQuotaHandle {
    quota: Arc<Quota>,
}

impl SharedQuotaHandle {
    /// The quota's name.
    pub fn name(&self) -> &str {
        &self.quota.config.name
    }

    /// False while Redis is unreachable and decisions are local.
    pub fn is_shared(&self) -> bool {
        self.quota.is_shared()
    }

    /// Decisions made by a Redis round trip (each may have taken a lease).
    pub fn redis_decisions(&self) -> u64 {
        self.quota.stats.redis_decisions.load(Ordering::Relaxed)
    }

    /// Requests admitted from a lease, without a round trip.
    pub fn leased_admissions(&self) -> u64 {
        self.quota.stats.leased.load(Ordering::Relaxed)
    }

    /// Decisions made locally because Redis was unreachable or slow.
    pub fn fallbacks(&self) -> u64 {
        self.quota.stats.fallbacks.load(Ordering::Relaxed)
    }

    /// Requests admitted to wait for a slot before being called (shared
    /// or local), counted when the slot is reserved.
    pub fn waited(&self) -> u64 {
        self.quota.stats.waited.load(Ordering::Relaxed)
    }

    /// Requests refused (shared or local).
    pub fn refused(&self) -> u64 {
        self.quota.stats.refused.load(Ordering::Relaxed)
    }

    /// Times sharing stopped because Redis failed.
    pub fn outages(&self) -> u64 {
        self.quota.stats.outages.load(Ordering::Relaxed)
    }

    /// Times this replica found that Redis had lost the quota's state (a
    /// restart without persistence, a failover to an empty replica, a
    /// flush) and charged it again with what it admitted over the last
    /// window, so that an empty Redis is not taken for a full bucket.
    pub fn charged_again(&self) -> u64 {
        self.quota.stats.charged_again.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for SharedQuotaHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedQuotaHandle")
            .field("name", &self.name())
            .field("shared", &self.is_shared())
            .field("redis_decisions", &self.redis_decisions())
            .field("leased_admissions", &self.leased_admissions())
            .field("fallbacks", &self.fallbacks())
            .field("waited", &self.waited())
            .field("refused", &self.refused())
            .field("outages", &self.outages())
            .field("charged_again", &self.charged_again())
            .finish()
    }
}
