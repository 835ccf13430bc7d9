//! The quota layer and its handle.

use super::Quota;
use super::config::{InvalidQuota, QuotaConfig, Resource};
use super::observed::Observed;
use super::state::Shared;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower_layer::Layer;

/// Applies [`Quota`]. Every service it builds shares one set of limits:
/// build one layer per target.
#[derive(Clone)]
pub struct QuotaLayer {
    shared: Arc<Shared>,
}

impl QuotaLayer {
    /// A layer enforcing `config`, or why it can't be enforced.
    pub fn new(config: QuotaConfig) -> Result<Self, InvalidQuota> {
        config.validate()?;
        Ok(QuotaLayer {
            shared: Arc::new(Shared::new(config)),
        })
    }

    /// A handle on the shared limits: feed it what the provider said, read
    /// the room left.
    pub fn handle(&self) -> QuotaHandle {
        QuotaHandle {
            shared: self.shared.clone(),
        }
    }
}

impl std::fmt::Debug for QuotaLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaLayer")
            .field("config", &self.shared.config)
            .finish()
    }
}

impl<S> Layer<S> for QuotaLayer {
    type Service = Quota<S>;

    fn layer(&self, inner: S) -> Quota<S> {
        Quota {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// A cheap, cloneable handle on one [`QuotaLayer`]'s limits, shared by
/// every service it built.
#[derive(Clone)]
pub struct QuotaHandle {
    pub(super) shared: Arc<Shared>,
}

impl QuotaHandle {
    /// The quota's name.
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// Takes in what the provider's rate-limit headers said (see
    /// [`Observed::from_headers`]): until each reset instant, admits no
    /// more than the provider said was left, and pauses admissions for a
    /// `retry_after`. A newer observation replaces an older one.
    pub fn observe(&self, observed: Observed) {
        observe(&self.shared, &observed);
    }

    /// Pauses admissions for `wait` from now (a longer pause already set
    /// is kept).
    pub fn pause_for(&self, wait: Duration) {
        if let Some(until) = Instant::now().checked_add(wait) {
            self.shared.pause_until(until);
        }
    }

    /// When admissions resume, while they are paused.
    pub fn paused_until(&self) -> Option<Instant> {
        self.shared.paused_until()
    }

    /// Requests that would be admitted at once now on this thread (the
    /// buckets' room plus the permits this thread took ahead): the least
    /// over the request limits and what the provider said is left; `None`
    /// when nothing limits requests.
    pub fn available_requests(&self) -> Option<u64> {
        self.shared.available(Resource::Requests)
    }

    /// Tokens that could be reserved at once now (as
    /// [`available_requests`](Self::available_requests)).
    pub fn available_tokens(&self) -> Option<u64> {
        self.shared.available(Resource::Tokens)
    }
}

pub(super) fn observe(shared: &Shared, observed: &Observed) {
    let (exhausted, retry_after) = shared.observe(observed);
    for (paused, reason) in [(exhausted, "remaining"), (retry_after, "retry_after")] {
        if paused {
            tracing::info!(target: "staunch::quota", quota = %shared.config.name, reason, "paused by the provider");
            crate::metrics::counter!(
                crate::metrics::QUOTA_PAUSES,
                "quota" => shared.config.name.clone(),
                "reason" => reason
            )
            .increment(1);
        }
    }
}

impl std::fmt::Debug for QuotaHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaHandle")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}
