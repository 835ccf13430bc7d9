//! Quota and circuit-breaker state shared by many replicas through Redis.
//!
//! A staunch stack keeps its decisions local and lock-free. When several
//! replicas call the same provider under one account, they also share its
//! limits, and a provider that fails for one fails for all. This crate
//! shares both through Redis, without making Redis a single point of
//! failure.
//!
//! ## Shared quota
//!
//! [`SharedQuotaLayer`] admits each request against requests-per-window
//! and tokens-per-window limits kept in Redis: one atomic Lua script per
//! decision (GCRA on Redis' own `TIME`, so replicas share one clock; a
//! token bucket of `limit` units refilled over the window, the model the
//! providers describe for their own limits). A request reserves one
//! request and its prompt estimate plus `max_tokens` tokens; the answer's
//! billed usage settles the reservation (unused tokens go back). Over the
//! limit, as with the local quota, the request **waits** for its slot if
//! the wait fits [`SharedQuotaConfig::max_wait`] (2 s by default) and its
//! [`Deadline`](staunch_core::Deadline): the script reserves the slot at
//! once, so requests from every replica are served in the order they
//! reached Redis, and a waiter dropped before its turn gives its slot back
//! (in the background, one round trip later). Else it fails at once,
//! without calling the provider, with `RateLimited`, `retry_after` (when
//! room comes) and `should_retry = Some(false)`, so a retry layer passes
//! it on and a fallback chain moves to its next target. The local fallback
//! waits the same way. The refusal's source is a
//! [`QuotaRefusal`](staunch_core::QuotaRefusal): the provider never saw the
//! request, so a circuit breaker above ignores it (a provider's own 429
//! still counts).
//!
//! **Leasing.** With [`SharedQuotaConfig::lease`]`(r, t)`, a replica takes
//! `r` requests (or `t` tokens) from Redis in one decision and admits from
//! them locally with one atomic operation, until they run out or expire
//! (`lease_ttl`, 1 s). A replica refills one lease at a time and holds at
//! most one per limit. Leased units are counted in Redis when leased, so
//! the replicas never admit more units in total than Redis granted; what
//! leasing changes is *when* they are used: a replica may spend its lease
//! after Redis has refilled the bucket. **The bound**: over any stretch of
//! time, the replicas together admit at most what the shared bucket allows
//! (`limit` at once, then `limit` per window) **plus `replicas × lease`
//! units per limit**; tokens used beyond a request's reservation (a prompt
//! estimate too low) are charged afterwards, so the token limit can also be
//! passed by what the requests in flight under-reserved, at most about one
//! request's tokens each. Without leasing (the default) the bound is the
//! bucket itself. Unused leased units are lost when the lease expires: at
//! most `replicas × lease` units per `lease_ttl` go unused.
//!
//! ## Shared breakers
//!
//! [`SharedBreakers`] publishes a breaker's opening on one replica and
//! opens the breakers of the same name on the others for the time its
//! break has left, within the pub/sub latency (or the next poll, 1 s by
//! default, for a replica that missed the message). Each replica's hot
//! path is its own breaker, unchanged.
//!
//! ## When Redis is slow or down
//!
//! A quota decision that takes longer than its `timeout` (50 ms by
//! default) or fails is made locally, by a limiter at `limit / replicas`,
//! so requests keep flowing. The first failure logs one warning
//! (target `staunch::redis`), the metric `staunch_redis_fallbacks_total`
//! counts every local decision, and `staunch_redis_shared` drops to 0.
//!
//! **The limit holds while Redis is down or paused.** Each decision tells
//! the replica how far the shared bucket's `tat` is ahead of now. A
//! replica that falls back starts its local limiter from that (seen
//! within the last second, else from an empty bucket; one that never
//! reached Redis starts with its full share): its room is its
//! share of the room Redis had, and the slots Redis already reserved
//! (requests of every replica waiting for their turn, at most `max_wait`
//! ahead) come before anything new, so the replicas together keep to the
//! shared rate instead of adding their local shares to what the shared
//! bucket already granted. Leased units are not spent while decisions
//! are local.
//!
//! **Sharing resumes by itself.** While Redis is unreachable no request
//! waits for it: a background task tries it every `probe_interval`
//! (500 ms), requests or not. When it answers, what was admitted locally
//! meanwhile (at most one local bucket) is charged to Redis; at the next
//! probe, what was admitted since is charged too and decisions are shared
//! again (so that no replica takes the room the others' charges are about
//! to fill): within two `probe_interval`s (1 s by default) and a reconnect
//! of Redis answering.
//!
//! **An empty Redis is not a full bucket.** A key without expiry (the
//! quota's epoch, created by the first replica that finds it missing)
//! changes whenever Redis loses the quota's state: a restart without
//! persistence, a failover to an empty replica, a flush. A replica that
//! sees a new epoch (when it resumes, or on any decision) charges Redis
//! again with everything it admitted over the last window (shared or
//! local, counted in twenty slots) and the lease it holds, so the first
//! window after a restart stays within the limit too
//! ([`SharedQuotaHandle::charged_again`] counts those). The connection
//! (redis-rs's `ConnectionManager`, one multiplexed, pipelining
//! connection) reconnects by itself.
//!
//! Breakers go on working locally, and re-subscribe when Redis
//! is back. An opening that could not be published while Redis was down
//! (or while the connection was being made again) is kept, the latest per
//! breaker, and published within half a second of Redis answering again
//! (retried 50 ms to 0.5 s apart, and at once when the subscription is
//! back), unless its break is over or its breaker has changed state
//! meanwhile (a breaker reset by hand is not announced); the others take
//! it by pub/sub, or from its key when they subscribe again. A breaker reset by hand on a replica that had
//! received the opening stays closed: the same opening, still in its key,
//! is not applied again.
//!
//! ```no_run
//! use staunch_redis::{RedisConnection, SharedQuotaConfig, SharedQuotaLayer};
//! # async fn build() -> Result<(), staunch_redis::SharedError> {
//! let redis = RedisConnection::connect("redis://127.0.0.1:6379").await?;
//! let quota = SharedQuotaLayer::new(
//!     SharedQuotaConfig::new("openai", redis)
//!         .requests_per_minute(500)
//!         .tokens_per_minute(200_000)
//!         .lease(5, 4_000)
//!         .replicas(4),
//! );
//! // ServiceBuilder::new().layer(quota).service(provider) ...
//! # let _ = quota; Ok(()) }
//! ```
//!
//! Redis 5 or newer (scripts replicated by effect, so `TIME` is allowed).

#![warn(missing_docs)]

mod breakers;
mod connection;
mod local;
pub mod metrics;
mod quota;
mod scripts;

pub use breakers::SharedBreakers;
pub use connection::RedisConnection;
pub use quota::{
    Limit, ResponseFuture, SharedQuota, SharedQuotaConfig, SharedQuotaHandle, SharedQuotaLayer,
};

/// Why sharing could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedError {
    /// The Redis address is malformed, or the client could not be built.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}
