//! The connection to Redis, shared by every quota of a process.

use crate::SharedError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::fmt;
use std::time::Duration;

/// A cheap, cloneable connection to one Redis server: redis-rs's
/// [`ConnectionManager`] (one multiplexed, pipelining connection that
/// reconnects by itself after an error), configured to give up quickly so
/// that an unreachable Redis costs a decision a few milliseconds, not
/// seconds.
#[derive(Clone)]
pub struct RedisConnection {
    pub(crate) client: redis::Client,
    pub(crate) manager: ConnectionManager,
}

impl RedisConnection {
    /// Opens a connection to `url` (`redis://host:port/db`). Fails only on
    /// a malformed address: a Redis that is down now is connected to
    /// later, and decisions stay local meanwhile. Must be called within a
    /// Tokio runtime.
    pub async fn connect(url: &str) -> Result<Self, SharedError> {
        let client = redis::Client::open(url).map_err(SharedError::Redis)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(250)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let mut manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(SharedError::Redis)?;
        // Start connecting now; a failure here is not fatal.
        let _ = tokio::time::timeout(
            Duration::from_millis(250),
            redis::cmd("PING").query_async::<()>(&mut manager),
        )
        .await;
        Ok(RedisConnection { client, manager })
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("addr", &self.client.get_connection_info().addr())
            .finish()
    }
}
