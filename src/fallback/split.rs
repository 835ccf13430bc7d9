//! How a fallback chain shares a request's deadline among its targets.

use crate::deadline::{Deadline, DeadlineScope};
use std::time::Duration;
use tokio::time::Instant;

/// How much of the time left before a request's [`Deadline`] one target of
/// a fallback chain may use while other targets remain after it.
///
/// Without a split, retries on a hung or slow primary can eat the whole
/// deadline and a healthy second target is never called. With one, the
/// target's call (its retries and their waits included) gets a deadline of
/// its own, its *share*; when the share is spent the chain moves on with
/// the rest of the time. The last target that may be called (the others
/// after it have open circuits) gets all that is left.
///
/// | split | the target may use, of the time left `t`, with `n` healthy targets after it |
/// |---|---|
/// | [`Fraction(f)`](Self::Fraction) (default `0.5`) | `f · t` |
/// | [`Equal`](Self::Equal) | `t / (n + 1)` |
/// | [`Fraction(f)`](Self::Fraction) with [`reserve_at_least`](Self::reserve_at_least)`(r)` | `min(f · t, t − r)`, but never less than `f · t / 2`, so a short deadline still gives it a chance |
/// | [`Off`](Self::Off) | `t` (the first target may use everything) |
///
/// With a 5 s deadline, a 2 s per-attempt timeout and a hung primary, the
/// default gives the primary 2.5 s (one timed-out attempt and the start of
/// a retry, cut at 2.5 s), and the second target the remaining 2.5 s.
///
/// ```
/// use std::time::Duration;
/// use staunch::fallback::DeadlineSplit;
///
/// let split = DeadlineSplit::Fraction(0.6).reserve_at_least(Duration::from_secs(1));
/// assert_eq!(split.share(Duration::from_secs(10), 1), Duration::from_secs(6));
/// assert_eq!(split.share(Duration::from_secs(2), 1), Duration::from_secs(1));
/// assert_eq!(split.share(Duration::from_secs(2), 0), Duration::from_secs(2));
/// assert_eq!(DeadlineSplit::Equal.share(Duration::from_secs(9), 2), Duration::from_secs(3));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum DeadlineSplit {
    /// The target may use this fraction (0 to 1) of the time left.
    Fraction(f64),
    /// [`Fraction`](Self::Fraction), keeping at least this much for the
    /// targets after it unless that would leave the target less than half
    /// its fraction.
    FractionReserving(f64, Duration),
    /// Each target, the ones after it included, gets an equal part of the
    /// time left.
    Equal,
    /// No split: a target may use all the time left.
    Off,
}

impl Default for DeadlineSplit {
    fn default() -> Self {
        DeadlineSplit::Fraction(0.5)
    }
}

impl DeadlineSplit {
    /// Keeps at least `reserve` for the targets after the current one (see
    /// the table above). Applies to the fractional split; `Equal` and `Off`
    /// are returned as they are.
    pub fn reserve_at_least(self, reserve: Duration) -> Self {
        match self {
            DeadlineSplit::Fraction(f) | DeadlineSplit::FractionReserving(f, _) => {
                DeadlineSplit::FractionReserving(f, reserve)
            }
            other => other,
        }
    }

    /// The time one target may use out of `left`, with `after` targets that
    /// may still be called after it.
    pub fn share(&self, left: Duration, after: usize) -> Duration {
        if after == 0 {
            return left;
        }
        let fraction = |f: f64| left.mul_f64(f.clamp(0.0, 1.0));
        match *self {
            DeadlineSplit::Off => left,
            DeadlineSplit::Fraction(f) => fraction(f),
            DeadlineSplit::FractionReserving(f, reserve) => {
                let share = fraction(f);
                share.min(left.saturating_sub(reserve)).max(share / 2)
            }
            DeadlineSplit::Equal => left / u32::try_from(after + 1).unwrap_or(u32::MAX),
        }
    }

    /// The deadline of one target's call: the request's own when the whole
    /// time left is the target's, else its share, marked as such.
    pub(super) fn target_deadline(&self, request: Deadline, after: usize) -> Deadline {
        let left = request.remaining();
        let share = self.share(left, after);
        if share >= left {
            return request;
        }
        Deadline::at(Instant::now() + share).with_scope(DeadlineScope::TargetShare)
    }
}
