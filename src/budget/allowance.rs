//! The per-request token allowance that retry and fallback consult.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Set by the budget layer in a request's extensions when a per-request cap
/// is configured. The fallback layer records what earlier targets spent;
/// retry and fallback ask whether one more attempt still fits.
#[derive(Clone, Debug)]
pub(crate) struct Allowance(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    cap: u64,
    per_attempt: u64,
    earlier_targets: AtomicU64,
}

impl Allowance {
    pub(crate) fn new(cap: u64, per_attempt: u64) -> Self {
        Allowance(Arc::new(Inner {
            cap,
            per_attempt,
            earlier_targets: AtomicU64::new(0),
        }))
    }

    /// Records the tokens spent by the targets tried so far.
    pub(crate) fn set_earlier_targets(&self, tokens: u64) {
        self.0.earlier_targets.store(tokens, Ordering::Relaxed);
    }

    /// True when `spent_here` more tokens plus one more attempt still fit
    /// under the cap.
    pub(crate) fn affords_another(&self, spent_here: u64) -> bool {
        self.0
            .earlier_targets
            .load(Ordering::Relaxed)
            .saturating_add(spent_here)
            .saturating_add(self.0.per_attempt)
            <= self.0.cap
    }
}
