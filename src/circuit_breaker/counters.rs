//! Lock-free counters: striped totals, and the failure-rate windows.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Keeps a value on its own cache line, so that threads writing
/// neighbouring values do not contend.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

const STRIPES: usize = 8;

fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    // Const-initialised (no lazy-init check on each access); `STRIPES`
    // until the thread's first use picks its stripe.
    thread_local! {
        static MINE: Cell<usize> = const { Cell::new(STRIPES) };
    }
    MINE.with(|s| match s.get() {
        STRIPES => {
            let mine = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            s.set(mine);
            mine
        }
        mine => mine,
    })
}

/// A counter that many threads add to without sharing a cache line; reads
/// sum the stripes, so the total is exact once writers are done.
#[derive(Debug, Default)]
pub(crate) struct Striped {
    cells: [Padded<AtomicU64>; STRIPES],
}

impl Striped {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.cells[stripe()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.cells.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }
}

/// The outcomes of the last `n` calls, in a ring of slots.
#[derive(Debug)]
pub(crate) struct CallWindow {
    slots: Box<[AtomicU8]>,
    head: AtomicU64,
    calls: AtomicU32,
    failures: AtomicU32,
}

const EMPTY: u8 = 0;
const OK: u8 = 1;
const FAILED: u8 = 2;

impl CallWindow {
    pub(crate) fn new(n: u32) -> Self {
        CallWindow {
            slots: (0..n.max(1)).map(|_| AtomicU8::new(EMPTY)).collect(),
            head: AtomicU64::new(0),
            calls: AtomicU32::new(0),
            failures: AtomicU32::new(0),
        }
    }

    /// Records one call; returns the window's (calls, failures) after it.
    pub(crate) fn record(&self, failed: bool) -> (u32, u32) {
        let index = (self.head.fetch_add(1, Ordering::Relaxed) % self.slots.len() as u64) as usize;
        let new = if failed { FAILED } else { OK };
        let old = self.slots[index].swap(new, Ordering::AcqRel);
        let calls = if old == EMPTY {
            self.calls.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            self.calls.load(Ordering::Acquire)
        };
        let failures = match (old == FAILED, failed) {
            (false, true) => self.failures.fetch_add(1, Ordering::AcqRel) + 1,
            (true, false) => self.failures.fetch_sub(1, Ordering::AcqRel) - 1,
            _ => self.failures.load(Ordering::Acquire),
        };
        (calls, failures)
    }

    pub(crate) fn reset(&self) {
        for slot in self.slots.iter() {
            slot.store(EMPTY, Ordering::Relaxed);
        }
        self.calls.store(0, Ordering::Release);
        self.failures.store(0, Ordering::Release);
    }
}

/// Calls and failures per second over the last `len` seconds. Each bucket
/// packs its second, call count and failure count into one word updated by
/// compare-and-swap, so a bucket's reuse for a new second is exact.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    buckets: Box<[AtomicU64]>,
}

fn pack(second: u64, calls: u64, failures: u64) -> u64 {
    ((second & 0xFFFF_FFFF) << 32) | (calls.min(0xFFFF) << 16) | failures.min(0xFFFF)
}

fn unpack(word: u64) -> (u64, u64, u64) {
    (word >> 32, (word >> 16) & 0xFFFF, word & 0xFFFF)
}

impl TimeWindow {
    pub(crate) fn new(seconds: u64) -> Self {
        TimeWindow {
            buckets: (0..seconds.max(1))
                .map(|_| AtomicU64::new(u64::MAX))
                .collect(),
        }
    }

    fn live(&self, bucket_second: u64, now_second: u64) -> bool {
        let len = self.buckets.len() as u64;
        let now = now_second & 0xFFFF_FFFF;
        bucket_second <= now && now - bucket_second < len
    }

    /// Records one call at `second` (seconds since the breaker's start);
    /// returns the window's (calls, failures) after it.
    pub(crate) fn record(&self, second: u64, failed: bool) -> (u32, u32) {
        let bucket = &self.buckets[(second % self.buckets.len() as u64) as usize];
        let mut current = bucket.load(Ordering::Acquire);
        loop {
            let (s, calls, failures) = unpack(current);
            let next = if current != u64::MAX && s == second & 0xFFFF_FFFF {
                pack(second, calls + 1, failures + u64::from(failed))
            } else {
                pack(second, 1, u64::from(failed))
            };
            match bucket.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        self.totals(second)
    }

    fn totals(&self, now_second: u64) -> (u32, u32) {
        let (mut calls, mut failures) = (0u64, 0u64);
        for bucket in self.buckets.iter() {
            let word = bucket.load(Ordering::Acquire);
            if word == u64::MAX {
                continue;
            }
            let (s, c, f) = unpack(word);
            if self.live(s, now_second) {
                calls += c;
                failures += f;
            }
        }
        (
            calls.min(u64::from(u32::MAX)) as u32,
            failures.min(u64::from(u32::MAX)) as u32,
        )
    }

    pub(crate) fn reset(&self) {
        for bucket in self.buckets.iter() {
            bucket.store(u64::MAX, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_window_forgets_the_oldest_call() {
        let w = CallWindow::new(3);
        assert_eq!(w.record(true), (1, 1));
        assert_eq!(w.record(false), (2, 1));
        assert_eq!(w.record(true), (3, 2));
        assert_eq!(w.record(false), (3, 1), "the first failure left the window");
        w.reset();
        assert_eq!(w.record(false), (1, 0));
    }

    #[test]
    fn the_time_window_drops_old_seconds() {
        let w = TimeWindow::new(3);
        assert_eq!(w.record(10, true), (1, 1));
        assert_eq!(w.record(10, false), (2, 1));
        assert_eq!(w.record(12, true), (3, 2));
        assert_eq!(w.record(13, false), (2, 1), "second 10 is out of [11, 13]");
        assert_eq!(w.record(20, false), (1, 0));
    }

    #[test]
    fn striped_counts_add_up_across_threads() {
        let c = std::sync::Arc::new(Striped::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..10_000).for_each(|_| c.add(1)))
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(c.get(), 40_000);
    }
}
