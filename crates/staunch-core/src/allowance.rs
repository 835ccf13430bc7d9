//! The per-request token allowance: set by a budget layer, consulted by
//! fallback and retry before they spend another attempt.

/// The tokens a logical request may still spend, carried by the request
/// itself ([`Call::allowance`](crate::Call::allowance)), as its
/// [`Deadline`](crate::Deadline) is.
///
/// staunch's `BudgetLayer` sets it when a per-request cap is configured; a
/// fallback chain records what its earlier targets spent in it, and the
/// retry layer and the chain ask it whether one more attempt still fits,
/// so a request gives up before it would pass its cap rather than after.
/// A layer of your own can set or read it the same way
/// ([`Call::set_allowance`](crate::Call::set_allowance)).
///
/// ```
/// use staunch_core::Allowance;
/// // 10,000 tokens in all; an attempt may use up to 1,500.
/// let mut allowance = Allowance::new(10_000, 1_500);
/// assert!(allowance.affords_another(8_000));
/// allowance.set_earlier_targets(9_000);
/// assert!(!allowance.affords_another(0));
/// ```
///
/// It is a plain value, copied with the request: a chain records its
/// earlier targets' spend in its own request before it copies the request
/// for the next target, so what a layer below reads is what the chain had
/// spent when it handed the request down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowance {
    cap: u64,
    per_attempt: u64,
    earlier_targets: u64,
}

impl Allowance {
    /// An allowance of `cap` tokens in all, where one attempt may use up to
    /// `per_attempt` (its input estimate plus its output limit).
    pub fn new(cap: u64, per_attempt: u64) -> Self {
        Allowance {
            cap,
            per_attempt,
            earlier_targets: 0,
        }
    }

    /// Records the tokens spent by the targets tried so far.
    pub fn set_earlier_targets(&mut self, tokens: u64) {
        self.earlier_targets = tokens;
    }

    /// The tokens spent by the targets tried so far, as last recorded.
    pub fn earlier_targets(&self) -> u64 {
        self.earlier_targets
    }

    /// True when `spent_here` more tokens plus one more attempt still fit
    /// under the cap.
    pub fn affords_another(&self, spent_here: u64) -> bool {
        self.earlier_targets
            .saturating_add(spent_here)
            .saturating_add(self.per_attempt)
            <= self.cap
    }
}
