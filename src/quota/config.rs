//! The quota configuration.

use staunch_core::Call;
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

/// What a quota counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    Requests,
    Tokens,
}

/// One limit: `amount` of a resource per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LimitSpec {
    pub(crate) resource: Resource,
    pub(crate) amount: u64,
    pub(crate) period: Duration,
}

/// The limits of one target for the [`QuotaLayer`](super::QuotaLayer).
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `name` | (given) | the target's name, in metrics (`quota` label), logs and errors |
/// | `requests_per_minute` / `requests_per_day` | none | requests admitted per minute / day |
/// | `tokens_per_minute` / `tokens_per_day` | none | tokens reserved per minute / day |
/// | `max_wait` | 10 s | the longest a request waits for room (never past its [`Deadline`](crate::Deadline)) |
/// | `output_estimate` | 1,024 | answer tokens reserved for a request without `max_tokens` |
/// | `pause_on_rate_limit` | on | a provider's 429 with `Retry-After` pauses admissions for that long |
///
/// Each limit is a bucket of `amount` that refills continuously at
/// `amount` per period: the token bucket OpenAI and Anthropic enforce
/// ("capacity is continuously replenished up to your maximum limit"). A
/// full bucket admits `amount` at once; after that, room comes back one
/// unit every `period / amount`.
///
/// A request reserves one request and its prompt estimate
/// ([`Call::estimated_input_tokens`]) plus its `max_tokens` (or
/// `output_estimate`) tokens; the reservation is reconciled with the
/// tokens the provider billed when the answer (or a streamed answer's end)
/// arrives.
///
/// ```
/// use std::time::Duration;
/// use staunch::quota::QuotaConfig;
///
/// let config = QuotaConfig::new("openai-gpt-4o")
///     .requests_per_minute(500)
///     .tokens_per_minute(30_000)
///     .tokens_per_day(5_000_000)
///     .max_wait(Duration::from_secs(5));
/// # let _ = config;
/// ```
#[derive(Clone, Debug)]
pub struct QuotaConfig {
    pub(super) name: String,
    pub(super) limits: Vec<LimitSpec>,
    pub(super) max_wait: Duration,
    pub(super) output_estimate: u32,
    pub(super) pause_on_rate_limit: bool,
}

/// A [`QuotaConfig`] that can't be enforced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidQuota {
    /// A limit of zero would refuse everything; leave the limit unset to
    /// have none.
    #[error("a quota limit must be at least 1, got 0 {0}")]
    Zero(&'static str),
}

impl QuotaConfig {
    /// The default [`max_wait`](Self::max_wait): 10 s.
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(10);

    /// No limits yet for the target `name`.
    pub fn new(name: impl Into<String>) -> Self {
        QuotaConfig {
            name: name.into(),
            limits: Vec::new(),
            max_wait: Self::DEFAULT_MAX_WAIT,
            output_estimate: 1_024,
            pause_on_rate_limit: true,
        }
    }

    fn limit(mut self, resource: Resource, amount: u64, period: Duration) -> Self {
        let spec = LimitSpec {
            resource,
            amount,
            period,
        };
        // Setting the same limit again replaces it.
        match self
            .limits
            .iter_mut()
            .find(|l| l.resource == resource && l.period == period)
        {
            Some(existing) => *existing = spec,
            None => self.limits.push(spec),
        }
        self
    }

    /// Requests admitted per minute (RPM).
    pub fn requests_per_minute(self, requests: u64) -> Self {
        self.limit(Resource::Requests, requests, MINUTE)
    }

    /// Tokens (prompt plus answer) reserved per minute (TPM).
    pub fn tokens_per_minute(self, tokens: u64) -> Self {
        self.limit(Resource::Tokens, tokens, MINUTE)
    }

    /// Requests admitted per day (RPD).
    pub fn requests_per_day(self, requests: u64) -> Self {
        self.limit(Resource::Requests, requests, DAY)
    }

    /// Tokens reserved per day (TPD).
    pub fn tokens_per_day(self, tokens: u64) -> Self {
        self.limit(Resource::Tokens, tokens, DAY)
    }

    /// The longest a request waits for room. A request whose wait is
    /// longer, or would reach its [`Deadline`](crate::Deadline), fails at
    /// once with `RateLimited`. Zero never waits.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Answer tokens reserved for requests without `max_tokens`.
    pub fn output_estimate(mut self, tokens: u32) -> Self {
        self.output_estimate = tokens;
        self
    }

    /// Whether a provider's 429 carrying `Retry-After`, seen through the
    /// layer, pauses admissions for that long (default on).
    pub fn pause_on_rate_limit(mut self, on: bool) -> Self {
        self.pause_on_rate_limit = on;
        self
    }

    pub(super) fn validate(&self) -> Result<(), InvalidQuota> {
        for limit in &self.limits {
            if limit.amount == 0 {
                return Err(InvalidQuota::Zero(match (limit.resource, limit.period) {
                    (Resource::Requests, MINUTE) => "requests per minute",
                    (Resource::Requests, _) => "requests per day",
                    (Resource::Tokens, MINUTE) => "tokens per minute",
                    (Resource::Tokens, _) => "tokens per day",
                }));
            }
        }
        Ok(())
    }

    /// The tokens one call of `request` reserves.
    pub(super) fn reservation(&self, request: &impl Call) -> u64 {
        request.estimated_input_tokens().saturating_add(
            request
                .max_output_tokens()
                .unwrap_or(u64::from(self.output_estimate)),
        )
    }
}
