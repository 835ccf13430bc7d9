//! The observed latencies a hedge delay is read from: a log-bucketed
//! histogram over two rotating windows, written once per answer and read
//! (one atomic load) once per call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// Sub-buckets per power of two: a bucket is at most an eighth (12.5 %)
/// wider than its lower bound.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets for every `u64` of microseconds.
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

/// The bucket of `v` microseconds.
fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let power = 63 - v.leading_zeros();
    let sub = (v >> (power - SUB_BITS)) & (SUB - 1);
    ((power - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

/// The largest value of bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let power = i / SUB + u64::from(SUB_BITS) - 1;
    let sub = i % SUB;
    let lower = (SUB + sub) << (power - u64::from(SUB_BITS));
    let width = 1u64 << (power - u64::from(SUB_BITS));
    lower.saturating_add(width - 1)
}

struct Windows {
    current: Box<[u32]>,
    previous: Box<[u32]>,
    current_count: u64,
    previous_count: u64,
    started: Instant,
}

/// Latencies of the last one to two periods, and the quantile of them
/// kept ready to read.
pub(super) struct LatencyWindow {
    windows: Mutex<Windows>,
    period: Duration,
    quantile: f64,
    min_samples: u64,
    /// The quantile in microseconds plus one; 0 while too few samples.
    ready: AtomicU64,
}

impl LatencyWindow {
    pub(super) fn new(period: Duration, quantile: f64, min_samples: u64) -> Self {
        LatencyWindow {
            windows: Mutex::new(Windows {
                current: vec![0; BUCKETS].into(),
                previous: vec![0; BUCKETS].into(),
                current_count: 0,
                previous_count: 0,
                started: Instant::now(),
            }),
            period,
            quantile,
            min_samples,
            ready: AtomicU64::new(0),
        }
    }

    /// The quantile of the latencies seen, once there are enough of them.
    #[inline]
    pub(super) fn quantile(&self) -> Option<Duration> {
        match self.ready.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us - 1)),
        }
    }

    /// Takes in one answer's latency.
    pub(super) fn record(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let mut w = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let age = now.saturating_duration_since(w.started);
        if age >= self.period * 2 {
            w.previous.fill(0);
            w.current.fill(0);
            w.previous_count = 0;
            w.current_count = 0;
            w.started = now;
        } else if age >= self.period {
            let w = &mut *w;
            std::mem::swap(&mut w.previous, &mut w.current);
            w.current.fill(0);
            w.previous_count = w.current_count;
            w.current_count = 0;
            w.started += self.period;
        }
        let i = index(us);
        w.current[i] = w.current[i].saturating_add(1);
        w.current_count += 1;
        let total = w.current_count + w.previous_count;
        let ready = if total < self.min_samples.max(1) {
            0
        } else {
            let rank = ((self.quantile * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0u64;
            let mut at = BUCKETS - 1;
            for (b, (c, p)) in w.current.iter().zip(w.previous.iter()).enumerate() {
                seen += u64::from(*c) + u64::from(*p);
                if seen >= rank {
                    at = b;
                    break;
                }
            }
            upper(at).saturating_add(1)
        };
        self.ready.store(ready, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order_within_an_eighth() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS, "{v}");
            assert!(i >= last, "monotone at {v}");
            last = i;
            assert!(upper(i) >= v, "{v} in bucket {i} of top {}", upper(i));
            assert!(
                upper(i) - v <= v / 8 + 1,
                "{v}: bucket top {} too far",
                upper(i)
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_quantile_needs_enough_samples_and_follows_the_tail() {
        let w = LatencyWindow::new(Duration::from_secs(60), 0.95, 20);
        for _ in 0..19 {
            w.record(Duration::from_millis(100));
        }
        assert_eq!(w.quantile(), None, "19 samples are too few");
        w.record(Duration::from_millis(100));
        let p = w.quantile().expect("20 samples");
        assert!(
            p >= Duration::from_millis(100) && p <= Duration::from_millis(113),
            "{p:?}"
        );
        // 10 % of answers take 2 s: the p95 is in the tail.
        for _ in 0..3 {
            w.record(Duration::from_secs(2));
        }
        let p = w.quantile().expect("samples");
        assert!(
            p >= Duration::from_secs(2) && p <= Duration::from_millis(2_260),
            "{p:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn old_latencies_rotate_out() {
        let w = LatencyWindow::new(Duration::from_secs(10), 0.5, 1);
        w.record(Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(11)).await;
        w.record(Duration::from_millis(10));
        w.record(Duration::from_millis(10));
        // The 5 s one is still in the previous window.
        let p = w.quantile().expect("samples");
        assert!(p < Duration::from_millis(12), "{p:?}");
        tokio::time::advance(Duration::from_secs(25)).await;
        w.record(Duration::from_millis(1));
        assert!(w.quantile().expect("one sample") < Duration::from_millis(2));
    }
}
