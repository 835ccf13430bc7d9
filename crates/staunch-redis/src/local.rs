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

    /// Makes the bucket hold at most what is left before `tat`
    /// (nanoseconds since `base`, the theoretical arrival time the shared
    /// bucket had when this replica last saw it): at this replica's rate,
    /// its room is then its share of the shared room, and nothing while
    /// the slots already reserved in Redis come. Never gives room back.
    pub(crate) fn hold_until(&self, tat: u64) {
        self.tat.fetch_max(tat, Ordering::AcqRel);
    }

    /// An empty bucket from now: the next unit in one interval.
    pub(crate) fn empty_now(&self) -> u64 {
        self.now().saturating_add(self.window)
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

/// The window of [`Recent`] in this many slots.
const SLOTS: usize = 20;

/// The units this replica admitted over about the last window (one slot
/// more at most: an overcount, never an undercount), lock-free: one
/// atomic per slot holding the slot's number (24 bits) and its count (40
/// bits). After Redis lost the shared state, this is what the replica
/// charges again.
#[derive(Debug)]
pub(crate) struct Recent {
    /// One more than `SLOTS`, so that the last window is always covered.
    slots: [AtomicU64; SLOTS + 1],
    slot: u64,
    base: Instant,
}

const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const TICK_MASK: u64 = (1 << (64 - COUNT_BITS)) - 1;

impl Recent {
    pub(crate) fn new(window: Duration, base: Instant) -> Self {
        let window = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        Recent {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            slot: (window / SLOTS as u64).max(1),
            base,
        }
    }

    fn tick(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX) / self.slot
    }

    /// Counts `units` admitted now.
    pub(crate) fn add(&self, units: u64) {
        if units == 0 {
            return;
        }
        let tick = self.tick();
        let stamp = tick & TICK_MASK;
        let slot = &self.slots[(tick % (SLOTS as u64 + 1)) as usize];
        let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
            let count = if word >> COUNT_BITS == stamp {
                word & COUNT_MASK
            } else {
                0
            };
            Some(stamp << COUNT_BITS | count.saturating_add(units).min(COUNT_MASK))
        });
    }

    /// Takes back `units` given back now (from the current slot only; what
    /// it does not hold stays counted).
    pub(crate) fn sub(&self, units: u64) {
        let tick = self.tick();
        let stamp = tick & TICK_MASK;
        let slot = &self.slots[(tick % (SLOTS as u64 + 1)) as usize];
        let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
            (word >> COUNT_BITS == stamp)
                .then(|| stamp << COUNT_BITS | (word & COUNT_MASK).saturating_sub(units))
        });
    }

    /// The units counted over the last window and the part of a slot
    /// before it.
    pub(crate) fn sum(&self) -> u64 {
        let tick = self.tick();
        (0..=SLOTS as u64)
            .filter_map(|back| tick.checked_sub(back))
            .map(|t| {
                let word = self.slots[(t % (SLOTS as u64 + 1)) as usize].load(Ordering::Acquire);
                if word >> COUNT_BITS == t & TICK_MASK {
                    word & COUNT_MASK
                } else {
                    0
                }
            })
            .sum()
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

    #[tokio::test(start_paused = true)]
    async fn recent_counts_what_was_admitted_over_the_last_window() {
        let recent = Recent::new(Duration::from_secs(20), Instant::now());
        recent.add(5);
        tokio::time::advance(Duration::from_secs(10)).await;
        recent.add(3);
        recent.sub(1);
        assert_eq!(recent.sum(), 7);
        // The first 5 leave the window one slot (1 s) after it ends.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(recent.sum(), 2);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(recent.sum(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_held_until_the_shared_tat_has_its_share_of_the_room() {
        let base = Instant::now();
        // 10 per second here (a quarter of a shared 40 per second).
        let gcra = LocalGcra::new(10, Duration::from_secs(1), base);
        // The shared bucket, seen half full: its tat 500 ms from now.
        gcra.hold_until(500_000_000);
        let none = Duration::ZERO;
        for _ in 0..5 {
            assert_eq!(gcra.take_within(1, none), Ok(none));
        }
        assert!(gcra.take_within(1, none).is_err());
        // Reserved slots ahead: nothing until they have come.
        let gcra = LocalGcra::new(10, Duration::from_secs(1), base);
        gcra.hold_until(gcra.empty_now() + 300_000_000);
        assert_eq!(
            gcra.take_within(1, Duration::from_secs(1)),
            Ok(Duration::from_millis(400))
        );
    }
}
