//! Circuit-breaker state shared between replicas.

use crate::metrics as names;
use crate::{SharedError, scripts};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use staunch::circuit_breaker::{CircuitBreakerHandle, CircuitState, Transition, TransitionReason};
use std::collections::HashMap;
use std::fmt;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Shares the openings of circuit breakers between replicas through Redis.
///
/// A breaker that opens on one replica (by its own failures, not by an
/// opening received from another) is published on a pub/sub channel and
/// written to a key that expires when its break ends; every other replica
/// sharing a breaker of that name opens it for the time left
/// ([`CircuitBreakerHandle::open_for`]), so a fallback chain there skips
/// the target too. Each replica's hot path is unchanged: its own breaker,
/// a local atomic read.
///
/// The bound: an opening reaches the other replicas within the pub/sub
/// latency (a millisecond on a local network). A replica that missed the
/// message (its subscription was down) finds the key at its next poll,
/// every [`poll_interval`](Self::poll_interval) (1 s by default), and
/// right after it subscribes again. While Redis is unreachable every
/// breaker works on its own, and sharing resumes when it is back.
///
/// Wiring: pass [`on_transition`](Self::on_transition) to each breaker's
/// configuration (it publishes), and [`share`](Self::share) each
/// breaker's handle (it receives):
///
/// ```no_run
/// # async fn wire() -> Result<(), staunch_redis::SharedError> {
/// use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
/// use staunch_redis::SharedBreakers;
///
/// let shared = SharedBreakers::connect("redis://127.0.0.1:6379", "staunch").await?;
/// let layer = CircuitBreakerLayer::new(
///     CircuitBreakerConfig::new("openai").on_transition(shared.on_transition()),
/// )
/// .expect("valid config");
/// shared.share("openai", layer.handle());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SharedBreakers {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
    tx: mpsc::UnboundedSender<Opening>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// An opening to publish: the breaker, its break, and when it began.
type Opening = (String, Duration, Instant);

struct Shared {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    channel: String,
    replica: String,
    breakers: Mutex<HashMap<String, Entry>>,
    poll_ms: AtomicU64,
    poll_now: Notify,
    connected: AtomicBool,
    received: AtomicU64,
    published: AtomicU64,
}

struct Entry {
    handle: CircuitBreakerHandle,
    /// The end of the latest break applied from another replica.
    applied_until: Option<Instant>,
}

/// A break applied from another replica is applied again only if it ends
/// later than this past the one applied before (the same opening seen by
/// pub/sub and by a poll, rounded to milliseconds).
const SLACK: Duration = Duration::from_millis(100);

impl SharedBreakers {
    /// Connects to `url` and starts sharing under `prefix` (the channel
    /// `{prefix}:breakers` and keys `{prefix}:breaker:{name}`). Fails only
    /// on a malformed address: a Redis that is down now is connected to
    /// later. Must be called within a Tokio runtime.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, SharedError> {
        static REPLICAS: AtomicU64 = AtomicU64::new(0);
        let client = redis::Client::open(url).map_err(SharedError::Redis)?;
        let conn = manager(&client).map_err(SharedError::Redis)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let replica = format!(
            "{:x}-{:x}-{}",
            std::process::id(),
            nanos,
            REPLICAS.fetch_add(1, Ordering::Relaxed)
        );
        let shared = Arc::new(Shared {
            client,
            conn,
            prefix: prefix.to_owned(),
            channel: format!("{prefix}:breakers"),
            replica,
            breakers: Mutex::new(HashMap::new()),
            poll_ms: AtomicU64::new(1_000),
            poll_now: Notify::new(),
            connected: AtomicBool::new(true),
            received: AtomicU64::new(0),
            published: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let tasks = vec![
            tokio::spawn(subscribe(shared.clone())).abort_handle(),
            tokio::spawn(poll(shared.clone())).abort_handle(),
            tokio::spawn(publish(shared.clone(), rx)).abort_handle(),
        ];
        Ok(SharedBreakers {
            inner: Arc::new(Inner { shared, tasks, tx }),
        })
    }

    /// Receives the other replicas' openings of the breaker `name` into
    /// `handle`, and opens it at once if another replica's break is
    /// running now.
    pub fn share(&self, name: impl Into<String>, handle: CircuitBreakerHandle) {
        let shared = &self.inner.shared;
        shared.lock().insert(
            name.into(),
            Entry {
                handle,
                applied_until: None,
            },
        );
        shared.poll_now.notify_one();
    }

    /// Stops receiving openings of `name`.
    pub fn unshare(&self, name: &str) {
        self.inner.shared.lock().remove(name);
    }

    /// The callback to pass to
    /// [`CircuitBreakerConfig::on_transition`](staunch::circuit_breaker::CircuitBreakerConfig::on_transition):
    /// publishes the breaker's openings (not those received from other
    /// replicas, so nothing echoes).
    pub fn on_transition(&self) -> impl Fn(&Transition) + Send + Sync + 'static {
        let tx = self.inner.tx.clone();
        move |transition: &Transition| publish_transition(&tx, transition)
    }

    /// Publishes `transition` if it is an opening of this replica's own; for
    /// a breaker that already has its own `on_transition` callback.
    pub fn publish(&self, transition: &Transition) {
        publish_transition(&self.inner.tx, transition);
    }

    /// How often the keys are read, for a replica that missed a message
    /// (default 1 s).
    pub fn poll_interval(&self, interval: Duration) -> &Self {
        let ms = u64::try_from(interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.inner.shared.poll_ms.store(ms, Ordering::Relaxed);
        self.inner.shared.poll_now.notify_one();
        self
    }

    /// This replica's id in messages and keys.
    pub fn replica_id(&self) -> &str {
        &self.inner.shared.replica
    }

    /// Openings received from other replicas that opened a breaker here.
    pub fn received(&self) -> u64 {
        self.inner.shared.received.load(Ordering::Relaxed)
    }

    /// Openings of this replica published.
    pub fn published(&self) -> u64 {
        self.inner.shared.published.load(Ordering::Relaxed)
    }

    /// False while Redis is unreachable (breakers are then local only).
    pub fn is_connected(&self) -> bool {
        self.inner.shared.connected.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for SharedBreakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.inner.shared;
        f.debug_struct("SharedBreakers")
            .field("prefix", &shared.prefix)
            .field("replica", &shared.replica)
            .field("breakers", &shared.lock().keys().collect::<Vec<_>>())
            .field("connected", &self.is_connected())
            .finish()
    }
}

fn publish_transition(tx: &mpsc::UnboundedSender<Opening>, transition: &Transition) {
    if transition.to != CircuitState::Open
        || matches!(transition.reason, TransitionReason::Shared(_))
    {
        return;
    }
    let Some(open_for) = transition.open_for else {
        return;
    };
    // Fails only once the `SharedBreakers` is gone: nothing to publish to.
    let _ = tx.send((transition.breaker.clone(), open_for, transition.at));
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.breakers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(&self, name: &str) -> String {
        format!("{}:breaker:{name}", self.prefix)
    }

    /// Another replica's break of `name` has `remaining` left: open ours.
    fn apply(&self, name: &str, remaining: Duration) {
        if remaining.is_zero() {
            return;
        }
        let until = Instant::now() + remaining;
        let mut breakers = self.lock();
        let Some(entry) = breakers.get_mut(name) else {
            return;
        };
        if entry
            .applied_until
            .is_some_and(|prev| until <= prev + SLACK)
        {
            return;
        }
        entry.applied_until = Some(until);
        let handle = entry.handle.clone();
        drop(breakers);
        let before = handle.state();
        handle.open_for(remaining);
        if before != handle.state() {
            self.received.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(names::BREAKER_OPENS_RECEIVED, "breaker" => name.to_owned())
                .increment(1);
        }
    }

    fn set_connected(&self, up: bool, why: &str) {
        if self.connected.swap(up, Ordering::AcqRel) != up {
            metrics::gauge!(names::SHARED, "kind" => "breakers", "name" => self.prefix.clone())
                .set(if up { 1.0 } else { 0.0 });
            if up {
                tracing::info!(target: "staunch::redis", prefix = %self.prefix, "Redis answers again: breaker state is shared");
            } else {
                tracing::warn!(target: "staunch::redis", prefix = %self.prefix, error = why, "Redis is unreachable: breakers are local until it answers again");
            }
        }
    }
}

/// A connection manager to `client`, connecting lazily and failing fast.
fn manager(client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(250)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(Duration::from_millis(200));
    ConnectionManager::new_lazy_with_config(client.clone(), config)
}

/// After a failed command, a fresh connection: a manager whose connection
/// died with the server can keep failing after the server is back.
fn renew(shared: &Shared, conn: &mut ConnectionManager) {
    if let Ok(fresh) = manager(&shared.client) {
        *conn = fresh;
    }
}

/// Publishes this replica's openings.
async fn publish(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Opening>) {
    let mut conn = shared.conn.clone();
    while let Some((name, open_for, at)) = rx.recv().await {
        let remaining = open_for.saturating_sub(at.elapsed());
        let ms = u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            continue;
        }
        let message = format!("{}\n{ms}\n{name}", shared.replica);
        // The first command after a lost connection fails while the
        // connection manager reconnects: try a few times.
        for attempt in 0..3 {
            let sent = tokio::time::timeout(
                Duration::from_secs(1),
                scripts::OPEN
                    .key(shared.key(&name))
                    .arg(&shared.replica)
                    .arg(ms)
                    .arg(&shared.channel)
                    .arg(&message)
                    .invoke_async::<i64>(&mut conn),
            )
            .await;
            match sent {
                Ok(Ok(_)) => {
                    shared.published.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(names::BREAKER_OPENS_PUBLISHED, "breaker" => name.clone())
                        .increment(1);
                    break;
                }
                Ok(Err(e)) if attempt == 2 => shared.set_connected(false, &e.to_string()),
                Err(_) if attempt == 2 => shared.set_connected(false, "no answer within 1 s"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// Receives the other replicas' openings; subscribes again after a loss.
async fn subscribe(shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let connected = tokio::time::timeout(Duration::from_secs(1), async {
            let mut pubsub = shared.client.get_async_pubsub().await?;
            pubsub.subscribe(&shared.channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let pubsub = match connected {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(e)) => {
                shared.set_connected(false, &e.to_string());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
            Err(_) => {
                shared.set_connected(false, "no answer within 1 s");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        shared.set_connected(true, "");
        // Catch up with what was missed while unsubscribed.
        shared.poll_now.notify_one();
        let mut messages = pin!(pubsub.into_on_message());
        while let Some(message) =
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(messages.as_mut(), cx)).await
        {
            let Ok(payload) = message.get_payload::<String>() else {
                continue;
            };
            let mut parts = payload.splitn(3, '\n');
            let (Some(replica), Some(ms), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if replica == shared.replica {
                continue;
            }
            if let Ok(ms) = ms.parse::<u64>() {
                shared.apply(name, Duration::from_millis(ms));
            }
        }
        shared.set_connected(false, "subscription lost");
    }
}

/// Reads the shared breakers' keys every poll interval, and at once when
/// asked (a new breaker shared, a subscription made again).
async fn poll(shared: Arc<Shared>) {
    let mut conn = shared.conn.clone();
    loop {
        let interval = Duration::from_millis(shared.poll_ms.load(Ordering::Relaxed));
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shared.poll_now.notified() => {}
        }
        let names: Vec<String> = shared.lock().keys().cloned().collect();
        if names.is_empty() {
            continue;
        }
        let mut pipe = redis::pipe();
        for name in &names {
            let key = shared.key(name);
            pipe.cmd("GET").arg(&key).cmd("PTTL").arg(&key);
        }
        let read = tokio::time::timeout(
            Duration::from_secs(1),
            pipe.query_async::<Vec<redis::Value>>(&mut conn),
        )
        .await;
        let Ok(Ok(values)) = read else {
            renew(&shared, &mut conn);
            continue;
        };
        for (name, pair) in names.iter().zip(values.chunks(2)) {
            let [owner, ttl] = pair else { continue };
            let owner: Option<String> = redis::from_redis_value_ref(owner).ok().flatten();
            let ttl: i64 = redis::from_redis_value_ref(ttl).unwrap_or(-2);
            if let Some(owner) = owner
                && owner != shared.replica
                && ttl > 0
            {
                shared.apply(name, Duration::from_millis(ttl as u64));
            }
        }
    }
}
