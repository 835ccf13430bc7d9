//! The names of the metrics staunch records, one constant each.
//!
//! A contract shared by every layer (each records its own) and by
//! dashboards and alerts; re-exported as [`observe::names`](crate::observe::names).

/// Counter: logical requests finished, by `outcome` (`ok`, `error`,
/// `cancelled`), `tier` (`full`, `reduced`, `cached`, `static`, `none`),
/// error `kind` and error `class` (`transient`, `unavailable`, `fatal`;
/// `none` on success). Alert on the `unavailable` share (targets refusing:
/// keys, quotas, models) separately from `transient` (outages).
pub const REQUESTS: &str = "staunch_requests_total";
/// Histogram: seconds from a logical request's start to its answer or error, by `outcome`.
pub const REQUEST_DURATION: &str = "staunch_request_duration_seconds";
/// Counter: tokens billed, by `provider`, `model` and `direction` (`input`, `output`), failed attempts included.
pub const TOKENS: &str = "staunch_tokens_total";
/// Histogram: dollars per answered request (failed attempts included), by `provider`.
pub const REQUEST_COST: &str = "staunch_request_cost_usd";
/// Histogram: the fallback depth that answered (0: the first target), per
/// answered logical request. A mean above 0 means the primary is failing
/// over; alert on its p90 rising.
pub const FALLBACK_DEPTH: &str = "staunch_fallback_depth";
/// Counter: logical requests the retry layer retried at least once, by
/// final `outcome` (`ok`, `error`). The retry success rate is
/// `ok / (ok + error)`: when it falls, retries no longer help (a real
/// outage) and only add load.
pub const RETRIED_REQUESTS: &str = "staunch_retried_requests_total";
/// Counter: answers the validate layer rejected, by `reason`
/// (`unknown_tool`, `tool_arguments_not_json`, `tool_arguments_schema`,
/// `answer_not_json`, `answer_schema`, `custom`). A rising rate for one
/// model means its output format drifts: pin the model or tighten the
/// prompt.
pub const VALIDATION_FAILURES: &str = "staunch_validation_failures_total";
/// Histogram: seconds from a streamed request's start to its first content
/// event (the commit point). Alert on its p99: first tokens that take long
/// are where users give up.
pub const TIME_TO_FIRST_TOKEN: &str = "staunch_time_to_first_token_seconds";
/// Histogram: seconds from a streamed request's start to the end of its
/// stream, by `outcome` (`complete`, `error`, `dropped`).
pub const STREAM_DURATION: &str = "staunch_stream_duration_seconds";
/// Counter: events passed to callers by streamed answers.
pub const STREAM_EVENTS: &str = "staunch_stream_events_total";
// Recorded by the provider clients (`staunch-providers`), which do not
// depend on this crate: the name (and its documentation) lives in
// `staunch-core`.
#[doc(inline)]
pub use staunch_core::metrics::STREAM_MALFORMED_EVENTS;
/// Counter: streams that broke after their commit point (the caller got a
/// classified error as the stream's last item), by `provider` and `kind`
/// (`timeout` for a stall, `truncated_response` for a cut, `overloaded` …).
/// Any rise: answers end early for users.
pub const STREAM_ERRORS: &str = "staunch_stream_errors_total";
/// Counter: broken streams continued on a prefill-capable target.
pub const STREAM_CONTINUATIONS: &str = "staunch_stream_continuations_total";
/// Counter: retries started, by `provider` and the error `kind` that caused them.
pub const RETRIES: &str = "staunch_retries_total";
/// Counter: failed requests the retry layer stopped retrying, by `reason`
/// (`not_retryable`, `server_said_no`, `max_retries`, `retry_after_too_long`,
/// `deadline` (the wait would pass it), `deadline_passed` (it cut the
/// attempt), `retry_budget`, `request_budget`).
pub const RETRY_GIVEUPS: &str = "staunch_retry_giveups_total";
/// Counter: fallback activations, by the target that failed (`from`) and the one tried next (`to`).
pub const FALLBACKS: &str = "staunch_fallbacks_total";
/// Counter: fallback targets passed over without a call, by `target` and
/// `reason` (`circuit_open`, `context_window`).
pub const FALLBACK_SKIPS: &str = "staunch_fallback_skips_total";
/// Counter: degraded answers served, by `tier` (`cached`, `static`) and the error `kind` they replaced.
pub const DEGRADED: &str = "staunch_degraded_total";
/// Counter: requests refused by a budget, by `scope` (`request`, `window`).
pub const BUDGET_REFUSALS: &str = "staunch_budget_refusals_total";
/// Counter: circuit breaker transitions, by `breaker`, `from` and `to`.
pub const CIRCUIT_TRANSITIONS: &str = "staunch_circuit_transitions_total";
/// Gauge: a circuit breaker's state, by `breaker`: 0 closed, 1 half-open,
/// 2 open, 3 forced open, 4 disabled.
pub const CIRCUIT_STATE: &str = "staunch_circuit_state";
/// Counter: calls a circuit breaker refused while open, by `breaker`.
pub const CIRCUIT_REJECTIONS: &str = "staunch_circuit_rejections_total";
/// Counter: requests a quota refused without calling the provider, by
/// `quota` and `reason` (`max_wait`: room comes later than the request may
/// wait; `deadline`: the wait would reach its deadline; `too_large`: it
/// needs more tokens than a whole limit). A steady rate means the target's
/// limits are too small for its traffic: raise them or add a target.
pub const QUOTA_REFUSALS: &str = "staunch_quota_refusals_total";
/// Counter: requests that waited for room in a quota, by `quota`.
pub const QUOTA_WAITS: &str = "staunch_quota_waits_total";
/// Counter: pauses a provider imposed on a quota, by `quota` and `reason`
/// (`retry_after`: a 429's `Retry-After`; `remaining`: its headers said
/// nothing is left until the reset).
pub const QUOTA_PAUSES: &str = "staunch_quota_pauses_total";

/// A metric handle that records nothing: what the recording macros give
/// when the `metrics` feature is off.
#[cfg(not(feature = "metrics"))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Noop;

#[cfg(not(feature = "metrics"))]
impl Noop {
    pub(crate) fn increment(self, _: u64) {}
    pub(crate) fn set(self, _: f64) {}
    #[allow(dead_code)]
    pub(crate) fn record(self, _: f64) {}
}

/// Records through the `metrics` facade; without the `metrics` feature it
/// compiles to nothing and evaluates no label.
#[cfg(feature = "metrics")]
macro_rules! counter {
    ($($t:tt)*) => { ::metrics::counter!($($t)*) };
}

#[cfg(not(feature = "metrics"))]
macro_rules! counter {
    ($name:expr $(, $k:literal => $v:expr)* $(,)?) => {{
        let _ = || {
            let _ = &$name;
            $( let _ = &$v; )*
        };
        $crate::metrics::Noop
    }};
}

/// As [`counter!`], for gauges.
#[cfg(feature = "metrics")]
macro_rules! gauge {
    ($($t:tt)*) => { ::metrics::gauge!($($t)*) };
}

#[cfg(not(feature = "metrics"))]
macro_rules! gauge {
    ($($t:tt)*) => { $crate::metrics::counter!($($t)*) };
}

pub(crate) use {counter, gauge};
