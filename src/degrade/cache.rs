//! The answer cache, on moka.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone)]
struct Entry {
    // Any operation's answer: the key says which call it answers, and the
    // operation is part of the key.
    response: Arc<dyn Any + Send + Sync>,
    stored: Instant,
}

/// Successful answers by request fingerprint. moka bounds the memory (size
/// and its own TTL); freshness is also checked against tokio's clock, so the
/// TTL holds exactly under paused test time too.
#[derive(Clone)]
pub(crate) struct AnswerCache {
    entries: moka::sync::Cache<u128, Entry>,
    ttl: Duration,
}

impl AnswerCache {
    pub(crate) fn new(ttl: Duration, capacity: u64) -> Self {
        AnswerCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            ttl,
        }
    }

    pub(crate) fn insert<A: Any + Send + Sync>(&self, key: u128, response: A) {
        self.entries.insert(
            key,
            Entry {
                response: Arc::new(response),
                stored: Instant::now(),
            },
        );
    }

    /// The fresh answer under `key` and its age.
    /// The answer stored under `key`, a copy, and its age.
    pub(crate) fn get<A: Any + Clone>(&self, key: u128) -> Option<(A, Duration)> {
        let entry = self.entries.get(&key)?;
        let age = entry.stored.elapsed();
        if age >= self.ttl {
            self.entries.invalidate(&key);
            return None;
        }
        let answer = entry.response.downcast_ref::<A>()?.clone();
        Some((answer, age))
    }

    pub(crate) fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    pub(crate) fn clear(&self) {
        self.entries.invalidate_all();
    }
}
