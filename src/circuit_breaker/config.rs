//! The circuit breaker configuration.

use staunch_core::{ChatResponse, ErrorClass, ErrorKind, LlmError};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::Transition;

/// How a finished call counts for the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The target worked.
    Success,
    /// The target failed: counts towards tripping.
    Failure,
    /// Says nothing about the target's health (the caller's own bad
    /// request, a cancelled call): neither success nor failure.
    Ignored,
}

/// The default outcome rule: provider-side failures count; the caller's
/// `Fatal` errors, context overflows, content-filter hits, another
/// breaker's `CircuitOpen` and a staunch quota's refusal (the provider
/// never saw the request: [`LlmError::is_quota_refusal`]; a provider's own
/// 429 still counts) are ignored.
pub fn default_outcome(result: &Result<ChatResponse, LlmError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Success,
        Err(e) if e.is_quota_refusal() => Outcome::Ignored,
        Err(e) => match e.kind {
            ErrorKind::ContextLengthExceeded
            | ErrorKind::ContentFiltered
            | ErrorKind::CircuitOpen
            | ErrorKind::FeatureUnsupported
            | ErrorKind::ValidationFailed
            | ErrorKind::Cancelled => Outcome::Ignored,
            _ if e.class() == ErrorClass::Fatal => Outcome::Ignored,
            _ => Outcome::Failure,
        },
    }
}

/// The window a failure rate is measured over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateWindow {
    /// The last `n` calls (1 to 10,000).
    Calls(u32),
    /// The calls of the last `d`, in one-second buckets (1 s to 10 min).
    Time(Duration),
}

/// Trips when the failure rate over a window reaches `failure_rate`, once
/// the window holds at least `minimum_calls` calls.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateRule {
    pub(super) window: RateWindow,
    pub(super) failure_rate: f64,
    pub(super) minimum_calls: u32,
}

impl RateRule {
    /// A rule over `window` that trips at `failure_rate` (0.0–1.0) after at
    /// least `minimum_calls` calls.
    pub fn new(window: RateWindow, failure_rate: f64, minimum_calls: u32) -> Self {
        RateRule {
            window,
            failure_rate,
            minimum_calls,
        }
    }
}

pub(super) type OutcomeFn = dyn Fn(&Result<ChatResponse, LlmError>) -> Outcome + Send + Sync;
type TransitionFn = dyn Fn(&Transition) + Send + Sync;

/// How a [`CircuitBreakerLayer`](super::CircuitBreakerLayer) trips and recovers.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `name` | `"default"` | in events, metrics and the handle |
/// | `consecutive_failures` | 5 | trip after this many failures in a row (`None`: rule off) |
/// | `failure_rate` | off | a [`RateRule`]: trip at a failure rate over a window of calls or time, after a minimum of calls |
/// | `slow_call` | off | calls slower than this count as failures |
/// | `break_duration` | 5 s | how long the circuit stays open before probing |
/// | `break_growth` / `max_break_duration` | 2.0 / 15 s | each re-open after a failed probe multiplies the break, up to the cap; reset on close |
/// | `break_jitter` | 0.2 | each break is shortened by a random part of up to this fraction, so replicas and targets that opened together do not probe together |
/// | `half_open_probes` | 1 | calls admitted at once while half-open |
/// | `half_open_wait` | 5 s | how long a call that finds every probe slot taken waits for the verdict (cut by its deadline) |
/// | `success_threshold` | 1 | probe successes that close the circuit |
/// | `rate_limit_cooldown` | on | a 429 carrying `Retry-After` opens the circuit for exactly that long |
/// | `outcome` | [`default_outcome`] | what counts as success, failure or neither |
/// | `on_transition` | none | a callback for every state change |
///
/// With neither trip rule nor cooldown ([`off`](Self::off)) the breaker
/// passes every call and only counts.
///
/// LLM clients often run at a few requests per second, where rate windows
/// with the usual 100-call minimum never fill: the default trip rule is
/// consecutive failures, and the rate window is opt-in.
///
/// ```
/// use std::time::Duration;
/// use staunch::circuit_breaker::{CircuitBreakerConfig, RateRule, RateWindow};
///
/// let config = CircuitBreakerConfig::new("openai")
///     .consecutive_failures(Some(3))
///     .failure_rate(RateRule::new(RateWindow::Time(Duration::from_secs(60)), 0.5, 20))
///     .break_duration(Duration::from_secs(10))
///     .break_growth(2.0, Duration::from_secs(120))
///     .half_open_probes(2)
///     .success_threshold(2);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone)]
pub struct CircuitBreakerConfig {
    pub(super) name: Arc<str>,
    pub(super) consecutive_failures: Option<u32>,
    pub(super) failure_rate: Option<RateRule>,
    pub(super) slow_call: Option<Duration>,
    pub(super) break_duration: Duration,
    pub(super) break_growth: f64,
    pub(super) max_break_duration: Duration,
    pub(super) break_jitter: f64,
    pub(super) half_open_probes: u32,
    pub(super) success_threshold: u32,
    pub(super) rate_limit_cooldown: bool,
    pub(super) half_open_wait: Duration,
    pub(super) outcome: Arc<OutcomeFn>,
    /// Whether `outcome` is the user's rule rather than [`default_outcome`]
    /// (under which every answer is a success).
    pub(super) custom_outcome: bool,
    pub(super) on_transition: Option<Arc<TransitionFn>>,
}

/// A [`CircuitBreakerConfig`] that can't work.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidCircuitBreaker {
    /// `consecutive_failures` must be at least 1.
    #[error("consecutive_failures must be at least 1")]
    ZeroConsecutive,
    /// The failure rate must be in (0, 1].
    #[error("failure_rate must be in (0.0, 1.0], got {0}")]
    Rate(f64),
    /// The rate window is out of range.
    #[error("the rate window must hold 1 to 10,000 calls or span 1 s to 10 min, got {0:?}")]
    Window(RateWindow),
    /// `half_open_probes` and `success_threshold` must be at least 1.
    #[error("half_open_probes and success_threshold must be at least 1")]
    ZeroProbes,
    /// The break growth must be a finite factor of at least 1.
    #[error("break_growth must be a finite factor >= 1.0, got {0}")]
    Growth(f64),
    /// The break duration must be positive and at most the maximum.
    #[error("break_duration must be positive and at most max_break_duration")]
    BreakDuration,
    /// The break jitter must be a fraction in [0, 1).
    #[error("break_jitter must be in [0.0, 1.0), got {0}")]
    Jitter(f64),
}

impl CircuitBreakerConfig {
    /// The default [`consecutive_failures`](Self::consecutive_failures): 5.
    pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
    /// The default [`break_duration`](Self::break_duration): 5 s. Short, so
    /// that a provider back from a brief outage is noticed within seconds;
    /// [`DEFAULT_BREAK_GROWTH`](Self::DEFAULT_BREAK_GROWTH) lengthens the
    /// breaks of one that stays down.
    pub const DEFAULT_BREAK_DURATION: Duration = Duration::from_secs(5);
    /// The default [`break_growth`](Self::break_growth) factor: each failed
    /// probe doubles the break (5, 10, then the 15 s cap).
    pub const DEFAULT_BREAK_GROWTH: f64 = 2.0;
    /// The default cap of the break, [`break_growth`](Self::break_growth)'s
    /// `max`: 15 s, so that a provider that comes back after a long outage
    /// is used again within 15 s, at the cost of one probe call every 12 to
    /// 15 s while it stays down.
    pub const DEFAULT_MAX_BREAK_DURATION: Duration = Duration::from_secs(15);
    /// The default [`break_jitter`](Self::break_jitter): up to a fifth of
    /// each break is taken off at random.
    pub const DEFAULT_BREAK_JITTER: f64 = 0.2;
    /// The default [`half_open_probes`](Self::half_open_probes): 1, so that
    /// a provider still down costs one call per break.
    pub const DEFAULT_HALF_OPEN_PROBES: u32 = 1;
    /// The default [`success_threshold`](Self::success_threshold): 1, so
    /// that one good probe closes the circuit.
    pub const DEFAULT_SUCCESS_THRESHOLD: u32 = 1;

    /// The defaults of the table above, named `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        CircuitBreakerConfig {
            name: name.into(),
            consecutive_failures: Some(Self::DEFAULT_CONSECUTIVE_FAILURES),
            failure_rate: None,
            slow_call: None,
            break_duration: Self::DEFAULT_BREAK_DURATION,
            break_growth: Self::DEFAULT_BREAK_GROWTH,
            max_break_duration: Self::DEFAULT_MAX_BREAK_DURATION,
            break_jitter: Self::DEFAULT_BREAK_JITTER,
            half_open_probes: Self::DEFAULT_HALF_OPEN_PROBES,
            success_threshold: Self::DEFAULT_SUCCESS_THRESHOLD,
            rate_limit_cooldown: true,
            half_open_wait: Duration::from_secs(5),
            outcome: Arc::new(default_outcome),
            custom_outcome: false,
            on_transition: None,
        }
    }

    /// A breaker that is off: no trip rule and no rate-limit cooldown, so it
    /// passes every call and only counts outcomes (its state is
    /// [`Disabled`](super::CircuitState::Disabled); the handle can still
    /// force it open). One code path serves targets with and without a
    /// breaker.
    ///
    /// ```
    /// use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
    /// let layer = CircuitBreakerLayer::new(CircuitBreakerConfig::off("local-llm")).unwrap();
    /// assert_eq!(layer.handle().state(), CircuitState::Disabled);
    /// ```
    pub fn off(name: impl Into<Arc<str>>) -> Self {
        CircuitBreakerConfig::new(name)
            .consecutive_failures(None)
            .rate_limit_cooldown(false)
    }

    /// True when nothing can trip the breaker (see [`off`](Self::off)).
    pub fn is_off(&self) -> bool {
        self.consecutive_failures.is_none()
            && self.failure_rate.is_none()
            && !self.rate_limit_cooldown
    }

    /// Trips after `n` failures in a row; `None` turns the rule off.
    pub fn consecutive_failures(mut self, n: Option<u32>) -> Self {
        self.consecutive_failures = n;
        self
    }

    /// Also trips on a failure rate.
    pub fn failure_rate(mut self, rule: RateRule) -> Self {
        self.failure_rate = Some(rule);
        self
    }

    /// Counts calls slower than `threshold` as failures.
    pub fn slow_call(mut self, threshold: Duration) -> Self {
        self.slow_call = Some(threshold);
        self
    }

    /// How long the circuit stays open the first time (a longer break than
    /// the cap in force raises the cap to it).
    pub fn break_duration(mut self, d: Duration) -> Self {
        self.break_duration = d;
        // A break longer than the cap in force raises the cap: the breaks
        // then do not grow unless `break_growth` sets a higher one.
        self.max_break_duration = self.max_break_duration.max(d);
        self
    }

    /// Multiplies the break by `factor` on each re-open, up to `max`.
    pub fn break_growth(mut self, factor: f64, max: Duration) -> Self {
        self.break_growth = factor;
        self.max_break_duration = max;
        self
    }

    /// Takes a random part of up to `fraction` off each break (the
    /// computed one; a 429's `Retry-After` cooldown is kept exact), so that
    /// circuits that opened together do not all probe at the same moment.
    /// 0 turns it off. Must be in [0, 1).
    pub fn break_jitter(mut self, fraction: f64) -> Self {
        self.break_jitter = fraction;
        self
    }

    /// Calls admitted at once while half-open.
    pub fn half_open_probes(mut self, n: u32) -> Self {
        self.half_open_probes = n;
        self
    }

    /// Probe successes that close the circuit.
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.success_threshold = n;
        self
    }

    /// How long a call that finds the circuit half-open with every probe
    /// slot taken waits for the probes' verdict (in `poll_ready`, so a
    /// request's deadline cuts the wait) before it is refused. Closed by
    /// the probes, the waiting calls go through; opened, they fail with
    /// `CircuitOpen`. `Duration::ZERO` refuses them at once.
    pub fn half_open_wait(mut self, wait: Duration) -> Self {
        self.half_open_wait = wait;
        self
    }

    /// Whether a 429 with `Retry-After` opens the circuit for that long.
    pub fn rate_limit_cooldown(mut self, on: bool) -> Self {
        self.rate_limit_cooldown = on;
        self
    }

    /// Decides what counts as success, failure or neither.
    pub fn outcome<F>(mut self, rule: F) -> Self
    where
        F: Fn(&Result<ChatResponse, LlmError>) -> Outcome + Send + Sync + 'static,
    {
        self.outcome = Arc::new(rule);
        self.custom_outcome = true;
        self
    }

    /// Calls `callback` on every state change (after the change, outside
    /// any lock).
    pub fn on_transition<F>(mut self, callback: F) -> Self
    where
        F: Fn(&Transition) + Send + Sync + 'static,
    {
        self.on_transition = Some(Arc::new(callback));
        self
    }

    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<(), InvalidCircuitBreaker> {
        if self.consecutive_failures == Some(0) {
            return Err(InvalidCircuitBreaker::ZeroConsecutive);
        }
        if let Some(rule) = &self.failure_rate {
            if !(rule.failure_rate > 0.0 && rule.failure_rate <= 1.0) {
                return Err(InvalidCircuitBreaker::Rate(rule.failure_rate));
            }
            let ok = match rule.window {
                RateWindow::Calls(n) => (1..=10_000).contains(&n),
                RateWindow::Time(d) => {
                    (Duration::from_secs(1)..=Duration::from_secs(600)).contains(&d)
                }
            };
            if !ok {
                return Err(InvalidCircuitBreaker::Window(rule.window));
            }
        }
        if self.half_open_probes == 0 || self.success_threshold == 0 {
            return Err(InvalidCircuitBreaker::ZeroProbes);
        }
        if !(self.break_growth.is_finite() && self.break_growth >= 1.0) {
            return Err(InvalidCircuitBreaker::Growth(self.break_growth));
        }
        if self.break_duration.is_zero() || self.break_duration > self.max_break_duration {
            return Err(InvalidCircuitBreaker::BreakDuration);
        }
        if !(0.0..1.0).contains(&self.break_jitter) {
            return Err(InvalidCircuitBreaker::Jitter(self.break_jitter));
        }
        Ok(())
    }
}

impl fmt::Debug for CircuitBreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerConfig")
            .field("name", &self.name)
            .field("consecutive_failures", &self.consecutive_failures)
            .field("failure_rate", &self.failure_rate)
            .field("slow_call", &self.slow_call)
            .field("break_duration", &self.break_duration)
            .field("break_growth", &self.break_growth)
            .field("max_break_duration", &self.max_break_duration)
            .field("break_jitter", &self.break_jitter)
            .field("half_open_probes", &self.half_open_probes)
            .field("success_threshold", &self.success_threshold)
            .field("rate_limit_cooldown", &self.rate_limit_cooldown)
            .field("half_open_wait", &self.half_open_wait)
            .finish_non_exhaustive()
    }
}
