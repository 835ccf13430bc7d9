//! The connection cap: a slot per open connection, and, at the cap, room
//! made by closing the connection that has waited longest for a request.

use super::connection::Shared;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The open connections' slots, shared by the accept loop and every
/// connection.
#[derive(Clone)]
pub(super) struct Slots {
    inner: Arc<Inner>,
}

struct Inner {
    permits: Arc<Semaphore>,
    max: usize,
    /// The connections waiting for a request (idle, or still sending its
    /// head), oldest first: the ones a new connection may replace.
    waiting: Mutex<BTreeMap<u64, Candidate>>,
    next_wait: AtomicU64,
    /// Woken when a connection closes.
    closed: Notify,
}

/// How long a connection is safe from eviction after it starts to wait.
pub(super) const EVICTION_GRACE: Duration = Duration::from_millis(25);

/// A connection waiting for a request, and since when.
struct Candidate {
    connection: Arc<Shared>,
    since: Instant,
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One open connection's place; dropping it frees the place.
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
    inner: Arc<Inner>,
}

/// A connection's entry among the waiting ones, removed on drop.
pub(super) struct Waiting {
    key: u64,
    inner: Arc<Inner>,
}

impl Slots {
    pub(super) fn new(max: usize) -> Slots {
        Slots {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(max)),
                max,
                waiting: Mutex::new(BTreeMap::new()),
                next_wait: AtomicU64::new(0),
                closed: Notify::new(),
            }),
        }
    }

    /// A slot, if one is free.
    pub(super) fn take(&self) -> Option<Slot> {
        let permit = self.inner.permits.clone().try_acquire_owned().ok()?;
        Some(self.slot(permit))
    }

    /// At the cap: asks the connection that has waited longest for a
    /// request to close, and returns its slot once it has.
    ///
    /// A connection is never asked within [`EVICTION_GRACE`] of starting to
    /// wait, so that one accepted in a burst has the time to be read before
    /// the burst's later connections push it out; until one is old enough
    /// (or with none waiting), this waits for a connection to close.
    pub(super) async fn make_room(&self) -> Option<Slot> {
        loop {
            let oldest = {
                let mut waiting = self
                    .inner
                    .waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match waiting.first_entry() {
                    Some(entry) if entry.get().since.elapsed() >= EVICTION_GRACE => {
                        Ok(entry.remove().connection)
                    }
                    Some(entry) => Err(Some(entry.get().since + EVICTION_GRACE)),
                    None => Err(None),
                }
            };
            let evictable_at = match oldest {
                Ok(connection) => {
                    connection.evict();
                    None
                }
                Err(at) => at,
            };
            let permit = self.inner.permits.clone();
            tokio::select! {
                // `Err` only if the semaphore were closed, which it never is.
                permit = permit.acquire_owned() => return Some(self.slot(permit.ok()?)),
                () = sleep_until(evictable_at) => {}
            }
        }
    }

    fn slot(&self, permit: OwnedSemaphorePermit) -> Slot {
        metrics::gauge!(super::CONNECTIONS_OPEN).increment(1.0);
        Slot {
            _permit: permit,
            inner: self.inner.clone(),
        }
    }

    /// How many connections are open.
    pub(super) fn open(&self) -> usize {
        self.inner.max - self.inner.permits.available_permits()
    }

    /// Resolves when a connection closes.
    pub(super) async fn closed(&self) {
        self.inner.closed.notified().await;
    }
}

impl Slot {
    /// Lists the connection among those waiting for a request, until the
    /// returned entry is dropped.
    pub(super) fn waiting(&self, connection: &Arc<Shared>) -> Waiting {
        let key = self.inner.next_wait.fetch_add(1, Ordering::Relaxed);
        self.inner
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                key,
                Candidate {
                    connection: connection.clone(),
                    since: Instant::now(),
                },
            );
        Waiting {
            key,
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!(super::CONNECTIONS_OPEN).decrement(1.0);
        self.inner.closed.notify_waiters();
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.inner
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}
