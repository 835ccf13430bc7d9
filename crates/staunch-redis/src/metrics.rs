//! The metric names this crate records (through the `metrics` facade).

/// Counter: decisions made locally because Redis was unreachable or slow
/// (labels `kind` = `quota`, `name`).
pub const FALLBACKS: &str = "staunch_redis_fallbacks_total";

/// Gauge: 1 while a quota's or the breakers' state is shared through
/// Redis, 0 while decisions are local (labels `kind` = `quota` or
/// `breakers`, `name`).
pub const SHARED: &str = "staunch_redis_shared";

/// Counter: breaker openings received from other replicas and applied
/// here (label `breaker`).
pub const BREAKER_OPENS_RECEIVED: &str = "staunch_redis_breaker_opens_received_total";

/// Counter: breaker openings of this replica published to the others
/// (label `breaker`).
pub const BREAKER_OPENS_PUBLISHED: &str = "staunch_redis_breaker_opens_published_total";
