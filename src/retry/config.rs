//! The retry configuration.

use super::jitter::{FullJitter, Jitter};
use super::window::Window;
use staunch_core::{Classify, DefaultClassify};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A retry budget: retries may be at most a fraction of recent traffic,
/// plus a small floor, so that an outage can't multiply the load on a
/// provider (Finagle's budget).
///
/// Every logical request deposits once; every retry withdraws once. Clones
/// share the same budget. The window is lock-free, in slots of about a tenth
/// of `ttl` (a power of two of nanoseconds, so it may run up to a slot long);
/// a request deposits at the instant its clock started, so the common path
/// (a request that succeeds at once) reads no clock and takes no lock.
///
/// ```
/// use std::time::Duration;
/// use staunch::retry::RetryBudget;
///
/// // At most 10% extra calls over a 10 s window, and 1 retry/s regardless.
/// let budget = RetryBudget::new(Duration::from_secs(10), 1, 0.1)?;
/// assert!(RetryBudget::new(Duration::ZERO, 1, 0.1).is_err());
/// # Ok::<(), staunch::retry::InvalidRetryBudget>(())
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Window>,
    ttl: Duration,
    min_per_sec: u32,
    retry_percent: f32,
}

/// A [`RetryBudget`] whose parameters are out of range.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRetryBudget {
    /// The window must be between 1 and 60 seconds.
    #[error("retry budget window must be between 1 s and 60 s, got {0:?}")]
    Window(Duration),
    /// The retry fraction must be a number between 0 and 1000.
    #[error("retry budget fraction must be between 0.0 and 1000.0, got {0}")]
    Fraction(f32),
    /// The floor must be below `i32::MAX` retries per second.
    #[error("retry budget floor must be below {max} retries per second, got {0}", max = i32::MAX)]
    Floor(u32),
}

impl RetryBudget {
    /// A budget that remembers deposits for `ttl` (1–60 s), always allows
    /// `min_per_sec` retries per second, and beyond that allows
    /// `retry_percent` retries per request (0.2 = 20%).
    ///
    /// LLM clients often run at a few requests per second; there the floor
    /// dominates (at 5 req/s a floor of 10/s allows about 3× amplification),
    /// so set it to what your provider can absorb.
    pub fn new(
        ttl: Duration,
        min_per_sec: u32,
        retry_percent: f32,
    ) -> Result<Self, InvalidRetryBudget> {
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&ttl) {
            return Err(InvalidRetryBudget::Window(ttl));
        }
        if !(0.0..=1000.0).contains(&retry_percent) {
            return Err(InvalidRetryBudget::Fraction(retry_percent));
        }
        if min_per_sec >= i32::MAX as u32 {
            return Err(InvalidRetryBudget::Floor(min_per_sec));
        }
        Ok(RetryBudget {
            inner: Arc::new(Window::new(ttl, min_per_sec, retry_percent)),
            ttl,
            min_per_sec,
            retry_percent,
        })
    }

    /// Records a logical request.
    pub fn deposit(&self) {
        self.inner.deposit(Instant::now());
    }

    /// Records a logical request that started at `started`.
    #[inline]
    pub(crate) fn deposit_at(&self, started: Instant) {
        self.inner.deposit(started);
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        self.inner.withdraw(Instant::now())
    }
}

impl Default for RetryBudget {
    /// 10 s window, 1 retry/s floor, 20% of traffic.
    fn default() -> Self {
        RetryBudget {
            inner: Arc::new(Window::new(Duration::from_secs(10), 1, 0.2)),
            ttl: Duration::from_secs(10),
            min_per_sec: 1,
            retry_percent: 0.2,
        }
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ttl", &self.ttl)
            .field("min_per_sec", &self.min_per_sec)
            .field("retry_percent", &self.retry_percent)
            .finish()
    }
}

/// How the [`RetryLayer`](super::RetryLayer) retries.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `max_retries` | 2 | retries **after** the first attempt (3 calls in all), as in the OpenAI and Anthropic SDKs |
/// | `base_delay` | 500 ms | backoff before retry `n` (from 0) is drawn from `[0, min(max_delay, base_delay · 2^n)]` |
/// | `max_delay` | 8 s | the cap, applied before the jitter |
/// | `max_retry_after` | 60 s | a server `Retry-After` up to this is waited exactly; a longer one ends retrying at once so a fallback can take over |
/// | `budget` | 20% of traffic + 1/s over 10 s | see [`RetryBudget`]; `None` disables it |
/// | `jitter` | [`FullJitter`] | see [`Jitter`] |
/// | `classify` | [`DefaultClassify`] | only `Transient` errors are retried |
///
/// A server's `x-should-retry: false` vetoes a retry; `x-should-retry: true`
/// asks for one even when the class says otherwise (both SDKs obey it).
/// Whatever the settings, no wait passes the request's
/// [`Deadline`](crate::Deadline).
///
/// ```
/// use std::time::Duration;
/// use staunch::retry::{NoJitter, RetryBudget, RetryConfig};
///
/// let config = RetryConfig::new()
///     .max_retries(4)
///     .base_delay(Duration::from_millis(250))
///     .max_delay(Duration::from_secs(4))
///     .max_retry_after(Duration::from_secs(30))
///     .budget(RetryBudget::new(Duration::from_secs(10), 2, 0.1)?)
///     .jitter(NoJitter);
/// assert_eq!(config.get_max_retries(), 4);
/// # Ok::<(), staunch::retry::InvalidRetryBudget>(())
/// ```
#[derive(Clone)]
pub struct RetryConfig {
    pub(super) max_retries: u32,
    pub(super) base_delay: Duration,
    pub(super) max_delay: Duration,
    pub(super) max_retry_after: Duration,
    pub(super) budget: Option<RetryBudget>,
    pub(super) jitter: Arc<dyn Jitter>,
    pub(super) classify: Arc<dyn Classify>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: Self::DEFAULT_MAX_RETRIES,
            base_delay: Self::DEFAULT_BASE_DELAY,
            max_delay: Self::DEFAULT_MAX_DELAY,
            max_retry_after: Duration::from_secs(60),
            budget: Some(RetryBudget::default()),
            jitter: Arc::new(FullJitter),
            classify: Arc::new(DefaultClassify),
        }
    }
}

impl RetryConfig {
    /// The default [`max_retries`](Self::max_retries): 2, as the OpenAI and
    /// Anthropic SDKs.
    pub const DEFAULT_MAX_RETRIES: u32 = 2;
    /// The default [`base_delay`](Self::base_delay): 500 ms.
    pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(500);
    /// The default [`max_delay`](Self::max_delay): 8 s.
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(8);

    /// The defaults of the table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// Retries after the first attempt; 0 turns retrying off.
    ///
    /// `max_retries` bounds one request; the [retry budget](Self::budget)
    /// bounds the fleet. The official OpenAI and Anthropic SDKs retry twice
    /// with no budget, so in an outage every request costs three calls. With
    /// the default budget (retries up to 20% of requests, plus a floor of 1
    /// per second, over 10 s), 1,000 requests against a provider that fails
    /// every call make at most about 1,210 calls instead of 3,000 (the
    /// `the_budget_stops_a_retry_storm` test), while a lone failure still gets
    /// its two retries. At low traffic the floor dominates: lower
    /// `min_per_sec` there (at 5 requests/s, a floor of 10/s allows about 3×).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The first backoff step's upper bound.
    pub fn base_delay(mut self, d: Duration) -> Self {
        self.base_delay = d;
        self
    }

    /// The largest backoff step (applied before jitter).
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// The longest server-requested wait that is honoured; longer ones end
    /// retrying at once.
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = d;
        self
    }

    /// Bounds retries with `budget` (shared by every clone of the layer).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Retries without a budget: only `max_retries` bounds them.
    pub fn no_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// Sets the jitter.
    pub fn jitter(mut self, jitter: impl Jitter) -> Self {
        self.jitter = Arc::new(jitter);
        self
    }

    /// Sets the error classification.
    pub fn classify(mut self, classify: impl Classify) -> Self {
        self.classify = Arc::new(classify);
        self
    }

    /// The configured `max_retries`.
    pub fn get_max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The upper bound of backoff step `retry` (0-based), before jitter:
    /// `min(max_delay, base_delay · 2^retry)`.
    pub fn backoff_bound(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

impl fmt::Debug for RetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryConfig")
            .field("max_retries", &self.max_retries)
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .field("max_retry_after", &self.max_retry_after)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}
