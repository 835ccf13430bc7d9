//! The retry budget's sliding window: deposits and withdrawals over the
//! last `ttl`, in slots of about a tenth of it, lock-free.
//!
//! A deposit takes the instant the caller already read (the request's
//! start, which the retry layer reads anyway), so the common path, a
//! request that succeeds at once, costs a shift and one atomic add: no
//! clock read, no lock, no division (a slot is a power of two of
//! nanoseconds, the one nearest a tenth of `ttl`, and the window is as many
//! slots as cover `ttl`). Only a withdrawal, which happens on a retry,
//! reads every slot.
//!
//! Amounts are fixed-point ([`SCALE`] per retry), so a fraction of a retry
//! per request adds up exactly over many requests.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Slots in the ring: enough for a window of `ttl` in slots of the power
/// of two nearest `ttl / 10` (at most 14 of them), plus the one filling.
const SLOTS: usize = 16;

/// One retry, in the window's fixed-point units.
pub(super) const SCALE: i64 = 1_000;

/// The balance of one slot's time, and which slot of time it holds.
#[derive(Default)]
struct Slot {
    /// The slot number (time since `origin` divided by the slot length)
    /// whose deposits `balance` holds.
    epoch: AtomicU64,
    balance: AtomicI64,
}

/// Deposits and withdrawals over a sliding window.
pub(super) struct Window {
    origin: Instant,
    /// A slot is `1 << slot_shift` nanoseconds.
    slot_shift: u32,
    /// Slots that cover the window.
    span: u64,
    /// Always allowed in a window: the floor per second times the window.
    reserve: i64,
    /// What one request deposits: the retry fraction times [`SCALE`].
    deposit: i64,
    slots: [Slot; SLOTS],
}

impl Window {
    /// A window of `ttl` (at least 10 ns), a floor of `min_per_sec`
    /// retries per second and `retry_percent` retries per request.
    pub(super) fn new(ttl: Duration, min_per_sec: u32, retry_percent: f32) -> Self {
        let ttl_nanos = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX).max(1);
        let tenth = (ttl_nanos / 10).max(1);
        // The power of two nearest a tenth of the window.
        let below = 63 - tenth.leading_zeros();
        let slot_shift = if below < 63 && tenth - (1 << below) > (1 << (below + 1)) - tenth {
            below + 1
        } else {
            below
        };
        let span = ttl_nanos
            .div_ceil(1 << slot_shift)
            .clamp(1, SLOTS as u64 - 1);
        let reserve = (i64::from(min_per_sec))
            .saturating_mul(SCALE)
            .saturating_mul(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1));
        Window {
            origin: Instant::now(),
            slot_shift,
            span,
            reserve,
            deposit: (f64::from(retry_percent) * SCALE as f64).round() as i64,
            slots: Default::default(),
        }
    }

    #[inline]
    fn epoch(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin);
        let nanos = since
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(since.subsec_nanos()));
        nanos >> self.slot_shift
    }

    /// Adds `amount` to the slot of `now`, starting that slot afresh when
    /// it still holds an older slot of time. Under contention a slot's
    /// turnover may lose an amount added at the same instant; the budget
    /// is a bound on load, not a ledger, and either loss is one retry.
    fn add(&self, now: Instant, amount: i64) {
        let epoch = self.epoch(now);
        let slot = &self.slots[(epoch % SLOTS as u64) as usize];
        let seen = slot.epoch.load(Ordering::Acquire);
        if seen < epoch
            && slot
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            slot.balance.store(0, Ordering::Release);
        }
        slot.balance.fetch_add(amount, Ordering::AcqRel);
    }

    /// Records a request made at `now`.
    #[inline]
    pub(super) fn deposit(&self, now: Instant) {
        if self.deposit != 0 {
            self.add(now, self.deposit);
        }
    }

    /// What the window holds at `now`: the reserve plus the deposits and
    /// less the withdrawals of the slots still in it.
    pub(super) fn balance(&self, now: Instant) -> i64 {
        let epoch = self.epoch(now);
        let oldest = epoch.saturating_sub(self.span - 1);
        self.slots
            .iter()
            .filter(|slot| (oldest..=epoch).contains(&slot.epoch.load(Ordering::Acquire)))
            .fold(self.reserve, |sum, slot| {
                sum.saturating_add(slot.balance.load(Ordering::Acquire))
            })
    }

    /// Takes one retry at `now`, if the window holds one.
    pub(super) fn withdraw(&self, now: Instant) -> bool {
        if self.balance(now) < SCALE {
            return false;
        }
        self.add(now, -SCALE);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn deposits_buy_their_fraction_of_retries_and_the_floor_is_always_there() {
        let window = Window::new(Duration::from_secs(10), 1, 0.2);
        let now = Instant::now();
        for _ in 0..100 {
            window.deposit(now);
        }
        // 100 requests at 20% plus 1/s over 10 s: 30 retries.
        let taken = (0..100).take_while(|_| window.withdraw(now)).count();
        assert_eq!(taken, 30);
        assert!(!window.withdraw(now));
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_leave_the_window_after_its_length() {
        let window = Window::new(Duration::from_secs(10), 0, 1.0);
        let start = Instant::now();
        for _ in 0..5 {
            window.deposit(start);
        }
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(
            window.balance(Instant::now()),
            5 * SCALE,
            "still in the window"
        );
        // The window is 10 slots of 2^30 ns (10.7 s): a deposit leaves it
        // within one slot after its length.
        tokio::time::advance(2 * SECOND).await;
        assert_eq!(window.balance(Instant::now()), 0, "out of the window");
        // A slot reused for a later slot of time starts afresh.
        window.deposit(Instant::now());
        assert_eq!(window.balance(Instant::now()), SCALE);
    }

    #[test]
    fn slots_are_the_power_of_two_nearest_a_tenth_and_cover_the_window() {
        for (secs, shift, span) in [(1, 26, 15), (10, 30, 10), (60, 32, 14)] {
            let window = Window::new(Duration::from_secs(secs), 0, 0.0);
            assert_eq!((window.slot_shift, window.span), (shift, span), "{secs} s");
            let covered = window.span << window.slot_shift;
            assert!(covered >= secs * 1_000_000_000, "{secs} s covered");
            assert!(window.span < SLOTS as u64);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_with_no_floor_and_no_fraction_allows_nothing() {
        let window = Window::new(Duration::from_secs(10), 0, 0.0);
        let now = Instant::now();
        window.deposit(now);
        assert!(!window.withdraw(now));
    }

    #[tokio::test(start_paused = true)]
    async fn an_instant_before_the_window_began_counts_as_its_first_slot() {
        let early = Instant::now();
        tokio::time::advance(SECOND).await;
        let window = Window::new(Duration::from_secs(10), 0, 1.0);
        window.deposit(early);
        assert_eq!(window.balance(Instant::now()), SCALE);
    }

    #[test]
    fn threads_depositing_at_once_lose_nothing_within_one_slot() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
        let _guard = runtime.enter();
        let window = std::sync::Arc::new(Window::new(Duration::from_secs(10), 0, 1.0));
        let now = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let window = window.clone();
                scope.spawn(move || {
                    for _ in 0..10_000 {
                        window.deposit(now);
                    }
                });
            }
        });
        assert_eq!(window.balance(now), 40_000 * SCALE);
    }
}
