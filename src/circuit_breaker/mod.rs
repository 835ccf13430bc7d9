//! Circuit breakers: stop calling a target that is down, and find out
//! cheaply when it is back.
//!
//! [`CircuitBreakerLayer`] wraps one target's stack in a [`CircuitBreaker`]
//! whose state lives behind an `Arc`, shared by every clone, and is
//! readable and steerable through a [`CircuitBreakerHandle`]:
//!
//! - **Closed**: calls go through. Provider-side failures (transient and
//!   unavailable errors) count; the caller's own `Fatal` errors, context
//!   overflows, content-filter hits and cancelled calls are ignored. `N`
//!   failures in a row (default 5), or a failure rate over a window of calls
//!   or time (opt-in, with a minimum number of calls), open the circuit.
//!   The success path takes no lock: a few atomic loads and one
//!   per-thread counter.
//! - **Open**: calls fail at once with `CircuitOpen`, `retry_after` set to
//!   the time left. A 429 carrying `Retry-After` opens it for exactly that
//!   long: a rate limit is an outage of known length.
//! - **Half-open**: after the break, a limited number of probes go through,
//!   each one attempt (a retry layer below does not retry a probe);
//!   `success_threshold` successes close the circuit, a failure opens it
//!   again for a longer break. Breaks start short (5 s), double with each
//!   failed probe up to 15 s, and lose a random part of up to a fifth, so
//!   a provider back from a short outage is used again within seconds and
//!   circuits that opened together do not probe together.
//! - **Forced open** and **disabled**: operator overrides, until reset.
//!
//! Every transition is a tracing event (target `staunch::circuit_breaker`),
//! a metric, and a call of the optional callback. A call dropped before it
//! ends gives its probe slot back and is counted as ignored. Put the
//! per-attempt timeout inside the breaker so a hanging probe can't keep the
//! circuit half-open.
//!
//! ```
//! use std::time::Duration;
//! use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
//! use staunch::core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let breaker = CircuitBreakerLayer::new(
//!     CircuitBreakerConfig::new("anthropic")
//!         .consecutive_failures(Some(2))
//!         .break_duration(Duration::from_secs(30)),
//! )
//! .expect("valid config");
//! let handle = breaker.handle();
//! let down = service_fn(|_: ChatRequest| async {
//!     Err::<ChatResponse, _>(LlmError::new(ErrorKind::Overloaded, "Overloaded").with_status(529))
//! });
//! let service = ServiceBuilder::new()
//!     .layer(breaker)
//!     .timeout(Duration::from_secs(60))
//!     .service(down);
//! let ask = || ChatRequest::new("claude-sonnet-4-5", vec![Message::user("hi")]);
//!
//! for _ in 0..2 {
//!     let _ = service.clone().oneshot(ask()).await;
//! }
//! assert_eq!(handle.state(), CircuitState::Open);
//! let refused = service.clone().oneshot(ask()).await.unwrap_err();
//! assert_eq!(refused.kind, ErrorKind::CircuitOpen);
//! // Open for the break, less up to a fifth of it at random.
//! let left = refused.retry_after.expect("the time left");
//! assert!(left <= Duration::from_secs(30) && left >= Duration::from_secs(24));
//! # }
//! ```

mod any;
mod config;
mod counters;
mod future;
mod handle;
mod layer;
#[cfg(test)]
mod model_tests;
mod service;
mod state;
#[cfg(test)]
mod tests;

pub use any::{AnyCircuitBreaker, AnyCircuitBreakerLayer, AnyFuture, BreakerError};
pub use config::{
    CircuitBreakerConfig, InvalidCircuitBreaker, Outcome, RateRule, RateWindow, default_outcome,
};
pub use future::ResponseFuture;
pub use handle::{CircuitBreakerHandle, CircuitCounts};
pub use layer::CircuitBreakerLayer;
pub use service::CircuitBreaker;
pub use state::{CircuitState, Transition, TransitionReason};
