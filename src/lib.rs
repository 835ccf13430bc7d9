//! # staunch
//!
//! Tower middleware that keeps LLM-powered agents working when their
//! providers fail. Each resilience pattern is a tower `Layer`/`Service` pair
//! over one provider-neutral request type, [`ChatRequest`](core::ChatRequest),
//! so the layers compose with `ServiceBuilder` beside tower's own timeout,
//! rate-limit and concurrency-limit layers and drop into axum or tonic
//! services and existing tower clients.
//!
//! | module | what it does |
//! |---|---|
//! | [`observe`] | outermost: a span and metrics per logical request; the metric names |
//! | [`degrade`] | serves a cached, then a static answer when everything below fails |
//! | [`budget`] | refuses requests that would pass a per-request or per-window token/cost cap |
//! | [`quota`] | per target: requests and tokens per minute/day, lock-free; waits in order or refuses at once; learns the provider's limits |
//! | [`circuit_breaker`] | per target: fails fast while it is down, probes it back, lock-free when closed |
//! | [`fallback`] | ordered target chains that skip open circuits and too-small context windows |
//! | [`hedge`] | opt-in: a second attempt when the first runs longer than the observed p95, within a budget |
//! | [`balance`] | per target: spreads calls over its deployments (keys, regions, pools), routes around the slow and the out |
//! | [`retry`] | retries transient failures with capped, jittered backoff, `Retry-After`, a retry budget and the deadline |
//!
//! [`ServiceBuilderExt`] adds them to tower's `ServiceBuilder`; a
//! [`Deadline`] in the request's extensions bounds every layer below it.
//!
//! The types shared by every layer and provider client live in
//! [`staunch_core`], re-exported as [`core`].
//!
//! ```
//! use std::time::Duration;
//! use staunch::core::{ChatRequest, ChatResponse, LlmError, Message};
//! use staunch::retry::{RetryConfig, RetryLayer};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), LlmError> {
//! let provider = service_fn(|req: ChatRequest| async move {
//!     Ok::<_, LlmError>(ChatResponse::new(&req.model, "pong"))
//! });
//! let client = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryConfig::new().max_retries(3)))
//!     .timeout(Duration::from_secs(60))
//!     .service(provider);
//! let answer = client
//!     .oneshot(ChatRequest::new("gpt-4o", vec![Message::user("ping")]))
//!     .await?;
//! assert_eq!(answer.text(), "pong");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// With only some layers built, helpers shared by the others go unused.
#![cfg_attr(not(feature = "full"), allow(unused))]

#[cfg(feature = "target")]
mod any_call;
#[cfg(feature = "balance")]
pub mod balance;
#[cfg(feature = "batch")]
pub mod batch;
#[cfg(feature = "budget")]
pub mod budget;
mod builder;
#[cfg(feature = "circuit-breaker")]
pub mod circuit_breaker;
#[cfg(feature = "coalesce")]
pub mod coalesce;
mod deadline;
#[cfg(feature = "degrade")]
pub mod degrade;
#[cfg(feature = "fallback")]
pub mod fallback;
#[cfg(feature = "fingerprint")]
pub mod fingerprint;
#[cfg(feature = "tonic")]
pub mod grpc;
pub mod health;
#[cfg(feature = "hedge")]
pub mod hedge;
#[cfg(feature = "http-call")]
pub mod http_call;
mod into_llm;
pub mod metrics;
#[cfg(feature = "observe")]
pub mod observe;
#[cfg(feature = "quota")]
pub mod quota;
#[cfg(any(feature = "quota", feature = "circuit-breaker"))]
mod ref_pool;
#[cfg(feature = "retry")]
pub mod retry;
mod stream_watch;
#[cfg(feature = "target")]
mod target;
#[cfg(all(test, feature = "full"))]
mod test_support;
#[cfg(feature = "validate")]
pub mod validate;

pub use builder::ServiceBuilderExt;
pub use deadline::{Deadline, DeadlineExceeded, DeadlineScope};
pub use staunch_core as core;
pub use staunch_core::Allowance;
#[cfg(feature = "target")]
pub use target::TargetBuilder;

/// The README's code, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "full"))]
pub struct ReadmeDoctests;
