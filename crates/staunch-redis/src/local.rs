//! The local limiter a replica falls back to while Redis is unreachable:
//! GCRA on one atomic, at this replica's share of the limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// One limit, local: `amount` units per `window`, a token bucket of
/// `amount` units.
#[derive(Debug)]
pub(crate) struct LocalGcra {
    /// Nanoseconds per unit.
    interval: f64,
    /// The bucket, in nanoseconds.
    window: u64,
    /// The theoretical arrival time, nanoseconds since `base`.
    tat: AtomicU64,
    base: Instant,
}

impl LocalGcra {
    pub(crate) fn new(amount: u64, window: Duration, base: Instant) -> Self {
        let window = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        LocalGcra {
            interval: window as f64 / amount.max(1) as f64,
            window,
            tat: AtomicU64::new(0),
            base,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn cost(&self, units: u64) -> u64 {
        (units as f64 * self.interval).ceil() as u64
    }

    /// Takes `units` if they fit, else the time until they would.
    pub(crate) fn try_take(&self, units: u64) -> Result<(), Duration> {
        let now = self.now();
        let cost = self.cost(units);
        let mut current = self.tat.load(Ordering::Acquire);
        loop {
            let next = current.max(now).saturating_add(cost);
            if next - now > self.window {
                return Err(Duration::from_nanos(next - now - self.window));
            }
            match self
                .tat
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }

    /// Records `units` used elsewhere (admitted through Redis), so that
    /// a fall back to local decisions starts from this replica's recent
    /// use; never fills the bucket beyond full.
    pub(crate) fn record(&self, units: u64) {
        let now = self.now();
        let cost = self.cost(units);
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(
                    tat.max(now)
                        .saturating_add(cost)
                        .min(now.saturating_add(self.window)),
                )
            });
    }

    /// Gives `units` back (a refused sibling limit, or tokens unused).
    pub(crate) fn give_back(&self, units: u64) {
        let now = self.now();
        let cost = self.cost(units);
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(tat.saturating_sub(cost).max(now.min(tat)))
            });
    }
}
