//! The shared quota's state: leases, the Redis decision, the local fallback.

use super::config::{Limit, SharedQuotaConfig};
use crate::local::{LocalGcra, Recent};
use crate::metrics as names;
use crate::scripts;
use redis::aio::ConnectionManager;
use staunch_core::{Call, Deadline, ErrorKind, LlmError};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// What a request was admitted with, to reconcile when its answer comes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grant {
    /// Tokens reserved (0 without a token limit).
    pub(crate) tokens: u64,
    /// Admitted through Redis (a lease or a decision), not locally.
    pub(crate) shared: bool,
}

/// How long a request may wait for room: `max_wait`, and never until its
/// deadline.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Patience {
    max_wait: Duration,
    deadline: Option<Deadline>,
}

impl Patience {
    pub(crate) fn new(max_wait: Duration, deadline: Option<Deadline>) -> Self {
        Patience { max_wait, deadline }
    }

    /// The longest wait allowed now.
    fn allowed(&self) -> Duration {
        match self.deadline {
            // A wait that ends at the deadline would pass it.
            Some(d) => self
                .max_wait
                .min(d.remaining().saturating_sub(Duration::from_nanos(1))),
            None => self.max_wait,
        }
    }

    /// Why a wait of `wait` is refused.
    fn why(&self, wait: Duration) -> &'static str {
        if wait > self.max_wait {
            "the wait is longer than max_wait"
        } else {
            "the wait would reach the request's deadline"
        }
    }
}

/// What a request took from one limit, to give back if it stops waiting.
#[derive(Clone, Copy, Debug, Default)]
struct Held {
    /// Its cost, recorded by the local limiter.
    cost: u64,
    /// Units granted by Redis for it.
    redis: u64,
    /// Units it took from the lease.
    lease: u64,
}

/// An admission: now, or after a wait with its slot reserved.
pub(crate) enum Admission {
    Now(Grant),
    Later(Waiter),
}

/// A request admitted at a later instant, its units taken (from Redis at
/// that instant, or locally) so that later requests queue behind it.
/// Dropped before its turn (an outer timeout, a client gone), it gives
/// them back.
pub(crate) struct Waiter {
    quota: Arc<Quota>,
    grant: Grant,
    wait: Duration,
    held: [Held; 2],
    done: bool,
}

impl Waiter {
    /// Waits for the slot; the request may then be called.
    pub(crate) async fn wait(mut self) -> Grant {
        tokio::time::sleep(self.wait).await;
        self.done = true;
        self.quota.arrived(&self.held);
        self.grant
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if !self.done {
            self.quota.release(&self.held, self.grant.shared);
        }
    }
}

/// One limit: its Redis key, its lease and its local fallback.
#[derive(Debug)]
pub(crate) struct LimitState {
    key: String,
    limit: Limit,
    /// Microseconds per unit, on Redis' clock.
    interval_us: f64,
    window_us: f64,
    lease: u64,
    /// Leased units not yet spent (negative: spent beyond the lease, paid
    /// by the next refill).
    pool: AtomicI64,
    /// When the lease's leftover expires, nanoseconds since `base`.
    pool_expires: AtomicU64,
    /// This replica's share of the limit, used while Redis is unreachable;
    /// it also records shared admissions so a fall back starts from this
    /// replica's recent use.
    local: LocalGcra,
    /// Units admitted locally during an outage, charged to Redis when it
    /// is back.
    unshared: AtomicU64,
    /// Units this replica admitted over the last window, shared or not,
    /// charged again when Redis lost the shared state.
    recent: Recent,
    /// Units of requests waiting for a slot reserved ahead (shared or
    /// local), not yet in `recent`.
    pending: AtomicU64,
    /// The shared bucket's `tat` as this replica last saw it, nanoseconds
    /// since `base` (the local fallback starts from it).
    seen_tat: AtomicU64,
    /// When it was seen, nanoseconds since `base` (0: never).
    seen_at: AtomicU64,
}

impl LimitState {
    fn new(key: String, limit: Limit, lease: u64, replicas: u32, base: Instant) -> Self {
        let window_us = limit.per.as_secs_f64() * 1e6;
        let local_amount = (limit.amount / u64::from(replicas)).max(1);
        LimitState {
            key,
            limit,
            interval_us: window_us / limit.amount as f64,
            window_us,
            lease: lease.min(limit.amount),
            pool: AtomicI64::new(0),
            pool_expires: AtomicU64::new(0),
            local: LocalGcra::new(local_amount, limit.per, base),
            unshared: AtomicU64::new(0),
            recent: Recent::new(limit.per, base),
            pending: AtomicU64::new(0),
            seen_tat: AtomicU64::new(0),
            seen_at: AtomicU64::new(0),
        }
    }

    /// Takes `units` from the lease if it holds them and has not expired.
    fn try_take(&self, units: u64, now: u64) -> bool {
        if units == 0 {
            return true;
        }
        if self.pool_expires.load(Ordering::Acquire) <= now {
            return false;
        }
        let units = units as i64;
        self.pool
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                (p >= units).then_some(p - units)
            })
            .is_ok()
    }

    fn give_back(&self, units: u64) {
        if units > 0 {
            self.pool.fetch_add(units as i64, Ordering::AcqRel);
        }
    }

    /// The lease's usable units now; an expired leftover is dropped (a debt
    /// is kept).
    fn available(&self, now: u64) -> i64 {
        if self.pool_expires.load(Ordering::Acquire) <= now {
            let _ = self
                .pool
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                    (p > 0).then_some(0)
                });
        }
        self.pool.load(Ordering::Acquire)
    }

    /// The script's arguments for a request of `cost` units: the least it
    /// must grant and the most it should.
    fn ask(&self, cost: u64, now: u64) -> (u64, u64) {
        if cost == 0 {
            return (0, 0);
        }
        let have = self.available(now);
        let need = (cost as i64 - have).max(0) as u64;
        if need == 0 {
            // Raced with a refund: the lease holds it; take nothing.
            return (0, 0);
        }
        (need, need.max(self.lease))
    }

    /// Credits a grant and spends `cost` of it.
    fn credit(&self, grant: u64, cost: u64, now: u64, ttl: u64) {
        if grant > 0 {
            self.pool_expires
                .store(now.saturating_add(ttl), Ordering::Release);
        }
        self.pool
            .fetch_add(grant as i64 - cost as i64, Ordering::AcqRel);
        self.local.record(cost);
    }

    /// Notes the shared bucket's backlog (`tat - now` on Redis' clock, in
    /// microseconds) answered at `now`.
    fn saw(&self, backlog_us: i64, now: u64) {
        let backlog = u64::try_from(backlog_us).unwrap_or(0).saturating_mul(1_000);
        self.seen_tat
            .store(now.saturating_add(backlog), Ordering::Release);
        self.seen_at.store(now.max(1), Ordering::Release);
    }

    /// Redis stopped answering at `now`: the local bucket starts from the
    /// shared one as last seen (this replica's share of its room, nothing
    /// while the slots reserved in it come), or empty when that is older
    /// than [`SEEN_FRESH`] (a replica that never reached Redis keeps its
    /// full local share); never with more room than this replica's own
    /// recent use leaves it.
    fn fall_back(&self, now: u64) {
        let seen_at = self.seen_at.load(Ordering::Acquire);
        let fresh = u64::try_from(SEEN_FRESH.as_nanos()).unwrap_or(u64::MAX);
        if seen_at == 0 {
            // Never reached Redis (started while it was down): this
            // replica's own share, as a local limiter would have it.
            return;
        }
        if now.saturating_sub(seen_at) <= fresh {
            self.local.hold_until(self.seen_tat.load(Ordering::Acquire));
        } else {
            self.local.hold_until(self.local.empty_now());
        }
    }

    /// What to charge a Redis that lost the shared state: what this
    /// replica let through over the last window, the slots it reserved
    /// ahead (their requests still to come) and the lease it still holds
    /// (granted by the Redis that lost it), so that the bucket's `tat`
    /// ends where the replicas' admissions put it (at most the whole limit
    /// plus what is reserved ahead). The lease and the local debt are
    /// emptied.
    fn to_charge_again(&self) -> u64 {
        let held = self.pool.swap(0, Ordering::AcqRel).max(0) as u64;
        self.unshared.store(0, Ordering::Release);
        let ahead = self.pending.load(Ordering::Acquire);
        self.recent
            .sum()
            .saturating_add(held)
            .min(self.limit.amount)
            .saturating_add(ahead)
    }
}

/// How old a look at the shared bucket may be for the local fallback to
/// start from it; older, the local bucket starts empty.
const SEEN_FRESH: Duration = Duration::from_secs(1);

/// A shared quota: what every service built by one layer shares.
#[derive(Debug)]
pub(crate) struct Quota {
    pub(crate) config: SharedQuotaConfig,
    requests: Option<LimitState>,
    tokens: Option<LimitState>,
    /// One refill at a time per replica when leasing, so a replica holds
    /// at most one lease per limit.
    refill: tokio::sync::Mutex<()>,
    leasing: bool,
    /// False while Redis is unreachable.
    shared: AtomicBool,
    /// Redis answered a probe and was charged; the next probe shares
    /// again (so every replica has charged it by then).
    charged: AtomicBool,
    /// The key whose value changes when Redis loses the quota's state.
    epoch_key: String,
    /// The epoch this replica saw last (0: none yet).
    epoch: AtomicU64,
    base: Instant,
    pub(crate) stats: Stats,
}

/// Counts for the handle.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) redis_decisions: AtomicU64,
    pub(crate) leased: AtomicU64,
    pub(crate) fallbacks: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) waited: AtomicU64,
    pub(crate) outages: AtomicU64,
    pub(crate) charged_again: AtomicU64,
}

impl Quota {
    pub(crate) fn new(config: SharedQuotaConfig) -> Self {
        let base = Instant::now();
        // `{name}` is a hash tag: both keys live in one Redis Cluster slot.
        let key = |what: &str| format!("{}:quota:{{{}}}:{what}", config.prefix, config.name);
        let requests = config.requests.map(|l| {
            LimitState::new(
                key("requests"),
                l,
                config.lease_requests,
                config.replicas,
                base,
            )
        });
        let tokens = config
            .tokens
            .map(|l| LimitState::new(key("tokens"), l, config.lease_tokens, config.replicas, base));
        let leasing = requests.as_ref().is_some_and(|l| l.lease > 0)
            || tokens.as_ref().is_some_and(|l| l.lease > 0);
        metrics::gauge!(names::SHARED, "kind" => "quota", "name" => config.name.to_string())
            .set(1.0);
        let epoch_key = key("epoch");
        Quota {
            config,
            requests,
            tokens,
            refill: tokio::sync::Mutex::new(()),
            leasing,
            shared: AtomicBool::new(true),
            charged: AtomicBool::new(false),
            epoch_key,
            epoch: AtomicU64::new(0),
            base,
            stats: Stats::default(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn is_shared(&self) -> bool {
        self.shared.load(Ordering::Acquire)
    }

    /// The tokens a request reserves: its prompt estimate plus its output
    /// cap, at most the whole limit.
    pub(crate) fn estimate(&self, request: &impl Call) -> u64 {
        match &self.tokens {
            None => 0,
            Some(t) => {
                let output = request
                    .max_output_tokens()
                    .unwrap_or(self.config.default_output_tokens);
                (request.estimated_input_tokens() + output).min(t.limit.amount)
            }
        }
    }

    fn costs(&self, tokens: u64) -> [(Option<&LimitState>, u64); 2] {
        [(self.requests.as_ref(), 1), (self.tokens.as_ref(), tokens)]
    }

    /// A decision that needs no Redis round trip: from the lease, or local
    /// while Redis is unreachable. `None`: ask Redis.
    pub(crate) fn decide_now(
        self: &Arc<Self>,
        tokens: u64,
        patience: Patience,
    ) -> Option<Result<Admission, LlmError>> {
        if !self.is_shared() {
            return Some(self.decide_locally(tokens, patience));
        }
        if self.requests.is_none() && self.tokens.is_none() {
            return Some(Ok(Admission::Now(Grant {
                tokens,
                shared: true,
            })));
        }
        self.take_leased(tokens)
            .map(|grant| Ok(Admission::Now(grant)))
    }

    /// An admission after `wait` (none: now).
    fn admit(self: &Arc<Self>, grant: Grant, wait: Duration, held: [Held; 2]) -> Admission {
        // Counted by when the request is let through: a slot reserved
        // ahead is pending until then.
        for (limit, held) in [&self.requests, &self.tokens].into_iter().zip(&held) {
            if let Some(limit) = limit {
                if wait.is_zero() {
                    limit.recent.add(held.cost);
                } else {
                    limit.pending.fetch_add(held.cost, Ordering::AcqRel);
                }
            }
        }
        if wait.is_zero() {
            return Admission::Now(grant);
        }
        self.stats.waited.fetch_add(1, Ordering::Relaxed);
        Admission::Later(Waiter {
            quota: Arc::clone(self),
            grant,
            wait,
            held,
            done: false,
        })
    }

    /// A waiter's slot came: its units move from pending to admitted.
    fn arrived(&self, held: &[Held; 2]) {
        for (limit, held) in [&self.requests, &self.tokens].into_iter().zip(held) {
            if let Some(limit) = limit {
                limit.pending.fetch_sub(held.cost, Ordering::AcqRel);
                limit.recent.add(held.cost);
            }
        }
    }

    /// Gives back what a request that stopped waiting took.
    fn release(self: &Arc<Self>, held: &[Held; 2], shared: bool) {
        for (limit, held) in [&self.requests, &self.tokens].into_iter().zip(held) {
            let Some(limit) = limit else {
                continue;
            };
            if held.cost == 0 {
                continue;
            }
            limit.local.give_back(held.cost);
            limit.pending.fetch_sub(held.cost, Ordering::AcqRel);
            if shared {
                limit.give_back(held.lease);
                if held.redis > 0 {
                    self.adjust_later(limit, -(held.redis as f64));
                }
            } else {
                let _ = limit
                    .unshared
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                        Some(u.saturating_sub(held.cost))
                    });
            }
        }
    }

    fn take_leased(&self, tokens: u64) -> Option<Grant> {
        if !self.leasing {
            return None;
        }
        let now = self.now();
        let mut taken: [Option<(&LimitState, u64)>; 2] = [None, None];
        for (i, (limit, cost)) in self.costs(tokens).into_iter().enumerate() {
            if let Some(limit) = limit {
                if !limit.try_take(cost, now) {
                    for (l, c) in taken.into_iter().flatten() {
                        l.give_back(c);
                    }
                    return None;
                }
                taken[i] = Some((limit, cost));
            }
        }
        for (l, c) in taken.into_iter().flatten() {
            l.local.record(c);
            l.recent.add(c);
        }
        self.stats.leased.fetch_add(1, Ordering::Relaxed);
        Some(Grant {
            tokens,
            shared: true,
        })
    }

    /// The shared decision, within the timeout (local when Redis fails),
    /// then the wait for the slot it reserved, if any.
    pub(crate) async fn decide(
        self: Arc<Self>,
        tokens: u64,
        patience: Patience,
    ) -> Result<Grant, LlmError> {
        let outcome =
            tokio::time::timeout(self.config.timeout, self.decide_shared(tokens, patience)).await;
        let admission = match outcome {
            Ok(Ok(decision)) => decision,
            Ok(Err(error)) => {
                self.lost(&error.to_string());
                self.decide_locally(tokens, patience)
            }
            Err(_) => {
                self.lost("no answer within the timeout");
                self.decide_locally(tokens, patience)
            }
        }?;
        match admission {
            Admission::Now(grant) => Ok(grant),
            Admission::Later(waiter) => Ok(waiter.wait().await),
        }
    }

    async fn decide_shared(
        self: &Arc<Self>,
        tokens: u64,
        patience: Patience,
    ) -> Result<Result<Admission, LlmError>, redis::RedisError> {
        let _guard = if self.leasing {
            let guard = self.refill.lock().await;
            // Another request may have refilled the lease meanwhile.
            if let Some(grant) = self.take_leased(tokens) {
                return Ok(Ok(Admission::Now(grant)));
            }
            Some(guard)
        } else {
            None
        };
        let now = self.now();
        let mut invocation = scripts::TAKE.prepare_invoke();
        let mut asked = Vec::with_capacity(2);
        for (i, (limit, cost)) in self.costs(tokens).into_iter().enumerate() {
            if let Some(limit) = limit {
                let (min, want) = limit.ask(cost, now);
                invocation
                    .key(&limit.key)
                    .arg(limit.interval_us)
                    .arg(limit.window_us)
                    .arg(min)
                    .arg(want);
                asked.push((i, limit, cost));
            }
        }
        invocation.key(&self.epoch_key);
        let patience_us = u64::try_from(patience.allowed().as_micros()).unwrap_or(u64::MAX);
        invocation.arg(patience_us);
        let mut conn: ConnectionManager = self.config.redis.manager.clone();
        type Reply = (i64, u64, u64, u64, String, i64, i64);
        let (allowed, first, second, wait_us, epoch, backlog_1, backlog_2): Reply =
            invocation.invoke_async(&mut conn).await?;
        self.stats.redis_decisions.fetch_add(1, Ordering::Relaxed);
        let answered = self.now();
        for ((_, limit, _), backlog) in asked.iter().zip([backlog_1, backlog_2]) {
            limit.saw(backlog, answered);
        }
        // Before this grant is counted: what Redis lost is charged again.
        self.check_epoch(&epoch);
        let wait = Duration::from_micros(wait_us);
        if allowed == 1 {
            let ttl = u64::try_from(self.config.lease_ttl.as_nanos()).unwrap_or(u64::MAX);
            let mut held = [Held::default(); 2];
            for ((i, limit, cost), grant) in asked.into_iter().zip([first, second]) {
                limit.credit(grant, cost, now, ttl);
                held[i] = Held {
                    cost,
                    redis: grant,
                    lease: cost.saturating_sub(grant),
                };
            }
            let grant = Grant {
                tokens,
                shared: true,
            };
            Ok(Ok(self.admit(grant, wait, held)))
        } else {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            Ok(Err(self.refusal(wait, "shared", patience)))
        }
    }

    fn refusal(&self, wait: Duration, how: &str, patience: Patience) -> LlmError {
        LlmError::new(
            ErrorKind::RateLimited,
            format!(
                "{how} quota of {} is used up; room in {} ms, but {}",
                self.config.name,
                wait.as_millis(),
                patience.why(wait)
            ),
        )
        .with_retry_after(wait)
        .with_should_retry(false)
        // Not the provider's 429: a breaker above ignores it.
        .with_source(staunch_core::QuotaRefusal)
    }

    /// Local decision at this replica's share of the limits: now, after a
    /// wait that fits `patience` (its slot reserved), or refused.
    fn decide_locally(
        self: &Arc<Self>,
        tokens: u64,
        patience: Patience,
    ) -> Result<Admission, LlmError> {
        self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(names::FALLBACKS, "kind" => "quota", "name" => self.config.name.to_string())
            .increment(1);
        let allowed = patience.allowed();
        let mut taken: Vec<(&LimitState, u64)> = Vec::with_capacity(2);
        let mut held = [Held::default(); 2];
        let mut wait = Duration::ZERO;
        for (i, (limit, cost)) in self.costs(tokens).into_iter().enumerate() {
            if let Some(limit) = limit {
                match limit.local.take_within(cost, allowed) {
                    Ok(until) => wait = wait.max(until),
                    Err(until) => {
                        for (l, c) in taken {
                            l.local.give_back(c);
                        }
                        self.stats.refused.fetch_add(1, Ordering::Relaxed);
                        return Err(self.refusal(until, "local fallback", patience));
                    }
                }
                taken.push((limit, cost));
                held[i] = Held {
                    cost,
                    redis: 0,
                    lease: 0,
                };
            }
        }
        for (l, c) in taken {
            l.unshared.fetch_add(c, Ordering::Relaxed);
        }
        let grant = Grant {
            tokens,
            shared: false,
        };
        Ok(self.admit(grant, wait, held))
    }

    /// Redis failed: decide locally, each limit starting from the shared
    /// bucket as last seen, until the background probe finds Redis back.
    fn lost(self: &Arc<Self>, why: &str) {
        self.charged.store(false, Ordering::Release);
        if self.shared.swap(false, Ordering::AcqRel) {
            let now = self.now();
            for limit in [&self.requests, &self.tokens].into_iter().flatten() {
                limit.fall_back(now);
            }
            self.spawn_probe();
            self.stats.outages.fetch_add(1, Ordering::Relaxed);
            metrics::gauge!(names::SHARED, "kind" => "quota", "name" => self.config.name.to_string())
                .set(0.0);
            tracing::warn!(
                target: "staunch::redis",
                quota = &*self.config.name,
                error = why,
                replicas = self.config.replicas,
                "Redis is unreachable or slow: quota decisions are local (limit / replicas) until it answers again"
            );
        }
    }

    /// Tries Redis every `probe_interval` in the background until it
    /// answers and sharing resumes, whether requests come or not; stops
    /// when the quota is dropped.
    fn spawn_probe(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let quota: Weak<Quota> = Arc::downgrade(self);
        let interval = self.config.probe_interval.max(Duration::from_millis(1));
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(quota) = quota.upgrade() else {
                    return;
                };
                if quota.is_shared() || quota.resume().await {
                    return;
                }
            }
        });
    }

    /// The longest a probe, or the charges that follow it, may take.
    fn probe_timeout(&self) -> Duration {
        self.config.timeout.max(Duration::from_millis(250))
    }

    /// Redis answers again: charge it what was admitted locally meanwhile
    /// (at most one local bucket per limit) or, when it lost the quota's
    /// state, everything this replica admitted over the last window; the
    /// next time it answers, charge what was admitted since and share
    /// again. False while decisions stay local.
    async fn resume(&self) -> bool {
        let mut conn = self.config.redis.manager.clone();
        let epoch = tokio::time::timeout(
            self.probe_timeout(),
            scripts::EPOCH
                .key(&self.epoch_key)
                .invoke_async::<String>(&mut conn),
        )
        .await;
        let Ok(Ok(epoch)) = epoch else {
            return false;
        };
        let epoch = parse_epoch(&epoch);
        let lost_state = self.epoch.swap(epoch, Ordering::AcqRel) != epoch;
        for limit in [&self.requests, &self.tokens].into_iter().flatten() {
            let charge = if lost_state {
                limit.to_charge_again()
            } else {
                let local_amount = (limit.limit.amount / u64::from(self.config.replicas)).max(1);
                limit.unshared.swap(0, Ordering::AcqRel).min(local_amount)
            };
            if charge == 0 {
                continue;
            }
            let adjusted = tokio::time::timeout(
                self.probe_timeout(),
                scripts::ADJUST
                    .key(&limit.key)
                    .arg(limit.interval_us)
                    .arg(charge as f64)
                    .invoke_async::<i64>(&mut conn),
            )
            .await;
            if !matches!(adjusted, Ok(Ok(_))) {
                // Not charged: keep it for the next probe.
                limit.unshared.fetch_add(charge, Ordering::AcqRel);
                if lost_state {
                    self.epoch.store(0, Ordering::Release);
                }
                return false;
            }
        }
        if lost_state {
            self.stats.charged_again.fetch_add(1, Ordering::Relaxed);
        }
        // Share at the next probe: by then every replica (probing as
        // often) has charged what it admitted meanwhile, so none takes the
        // room the others' charges will fill.
        if !self.charged.swap(true, Ordering::AcqRel) {
            return false;
        }
        if !self.shared.swap(true, Ordering::AcqRel) {
            metrics::gauge!(names::SHARED, "kind" => "quota", "name" => self.config.name.to_string())
                .set(1.0);
            tracing::info!(
                target: "staunch::redis",
                quota = &*self.config.name,
                charged_again = lost_state,
                "Redis answers again: quota decisions are shared"
            );
        }
        true
    }

    /// A shared decision saw the epoch `epoch`: when it is not the one
    /// this replica saw last, Redis lost the quota's state while this
    /// replica was sharing (a restart between two decisions), and what it
    /// admitted over the last window is charged again, in the background.
    fn check_epoch(self: &Arc<Self>, epoch: &str) {
        let epoch = parse_epoch(epoch);
        let seen = self.epoch.swap(epoch, Ordering::AcqRel);
        if seen == epoch || seen == 0 {
            // The same state, or the first look (nothing admitted yet).
            return;
        }
        self.stats.charged_again.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            target: "staunch::redis",
            quota = &*self.config.name,
            "Redis lost the quota's state: this replica charges again what it admitted over the last window"
        );
        for limit in [&self.requests, &self.tokens].into_iter().flatten() {
            let charge = limit.to_charge_again();
            if charge > 0 {
                self.adjust_later(limit, charge as f64);
            }
        }
    }

    /// The answer came: settle the token reservation with what was used.
    /// Unused tokens go back to the lease (up to its size) and the rest to
    /// Redis; tokens used beyond the reservation are a debt the next
    /// refill pays.
    pub(crate) fn settle(self: &Arc<Self>, grant: Grant, used: u64) {
        let Some(limit) = &self.tokens else {
            return;
        };
        let reserved = grant.tokens;
        if used == reserved {
            return;
        }
        if used < reserved {
            limit.recent.sub(reserved - used);
        } else {
            limit.recent.add(used - reserved);
        }
        if !grant.shared {
            if used < reserved {
                limit.local.give_back(reserved - used);
                let _ = limit
                    .unshared
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                        Some(u.saturating_sub(reserved - used))
                    });
            } else {
                limit.local.record(used - reserved);
                limit.unshared.fetch_add(used - reserved, Ordering::AcqRel);
            }
            return;
        }
        if used > reserved {
            limit.local.record(used - reserved);
            if self.leasing {
                limit
                    .pool
                    .fetch_sub((used - reserved) as i64, Ordering::AcqRel);
            } else {
                self.adjust_later(limit, used as f64 - reserved as f64);
            }
            return;
        }
        let unused = reserved - used;
        limit.local.give_back(unused);
        let mut to_redis = unused;
        if limit.lease > 0 && limit.pool_expires.load(Ordering::Acquire) > self.now() {
            let room = (limit.lease as i64 - limit.pool.load(Ordering::Acquire)).max(0) as u64;
            let keep = room.min(unused);
            limit.give_back(keep);
            to_redis -= keep;
        }
        if to_redis > 0 {
            self.adjust_later(limit, -(to_redis as f64));
        }
    }

    /// Moves one shared limit by `units` in the background.
    fn adjust_later(self: &Arc<Self>, limit: &LimitState, units: f64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.is_shared() {
            return;
        }
        let key = limit.key.clone();
        let interval = limit.interval_us;
        let timeout = self.config.timeout;
        let mut conn = self.config.redis.manager.clone();
        runtime.spawn(async move {
            let _ = tokio::time::timeout(
                timeout,
                scripts::ADJUST
                    .key(key)
                    .arg(interval)
                    .arg(units)
                    .invoke_async::<i64>(&mut conn),
            )
            .await;
        });
    }
}

/// An epoch as Redis keeps it (microseconds, digits only); anything else
/// counts as an epoch of its own, never as none.
fn parse_epoch(epoch: &str) -> u64 {
    epoch.trim().parse::<u64>().unwrap_or(u64::MAX).max(1)
}
