//! When to hedge, and how much.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tower::retry::budget::{Budget, TpsBudget};

/// When a call is slow enough to hedge.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum HedgeAfter {
    /// Once it has run longer than this quantile (0.95: the p95) of the
    /// latencies the layer has seen answered; no hedging until it has seen
    /// [`min_samples`](HedgeConfig::min_samples) answers.
    Quantile(f64),
    /// Once it has run this long.
    Fixed(Duration),
}

/// A configuration that cannot hedge.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidHedge {
    /// The quantile must be above 0 and at most 1.
    #[error("hedge quantile must be in (0, 1], got {0}")]
    Quantile(f64),
    /// The budget's window must be between 1 and 60 seconds.
    #[error("hedge budget window must be between 1 s and 60 s, got {0:?}")]
    Window(Duration),
    /// The budget's fraction must be between 0 and 1000.
    #[error("hedge budget fraction must be between 0.0 and 1000.0, got {0}")]
    Fraction(f32),
    /// The budget's floor must be below `i32::MAX` per second.
    #[error("hedge budget floor must be below {max} per second, got {0}", max = i32::MAX)]
    Floor(u32),
    /// The latency window must be longer than zero.
    #[error("the latency window must be longer than zero")]
    Period,
}

/// How many hedges may be sent: at most a fraction of the calls of a
/// recent window, plus a floor per second (tower's [`TpsBudget`], the
/// token bucket tower's retry and hedge budgets share). Every call
/// deposits; every hedge withdraws. Clones share one budget.
///
/// The default, 5 % of the calls of the last 10 s and no floor, keeps
/// hedges at or under 5 % of calls whatever the traffic.
///
/// ```
/// use std::time::Duration;
/// use staunch::hedge::HedgeBudget;
/// let budget = HedgeBudget::new(Duration::from_secs(10), 0, 0.02)?;
/// assert!(!budget.withdraw(), "nothing deposited yet");
/// # Ok::<(), staunch::hedge::InvalidHedge>(())
/// ```
#[derive(Clone)]
pub struct HedgeBudget {
    inner: Arc<TpsBudget>,
    ttl: Duration,
    min_per_sec: u32,
    percent: f32,
}

impl HedgeBudget {
    /// A budget that remembers calls for `ttl` (1–60 s), always allows
    /// `min_per_sec` hedges per second, and beyond that `percent` hedges
    /// per call (0.05 = 5 %).
    pub fn new(ttl: Duration, min_per_sec: u32, percent: f32) -> Result<Self, InvalidHedge> {
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&ttl) {
            return Err(InvalidHedge::Window(ttl));
        }
        if !(0.0..=1000.0).contains(&percent) {
            return Err(InvalidHedge::Fraction(percent));
        }
        if min_per_sec >= i32::MAX as u32 {
            return Err(InvalidHedge::Floor(min_per_sec));
        }
        Ok(HedgeBudget {
            inner: Arc::new(TpsBudget::new(ttl, min_per_sec, percent)),
            ttl,
            min_per_sec,
            percent,
        })
    }

    /// Records a call.
    pub fn deposit(&self) {
        self.inner.deposit();
    }

    /// Takes one hedge from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        self.inner.withdraw()
    }
}

impl Default for HedgeBudget {
    /// 5 % of the calls of the last 10 s, no floor.
    fn default() -> Self {
        HedgeBudget {
            inner: Arc::new(TpsBudget::new(Duration::from_secs(10), 0, 0.05)),
            ttl: Duration::from_secs(10),
            min_per_sec: 0,
            percent: 0.05,
        }
    }
}

impl fmt::Debug for HedgeBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeBudget")
            .field("ttl", &self.ttl)
            .field("min_per_sec", &self.min_per_sec)
            .field("percent", &self.percent)
            .finish()
    }
}

/// The settings of a [`HedgeLayer`](super::HedgeLayer).
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `after` | [`HedgeAfter::Quantile`]`(0.95)` | when a call is slow enough to hedge |
/// | `min_samples` | 20 | answers seen before a quantile is trusted |
/// | `window` | 60 s | latencies are kept for one to two windows |
/// | `budget` | 5 % of calls, no floor | see [`HedgeBudget`] |
///
/// ```
/// use std::time::Duration;
/// use staunch::hedge::{HedgeAfter, HedgeConfig};
/// let fixed = HedgeConfig::new().after(HedgeAfter::Fixed(Duration::from_secs(2)));
/// let p99 = HedgeConfig::new().after(HedgeAfter::Quantile(0.99)).min_samples(100);
/// # let _ = (fixed, p99);
/// ```
#[derive(Clone, Debug)]
pub struct HedgeConfig {
    pub(super) after: HedgeAfter,
    pub(super) min_samples: u64,
    pub(super) window: Duration,
    pub(super) budget: HedgeBudget,
}

impl HedgeConfig {
    /// The defaults.
    pub fn new() -> Self {
        HedgeConfig {
            after: HedgeAfter::Quantile(0.95),
            min_samples: 20,
            window: Duration::from_secs(60),
            budget: HedgeBudget::default(),
        }
    }

    /// When a call is slow enough to hedge.
    pub fn after(mut self, after: HedgeAfter) -> Self {
        self.after = after;
        self
    }

    /// Answers seen before a quantile is trusted (with fewer, no call is
    /// hedged).
    pub fn min_samples(mut self, samples: u64) -> Self {
        self.min_samples = samples;
        self
    }

    /// How long latencies are remembered: answers of the current and the
    /// previous window count.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The budget hedges are taken from (share one between layers to cap
    /// them together).
    pub fn budget(mut self, budget: HedgeBudget) -> Self {
        self.budget = budget;
        self
    }
}

impl Default for HedgeConfig {
    fn default() -> Self {
        HedgeConfig::new()
    }
}
