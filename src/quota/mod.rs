//! Per-target quotas: requests and tokens per minute (and per day), kept
//! locally so the provider never has to refuse.
//!
//! [`QuotaLayer`] wraps one target's client. A request reserves one request
//! and its prompt estimate plus its `max_tokens` (or a configured output
//! estimate) tokens; the token reservation is reconciled with what the
//! provider billed when the answer arrives (a streamed answer's at its
//! end). When a limit has no room:
//!
//! - the request **waits** for its slot if the wait fits both `max_wait`
//!   and its [`Deadline`](crate::Deadline). Waiters take their slots in
//!   the order they arrive, so they are served in that order; a waiter
//!   dropped before its turn (an outer timeout, a client gone) gives its
//!   slot back;
//! - else it **fails at once**, without calling the provider, with
//!   [`RateLimited`](staunch_core::ErrorKind::RateLimited), `retry_after`
//!   set to when room comes, and `should_retry` false: a retry layer above
//!   passes it on, and a fallback chain moves to its next target.
//!
//! The quota also learns the provider's own view. [`Observed::from_headers`]
//! reads OpenAI's `x-ratelimit-*` and Anthropic's `anthropic-ratelimit-*`
//! headers (remaining requests and tokens, and when each bucket is full
//! again) and `Retry-After`; fed to [`QuotaHandle::observe`], it keeps
//! admissions within what the provider said is left until its reset, so
//! the quota pauses before the provider would refuse. A provider's 429
//! with `Retry-After` seen through the layer pauses admissions for that
//! long.
//!
//! ## The hot path
//!
//! Each limit is GCRA (the generic cell rate algorithm: a token bucket
//! held in one number, its "theoretical arrival time") on one `AtomicU64`.
//! Admitting a request that fits reads the clock and does one
//! compare-and-swap per limit; no lock is taken anywhere. A waiter
//! reserves its future slot with the same compare-and-swap, which is what
//! orders the queue; reconciliation and refunds move the same number back
//! or forward.
//!
//! **The fast lane.** When every limit holds at least 1,024 units per
//! period, a thread takes a small batch of permits at once (a 64th of the
//! smallest limit, at most 32 requests and 16,384 tokens beyond what the
//! request needs) and admits the next requests from that stock: no clock
//! read, no compare-and-swap, no shared write, so two threads admit as
//! fast as one (`benches/quota.rs`). Unbilled tokens go back to the stock
//! of the thread that reconciles them. Leased permits were taken from the
//! buckets, so over time no more is admitted than the limits allow; over
//! a short window a burst may pass a limit by at most one lease per
//! thread (under 1/64 of it per thread), and a thread's stock may serve a
//! request before others already waiting. Near the limit a lease no longer
//! fits: the thread's stock goes back to the buckets and every request
//! takes the exact path above, waiting in order. A pause, or the provider
//! saying that little is left, also sends every request to the exact
//! path. Smaller quotas (under 1,024 a minute admit too little for a few
//! nanoseconds to matter) are always exact.
//!
//! This is GCRA as the `governor` crate implements it, written here
//! because the quota needs three things governor's API does not offer:
//! moving the state back and forward after the fact (reconciling a token
//! reservation with the real usage, returning a dropped waiter's slot),
//! committing several limits (requests and tokens, per minute and per
//! day) for one request at the same future instant, and tokio's clock
//! (paused in tests). The algorithm is about forty lines in `gcra.rs`,
//! property-tested against the bound a provider's token bucket enforces.
//!
//! ## Where it goes
//!
//! Per target, inside the circuit breaker and the retry layer, so that
//! every attempt is admitted:
//!
//! ```text
//! CircuitBreakerLayer -> RetryLayer -> QuotaLayer -> TimeoutLayer -> provider client
//! ```
//!
//! A breaker above it treats a refusal as it treats the provider's own
//! 429 with `Retry-After`: it opens for `retry_after`, and the chain skips
//! the target meanwhile.
//!
//! ```
//! use std::time::Duration;
//! use staunch::quota::{QuotaConfig, QuotaLayer};
//! use staunch::core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message, Usage};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let provider = service_fn(|r: ChatRequest| async move {
//!     Ok::<_, LlmError>(ChatResponse::new(&r.model, "ok").with_usage(Usage::new(10, 5)))
//! });
//! let quota = QuotaLayer::new(
//!     QuotaConfig::new("openai")
//!         .requests_per_minute(2)
//!         .tokens_per_minute(10_000)
//!         .max_wait(Duration::from_secs(5)),
//! )
//! .expect("valid");
//! let handle = quota.handle();
//! let service = quota.layer(provider);
//! let ask = || ChatRequest::new("gpt-4o", vec![Message::user("hi")]).with_max_tokens(100);
//!
//! service.clone().oneshot(ask()).await.unwrap();
//! service.clone().oneshot(ask()).await.unwrap();
//! // Two requests per minute: the next slot is 30 s away, longer than max_wait.
//! let refused = service.clone().oneshot(ask()).await.unwrap_err();
//! assert_eq!(refused.kind, ErrorKind::RateLimited);
//! assert_eq!(refused.retry_after, Some(Duration::from_secs(30)));
//! // Each answer billed 15 tokens: the reservations (about 105 each) were reconciled.
//! assert_eq!(handle.available_tokens(), Some(10_000 - 30));
//! # }
//! ```

mod config;
mod future;
mod gcra;
mod layer;
mod lease;
mod observed;
mod service;
mod state;
#[cfg(test)]
mod tests;

pub use config::{InvalidQuota, QuotaConfig};
pub use future::ResponseFuture;
pub use layer::{QuotaHandle, QuotaLayer};
pub use observed::{Observed, Remaining};
pub use service::Quota;
