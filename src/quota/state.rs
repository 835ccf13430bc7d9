//! The shared state of one quota: its limits, what the provider said, the
//! pause, and the admission of a request.

use super::config::{QuotaConfig, Resource};
use super::gcra::Gcra;
use super::lease::{self, LeaseSize};
use super::observed::{Observed, Remaining};
use staunch_core::{Deadline, ErrorKind, LlmError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// At most one limit per resource and period (minute, day).
const MAX_LIMITS: usize = 4;

#[derive(Debug)]
struct Limit {
    gcra: Gcra,
    resource: Resource,
}

impl Limit {
    fn cost(&self, tokens: u64) -> u64 {
        match self.resource {
            Resource::Requests => 1,
            Resource::Tokens => tokens,
        }
    }
}

/// What the provider said is left in one of its buckets, until `until`
/// (nanoseconds since the epoch; 0 = nothing said). A request admitted
/// before `until` takes its cost from `left`; one that finds too little
/// waits for `until`.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Gate {
    until: AtomicU64,
    left: AtomicU64,
}

impl Gate {
    fn take(&self, cost: u64) -> bool {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(cost)
            })
            .is_ok()
    }

    /// Gives back `cost` taken under the observation that ends at `until`
    /// (nothing if a newer observation replaced it).
    fn give(&self, cost: u64, until: u64) {
        if self.until.load(Ordering::Acquire) == until {
            let _ = self
                .left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                    Some(left.saturating_add(cost))
                });
        }
    }

    fn take_more(&self, cost: u64, until: u64) {
        if self.until.load(Ordering::Acquire) == until {
            let _ = self
                .left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                    Some(left.saturating_sub(cost))
                });
        }
    }
}

#[repr(align(128))]
#[derive(Debug, Default)]
struct Pause(AtomicU64);

/// What the provider said must leave at least this many units (per
/// lease) for a thread to admit from its stock without asking the gate.
const GATE_MARGIN_LEASES: u64 = 4;

pub(crate) struct Shared {
    pub(crate) config: QuotaConfig,
    /// Tells this quota's per-thread stocks from another's.
    id: u64,
    /// How much a thread leases at once; `None`: every admission is exact.
    lease: Option<LeaseSize>,
    epoch: Instant,
    limits: Vec<Limit>,
    /// Some limit counts tokens.
    tokens_limited: bool,
    /// Admissions wait until this instant (a 429's `Retry-After`).
    pause: Pause,
    /// What the provider said: requests, tokens.
    gates: [Gate; 2],
}

/// A request's place in the quota: what it reserved and where.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    pub(crate) tokens: u64,
    /// For each gate the request took from, the observation's end.
    gates: [Option<u64>; 2],
    /// Each limit's TAT before and after this reservation, to undo it
    /// exactly while nobody reserved after it.
    before: [u64; MAX_LIMITS],
    after: [u64; MAX_LIMITS],
    /// When it was admitted (a lower bound for refunds' "now").
    at: u64,
}

/// Why a request was not admitted.
pub(crate) enum Refusal {
    /// It needs more tokens than a whole bucket holds.
    TooLarge(LlmError),
    /// Room comes later than the request may wait.
    Wait {
        error: LlmError,
        reason: &'static str,
    },
}

/// What held a request back.
#[derive(Clone, Copy)]
enum Holder {
    Limit(usize),
    Pause,
    Provider(usize),
}

fn resource_name(index: usize) -> &'static str {
    if index == 0 { "requests" } else { "tokens" }
}

impl Shared {
    pub(crate) fn new(config: QuotaConfig) -> Self {
        let limits: Vec<Limit> = config
            .limits
            .iter()
            .take(MAX_LIMITS)
            .map(|spec| Limit {
                gcra: Gcra::new(spec.amount, spec.period),
                resource: spec.resource,
            })
            .collect();
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let lease = lease_size(&limits);
        Shared {
            tokens_limited: config.limits.iter().any(|l| l.resource == Resource::Tokens),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            lease,
            config,
            epoch: Instant::now(),
            limits,
            pause: Pause::default(),
            gates: [Gate::default(), Gate::default()],
        }
    }

    /// Nanoseconds since the epoch (at least 1, so 0 can mean "never").
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    fn instant(&self, nanos: u64) -> Instant {
        let since = Duration::from_nanos(nanos.saturating_sub(1));
        self.epoch
            .checked_add(since)
            .unwrap_or_else(|| self.epoch + Duration::from_secs(86_400 * 365 * 30))
    }

    /// Whether requests' tokens matter: a token limit is set, or the
    /// provider has said how many tokens are left.
    pub(crate) fn counts_tokens(&self) -> bool {
        self.tokens_limited || self.gates[1].until.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn now(&self) -> u64 {
        self.nanos(Instant::now())
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn lease_size(&self) -> LeaseSize {
        self.lease.unwrap_or_default()
    }

    /// The lease size, when a thread may admit from its stock now: leasing
    /// is on, no pause is set, and the provider said nothing, or left
    /// plenty. Loads only (no clock, no write).
    pub(crate) fn leasable(&self) -> Option<LeaseSize> {
        let size = self.lease?;
        if self.pause.0.load(Ordering::Relaxed) != 0 {
            return None;
        }
        for (gate, per_lease) in self.gates.iter().zip([size.requests, size.tokens]) {
            if gate.until.load(Ordering::Relaxed) != 0
                && gate.left.load(Ordering::Relaxed)
                    < per_lease.max(1).saturating_mul(GATE_MARGIN_LEASES)
            {
                return None;
            }
        }
        Some(size)
    }

    /// Takes `requests` and `tokens` from every limit at once if all of
    /// them have that room now; never waits.
    pub(crate) fn try_lease(&self, requests: u64, tokens: u64) -> bool {
        let now = self.now();
        let cost = |limit: &Limit| match limit.resource {
            Resource::Requests => requests,
            Resource::Tokens => tokens,
        };
        let mut snapshot = [0u64; MAX_LIMITS];
        let mut after = [0u64; MAX_LIMITS];
        loop {
            for (i, limit) in self.limits.iter().enumerate() {
                let c = cost(limit);
                snapshot[i] = limit.gcra.load();
                if c > 0 && (!limit.gcra.fits(c) || limit.gcra.earliest(snapshot[i], c) > now) {
                    return false;
                }
            }
            let mut committed = 0;
            for (i, limit) in self.limits.iter().enumerate() {
                after[i] = limit.gcra.after(snapshot[i], now, cost(limit));
                if !limit.gcra.swap(snapshot[i], after[i]) {
                    break;
                }
                committed += 1;
            }
            if committed == self.limits.len() {
                return true;
            }
            for (i, limit) in self.limits.iter().enumerate().take(committed) {
                if !limit.gcra.swap(after[i], snapshot[i]) {
                    limit.gcra.refund(cost(limit), now);
                }
            }
        }
    }

    /// Gives `requests` and `tokens` taken ahead back to every limit.
    pub(crate) fn give_back(&self, requests: u64, tokens: u64) {
        let now = self.now();
        for limit in &self.limits {
            let units = match limit.resource {
                Resource::Requests => requests,
                Resource::Tokens => tokens,
            };
            if units > 0 {
                limit.gcra.refund(units, now);
            }
        }
    }

    /// Takes `tokens` billed beyond what was reserved from every token
    /// limit, even past empty.
    pub(crate) fn charge_tokens(&self, tokens: u64) {
        let now = self.now();
        for limit in self
            .limits
            .iter()
            .filter(|l| l.resource == Resource::Tokens)
        {
            limit.gcra.charge(tokens, now);
        }
    }

    /// Forgets a pause and what the provider said once they are over, so
    /// that admissions may lease again.
    fn clear_expired(&self, now: u64) {
        let pause = self.pause.0.load(Ordering::Relaxed);
        if pause != 0 && pause <= now {
            let _ = self
                .pause
                .0
                .compare_exchange(pause, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
        for gate in &self.gates {
            let until = gate.until.load(Ordering::Relaxed);
            if until != 0 && until <= now {
                let _ = gate
                    .until
                    .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }

    /// Admits a request reserving `tokens`: at once (`Ok(None)`), at a
    /// later instant it must wait for (`Ok(Some(instant))`, its slot
    /// already reserved, so later requests queue behind it), or not at all.
    pub(crate) fn reserve(
        &self,
        tokens: u64,
        deadline: impl Fn() -> Option<Deadline>,
    ) -> Result<(Ticket, Option<Instant>), Refusal> {
        let now = self.now();
        self.clear_expired(now);
        let mut snapshot = [0u64; MAX_LIMITS];
        let mut after = [0u64; MAX_LIMITS];
        loop {
            let mut at = now;
            let mut holder = None;
            let pause = self.pause.0.load(Ordering::Acquire);
            if pause > at {
                at = pause;
                holder = Some(Holder::Pause);
            }
            for (i, limit) in self.limits.iter().enumerate() {
                let cost = limit.cost(tokens);
                if !limit.gcra.fits(cost) {
                    return Err(Refusal::TooLarge(self.too_large(tokens, limit)));
                }
                snapshot[i] = limit.gcra.load();
                let earliest = limit.gcra.earliest(snapshot[i], cost);
                if earliest > at {
                    at = earliest;
                    holder = Some(Holder::Limit(i));
                }
            }
            let costs = [1, tokens];
            for (g, gate) in self.gates.iter().enumerate() {
                let until = gate.until.load(Ordering::Acquire);
                if until > at && gate.left.load(Ordering::Acquire) < costs[g] {
                    at = until;
                    holder = Some(Holder::Provider(g));
                }
            }
            if let Some(holder) = holder.filter(|_| at > now) {
                let wait = Duration::from_nanos(at - now);
                let too_long = wait > self.config.max_wait;
                let past_deadline = deadline().is_some_and(|d| d.would_pass(wait));
                if too_long || past_deadline {
                    return Err(self.refuse(wait, holder, tokens, past_deadline && !too_long));
                }
            }

            // Commit every limit at `at`, or none.
            let mut committed = 0;
            for (i, limit) in self.limits.iter().enumerate() {
                after[i] = limit.gcra.after(snapshot[i], at, limit.cost(tokens));
                if !limit.gcra.swap(snapshot[i], after[i]) {
                    break;
                }
                committed += 1;
            }
            if committed < self.limits.len() {
                self.undo(&snapshot, &after, committed, tokens, now);
                continue;
            }
            let mut ticket = Ticket {
                tokens,
                gates: [None; 2],
                before: snapshot,
                after,
                at,
            };
            let mut lost_race = false;
            for (g, gate) in self.gates.iter().enumerate() {
                let until = gate.until.load(Ordering::Acquire);
                if until > at {
                    if gate.take(costs[g]) {
                        ticket.gates[g] = Some(until);
                    } else {
                        lost_race = true;
                        break;
                    }
                }
            }
            if lost_race {
                self.undo(&snapshot, &after, committed, tokens, now);
                self.give_gates(&ticket, 1, tokens);
                continue;
            }
            let wait_until = (at > now).then(|| self.instant(at));
            return Ok((ticket, wait_until));
        }
    }

    /// Takes back the first `committed` limits of an admission that lost a
    /// race: exactly, if nobody moved them since, else by a refund.
    fn undo(&self, snapshot: &[u64], after: &[u64], committed: usize, tokens: u64, now: u64) {
        for (i, limit) in self.limits.iter().enumerate().take(committed) {
            if !limit.gcra.swap(after[i], snapshot[i]) {
                limit.gcra.refund(limit.cost(tokens), now);
            }
        }
    }

    fn give_gates(&self, ticket: &Ticket, requests: u64, tokens: u64) {
        for (g, cost) in [requests, tokens].into_iter().enumerate() {
            if let Some(until) = ticket.gates[g] {
                self.gates[g].give(cost, until);
            }
        }
    }

    /// Returns everything `ticket` reserved: a waiter that gave up. While
    /// nobody reserved after it, each limit goes back exactly where it was;
    /// else its cost is refunded (the requests queued behind keep their
    /// slots, and the next arrival may take the one freed).
    pub(crate) fn refund(&self, ticket: &Ticket) {
        let now = self.now();
        self.undo(
            &ticket.before,
            &ticket.after,
            self.limits.len(),
            ticket.tokens,
            now,
        );
        self.give_gates(ticket, 1, ticket.tokens);
    }

    /// Reconciles `ticket`'s token reservation with the `billed` tokens.
    pub(crate) fn settle(&self, ticket: &Ticket, billed: u64) {
        if billed == ticket.tokens || (!self.tokens_limited && ticket.gates[1].is_none()) {
            return;
        }
        let tokens = self
            .limits
            .iter()
            .filter(|l| l.resource == Resource::Tokens);
        if billed < ticket.tokens {
            // A refund needs no fresh clock: a bucket's state before any
            // past instant is as good as before now.
            let back = ticket.tokens - billed;
            for limit in tokens {
                limit.gcra.refund(back, ticket.at);
            }
            self.give_gates(ticket, 0, back);
        } else {
            let now = self.now();
            let more = billed - ticket.tokens;
            for limit in tokens {
                limit.gcra.charge(more, now);
            }
            if let Some(until) = ticket.gates[1] {
                self.gates[1].take_more(more, until);
            }
        }
    }

    /// Pauses admissions until `until` (never shortens a pause).
    pub(crate) fn pause_until(&self, until: Instant) {
        self.pause.0.fetch_max(self.nanos(until), Ordering::AcqRel);
    }

    pub(crate) fn paused_until(&self) -> Option<Instant> {
        let pause = self.pause.0.load(Ordering::Acquire);
        (pause > self.now()).then(|| self.instant(pause))
    }

    /// Takes in what the provider said; returns the reasons it paused
    /// admissions for (for the metrics).
    pub(crate) fn observe(&self, seen: &Observed) -> (bool, bool) {
        let now = self.now();
        let mut exhausted = false;
        for (gate, remaining) in self.gates.iter().zip([seen.requests, seen.tokens]) {
            if let Some(Remaining {
                remaining,
                resets_at: Some(reset),
                ..
            }) = remaining
            {
                let until = self.nanos(reset);
                if until > now {
                    // `left` first: a reader that sees the new end sees
                    // its count.
                    gate.left.store(remaining, Ordering::Release);
                    gate.until.store(until, Ordering::Release);
                    exhausted |= remaining == 0;
                }
            }
        }
        let mut retry = false;
        if let Some(wait) = seen.retry_after.filter(|w| !w.is_zero())
            && let Some(until) = Instant::now().checked_add(wait)
        {
            self.pause_until(until);
            retry = true;
        }
        (exhausted, retry)
    }

    /// Units free now for `resource`: the least over its limits and what
    /// the provider said is left; `None` when nothing limits it.
    pub(crate) fn available(&self, resource: Resource) -> Option<u64> {
        let now = self.now();
        let gate = &self.gates[match resource {
            Resource::Requests => 0,
            Resource::Tokens => 1,
        }];
        let said =
            (gate.until.load(Ordering::Acquire) > now).then(|| gate.left.load(Ordering::Acquire));
        // Permits this thread took ahead are room for its next requests.
        let (requests, tokens) = lease::held(self);
        let held = match resource {
            Resource::Requests => requests,
            Resource::Tokens => tokens,
        };
        self.limits
            .iter()
            .filter(|l| l.resource == resource)
            .map(|l| l.gcra.available(now).saturating_add(held))
            .chain(said)
            .min()
    }

    fn too_large(&self, tokens: u64, limit: &Limit) -> LlmError {
        LlmError::new(
            ErrorKind::RequestTooLarge,
            format!(
                "quota {}: the request reserves about {tokens} tokens (prompt estimate plus max_tokens), more than the whole limit of {} tokens",
                self.config.name,
                limit.gcra.capacity()
            ),
        )
        .with_source(staunch_core::QuotaRefusal)
    }

    fn refuse(&self, wait: Duration, holder: Holder, tokens: u64, deadline: bool) -> Refusal {
        let name = &self.config.name;
        let held = match holder {
            Holder::Pause => "paused by the provider's Retry-After".to_owned(),
            Holder::Limit(i) => {
                let spec = &self.config.limits[i];
                let (what, per) = (
                    match spec.resource {
                        Resource::Requests => "requests",
                        Resource::Tokens => "tokens",
                    },
                    if spec.period.as_secs() == 60 {
                        "minute"
                    } else {
                        "day"
                    },
                );
                format!(
                    "{} {what} per {per} in use (this request: {} {what})",
                    spec.amount,
                    if spec.resource == Resource::Requests {
                        1
                    } else {
                        tokens
                    }
                )
            }
            Holder::Provider(g) => format!(
                "the provider said too few {} are left until its reset",
                resource_name(g)
            ),
        };
        let why = if deadline {
            "the wait would reach the request's deadline"
        } else {
            "the wait is longer than max_wait"
        };
        // Final for this target: a retry layer above passes it on at once,
        // and a fallback chain moves to the next target.
        let error = LlmError::new(
            ErrorKind::RateLimited,
            format!("quota {name}: {held}; room in {wait:?}, but {why}"),
        )
        .with_retry_after(wait)
        .with_should_retry(false)
        // Not the provider's 429: a breaker above ignores it.
        .with_source(staunch_core::QuotaRefusal);
        Refusal::Wait {
            error,
            reason: if deadline { "deadline" } else { "max_wait" },
        }
    }
}

/// One lease per resource: a 64th of its smallest limit, within bounds;
/// `None` when a limit is too small for leasing to stay within it, or
/// nothing is limited.
fn lease_size(limits: &[Limit]) -> Option<LeaseSize> {
    if limits.is_empty() {
        return None;
    }
    let mut size = LeaseSize::default();
    for limit in limits {
        let capacity = limit.gcra.capacity();
        if capacity < lease::MIN_CAPACITY {
            return None;
        }
        let (slot, max) = match limit.resource {
            Resource::Requests => (&mut size.requests, lease::MAX_REQUESTS),
            Resource::Tokens => (&mut size.tokens, lease::MAX_TOKENS),
        };
        let mine = (capacity / 64).min(max);
        *slot = if *slot == 0 { mine } else { (*slot).min(mine) };
    }
    Some(size)
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
