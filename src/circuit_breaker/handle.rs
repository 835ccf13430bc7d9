//! The handle: observe and steer a breaker from outside the stack.

use super::state::{Breaker, CircuitState, TransitionReason};
use crate::health::TargetHealth;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// Totals of a breaker's calls since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitCounts {
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed (and counted towards tripping).
    pub failures: u64,
    /// Calls whose outcome said nothing about the target, and calls dropped before they ended.
    pub ignored: u64,
    /// Calls refused without reaching the target.
    pub rejected: u64,
    /// State changes.
    pub transitions: u64,
}

/// A cheap, cloneable view of one circuit breaker shared by every clone of
/// its service: read its state and counts, or force it open, disable it,
/// reset it. It is a [`TargetHealth`], so a fallback chain can pass over a
/// target whose circuit is open without calling it.
#[derive(Clone)]
pub struct CircuitBreakerHandle {
    pub(super) breaker: Arc<Breaker>,
}

impl CircuitBreakerHandle {
    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.breaker.config.name
    }

    /// The state now. An open circuit whose break is over reports `Open`
    /// until the next call turns it half-open.
    pub fn state(&self) -> CircuitState {
        self.breaker.state()
    }

    /// The totals so far.
    pub fn counts(&self) -> CircuitCounts {
        let s = &self.breaker.stats;
        CircuitCounts {
            successes: s.successes.get(),
            failures: s.failures.get(),
            ignored: s.ignored.get(),
            rejected: s.rejected.get(),
            transitions: s.transitions.load(Ordering::Relaxed),
        }
    }

    /// When the state last changed.
    pub fn last_transition(&self) -> Option<Instant> {
        self.breaker.last_transition()
    }

    /// True when a call made now would reach the target (closed, disabled,
    /// open with the break over, or half-open with a probe slot free).
    pub fn is_call_permitted(&self) -> bool {
        self.unavailable_for().is_none()
    }

    /// Holds the circuit open until [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.breaker.transition(
            None,
            CircuitState::ForcedOpen,
            TransitionReason::ForcedOpen,
            None,
        );
    }

    /// Lets every call through and stops counting towards tripping, until
    /// [`reset`](Self::reset).
    pub fn disable(&self) {
        self.breaker.transition(
            None,
            CircuitState::Disabled,
            TransitionReason::Disabled,
            None,
        );
    }

    /// Opens the circuit for `duration`, as if it had tripped here: used to
    /// share state between replicas (a breaker that opened on one is opened
    /// on the others for the time it has left). A circuit already open,
    /// forced open or disabled is left as it is.
    pub fn open_for(&self, duration: Duration) {
        if matches!(self.state(), CircuitState::Closed | CircuitState::HalfOpen)
            && !duration.is_zero()
        {
            self.breaker.transition(
                None,
                CircuitState::Open,
                TransitionReason::Shared(duration),
                Some(duration),
            );
        }
    }

    /// Closes the circuit and clears its failure counts.
    pub fn reset(&self) {
        self.breaker
            .transition(None, CircuitState::Closed, TransitionReason::Reset, None);
    }
}

impl TargetHealth for CircuitBreakerHandle {
    fn unavailable_for(&self) -> Option<Duration> {
        match self.breaker.state() {
            CircuitState::Open => self.breaker.open_remaining(),
            CircuitState::ForcedOpen => Some(self.breaker.config.max_break_duration),
            CircuitState::HalfOpen => self.breaker.probe_slots_full().then_some(Duration::ZERO),
            CircuitState::Closed | CircuitState::Disabled => None,
        }
    }
}

impl fmt::Debug for CircuitBreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerHandle")
            .field("name", &self.name())
            .field("state", &self.state())
            .field("counts", &self.counts())
            .finish()
    }
}
