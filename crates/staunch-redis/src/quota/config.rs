//! The shared quota's configuration.

use crate::RedisConnection;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// `amount` units (requests or tokens) per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Units per window; at least 1.
    pub amount: u64,
    /// The window; the bucket holds `amount` units and refills over it.
    pub per: Duration,
}

impl Limit {
    /// `amount` per minute.
    pub fn per_minute(amount: u64) -> Self {
        Limit {
            amount,
            per: Duration::from_secs(60),
        }
    }
}

/// How a [`SharedQuota`](super::SharedQuota) decides.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `requests` / `tokens` | none | the limits shared by every replica |
/// | `lease` | `(0, 0)` | units a replica takes from Redis at once and spends locally (0: one Redis decision per request) |
/// | `lease_ttl` | 1 s | a lease's unused units are dropped after this |
/// | `max_wait` | 2 s | the longest a request waits for room (never past its [`Deadline`](staunch_core::Deadline)); keep it below the requests' deadline, so that one that waited still has time for its call and a fallback |
/// | `timeout` | 50 ms | a shared decision slower than this is made locally |
/// | `replicas` | 1 | the local fallback limit is the shared limit divided by this |
/// | `probe_interval` | 500 ms | while Redis is unreachable, how often a background task tries it again; sharing resumes within two of these after Redis answers |
/// | `default_output_tokens` | 1024 | the output reserved for a request without `max_tokens` |
/// | `prefix` | `"staunch"` | the prefix of the Redis keys |
#[derive(Clone)]
pub struct SharedQuotaConfig {
    pub(crate) name: Arc<str>,
    pub(crate) redis: RedisConnection,
    pub(crate) prefix: Arc<str>,
    pub(crate) requests: Option<Limit>,
    pub(crate) tokens: Option<Limit>,
    pub(crate) lease_requests: u64,
    pub(crate) lease_tokens: u64,
    pub(crate) lease_ttl: Duration,
    pub(crate) max_wait: Duration,
    pub(crate) timeout: Duration,
    pub(crate) replicas: u32,
    pub(crate) probe_interval: Duration,
    pub(crate) default_output_tokens: u64,
}

impl SharedQuotaConfig {
    /// The default [`max_wait`](Self::max_wait): 2 s, below the deadline a
    /// request usually has, so that a request that waited for its slot
    /// still has time for its call and, refused, for a fallback.
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(2);
    /// The default [`timeout`](Self::timeout) of a shared decision: 50 ms.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
    /// The default [`probe_interval`](Self::probe_interval): 500 ms.
    pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(500);

    /// A quota named `name` (the target: every replica using the same name
    /// and prefix shares one budget), without limits yet.
    pub fn new(name: impl Into<Arc<str>>, redis: RedisConnection) -> Self {
        SharedQuotaConfig {
            name: name.into(),
            redis,
            prefix: Arc::from("staunch"),
            requests: None,
            tokens: None,
            lease_requests: 0,
            lease_tokens: 0,
            lease_ttl: Duration::from_secs(1),
            max_wait: Self::DEFAULT_MAX_WAIT,
            timeout: Self::DEFAULT_TIMEOUT,
            replicas: 1,
            probe_interval: Self::DEFAULT_PROBE_INTERVAL,
            default_output_tokens: 1024,
        }
    }

    /// Requests per window.
    pub fn requests(mut self, limit: Limit) -> Self {
        self.requests = Some(Limit {
            amount: limit.amount.max(1),
            per: limit.per.max(Duration::from_millis(1)),
        });
        self
    }

    /// Requests per minute.
    pub fn requests_per_minute(self, amount: u64) -> Self {
        self.requests(Limit::per_minute(amount))
    }

    /// Tokens (prompt plus output) per window.
    pub fn tokens(mut self, limit: Limit) -> Self {
        self.tokens = Some(Limit {
            amount: limit.amount.max(1),
            per: limit.per.max(Duration::from_millis(1)),
        });
        self
    }

    /// Tokens per minute.
    pub fn tokens_per_minute(self, amount: u64) -> Self {
        self.tokens(Limit::per_minute(amount))
    }

    /// Takes `requests` requests and `tokens` tokens from Redis at once and
    /// admits locally from them with an atomic counter; 0 asks Redis for
    /// every request. A replica holds at most one lease per limit, so the
    /// replicas together can go over a limit by at most
    /// `replicas × lease` units (see the crate's documentation).
    pub fn lease(mut self, requests: u64, tokens: u64) -> Self {
        self.lease_requests = requests;
        self.lease_tokens = tokens;
        self
    }

    /// How long a lease's unused units stay usable.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// The longest a request over the limit waits for room (its slot is
    /// reserved at once, so requests from every replica are served in the
    /// order they reached Redis); a request whose wait would be longer, or
    /// would reach its [`Deadline`](staunch_core::Deadline), fails at once
    /// with `RateLimited` and `retry_after`. `Duration::ZERO` refuses at
    /// once whenever the quota has no room now.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// The longest a request waits for a shared decision before it is made
    /// locally (the round trip, not a wait for room).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many replicas share the limit: while Redis is unreachable each
    /// admits at `limit / replicas` per window, starting from the shared
    /// bucket as it last saw it (its share of the room left, nothing while
    /// the slots already reserved come), so that the fleet stays within the
    /// limit. Every replica must use the same value.
    pub fn replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// While Redis is unreachable, how often a background task tries it
    /// (requests or not); sharing resumes at the first probe that answers.
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// The output tokens reserved for a request without `max_tokens`.
    pub fn default_output_tokens(mut self, tokens: u64) -> Self {
        self.default_output_tokens = tokens;
        self
    }

    /// The prefix of the Redis keys (`{prefix}:quota:{name}:requests`).
    pub fn prefix(mut self, prefix: impl Into<Arc<str>>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The quota's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for SharedQuotaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedQuotaConfig")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("requests", &self.requests)
            .field("tokens", &self.tokens)
            .field("lease", &(self.lease_requests, self.lease_tokens))
            .field("lease_ttl", &self.lease_ttl)
            .field("max_wait", &self.max_wait)
            .field("timeout", &self.timeout)
            .field("replicas", &self.replicas)
            .field("probe_interval", &self.probe_interval)
            .finish()
    }
}
