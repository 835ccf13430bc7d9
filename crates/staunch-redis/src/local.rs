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

    /// Takes `units` if they fit now or within `patience`: `Ok` with the
    /// wait until their slot (reserved, so later takers queue behind it),
    /// else `Err` with that wait, nothing taken.
    pub(crate) fn take_within(&self, units: u64, patience: Duration) -> Result<Duration, Duration> {
        let now = self.now();
        let cost = self.cost(units);
        let patience = u64::try_from(patience.as_nanos()).unwrap_or(u64::MAX);
        let mut current = self.tat.load(Ordering::Acquire);
        loop {
            let next = current.max(now).saturating_add(cost);
            let wait = (next - now).saturating_sub(self.window);
            if wait > patience {
                return Err(Duration::from_nanos(wait));
            }
            match self
                .tat
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(Duration::from_nanos(wait)),
                Err(seen) => current = seen,
            }
        }
    }

    /// Records `units` used elsewhere (admitted through Redis), so that
    /// a fall back to local decisions starts from this replica's recent
    /// use; never fills the bucket beyond full, nor takes back the slots
    /// of local waiters.
    pub(crate) fn record(&self, units: u64) {
        let now = self.now();
        let cost = self.cost(units);
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(
                    tat.max(now)
                        .saturating_add(cost)
                        .min(now.saturating_add(self.window))
                        .max(tat),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_take_waits_for_its_slot_within_patience_else_is_refused() {
        let gcra = LocalGcra::new(2, Duration::from_secs(1), Instant::now());
        let none = Duration::ZERO;
        assert_eq!(gcra.take_within(1, none), Ok(none));
        assert_eq!(gcra.take_within(1, none), Ok(none));
        // Full: the next unit comes in 500 ms, the one after in 1 s.
        assert_eq!(
            gcra.take_within(1, Duration::from_millis(100)),
            Err(Duration::from_millis(500))
        );
        let patience = Duration::from_secs(2);
        assert_eq!(
            gcra.take_within(1, patience),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(gcra.take_within(1, patience), Ok(Duration::from_secs(1)));
        // A waiter that gives up hands its slot to the next.
        gcra.give_back(1);
        assert_eq!(gcra.take_within(1, patience), Ok(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(gcra.take_within(1, none), Err(Duration::from_millis(500)));
    }
}
