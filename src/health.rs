//! Target health: whether a target would refuse a call now, asked without
//! making one.
//!
//! A contract between layers: a [`CircuitBreakerHandle`](crate::circuit_breaker::CircuitBreakerHandle)
//! implements it, a [`Fallback`](crate::fallback::Fallback) chain consults
//! it to pass over targets that are down, and any future router or load
//! balancer may do the same. Neither layer imports the other.

use std::time::Duration;

/// Tells the fallback layer, without a call, whether a target would refuse
/// a request now.
///
/// A circuit breaker's handle implements it, so that a chain passes over a
/// target whose circuit is open instead of spending an attempt on it.
pub trait TargetHealth: Send + Sync + 'static {
    /// `Some(wait)` while calls would be refused, with the time until the
    /// target may take calls again; `None` when a call may go through.
    fn unavailable_for(&self) -> Option<Duration>;
}

impl<F> TargetHealth for F
where
    F: Fn() -> Option<Duration> + Send + Sync + 'static,
{
    fn unavailable_for(&self) -> Option<Duration> {
        self()
    }
}

/// Marks a request that a half-open circuit admitted as its probe.
///
/// A probe is one attempt, never retried: a retry layer below the breaker
/// sees the mark and hands the probe's failure straight back, so a target
/// that is still down is found out after one call rather than a whole
/// retry loop, and the breaker reopens at once. The circuit breaker sets it
/// in the request's extensions; the retry layer reads it; neither imports
/// the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Probe;
