//! What a balancer knows of its deployments between calls: their load,
//! their latency, which are out. Lock-free: atomics, one cache line per
//! deployment.

use super::config::Strategy;
use super::deployment::{HeadroomSource, Room};
use crate::health::TargetHealth;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Why a deployment was taken out of the rotation by the balancer itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Ejection {
    /// It answered 401: its key is wrong.
    Authentication,
    /// It answered 403: its key may not use the model.
    PermissionDenied,
    /// It answered `insufficient_quota` (429) or 402: its account can't pay.
    QuotaExhausted,
    /// An operator took it out through the [`BalanceHandle`](super::BalanceHandle).
    Manual,
}

impl Ejection {
    /// The lower-case name, as metrics label it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Ejection::Authentication => "authentication",
            Ejection::PermissionDenied => "permission_denied",
            Ejection::QuotaExhausted => "quota_exhausted",
            Ejection::Manual => "manual",
        }
    }

    fn code(self) -> u8 {
        match self {
            Ejection::Authentication => 1,
            Ejection::PermissionDenied => 2,
            Ejection::QuotaExhausted => 3,
            Ejection::Manual => 4,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Ejection::Authentication),
            2 => Some(Ejection::PermissionDenied),
            3 => Some(Ejection::QuotaExhausted),
            4 => Some(Ejection::Manual),
            _ => None,
        }
    }
}

/// Why a deployment may not be picked now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutReason {
    /// The balancer took it out (a 401/403 or an operator), for the time
    /// given.
    Ejected(Ejection, Duration),
    /// Its health check (circuit breaker) refuses calls, for the time given
    /// (zero: half-open with its probes taken).
    CircuitOpen(Duration),
    /// Its quota has no room left.
    NoRoom,
}

impl std::fmt::Display for OutReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutReason::Ejected(why, left) => {
                write!(f, "taken out ({}) for {left:?}", why.as_str())
            }
            OutReason::CircuitOpen(left) => write!(f, "circuit open for {left:?}"),
            OutReason::NoRoom => f.write_str("no quota room"),
        }
    }
}

/// One deployment's live numbers, alone on a cache line so that calls to
/// different deployments do not contend.
#[repr(align(64))]
#[derive(Default)]
pub(super) struct Stats {
    pub(super) in_flight: AtomicU32,
    /// Peak-EWMA latency in nanoseconds (an `f64`'s bits); the default
    /// latency until the first measure.
    ewma_bits: AtomicU64,
    /// When the estimate was last updated (nanoseconds since the epoch).
    ewma_at: AtomicU64,
    /// Out until this instant (nanoseconds since the epoch); 0: in.
    out_until: AtomicU64,
    out_why: AtomicU8,
    pub(super) answered: AtomicU64,
    pub(super) failed: AtomicU64,
}

/// Everything picking reads: the static description of the deployments and
/// their live numbers. Shared by clones of the balancer and by its handle.
pub(super) struct Book {
    pub(super) name: Arc<str>,
    pub(super) names: Box<[Arc<str>]>,
    pub(super) weights: Box<[u32]>,
    pub(super) total_weight: u64,
    pub(super) health: Box<[Option<Arc<dyn TargetHealth>>]>,
    pub(super) headroom: Box<[Option<Arc<dyn HeadroomSource>>]>,
    /// True when any deployment has a health check or a headroom source.
    checks: bool,
    pub(super) stats: Box<[Stats]>,
    pub(super) strategy: Strategy,
    pub(super) eject_for: Duration,
    decay_ns: f64,
    epoch: Instant,
    rng: AtomicU64,
}

/// A bit per deployment (at most 64).
pub(super) type Mask = u64;

pub(super) const fn bit(i: usize) -> Mask {
    1 << i
}

/// SplitMix64's finaliser: a well-mixed 64-bit number from a counter.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `r` scaled into `0..n` (Lemire's multiply-shift: no division).
#[inline]
fn below(r: u64, n: u64) -> u64 {
    ((u128::from(r) * u128::from(n)) >> 64) as u64
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

pub(super) struct BookParts {
    pub(super) name: Arc<str>,
    pub(super) names: Vec<Arc<str>>,
    pub(super) weights: Vec<u32>,
    pub(super) health: Vec<Option<Arc<dyn TargetHealth>>>,
    pub(super) headroom: Vec<Option<Arc<dyn HeadroomSource>>>,
    pub(super) strategy: Strategy,
    pub(super) eject_for: Duration,
    pub(super) decay: Duration,
    pub(super) default_rtt: Duration,
    pub(super) seed: u64,
}

impl Book {
    pub(super) fn new(parts: BookParts) -> Self {
        let n = parts.names.len();
        let checks =
            parts.health.iter().any(Option::is_some) || parts.headroom.iter().any(Option::is_some);
        let default_rtt_ns = (nanos(parts.default_rtt) as f64).max(1.0);
        // A deployment not measured yet starts at the default, which decays
        // as any estimate does: a new deployment is tried soon.
        let stats: Box<[Stats]> = (0..n).map(|_| Stats::default()).collect();
        for s in stats.iter() {
            s.ewma_bits
                .store(default_rtt_ns.to_bits(), Ordering::Relaxed);
        }
        Book {
            name: parts.name,
            names: parts.names.into(),
            total_weight: parts.weights.iter().map(|&w| u64::from(w)).sum(),
            weights: parts.weights.into(),
            health: parts.health.into(),
            headroom: parts.headroom.into(),
            checks,
            stats,
            strategy: parts.strategy,
            eject_for: parts.eject_for,
            decay_ns: (nanos(parts.decay).max(1)) as f64,
            epoch: Instant::now(),
            rng: AtomicU64::new(parts.seed),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.names.len()
    }

    /// Nanoseconds since the book was made (never 0, so that 0 can mean
    /// "never").
    #[inline]
    pub(super) fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.epoch)).max(1)
    }

    #[inline]
    fn random(&self) -> u64 {
        mix(self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed))
    }

    pub(super) fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| &**n == name)
    }

    // --- out or in ---

    /// Why deployment `i` may not be picked at `now`, if it may not.
    pub(super) fn out_reason(&self, i: usize, now: u64) -> Option<OutReason> {
        if let Some((why, left)) = self.ejected(i, now) {
            return Some(OutReason::Ejected(why, left));
        }
        if let Some(wait) = self.health[i].as_ref().and_then(|h| h.unavailable_for()) {
            return Some(OutReason::CircuitOpen(wait));
        }
        if self.room(i).is_exhausted() {
            return Some(OutReason::NoRoom);
        }
        None
    }

    #[inline]
    fn is_out(&self, i: usize, now: u64) -> bool {
        let until = self.stats[i].out_until.load(Ordering::Acquire);
        if until > now {
            return true;
        }
        self.checks && self.out_reason(i, now).is_some()
    }

    pub(super) fn ejected(&self, i: usize, now: u64) -> Option<(Ejection, Duration)> {
        let until = self.stats[i].out_until.load(Ordering::Acquire);
        if until <= now {
            return None;
        }
        let why = Ejection::from_code(self.stats[i].out_why.load(Ordering::Acquire))?;
        Some((why, Duration::from_nanos(until - now)))
    }

    fn room(&self, i: usize) -> Room {
        self.headroom[i]
            .as_ref()
            .map_or_else(Room::default, |h| h.room())
    }

    /// Takes deployment `i` out for `duration`.
    pub(super) fn eject(&self, i: usize, why: Ejection, duration: Duration) {
        let until = self.now().saturating_add(nanos(duration));
        let stats = &self.stats[i];
        // The reason first: a reader that sees the new end sees its reason.
        stats.out_why.store(why.code(), Ordering::Release);
        stats.out_until.store(until, Ordering::Release);
    }

    /// Puts deployment `i` back in.
    pub(super) fn restore(&self, i: usize) {
        self.stats[i].out_until.store(0, Ordering::Release);
    }

    // --- latency ---

    /// The latency estimate of `i` at `now`, decayed towards zero since its
    /// last update (an idle deployment looks better and better, so it is
    /// tried again), in nanoseconds.
    #[inline]
    fn latency(&self, i: usize, now: u64) -> f64 {
        let stats = &self.stats[i];
        let bits = stats.ewma_bits.load(Ordering::Relaxed);
        let at = stats.ewma_at.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(at) as f64;
        f64::from_bits(bits) * (-elapsed / self.decay_ns).exp()
    }

    /// Peak-EWMA cost of `i`: its latency times its calls in flight plus one.
    #[inline]
    pub(super) fn cost(&self, i: usize, now: u64) -> f64 {
        let pending = self.stats[i].in_flight.load(Ordering::Relaxed);
        self.latency(i, now) * f64::from(pending + 1)
    }

    /// Takes in a call to `i` that took `rtt` ns and ended at `now`. An
    /// answer moves the estimate (up at once to a new peak, down
    /// gradually); a failure or a cancelled call only raises it, so a
    /// deployment that fails fast never looks fast.
    pub(super) fn observe(&self, i: usize, rtt: u64, now: u64, answered: bool) {
        let stats = &self.stats[i];
        let rtt = rtt as f64;
        let prior = f64::from_bits(stats.ewma_bits.load(Ordering::Relaxed));
        let next = if rtt > prior {
            rtt
        } else if answered {
            let at = stats.ewma_at.load(Ordering::Relaxed);
            let decay = (-(now.saturating_sub(at) as f64) / self.decay_ns).exp();
            prior * decay + rtt * (1.0 - decay)
        } else {
            return;
        };
        // Two racing updates may lose one: an estimate, not an account.
        stats
            .ewma_bits
            .store(next.max(1.0).to_bits(), Ordering::Relaxed);
        stats.ewma_at.store(now, Ordering::Relaxed);
    }

    /// The latency estimate of `i` as last updated (not decayed): the
    /// default until it is measured.
    pub(super) fn latency_estimate(&self, i: usize) -> Duration {
        Duration::from_nanos(f64::from_bits(self.stats[i].ewma_bits.load(Ordering::Relaxed)) as u64)
    }

    // --- picking ---

    /// A deployment for the next call, never one in `excluded` and never
    /// one that is out; `None` when every deployment is excluded or out.
    /// `per_call` is the call's token estimate, read by the headroom
    /// strategy only.
    pub(super) fn pick(&self, excluded: Mask, per_call: impl Fn() -> u64) -> Option<usize> {
        let now = self.now();
        match self.strategy {
            Strategy::WeightedRandom => self.pick_weighted(excluded, now),
            Strategy::LeastInFlight => self.pick_least(excluded, now),
            Strategy::PowerOfTwoChoices => self.pick_p2c(excluded, now),
            Strategy::Headroom => self.pick_headroom(excluded, now, per_call()),
        }
    }

    /// A weighted draw among the deployments not in `excluded`.
    #[inline]
    fn draw(&self, excluded: Mask, r: u64) -> Option<usize> {
        let total = if excluded == 0 {
            self.total_weight
        } else {
            self.weights
                .iter()
                .enumerate()
                .filter(|&(i, _)| excluded & bit(i) == 0)
                .map(|(_, &w)| u64::from(w))
                .sum()
        };
        if total == 0 {
            return None;
        }
        let mut x = below(r, total);
        for (i, &w) in self.weights.iter().enumerate() {
            if excluded & bit(i) != 0 {
                continue;
            }
            let w = u64::from(w);
            if x < w {
                return Some(i);
            }
            x -= w;
        }
        None
    }

    fn pick_weighted(&self, mut excluded: Mask, now: u64) -> Option<usize> {
        loop {
            let i = self.draw(excluded, self.random())?;
            if !self.is_out(i, now) {
                return Some(i);
            }
            excluded |= bit(i);
        }
    }

    fn pick_least(&self, mut excluded: Mask, now: u64) -> Option<usize> {
        let n = self.len();
        loop {
            // From a random start, so ties spread.
            let start = below(self.random(), n as u64) as usize;
            let mut best: Option<(usize, u64, u64)> = None;
            for k in 0..n {
                let i = (start + k) % n;
                if excluded & bit(i) != 0 {
                    continue;
                }
                let load = u64::from(self.stats[i].in_flight.load(Ordering::Relaxed));
                let w = u64::from(self.weights[i]);
                // load / w < best_load / best_w, without dividing.
                if best.is_none_or(|(_, bl, bw)| load * bw < bl * w) {
                    best = Some((i, load, w));
                }
            }
            let (i, _, _) = best?;
            if !self.is_out(i, now) {
                return Some(i);
            }
            excluded |= bit(i);
        }
    }

    fn pick_p2c(&self, mut excluded: Mask, now: u64) -> Option<usize> {
        loop {
            let r = self.random();
            let a = self.draw(excluded, r)?;
            let Some(b) = self.draw(excluded | bit(a), mix(r)) else {
                if self.is_out(a, now) {
                    excluded |= bit(a);
                    continue;
                }
                return Some(a);
            };
            match (self.is_out(a, now), self.is_out(b, now)) {
                (true, true) => excluded |= bit(a) | bit(b),
                (true, false) => return Some(b),
                (false, true) => return Some(a),
                (false, false) => {
                    return Some(if self.cost(a, now) <= self.cost(b, now) {
                        a
                    } else {
                        b
                    });
                }
            }
        }
    }

    fn pick_headroom(&self, excluded: Mask, now: u64, per_call: u64) -> Option<usize> {
        let n = self.len();
        let start = below(self.random(), n as u64) as usize;
        let mut best: Option<(usize, u64)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if excluded & bit(i) != 0
                || self.ejected(i, now).is_some()
                || self.health[i]
                    .as_ref()
                    .is_some_and(|h| h.unavailable_for().is_some())
            {
                continue;
            }
            let room = self.room(i);
            if room.is_exhausted() {
                continue;
            }
            let fit = room.calls_that_fit(per_call);
            if best.is_none_or(|(_, b)| fit > b) {
                best = Some((i, fit));
            }
        }
        best.map(|(i, _)| i)
    }
}
