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
/// breaker works on its own, and sharing resumes when it is back: an
/// opening that could not be published is kept (the latest per breaker)
/// and published as soon as Redis answers again (retried every 50 ms to
/// 500 ms, and at once when the subscription is back), if its break has
/// time left and the breaker has not changed state since (a breaker
/// reset or half-open meanwhile is not announced).
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

/// An opening of this replica's not yet published.
struct Pending {
    open_for: Duration,
    at: Instant,
    /// Its number among this replica's openings (part of its id).
    seq: u64,
}

/// The first retry of an opening that could not be published, doubled
/// after each failure up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_millis(500);

/// Consecutive failures to publish before the breakers count as local.
const FAILURES_TO_DISCONNECT: u32 = 3;

struct Shared {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    channel: String,
    replica: String,
    breakers: Mutex<HashMap<String, Entry>>,
    poll_ms: AtomicU64,
    poll_now: Notify,
    /// Wakes the publisher to retry what it could not publish.
    publish_now: Notify,
    connected: AtomicBool,
    /// True while the subscription is up.
    subscribed: AtomicBool,
    received: AtomicU64,
    published: AtomicU64,
}

struct Entry {
    handle: CircuitBreakerHandle,
    /// The end of the latest break applied from another replica.
    applied_until: Option<Instant>,
    /// The id (`replica/seq`) of the latest opening applied from another
    /// replica: the same opening, seen again by a poll, is not applied
    /// again (a breaker reset here stays closed).
    applied_id: Option<String>,
}

/// A break applied from another replica is applied again only if it ends
/// later than this past the one applied before (another opening that ends
/// at about the same time, rounded to milliseconds).
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
            publish_now: Notify::new(),
            connected: AtomicBool::new(true),
            subscribed: AtomicBool::new(false),
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
                applied_id: None,
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

    /// Another replica's opening `id` of `name` has `remaining` left: open
    /// ours.
    fn apply(&self, name: &str, id: &str, remaining: Duration) {
        if remaining.is_zero() {
            return;
        }
        let until = Instant::now() + remaining;
        let mut breakers = self.lock();
        let Some(entry) = breakers.get_mut(name) else {
            return;
        };
        if entry.applied_id.as_deref() == Some(id)
            || entry
                .applied_until
                .is_some_and(|prev| until <= prev + SLACK)
        {
            return;
        }
        entry.applied_until = Some(until);
        entry.applied_id = Some(id.to_owned());
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

    /// False when this replica's opening `pending` is no longer what its
    /// breaker shows (reset, half-open or opened again since): announcing
    /// it now would open the others for a break that is over here. A
    /// breaker not shared here is judged by its break's time left only.
    fn still_open(&self, name: &str, pending: &Pending) -> bool {
        match self.lock().get(name) {
            None => true,
            Some(entry) => {
                entry.handle.state() == CircuitState::Open
                    && entry.handle.last_transition() == Some(pending.at)
            }
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

/// The id of an opening in keys and messages: `{replica}/{seq}`.
fn opening_id(replica: &str, seq: u64) -> String {
    format!("{replica}/{seq}")
}

/// The replica part of an opening id (a bare replica id, as written by an
/// older version, is its own replica).
fn owner(id: &str) -> &str {
    id.rsplit_once('/').map_or(id, |(replica, _)| replica)
}

/// Publishes this replica's openings. One that cannot be published (Redis
/// down, or the connection being made again) stays pending, the latest per
/// breaker, and is retried until it is published, its break is over, or
/// its breaker has changed state.
async fn publish(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Opening>) {
    let mut conn = shared.conn.clone();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut seq: u64 = 0;
    let mut backoff = RETRY_MIN;
    let mut failures: u32 = 0;
    loop {
        let received = if pending.is_empty() {
            Some(rx.recv().await)
        } else {
            tokio::select! {
                opening = rx.recv() => Some(opening),
                () = tokio::time::sleep(backoff) => None,
                () = shared.publish_now.notified() => None,
            }
        };
        match received {
            Some(Some(opening)) => {
                seq += 1;
                queue(&mut pending, opening, seq);
            }
            // Closed: the `SharedBreakers` and every callback are gone.
            Some(None) => return,
            // Time to retry.
            None => {}
        }
        while let Ok(opening) = rx.try_recv() {
            seq += 1;
            queue(&mut pending, opening, seq);
        }
        let names: Vec<String> = pending.keys().cloned().collect();
        let mut failed = None;
        for name in names {
            let Some(opening) = pending.get(&name) else {
                continue;
            };
            let remaining = opening.open_for.saturating_sub(opening.at.elapsed());
            let ms = u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX);
            if ms == 0 || !shared.still_open(&name, opening) {
                pending.remove(&name);
                continue;
            }
            let id = opening_id(&shared.replica, opening.seq);
            // The break's end on the wall clock: Redis works out what is
            // left when the script runs, however late that is.
            let end_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .saturating_add(ms);
            let sent = tokio::time::timeout(
                Duration::from_secs(1),
                scripts::OPEN
                    .key(shared.key(&name))
                    .arg(&id)
                    .arg(end_ms)
                    .arg(&shared.channel)
                    .arg(&name)
                    .invoke_async::<i64>(&mut conn),
            )
            .await;
            match sent {
                // The break was over by the time Redis ran the script.
                Ok(Ok(0)) => {
                    pending.remove(&name);
                }
                Ok(Ok(_)) => {
                    pending.remove(&name);
                    shared.published.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(names::BREAKER_OPENS_PUBLISHED, "breaker" => name.clone())
                        .increment(1);
                }
                Ok(Err(e)) => {
                    failed = Some(e.to_string());
                    break;
                }
                Err(_) => {
                    failed = Some("no answer within 1 s".to_owned());
                    break;
                }
            }
        }
        match failed {
            None => {
                failures = 0;
                backoff = RETRY_MIN;
                if shared.subscribed.load(Ordering::Acquire) {
                    shared.set_connected(true, "");
                }
            }
            Some(why) => {
                // The first command after a lost connection fails while a
                // new one is made; more than a few in a row: Redis is down.
                failures = failures.saturating_add(1);
                if failures >= FAILURES_TO_DISCONNECT {
                    shared.set_connected(false, &why);
                }
                backoff = if failures == 1 {
                    RETRY_MIN
                } else {
                    (backoff * 2).min(RETRY_MAX)
                };
                renew(&shared, &mut conn);
            }
        }
    }
}

/// Adds an opening to publish; of two openings of one breaker, the one
/// that ends later is kept.
fn queue(pending: &mut HashMap<String, Pending>, (name, open_for, at): Opening, seq: u64) {
    let opening = Pending { open_for, at, seq };
    match pending.get(&name) {
        Some(kept) if kept.at + kept.open_for > at + open_for => {}
        _ => {
            pending.insert(name, opening);
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
        shared.subscribed.store(true, Ordering::Release);
        shared.set_connected(true, "");
        // Catch up with what was missed while unsubscribed, and publish
        // what could not be published meanwhile.
        shared.poll_now.notify_one();
        shared.publish_now.notify_one();
        let mut messages = pin!(pubsub.into_on_message());
        while let Some(message) =
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(messages.as_mut(), cx)).await
        {
            let Ok(payload) = message.get_payload::<String>() else {
                continue;
            };
            let mut parts = payload.splitn(3, '\n');
            let (Some(id), Some(ms), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if owner(id) == shared.replica {
                continue;
            }
            if let Ok(ms) = ms.parse::<u64>() {
                shared.apply(name, id, Duration::from_millis(ms));
            }
        }
        shared.subscribed.store(false, Ordering::Release);
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
            let [id, ttl] = pair else { continue };
            let id: Option<String> = redis::from_redis_value_ref(id).ok().flatten();
            let ttl: i64 = redis::from_redis_value_ref(ttl).unwrap_or(-2);
            if let Some(id) = id
                && owner(&id) != shared.replica
                && let Ok(ttl) = u64::try_from(ttl)
                && ttl > 0
            {
                shared.apply(name, &id, Duration::from_millis(ttl));
            }
        }
    }
}
