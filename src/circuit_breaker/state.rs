//! The shared breaker: its state machine and bookkeeping.

use super::config::{CircuitBreakerConfig, Outcome, RateWindow};
use super::counters::{CallWindow, Padded, Striped, TimeWindow};
use crate::metrics as names;
use staunch_core::{Answer, ChatResponse, ErrorKind, LlmError};
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::Waker;
use std::time::Duration;
use tokio::time::Instant;

/// The state of a circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls go through; failures are counted.
    Closed,
    /// A few probe calls test whether the target has recovered.
    HalfOpen,
    /// Calls fail at once until the break is over.
    Open,
    /// Held open by an operator until reset.
    ForcedOpen,
    /// Switched off by an operator: every call goes through, nothing is counted towards tripping.
    Disabled,
}

impl CircuitState {
    const ALL: [CircuitState; 5] = [
        CircuitState::Closed,
        CircuitState::HalfOpen,
        CircuitState::Open,
        CircuitState::ForcedOpen,
        CircuitState::Disabled,
    ];

    #[inline]
    fn code(self) -> u64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
            CircuitState::ForcedOpen => 3,
            CircuitState::Disabled => 4,
        }
    }

    #[inline]
    fn from_code(code: u64) -> CircuitState {
        Self::ALL[(code as usize).min(4)]
    }

    /// The snake_case name.
    pub const fn as_str(&self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
            CircuitState::ForcedOpen => "forced_open",
            CircuitState::Disabled => "disabled",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a circuit changed state.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum TransitionReason {
    /// This many failures in a row.
    ConsecutiveFailures(u32),
    /// The failure rate over the window.
    FailureRate {
        /// Failures divided by calls.
        rate: f64,
        /// Calls in the window.
        calls: u32,
    },
    /// A 429 asked for this long a pause.
    RateLimited(Duration),
    /// The break is over: probing.
    BreakElapsed,
    /// A probe failed: open again.
    ProbeFailed,
    /// Enough probes succeeded: closed.
    ProbesSucceeded,
    /// An operator forced it open.
    ForcedOpen,
    /// An operator disabled it.
    Disabled,
    /// An operator reset it.
    Reset,
    /// Another replica sharing this breaker's state saw the target fail:
    /// open for this long ([`CircuitBreakerHandle::open_for`](super::CircuitBreakerHandle::open_for)).
    Shared(Duration),
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionReason::ConsecutiveFailures(n) => write!(f, "{n} consecutive failures"),
            TransitionReason::FailureRate { rate, calls } => {
                write!(f, "failure rate {:.0}% over {calls} calls", rate * 100.0)
            }
            TransitionReason::RateLimited(d) => write!(f, "rate limited for {d:?}"),
            TransitionReason::BreakElapsed => f.write_str("break elapsed"),
            TransitionReason::ProbeFailed => f.write_str("probe failed"),
            TransitionReason::ProbesSucceeded => f.write_str("probes succeeded"),
            TransitionReason::ForcedOpen => f.write_str("forced open"),
            TransitionReason::Disabled => f.write_str("disabled"),
            TransitionReason::Reset => f.write_str("reset"),
            TransitionReason::Shared(d) => write!(f, "opened by another replica for {d:?}"),
        }
    }
}

/// A state change, as passed to the
/// [`on_transition`](super::CircuitBreakerConfig::on_transition) callback.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Transition {
    /// The breaker's name.
    pub breaker: String,
    /// The state before.
    pub from: CircuitState,
    /// The state after.
    pub to: CircuitState,
    /// Why.
    pub reason: TransitionReason,
    /// When (tokio's clock).
    pub at: Instant,
    /// For a move to open: how long until probing.
    pub open_for: Option<Duration>,
}

/// What a caller may do, decided before the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Closed: a normal call in generation `epoch`.
    Normal { epoch: u64 },
    /// Half-open: a probe in generation `epoch`.
    Probe { epoch: u64 },
    /// Disabled: a call that is only counted.
    Pass,
    /// Refused; the time until a probe may go through, when known.
    Rejected {
        wait: Option<Duration>,
        forced: bool,
    },
}

/// Totals for the handle.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) successes: Striped,
    pub(crate) failures: Striped,
    pub(crate) ignored: Striped,
    pub(crate) rejected: Striped,
    pub(crate) transitions: AtomicU64,
}

struct Meta {
    last_transition: Option<Instant>,
    current_break: Duration,
}

enum RateCounter {
    Calls(CallWindow),
    Time(TimeWindow),
}

/// The state shared by every clone of a breaker's service and its handle.
pub(crate) struct Breaker {
    pub(crate) config: CircuitBreakerConfig,
    base: Instant,
    /// Generation (upper bits) and state code (low 8 bits), in one word so
    /// that one load tells both.
    word: Padded<AtomicU64>,
    open_until: AtomicU64,
    consecutive: Padded<AtomicU32>,
    probes_in_flight: AtomicU32,
    probe_successes: AtomicU32,
    rate: Option<RateCounter>,
    pub(crate) stats: Stats,
    meta: Mutex<Meta>,
    /// Callers waiting for a half-open verdict or a free probe slot; only
    /// touched off the closed-state path.
    waiters: Mutex<Vec<Waker>>,
}

#[inline]
fn pack(epoch: u64, state: CircuitState) -> u64 {
    (epoch << 8) | state.code()
}

#[inline]
fn unpack(word: u64) -> (u64, CircuitState) {
    (word >> 8, CircuitState::from_code(word & 0xFF))
}

impl Breaker {
    pub(crate) fn new(config: CircuitBreakerConfig) -> Self {
        let rate = config.failure_rate.map(|rule| match rule.window {
            RateWindow::Calls(n) => RateCounter::Calls(CallWindow::new(n)),
            RateWindow::Time(d) => RateCounter::Time(TimeWindow::new(d.as_secs().max(1))),
        });
        let current_break = config.break_duration;
        // With no rule that could trip it, the breaker is off: it passes
        // every call and only counts.
        let initial = if config.is_off() {
            CircuitState::Disabled
        } else {
            CircuitState::Closed
        };
        Breaker {
            config,
            base: Instant::now(),
            word: Padded(AtomicU64::new(pack(0, initial))),
            open_until: AtomicU64::new(0),
            consecutive: Padded(AtomicU32::new(0)),
            probes_in_flight: AtomicU32::new(0),
            probe_successes: AtomicU32::new(0),
            rate,
            stats: Stats::default(),
            meta: Mutex::new(Meta {
                last_transition: None,
                current_break,
            }),
            waiters: Mutex::new(Vec::new()),
        }
    }

    /// True while the circuit is half-open with every probe slot taken.
    pub(crate) fn probe_slots_taken(&self) -> bool {
        self.state() == CircuitState::HalfOpen && self.probe_slots_full()
    }

    /// Wakes `waker` when the half-open circuit settles or a probe slot
    /// frees; false when that already happened (the caller should look
    /// again instead of waiting).
    pub(crate) fn wait_for_verdict(&self, waker: &Waker) -> bool {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if !self.probe_slots_taken() {
            return false;
        }
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
        }
        true
    }

    fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|p| p.into_inner()));
        for waker in waiters {
            waker.wake();
        }
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn state(&self) -> CircuitState {
        unpack(self.word.0.load(Ordering::Acquire)).1
    }

    pub(crate) fn last_transition(&self) -> Option<Instant> {
        self.lock_meta().last_transition
    }

    /// The time left in the current break, if open.
    pub(crate) fn open_remaining(&self) -> Option<Duration> {
        let until = self.open_until.load(Ordering::Acquire);
        let now = self.now_nanos();
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    fn lock_meta(&self) -> std::sync::MutexGuard<'_, Meta> {
        // Meta holds plain values, valid even if a holder panicked.
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when every half-open probe slot is taken.
    pub(crate) fn probe_slots_full(&self) -> bool {
        self.probes_in_flight.load(Ordering::Acquire) >= self.config.half_open_probes
    }

    /// Decides whether a call may go through now.
    #[inline]
    pub(crate) fn acquire(&self) -> Admission {
        match self.closed_admission() {
            Some(admission) => admission,
            None => self.acquire_slow(),
        }
    }

    /// The admission of a call while the circuit is closed (the common
    /// case: one load); `None`, with nothing counted, in any other state.
    #[inline]
    pub(crate) fn closed_admission(&self) -> Option<Admission> {
        let word = self.word.0.load(Ordering::Acquire);
        (word & 0xFF == CircuitState::Closed.code())
            .then_some(Admission::Normal { epoch: word >> 8 })
    }

    /// [`acquire`](Self::acquire) in every state, off the closed path.
    #[inline(never)]
    fn acquire_slow(&self) -> Admission {
        loop {
            let word = self.word.0.load(Ordering::Acquire);
            let (epoch, state) = unpack(word);
            match state {
                CircuitState::Closed => return Admission::Normal { epoch },
                CircuitState::Disabled => return Admission::Pass,
                CircuitState::ForcedOpen => {
                    return self.reject(None, true);
                }
                CircuitState::Open => {
                    if let Some(wait) = self.open_remaining() {
                        return self.reject(Some(wait), false);
                    }
                    self.transition(
                        Some(word),
                        CircuitState::HalfOpen,
                        TransitionReason::BreakElapsed,
                        None,
                    );
                }
                CircuitState::HalfOpen => {
                    let limit = self.config.half_open_probes;
                    let taken = self.probes_in_flight.fetch_update(
                        Ordering::AcqRel,
                        Ordering::Acquire,
                        |n| (n < limit).then_some(n + 1),
                    );
                    if taken.is_err() {
                        return self.reject(None, false);
                    }
                    // The slot belongs to this generation only if the state
                    // did not move on meanwhile.
                    if self.word.0.load(Ordering::Acquire) == word {
                        return Admission::Probe { epoch };
                    }
                    self.probes_in_flight.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }

    fn reject(&self, wait: Option<Duration>, forced: bool) -> Admission {
        self.stats.rejected.add(1);
        crate::metrics::counter!(names::CIRCUIT_REJECTIONS, "breaker" => self.config.name.to_string())
            .increment(1);
        Admission::Rejected { wait, forced }
    }

    /// Records the outcome of an admitted call.
    #[inline]
    pub(crate) fn complete<A: Answer>(
        &self,
        admission: Admission,
        result: &Result<A, LlmError>,
        elapsed: Duration,
    ) {
        let outcome = judge(&*self.config.outcome, result);
        let cooldown = match result {
            Err(e) if self.config.rate_limit_cooldown && e.kind == ErrorKind::RateLimited => {
                e.retry_after.filter(|d| !d.is_zero())
            }
            _ => None,
        };
        match outcome {
            Outcome::Success => self.succeeded(admission, cooldown, elapsed),
            _ => self.record(admission, outcome, cooldown, elapsed),
        }
    }

    /// Records a success: [`record`](Self::record)'s, with the closed
    /// circuit's (the common case) decided here, without its general
    /// bookkeeping. A call that answered under the default outcome rule
    /// (every answer a success) comes here directly, with no cooldown.
    #[inline]
    pub(crate) fn succeeded(
        &self,
        admission: Admission,
        cooldown: Option<Duration>,
        elapsed: Duration,
    ) {
        if let Admission::Normal { epoch } = admission
            && self.config.slow_call.is_none()
        {
            self.stats.successes.add(1);
            self.complete_closed(epoch, Outcome::Success, None);
            return;
        }
        self.record(admission, Outcome::Success, cooldown, elapsed);
    }

    /// Records an admitted call's outcome (decided by the caller), with the
    /// cooldown a rate limit asked for.
    pub(crate) fn record(
        &self,
        admission: Admission,
        mut outcome: Outcome,
        cooldown: Option<Duration>,
        elapsed: Duration,
    ) {
        if outcome == Outcome::Success && self.config.slow_call.is_some_and(|limit| elapsed > limit)
        {
            outcome = Outcome::Failure;
        }
        match outcome {
            Outcome::Success => self.stats.successes.add(1),
            Outcome::Failure => self.stats.failures.add(1),
            Outcome::Ignored => self.stats.ignored.add(1),
        }
        match admission {
            Admission::Normal { epoch } => self.complete_closed(epoch, outcome, cooldown),
            Admission::Probe { epoch } => self.complete_probe(epoch, outcome, cooldown),
            Admission::Pass | Admission::Rejected { .. } => {}
        }
    }

    #[inline]
    fn complete_closed(&self, epoch: u64, outcome: Outcome, cooldown: Option<Duration>) {
        let expected = pack(epoch, CircuitState::Closed);
        if self.word.0.load(Ordering::Acquire) != expected {
            return; // The circuit moved on while this call ran.
        }
        match outcome {
            Outcome::Success => {
                if self.consecutive.0.load(Ordering::Relaxed) != 0 {
                    self.consecutive.0.store(0, Ordering::Relaxed);
                }
                if self.rate.is_some() {
                    self.record_rate(false);
                }
            }
            _ => self.fail_closed(expected, outcome, cooldown),
        }
    }

    /// A failed (or ignored) call in a closed circuit: may open it.
    #[inline(never)]
    fn fail_closed(&self, expected: u64, outcome: Outcome, cooldown: Option<Duration>) {
        match outcome {
            Outcome::Success => {}
            Outcome::Failure => {
                if let Some(wait) = cooldown {
                    self.transition(
                        Some(expected),
                        CircuitState::Open,
                        TransitionReason::RateLimited(wait),
                        Some(wait),
                    );
                    return;
                }
                let run = self.consecutive.0.fetch_add(1, Ordering::AcqRel) + 1;
                if self
                    .config
                    .consecutive_failures
                    .is_some_and(|limit| run >= limit)
                {
                    self.transition(
                        Some(expected),
                        CircuitState::Open,
                        TransitionReason::ConsecutiveFailures(run),
                        None,
                    );
                    return;
                }
                if let Some((calls, failures)) = self.record_rate(true)
                    && let Some(rule) = self.config.failure_rate
                    && calls >= rule.minimum_calls.max(1)
                {
                    let rate = f64::from(failures) / f64::from(calls);
                    if rate >= rule.failure_rate {
                        self.transition(
                            Some(expected),
                            CircuitState::Open,
                            TransitionReason::FailureRate { rate, calls },
                            None,
                        );
                    }
                }
            }
            Outcome::Ignored => {}
        }
    }

    fn record_rate(&self, failed: bool) -> Option<(u32, u32)> {
        match &self.rate {
            None => None,
            Some(RateCounter::Calls(w)) => Some(w.record(failed)),
            Some(RateCounter::Time(w)) => Some(w.record(self.now_nanos() / 1_000_000_000, failed)),
        }
    }

    fn complete_probe(&self, epoch: u64, outcome: Outcome, cooldown: Option<Duration>) {
        let expected = pack(epoch, CircuitState::HalfOpen);
        if self.word.0.load(Ordering::Acquire) != expected {
            return; // A stale probe: its slot was reset with the state.
        }
        match outcome {
            Outcome::Success => {
                let successes = self.probe_successes.fetch_add(1, Ordering::AcqRel) + 1;
                self.probes_in_flight.fetch_sub(1, Ordering::AcqRel);
                if successes >= self.config.success_threshold {
                    self.transition(
                        Some(expected),
                        CircuitState::Closed,
                        TransitionReason::ProbesSucceeded,
                        None,
                    );
                } else {
                    // A slot is free for the next probe.
                    self.wake_waiters();
                }
            }
            Outcome::Failure => {
                let reason = match cooldown {
                    Some(wait) => TransitionReason::RateLimited(wait),
                    None => TransitionReason::ProbeFailed,
                };
                self.transition(Some(expected), CircuitState::Open, reason, cooldown);
            }
            Outcome::Ignored => self.release_probe(epoch),
        }
    }

    /// Gives back a probe slot of generation `epoch` (a probe that ended
    /// without a verdict, or was dropped).
    pub(crate) fn release_probe(&self, epoch: u64) {
        if self.word.0.load(Ordering::Acquire) == pack(epoch, CircuitState::HalfOpen) {
            let _ = self
                .probes_in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            self.wake_waiters();
        }
    }

    /// Moves to `to` if the word is still `expected` (or unconditionally
    /// for `None`); returns whether it moved. Transitions are serialized by
    /// the meta lock; the closed-state path never takes it.
    pub(crate) fn transition(
        &self,
        expected: Option<u64>,
        to: CircuitState,
        reason: TransitionReason,
        open_for: Option<Duration>,
    ) -> bool {
        let mut meta = self.lock_meta();
        let word = self.word.0.load(Ordering::Acquire);
        if expected.is_some_and(|e| e != word) {
            return false;
        }
        let (epoch, from) = unpack(word);
        if from == to && expected.is_none() {
            return false;
        }
        let now = Instant::now();
        let mut open_for = open_for;
        match to {
            CircuitState::Open => {
                let base = self.config.break_duration;
                if from == CircuitState::HalfOpen && open_for.is_none() {
                    let grown = meta.current_break.mul_f64(self.config.break_growth);
                    meta.current_break = grown.min(self.config.max_break_duration).max(base);
                } else if from != CircuitState::HalfOpen {
                    meta.current_break = base;
                }
                let wait = *open_for
                    .get_or_insert_with(|| jittered(meta.current_break, self.config.break_jitter));
                let until = self
                    .now_nanos()
                    .saturating_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX));
                self.open_until.store(until, Ordering::Release);
            }
            CircuitState::HalfOpen => {
                self.probes_in_flight.store(0, Ordering::Release);
                self.probe_successes.store(0, Ordering::Release);
            }
            CircuitState::Closed => {
                self.consecutive.0.store(0, Ordering::Release);
                meta.current_break = self.config.break_duration;
                match &self.rate {
                    Some(RateCounter::Calls(w)) => w.reset(),
                    Some(RateCounter::Time(w)) => w.reset(),
                    None => {}
                }
            }
            CircuitState::ForcedOpen | CircuitState::Disabled => {}
        }
        self.word.0.store(pack(epoch + 1, to), Ordering::Release);
        self.stats.transitions.fetch_add(1, Ordering::Relaxed);
        meta.last_transition = Some(now);
        drop(meta);
        if from == CircuitState::HalfOpen {
            self.wake_waiters();
        }

        let name = &*self.config.name;
        if to == CircuitState::Open || to == CircuitState::ForcedOpen {
            tracing::warn!(target: "staunch::circuit_breaker", breaker = name, from = from.as_str(), to = to.as_str(), reason = %reason, open_for_ms = open_for.map(|d| d.as_millis() as u64), "circuit transition");
        } else {
            tracing::info!(target: "staunch::circuit_breaker", breaker = name, from = from.as_str(), to = to.as_str(), reason = %reason, "circuit transition");
        }
        crate::metrics::counter!(names::CIRCUIT_TRANSITIONS, "breaker" => name.to_owned(), "from" => from.as_str(), "to" => to.as_str())
            .increment(1);
        crate::metrics::gauge!(names::CIRCUIT_STATE, "breaker" => name.to_owned())
            .set(to.code() as f64);
        if let Some(callback) = &self.config.on_transition {
            callback(&Transition {
                breaker: name.to_owned(),
                from,
                to,
                reason,
                at: now,
                open_for: if to == CircuitState::Open {
                    open_for
                } else {
                    None
                },
            });
        }
        true
    }
}

/// `break_` shortened by a random part of up to `jitter` of it.
fn jittered(break_: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return break_;
    }
    let cut = jitter * rand::random_range(0.0..1.0);
    break_.mul_f64(1.0 - cut)
}

/// The outcome `rule` gives `result`. The rule is written for chat answers
/// (`Result<ChatResponse, LlmError>`, the breaker's public contract); a
/// chat result is given to it as it is, and for any other operation the
/// rule judges the error (its kind, status, code and the server's
/// instructions) while an answer counts as a success.
pub(crate) fn judge<A: Answer>(
    rule: &super::config::OutcomeFn,
    result: &Result<A, LlmError>,
) -> Outcome {
    if let Some(chat) =
        (result as &dyn std::any::Any).downcast_ref::<Result<ChatResponse, LlmError>>()
    {
        return rule(chat);
    }
    match result {
        Ok(_) => Outcome::Success,
        Err(error) => rule(&Err(shallow(error))),
    }
}

/// What an outcome rule needs of an error: its kind, status, code and the
/// server's instructions (the error itself goes on to the caller).
pub(crate) fn shallow(error: &LlmError) -> LlmError {
    let mut copy = LlmError::new(error.kind, String::new());
    copy.status = error.status;
    copy.retry_after = error.retry_after;
    copy.should_retry = error.should_retry;
    copy.code.clone_from(&error.code);
    copy
}
