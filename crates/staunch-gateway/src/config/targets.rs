//! A route's targets: a model at a provider, with its price, retries,
//! breaker, attempt timeout, quota and embedding space.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use staunch::circuit_breaker::CircuitBreakerConfig;
use staunch::core::Operation;
use staunch::quota::QuotaConfig;
use staunch::retry::RetryConfig;

use super::durations::{millis, opt_secs, secs};

/// One target of a route: a model at a provider, with its own retries,
/// breaker and timeout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTarget {
    /// The provider's name, a key of `[providers]` (`provider`). Empty
    /// when the target names its `deployments` instead.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
    /// Several deployments of this model, each a provider entry of its own
    /// (its key, base URL, quota and breaker), instead of one `provider`
    /// (`deployments = [{ provider = "openai-eu", weight = 2 }, { provider
    /// = "openai-us" }]`). Calls are spread over them by `balance`, fail
    /// over between them, and move to the route's next target only when
    /// every deployment is out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<DeploymentEntry>,
    /// How calls are spread over the `deployments` (`balance`: `"p2c"`, the
    /// default: the faster of two picked at random, by peak-EWMA latency;
    /// `"least-busy"`; `"weighted"`: at random by weight; `"headroom"`: the
    /// most quota room left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
    /// Hedged requests among the `deployments` (`hedge = { after = "p95"
    /// | MS, budget = 0.05 }`, off by default): an attempt still unanswered
    /// after the deployments' observed p95 (or `after` milliseconds) gets
    /// a second one on another deployment; the first answer wins and the
    /// other is cancelled. Never for a stream past its first token, never
    /// past the deadline, at most `budget` extra calls (5 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<Hedge>,
    /// The model asked of that provider (`model`).
    pub model: String,
    /// Its price, for cost budgets (`price = { input, output }`, dollars
    /// per million tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    /// Its context window in tokens (`context_window`): a request that
    /// cannot fit skips this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    /// Whether it accepts a conversation ending with an assistant turn
    /// (`accepts_prefill`, default false).
    #[serde(default)]
    pub accepts_prefill: bool,
    /// Its retries (`retry = { max_retries, base_delay_ms, max_delay_ms }`).
    #[serde(default)]
    pub retry: Retry,
    /// Its circuit breaker (`breaker = { consecutive_failures, break_secs,
    /// break_growth, max_break_secs, break_jitter, half_open_probes,
    /// success_threshold }`).
    #[serde(default)]
    pub breaker: Breaker,
    /// The time one attempt may take (`attempt_timeout_secs`; the first
    /// token, for a stream). Unset: the operation's own, 30 s for chat and
    /// 10 s for embeddings ([`RouteTarget::attempt_timeout_for`]).
    #[serde(
        rename = "attempt_timeout_secs",
        with = "opt_secs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub attempt_timeout: Option<Duration>,
    /// Whether an attempt that timed out may be retried on this target
    /// (`retry_attempt_timeouts`, default false): by default the route
    /// moves to its next target after one timed-out attempt instead of
    /// waiting out the timeout once per retry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_attempt_timeouts: bool,
    /// Its own quota (`quota = { requests_per_minute, tokens_per_minute,
    /// max_wait_ms }`, none by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// The vector space its embeddings live in (`embedding_space`; unset:
    /// its `model`). A route falls back for embeddings only between targets
    /// of one space, because vectors of two models (or of one model at two
    /// sizes) cannot be compared: name the same space on targets that serve
    /// the same model under different names (an Azure deployment of
    /// `text-embedding-3-small`, say), never on different models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_space: Option<String>,
    /// Embeddings: the most inputs one request to this target may carry
    /// (`max_batch_inputs`; none: no limit). A larger batch is sent as
    /// several requests that fit, each retried and admitted by the quota
    /// on its own, and the vectors are joined back in input order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_inputs: Option<usize>,
    /// Embeddings: about the most tokens (estimated) one request to this
    /// target may carry (`max_batch_tokens`; none: no limit), split as
    /// `max_batch_inputs` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_tokens: Option<u64>,
}

impl RouteTarget {
    /// The time one attempt of `operation` may take at this target: its
    /// `attempt_timeout_secs`, else the operation's default (30 s for
    /// chat, 10 s for embeddings).
    ///
    /// ```
    /// use std::time::Duration;
    /// use staunch::core::Operation;
    /// use staunch_gateway::config::RouteTarget;
    ///
    /// let mut t = RouteTarget::new("openai", "text-embedding-3-small");
    /// assert_eq!(t.attempt_timeout_for(Operation::Chat), Duration::from_secs(30));
    /// assert_eq!(t.attempt_timeout_for(Operation::Embeddings), Duration::from_secs(10));
    /// t.attempt_timeout = Some(Duration::from_secs(4));
    /// assert_eq!(t.attempt_timeout_for(Operation::Embeddings), Duration::from_secs(4));
    /// ```
    pub fn attempt_timeout_for(&self, operation: Operation) -> Duration {
        self.attempt_timeout
            .unwrap_or(operation.default_attempt_timeout())
    }

    /// The providers it calls: its `provider`, or each of its
    /// `deployments`'.
    pub fn providers(&self) -> impl Iterator<Item = &str> {
        let single = (self.deployments.is_empty()).then_some(self.provider.as_str());
        single
            .into_iter()
            .chain(self.deployments.iter().map(|d| d.provider.as_str()))
    }

    /// Its name in metrics, errors and `x-staunch-target`:
    /// `provider/model`, or `model` over several deployments.
    pub fn name(&self) -> String {
        if self.deployments.is_empty() {
            format!("{}/{}", self.provider, self.model)
        } else {
            self.model.clone()
        }
    }

    /// The vector space of its embeddings: `embedding_space` when set,
    /// else its model.
    pub fn embedding_space(&self) -> &str {
        self.embedding_space.as_deref().unwrap_or(&self.model)
    }

    /// This model at this provider, every other field at its default.
    pub fn new(provider: impl Into<String>, model: impl Into<String>) -> Self {
        RouteTarget {
            provider: provider.into(),
            deployments: Vec::new(),
            balance: None,
            hedge: None,
            model: model.into(),
            price: None,
            context_window: None,
            accepts_prefill: false,
            retry: Retry::default(),
            breaker: Breaker::default(),
            attempt_timeout: None,
            retry_attempt_timeouts: false,
            quota: None,
            embedding_space: None,
            max_batch_inputs: None,
            max_batch_tokens: None,
        }
    }
}

/// One deployment of a target's model (`{ provider, weight, model }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentEntry {
    /// The provider entry that serves it (`provider`).
    pub provider: String,
    /// Its share of the calls relative to the others (`weight`, 1).
    #[serde(default = "DeploymentEntry::default_weight")]
    pub weight: u32,
    /// The model to ask this deployment for, when it differs from the
    /// target's (`model`: an Azure deployment name, a pool's model id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl DeploymentEntry {
    fn default_weight() -> u32 {
        1
    }

    /// A deployment at `provider`, weight 1.
    pub fn new(provider: impl Into<String>) -> Self {
        DeploymentEntry {
            provider: provider.into(),
            weight: 1,
            model: None,
        }
    }
}

/// When a hedged request sends its second attempt.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hedge {
    /// After the observed p95 latency (`after = "p95"`, the default), or
    /// after this many milliseconds (`after = 800`).
    #[serde(default)]
    pub after: HedgeAfter,
    /// The most extra calls, as a fraction of the calls (`budget`, 0.05).
    #[serde(default = "Hedge::default_budget")]
    pub budget: f64,
}

impl Hedge {
    fn default_budget() -> f64 {
        0.05
    }
}

/// `"p95"` or milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HedgeAfter {
    /// After this many milliseconds.
    Millis(u64),
    /// After the p95 of the latencies observed (`"p95"`).
    #[default]
    P95,
}

impl Serialize for HedgeAfter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            HedgeAfter::Millis(ms) => s.serialize_u64(*ms),
            HedgeAfter::P95 => s.serialize_str("p95"),
        }
    }
}

impl<'de> Deserialize<'de> for HedgeAfter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = HedgeAfter;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"p95\" or a number of milliseconds")
            }

            fn visit_u64<E: serde::de::Error>(self, ms: u64) -> Result<HedgeAfter, E> {
                Ok(HedgeAfter::Millis(ms))
            }

            fn visit_i64<E: serde::de::Error>(self, ms: i64) -> Result<HedgeAfter, E> {
                u64::try_from(ms)
                    .map(HedgeAfter::Millis)
                    .map_err(|_| E::custom("expected \"p95\" or a number of milliseconds ≥ 0"))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<HedgeAfter, E> {
                if text == "p95" {
                    Ok(HedgeAfter::P95)
                } else {
                    Err(E::custom(format!(
                        "expected \"p95\" or a number of milliseconds, not {text:?}"
                    )))
                }
            }
        }
        d.deserialize_any(Visit)
    }
}

/// A model's price, in dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million prompt tokens (`input`).
    pub input: f64,
    /// Per million completion tokens (`output`).
    pub output: f64,
}

/// A target's retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    /// Retries after the first attempt (`max_retries`, 2).
    pub max_retries: u32,
    /// The first backoff (`base_delay_ms`, 500).
    #[serde(rename = "base_delay_ms", with = "millis")]
    pub base_delay: Duration,
    /// The largest backoff (`max_delay_ms`, 8000).
    #[serde(rename = "max_delay_ms", with = "millis")]
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_retries: RetryConfig::DEFAULT_MAX_RETRIES,
            base_delay: RetryConfig::DEFAULT_BASE_DELAY,
            max_delay: RetryConfig::DEFAULT_MAX_DELAY,
        }
    }
}

/// A target's circuit breaker. It opens after `consecutive_failures`
/// failures in a row, for `break_secs` at first; each failed half-open
/// probe multiplies the break by `break_growth`, up to `max_break_secs`,
/// and up to `break_jitter` of each break is taken off at random. While
/// half-open it admits `half_open_probes` calls at once (each a single
/// attempt, never retried), and `success_threshold` good ones close it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Breaker {
    /// Failures in a row that open it (`consecutive_failures`, 5).
    pub consecutive_failures: u32,
    /// How long it stays open the first time (`break_secs`, 5).
    #[serde(rename = "break_secs", with = "secs")]
    pub break_duration: Duration,
    /// The factor each failed probe multiplies the break by
    /// (`break_growth`, 2.0; 1.0: every break is `break_secs`).
    pub break_growth: f64,
    /// The longest break (`max_break_secs`; default 15 s, or `break_secs`
    /// when that is longer).
    #[serde(
        rename = "max_break_secs",
        with = "opt_secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_break_duration: Option<Duration>,
    /// The largest fraction of a break taken off at random, so circuits
    /// that opened together do not probe together (`break_jitter`, 0.2;
    /// 0: exact breaks).
    pub break_jitter: f64,
    /// Calls admitted at once while half-open (`half_open_probes`, 1).
    pub half_open_probes: u32,
    /// Probe successes that close it (`success_threshold`, 1).
    pub success_threshold: u32,
}

impl Breaker {
    /// The longest break in force: `max_break_secs` when set, else the
    /// library's default cap, or `break_secs` when that is longer.
    pub fn max_break(&self) -> Duration {
        self.max_break_duration
            .unwrap_or(CircuitBreakerConfig::DEFAULT_MAX_BREAK_DURATION.max(self.break_duration))
    }
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            consecutive_failures: CircuitBreakerConfig::DEFAULT_CONSECUTIVE_FAILURES,
            break_duration: CircuitBreakerConfig::DEFAULT_BREAK_DURATION,
            break_growth: CircuitBreakerConfig::DEFAULT_BREAK_GROWTH,
            max_break_duration: None,
            break_jitter: CircuitBreakerConfig::DEFAULT_BREAK_JITTER,
            half_open_probes: CircuitBreakerConfig::DEFAULT_HALF_OPEN_PROBES,
            success_threshold: CircuitBreakerConfig::DEFAULT_SUCCESS_THRESHOLD,
        }
    }
}

/// A target's quota, kept by the gateway so that the provider never has
/// to refuse: requests and tokens per minute, each a bucket of that size
/// refilled continuously over the minute (as OpenAI and Anthropic describe
/// their own limits). A request that has no room waits for it up to
/// `max_wait_ms` (and the route's deadline); past that it is refused at
/// once, without calling the provider, and the route's next target
/// answers. A request reserves one request and its prompt estimate plus
/// its `max_tokens` (1,024 when unset) tokens, reconciled with the tokens
/// billed. The quota belongs to this target of this route, in this
/// gateway process; a reload starts it afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Requests per minute (`requests_per_minute`, none: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Tokens (prompt and completion) per minute (`tokens_per_minute`,
    /// none: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// The longest a request waits for room (`max_wait_ms`, 10000; 0
    /// never waits: a request without room goes to the next target at
    /// once).
    #[serde(
        rename = "max_wait_ms",
        with = "millis",
        default = "Quota::default_max_wait"
    )]
    pub max_wait: Duration,
}

impl Quota {
    fn default_max_wait() -> Duration {
        QuotaConfig::DEFAULT_MAX_WAIT
    }
}

impl Default for Quota {
    /// No limits yet, and a wait of at most 10 s.
    fn default() -> Self {
        Quota {
            requests_per_minute: None,
            tokens_per_minute: None,
            max_wait: Self::default_max_wait(),
        }
    }
}
