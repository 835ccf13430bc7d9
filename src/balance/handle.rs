//! The handle: see which deployments are out and how loaded the rest are,
//! and take one out or put it back.

use super::book::{Book, Ejection, OutReason};
use crate::health::TargetHealth;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One deployment as its balancer sees it now.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DeploymentStatus {
    /// Its name.
    pub name: String,
    /// Its weight.
    pub weight: u32,
    /// Calls sent to it that have not ended.
    pub in_flight: u32,
    /// Its peak-EWMA latency (a stream's time to first token) as last
    /// updated; the configured default latency until it is measured.
    pub latency: Duration,
    /// Why it may not be picked now, if it may not.
    pub out: Option<OutReason>,
    /// Calls it answered.
    pub answered: u64,
    /// Calls it failed (or that were dropped before they ended).
    pub failed: u64,
}

/// A cheap, cloneable view of one [`Balance`](super::Balance), shared by
/// all its clones: which deployments are out and why, their load and
/// latency; take one out or put one back.
///
/// It is a [`TargetHealth`]: unavailable while every deployment is out, so
/// a [`Fallback`](crate::fallback::Fallback) chain passes over the whole
/// target without a call.
#[derive(Clone)]
pub struct BalanceHandle {
    pub(super) book: Arc<Book>,
}

impl BalanceHandle {
    /// The balancer's name.
    pub fn name(&self) -> &str {
        &self.book.name
    }

    /// Every deployment, in order, as the balancer sees it now.
    pub fn deployments(&self) -> Vec<DeploymentStatus> {
        let now = self.book.now();
        (0..self.book.len())
            .map(|i| {
                let stats = &self.book.stats[i];
                DeploymentStatus {
                    name: self.book.names[i].to_string(),
                    weight: self.book.weights[i],
                    in_flight: stats.in_flight.load(Ordering::Relaxed),
                    latency: self.book.latency_estimate(i),
                    out: self.book.out_reason(i, now),
                    answered: stats.answered.load(Ordering::Relaxed),
                    failed: stats.failed.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// The deployments that may not be picked now, and why.
    pub fn out(&self) -> Vec<(String, OutReason)> {
        let now = self.book.now();
        (0..self.book.len())
            .filter_map(|i| {
                self.book
                    .out_reason(i, now)
                    .map(|why| (self.book.names[i].to_string(), why))
            })
            .collect()
    }

    /// Takes the deployment called `name` out for `duration`; false when
    /// there is none of that name.
    pub fn eject(&self, name: &str, duration: Duration) -> bool {
        match self.book.index_of(name) {
            Some(i) => {
                self.book.eject(i, Ejection::Manual, duration);
                true
            }
            None => false,
        }
    }

    /// Puts the deployment called `name` back in after an ejection (a
    /// rotated key, a topped-up account); false when there is none of that
    /// name. Its circuit and quota still decide for themselves.
    pub fn restore(&self, name: &str) -> bool {
        match self.book.index_of(name) {
            Some(i) => {
                self.book.restore(i);
                true
            }
            None => false,
        }
    }
}

impl TargetHealth for BalanceHandle {
    /// `Some(wait)` while every deployment is out, the wait being the
    /// soonest any is back (zero when that is unknown, as for a quota
    /// without room); `None` while one may be picked.
    fn unavailable_for(&self) -> Option<Duration> {
        let now = self.book.now();
        let mut soonest: Option<Duration> = None;
        for i in 0..self.book.len() {
            let wait = match self.book.out_reason(i, now)? {
                OutReason::Ejected(_, left) | OutReason::CircuitOpen(left) => left,
                OutReason::NoRoom => Duration::ZERO,
            };
            soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
        }
        soonest
    }
}

impl fmt::Debug for BalanceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalanceHandle")
            .field("name", &self.name())
            .field("out", &self.out())
            .finish()
    }
}
