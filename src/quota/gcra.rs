//! The generic cell rate algorithm (GCRA) on one atomic word.
//!
//! A limit of `amount` units per `period` is a bucket of `amount` that
//! refills one unit every `interval = period / amount`. GCRA keeps the
//! whole bucket in one number, the theoretical arrival time (TAT): the
//! instant at which the bucket would be full again. A cost of `c` units
//! conforms at `t` when `max(TAT, t) + c·interval - t <= amount·interval`;
//! admitting it moves TAT to `max(TAT, t) + c·interval`. Refunds and extra
//! charges move TAT back or forward. Every update is one compare-and-swap.
//!
//! Times are nanoseconds since the quota's epoch (a tokio `Instant`, so
//! tests can pause the clock); arithmetic saturates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One limit's state. Aligned to its own cache lines, so that two limits
/// updated by the same request do not share one.
#[repr(align(128))]
#[derive(Debug)]
pub(crate) struct Gcra {
    tat: AtomicU64,
    /// Nanoseconds per unit (at least 1).
    interval: u64,
    /// `amount · interval`: how far TAT may run ahead of now.
    tolerance: u64,
}

impl Gcra {
    /// `amount` (at least 1) per `period`. The interval is rounded up, so
    /// the rate never exceeds the limit.
    pub(crate) fn new(amount: u64, period: Duration) -> Self {
        let period = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        let amount = amount.max(1);
        let interval = period.div_ceil(amount).max(1);
        Gcra {
            tat: AtomicU64::new(0),
            interval,
            tolerance: interval.saturating_mul(amount),
        }
    }

    fn weight(&self, cost: u64) -> u64 {
        cost.saturating_mul(self.interval)
    }

    /// Whether `cost` fits an empty bucket at all.
    pub(crate) fn fits(&self, cost: u64) -> bool {
        self.weight(cost) <= self.tolerance
    }

    /// The bucket's size in units.
    pub(crate) fn capacity(&self) -> u64 {
        self.tolerance / self.interval
    }

    pub(crate) fn load(&self) -> u64 {
        self.tat.load(Ordering::Acquire)
    }

    /// The earliest instant at which `cost` conforms, given `tat` (for a
    /// cost that [`fits`](Self::fits)).
    pub(crate) fn earliest(&self, tat: u64, cost: u64) -> u64 {
        tat.saturating_add(self.weight(cost))
            .saturating_sub(self.tolerance)
    }

    /// The TAT after admitting `cost` at `at`.
    pub(crate) fn after(&self, tat: u64, at: u64, cost: u64) -> u64 {
        tat.max(at).saturating_add(self.weight(cost))
    }

    /// Replaces `current` by `new` if nobody changed it meanwhile.
    pub(crate) fn swap(&self, current: u64, new: u64) -> bool {
        self.tat
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Gives `cost` units back (a dropped waiter, a reservation larger
    /// than what was billed). The bucket never holds more than full.
    pub(crate) fn refund(&self, cost: u64, now: u64) {
        let weight = self.weight(cost);
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(tat.saturating_sub(weight).max(now))
            });
    }

    /// Takes `cost` more units (billed beyond the reservation), even past
    /// empty: later requests wait until it is paid back.
    pub(crate) fn charge(&self, cost: u64, now: u64) {
        let weight = self.weight(cost);
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(tat.max(now).saturating_add(weight))
            });
    }

    /// Units free at `now`.
    pub(crate) fn available(&self, now: u64) -> u64 {
        let used = self.load().max(now) - now;
        self.tolerance.saturating_sub(used) / self.interval
    }

    /// Admits `cost` at `now` if it conforms (a single limit's hot path;
    /// the quota itself commits several limits at once).
    #[cfg(test)]
    pub(crate) fn try_take(&self, cost: u64, now: u64) -> Result<(), u64> {
        loop {
            let tat = self.load();
            let at = self.earliest(tat, cost);
            if at > now || !self.fits(cost) {
                return Err(at.saturating_sub(now));
            }
            if self.swap(tat, self.after(tat, now, cost)) {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_full_bucket_admits_exactly_its_amount_then_one_per_interval() {
        let g = Gcra::new(3, Duration::from_secs(60));
        assert_eq!(g.capacity(), 3);
        for _ in 0..3 {
            g.try_take(1, 0).unwrap();
        }
        assert_eq!(g.try_take(1, 0), Err(20 * SEC));
        assert_eq!(g.try_take(1, 20 * SEC - 1), Err(1));
        g.try_take(1, 20 * SEC).unwrap();
        // A minute idle refills it completely, and no more.
        let later = 200 * SEC;
        assert_eq!(g.available(later), 3);
        for _ in 0..3 {
            g.try_take(1, later).unwrap();
        }
        assert!(g.try_take(1, later).is_err());
    }

    #[test]
    fn costs_larger_than_the_bucket_never_fit() {
        let g = Gcra::new(1_000, Duration::from_secs(60));
        assert!(g.fits(1_000));
        assert!(!g.fits(1_001));
        assert!(!g.fits(u64::MAX));
    }

    #[test]
    fn refunds_and_charges_move_the_bucket_both_ways() {
        let g = Gcra::new(1_000, Duration::from_secs(60));
        g.try_take(600, 0).unwrap();
        assert_eq!(g.available(0), 400);
        g.refund(500, 0);
        assert_eq!(g.available(0), 900);
        // A refund never fills past full.
        g.refund(5_000, 0);
        assert_eq!(g.available(0), 1_000);
        g.charge(1_500, 0);
        assert_eq!(g.available(0), 0);
        // 500 in debt: the next unit is free after 501 intervals.
        assert_eq!(g.try_take(1, 0), Err(501 * 60 * SEC / 1_000));
    }

    #[test]
    fn huge_limits_and_times_saturate_instead_of_overflowing() {
        let g = Gcra::new(u64::MAX, Duration::from_secs(86_400 * 365 * 100));
        g.try_take(u64::MAX / 2, 0).unwrap();
        g.charge(u64::MAX, 0);
        assert_eq!(g.available(0), 0);
        g.refund(u64::MAX, u64::MAX);
        assert_eq!(g.available(u64::MAX), u64::MAX);
    }

    /// One step of the property below: after `gap_ms`, a request reserving
    /// `reserved` tokens arrives; it is admitted when it conforms (waiting
    /// if it must), unless `dropped` (a waiter that gives up), and bills
    /// `billed` tokens at its admission.
    #[derive(Clone, Debug)]
    struct Step {
        gap_ms: u64,
        reserved: u64,
        billed: u64,
        dropped: bool,
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            0u64..5_000,
            1u64..=400,
            0u64..=600,
            proptest::bool::weighted(0.1),
        )
            .prop_map(|(gap_ms, reserved, billed, dropped)| Step {
                gap_ms,
                reserved,
                billed,
                dropped,
            })
    }

    proptest! {
        /// The bucket the provider enforces (1,000 tokens, refilled at
        /// 1,000 per minute) never runs dry by more than one reservation:
        /// the tokens billed in any window `[a, b]` of admissions never
        /// exceed the limit plus the refill over the window, plus what one
        /// request billed beyond its reservation. Refunds (billed less than
        /// reserved), extra charges (billed more) and dropped waiters
        /// included.
        #[test]
        fn admitted_tokens_never_exceed_the_limit_in_any_window(
            steps in proptest::collection::vec(step(), 1..120)
        ) {
            const LIMIT: u64 = 1_000;
            let g = Gcra::new(LIMIT, Duration::from_secs(60));
            let interval = 60 * SEC / LIMIT;
            let mut now = 0u64;
            let mut admitted: Vec<(u64, u64)> = Vec::new();
            let mut overshoot = 0u64;
            for s in &steps {
                now += s.gap_ms * 1_000_000;
                // Waiters reserve their slot in the schedule, as the
                // quota does: the admission instant is the earliest at
                // which it conforms, never before now.
                let tat = g.load();
                let at = g.earliest(tat, s.reserved).max(now);
                prop_assert!(g.swap(tat, g.after(tat, at, s.reserved)));
                if s.dropped {
                    g.refund(s.reserved, now);
                    continue;
                }
                // The answer comes at the admission instant.
                if s.billed > s.reserved {
                    g.charge(s.billed - s.reserved, at);
                    overshoot = overshoot.max(s.billed - s.reserved);
                } else {
                    g.refund(s.reserved - s.billed, at);
                }
                admitted.push((at, s.billed));
                now = now.max(at);
            }
            admitted.sort_by_key(|a| a.0);
            for i in 0..admitted.len() {
                let mut sum = 0u64;
                for j in i..admitted.len() {
                    sum += admitted[j].1;
                    let refill = (admitted[j].0 - admitted[i].0) / interval;
                    prop_assert!(
                        sum <= LIMIT + refill + overshoot,
                        "{sum} tokens billed in {} ms (limit {LIMIT}, refill {refill}, overshoot {overshoot})",
                        (admitted[j].0 - admitted[i].0) / 1_000_000
                    );
                }
            }
        }
    }
}
