//! The rolling window of spend.

use std::collections::VecDeque;
use std::time::Duration;

const BUCKETS: u32 = 20;

/// A time in the window: nanoseconds since the budget's
/// [`Clock`](super::layer::Clock) started (negative before it). Every
/// comparison and sum of times in the window is then one integer
/// operation, where one on an `Instant` normalises seconds and nanoseconds
/// each time (the window compares several per request).
pub(crate) type Tick = i64;

pub(crate) fn ticks(d: Duration) -> Tick {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[derive(Debug)]
struct Bucket {
    start: Tick,
    tokens: u64,
    cost: f64,
}

/// Tokens and cost spent over the last `span`, in buckets of `span / 20`,
/// plus what requests in flight have reserved. A bucket leaves the window
/// only once all of it is older than `span`, so the window never
/// undercounts. The sums of the buckets are kept as they change: a busy
/// window has all twenty filled, and every request reads the sums.
#[derive(Debug)]
pub(crate) struct Window {
    span: Tick,
    bucket: Tick,
    buckets: VecDeque<Bucket>,
    tokens: u64,
    cost: f64,
    pub(crate) reserved_tokens: u64,
    pub(crate) reserved_cost: f64,
}

impl Window {
    pub(crate) fn new(span: Duration) -> Self {
        Window {
            span: ticks(span),
            bucket: ticks((span / BUCKETS).max(Duration::from_millis(1))),
            buckets: VecDeque::new(),
            tokens: 0,
            cost: 0.0,
            reserved_tokens: 0,
            reserved_cost: 0.0,
        }
    }

    fn expiry(&self, bucket: &Bucket) -> Tick {
        bucket
            .start
            .saturating_add(self.bucket)
            .saturating_add(self.span)
    }

    pub(crate) fn expire(&mut self, now: Tick) {
        while let Some(front) = self.buckets.front() {
            if self.expiry(front) > now {
                break;
            }
            if let Some(gone) = self.buckets.pop_front() {
                self.tokens = self.tokens.saturating_sub(gone.tokens);
                self.cost -= gone.cost;
            }
        }
        if self.buckets.is_empty() {
            // Nothing left: exactly nothing, whatever rounding the
            // subtractions left in the cost.
            self.tokens = 0;
            self.cost = 0.0;
        }
    }

    /// Tokens and cost recorded in the window.
    pub(crate) fn used(&self) -> (u64, f64) {
        (self.tokens, self.cost.max(0.0))
    }

    pub(crate) fn record(&mut self, now: Tick, tokens: u64, cost: f64) {
        self.tokens = self.tokens.saturating_add(tokens);
        self.cost += cost;
        let bucket = self.bucket;
        match self.buckets.back_mut() {
            Some(back) if now < back.start.saturating_add(bucket) => {
                back.tokens = back.tokens.saturating_add(tokens);
                back.cost += cost;
            }
            _ => self.buckets.push_back(Bucket {
                start: now,
                tokens,
                cost,
            }),
        }
    }

    /// How long until enough spend leaves the window that `fits` holds for
    /// what remains; `None` if it never will (the request alone is too big).
    pub(crate) fn wait_until(
        &self,
        now: Tick,
        mut fits: impl FnMut(u64, f64) -> bool,
    ) -> Option<Duration> {
        let (mut tokens, mut cost) = self.used();
        for bucket in &self.buckets {
            tokens = tokens.saturating_sub(bucket.tokens);
            cost -= bucket.cost;
            if fits(tokens, cost) {
                let wait = self.expiry(bucket).saturating_sub(now).max(0);
                return Some(Duration::from_nanos(wait.unsigned_abs()));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The sums kept as buckets come and go are the buckets' own sums,
        /// and an emptied window holds exactly nothing.
        #[test]
        fn the_kept_sums_are_the_sums_of_the_buckets_in_the_window(
            steps in prop::collection::vec((0i64..400, 0u64..10_000, 0u32..1_000), 1..200),
        ) {
            let mut window = Window::new(Duration::from_secs(1));
            let mut now: Tick = 0;
            for (millis, tokens, cents) in steps {
                now += millis * 1_000_000;
                window.expire(now);
                window.record(now, tokens, f64::from(cents) / 100.0);
                let (sum_tokens, sum_cost) = window
                    .buckets
                    .iter()
                    .fold((0u64, 0.0), |(t, c), b| (t + b.tokens, c + b.cost));
                let (tokens, cost) = window.used();
                prop_assert_eq!(tokens, sum_tokens);
                prop_assert!((cost - sum_cost).abs() < 1e-6, "{cost} against {sum_cost}");
            }
            window.expire(now + ticks(Duration::from_secs(5)));
            prop_assert_eq!(window.used(), (0, 0.0));
        }
    }
}
