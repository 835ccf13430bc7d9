//! Randomisation of backoff delays.

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

/// Picks the actual delay for a backoff step whose upper bound is `max`.
///
/// The retry layer computes `min(max_delay, base_delay · 2^n)` and asks the
/// jitter for a delay in `[0, that]` (AWS's "full jitter"). Implement it to
/// make delays exact in tests or to plug in another distribution.
pub trait Jitter: Send + Sync + 'static {
    /// A delay in `[0, max]`.
    fn jitter(&self, max: Duration) -> Duration;
}

/// Uniform in `[0, max]` from the thread-local generator: the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct FullJitter;

impl Jitter for FullJitter {
    fn jitter(&self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::random_range(0..=nanos))
    }
}

/// No randomness: always `max` (plain capped exponential backoff).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoJitter;

impl Jitter for NoJitter {
    fn jitter(&self, max: Duration) -> Duration {
        max
    }
}

/// Uniform in `[0, max]` from a seeded generator: reproducible sequences for
/// tests and simulations.
pub struct SeededJitter {
    rng: Mutex<SmallRng>,
}

impl SeededJitter {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SeededJitter {
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
        }
    }
}

impl fmt::Debug for SeededJitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeededJitter").finish_non_exhaustive()
    }
}

impl Jitter for SeededJitter {
    fn jitter(&self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        // A poisoned lock only means another thread panicked mid-draw; the
        // generator's state is still a valid state.
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        Duration::from_nanos(rng.random_range(0..=nanos))
    }
}

impl<F> Jitter for F
where
    F: Fn(Duration) -> Duration + Send + Sync + 'static,
{
    fn jitter(&self, max: Duration) -> Duration {
        self(max).min(max)
    }
}
