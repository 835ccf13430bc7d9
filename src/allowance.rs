//! The per-request token allowance: set by the budget layer, consulted by
//! fallback and retry before they spend another attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The tokens a logical request may still spend, carried in
/// [`ChatRequest::extensions`](staunch_core::ChatRequest::extensions) beside
/// the [`Deadline`](crate::Deadline).
///
/// The [`BudgetLayer`](crate::budget::BudgetLayer) sets it when a
/// per-request cap is configured; a fallback chain records what its earlier
/// targets spent in it, and the retry layer and the chain ask it whether
/// one more attempt still fits, so a request gives up before it would pass
/// its cap rather than after. A layer of your own can set or read it the
/// same way.
///
/// ```
/// use staunch::Allowance;
/// // 10,000 tokens in all; an attempt may use up to 1,500.
/// let allowance = Allowance::new(10_000, 1_500);
/// assert!(allowance.affords_another(8_000));
/// allowance.set_earlier_targets(9_000);
/// assert!(!allowance.affords_another(0));
/// ```
#[derive(Clone, Debug)]
pub struct Allowance(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    cap: u64,
    per_attempt: u64,
    earlier_targets: AtomicU64,
}

impl Allowance {
    /// An allowance of `cap` tokens in all, where one attempt may use up to
    /// `per_attempt` (its input estimate plus its output limit).
    pub fn new(cap: u64, per_attempt: u64) -> Self {
        Allowance(Arc::new(Inner {
            cap,
            per_attempt,
            earlier_targets: AtomicU64::new(0),
        }))
    }

    /// Records the tokens spent by the targets tried so far.
    pub fn set_earlier_targets(&self, tokens: u64) {
        self.0.earlier_targets.store(tokens, Ordering::Relaxed);
    }

    /// True when `spent_here` more tokens plus one more attempt still fit
    /// under the cap.
    pub fn affords_another(&self, spent_here: u64) -> bool {
        self.0
            .earlier_targets
            .load(Ordering::Relaxed)
            .saturating_add(spent_here)
            .saturating_add(self.0.per_attempt)
            <= self.0.cap
    }
}
