//! Load balancing within a target: one model served by several
//! deployments (API keys, Azure regions, a self-hosted pool), each with its
//! own key, base URL, quota and breaker.
//!
//! A [`Balance`] holds the [`Deployment`]s of one target and sends each
//! call to one of them, picked by a [`Strategy`]: weighted random, least
//! in flight, power of two choices over peak-EWMA latency (the default; a
//! stream's latency is its time to first token), or the most quota
//! headroom.
//!
//! - **Out is never picked.** A deployment whose
//!   [health](Deployment::health) (its circuit breaker's handle) refuses
//!   calls, or whose [headroom](Deployment::headroom) (its quota's handle)
//!   has no request or token left, is passed over.
//! - **A bad key takes its deployment out, not the model.** A 401, 403 or
//!   `insufficient_quota` from one deployment takes that deployment out
//!   for [`eject_for`](BalanceConfig::eject_for) (10 minutes by default),
//!   with a warning event (target `staunch::balance`), a count in
//!   [`EJECTIONS`], and an entry in [`BalanceHandle::out`]; the call moves
//!   on to another deployment.
//! - **Fail over before failing.** After any failure another deployment of
//!   the same target would not repeat (everything but `Fatal` errors, a
//!   context overflow, a content-filter hit and a passed deadline), the
//!   call goes to another deployment not tried yet. The balancer fails
//!   only when every deployment has failed or is out, so that a
//!   [`Fallback`](crate::fallback::Fallback) above moves to its next target
//!   then and not before. When no deployment could be called at all, its
//!   error is `Unavailable` (`CircuitOpen`, a `RateLimited` that says not
//!   to retry, or the ejection's kind), with the soonest return as
//!   `retry_after` and an [`AllDeploymentsOut`] as its source listing
//!   each deployment and why it is out; when some failed, it is the last
//!   failure with every call and token counted and that list appended to
//!   its message. The [`BalanceHandle`] is a
//!   [`TargetHealth`](crate::health::TargetHealth) that reports the target
//!   unavailable while every deployment is out.
//! - **Who answered.** The answer's
//!   [`meta.deployment`](staunch_core::ResponseMeta::deployment) names the
//!   deployment, failed deployments' calls and tokens are added to its
//!   attempts and `failed_usage`, and [`ANSWERS`] counts answers by
//!   deployment. A deployment's answer is [`Full`](staunch_core::QualityTier::Full):
//!   it is the same model.
//! - **The deadline.** No deployment is called once the request's
//!   [`Deadline`](crate::Deadline) has passed, and a call in flight is cut
//!   when it comes.
//! - **Cheap picks.** A pick reads a few atomics per candidate and one
//!   clock; nothing is locked. Per-deployment counters sit on their own
//!   cache lines. See `benches/balance.rs`.
//!
//! ```
//! use std::time::Duration;
//! use staunch::balance::{Balance, BalanceConfig, Deployment, Strategy};
//! use staunch::core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message};
//! use tower::{service_fn, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let revoked = service_fn(|_: ChatRequest| async {
//!     Err::<ChatResponse, _>(LlmError::new(ErrorKind::Authentication, "invalid api key").with_status(401))
//! });
//! let healthy = service_fn(|r: ChatRequest| async move {
//!     Ok::<_, LlmError>(ChatResponse::new(&r.model, "hello"))
//! });
//! let balance = Balance::new(
//!     // Seeded, so that the picks (and this example) are the same at
//!     // every run: the old key is drawn within the four calls.
//!     BalanceConfig::new("gpt-4o").strategy(Strategy::WeightedRandom).seed(1),
//!     [Deployment::new("old-key", revoked), Deployment::new("new-key", healthy)],
//! )
//! .expect("two deployments");
//! let handle = balance.handle();
//!
//! for _ in 0..4 {
//!     let answer = balance.clone().oneshot(ChatRequest::new("gpt-4o", vec![Message::user("hi")])).await.unwrap();
//!     assert_eq!(answer.meta.deployment.as_deref(), Some("new-key"));
//! }
//! let out = handle.out();
//! assert_eq!(out.len(), 1);
//! assert_eq!(out[0].0, "old-key");
//! # }
//! ```
//!
//! ## Where it goes
//!
//! A balanced target is one target of a fallback chain; each deployment
//! gets its own breaker, retry and quota, so a deployment's retries stay on
//! it and its breaker opens for it alone:
//!
//! ```text
//! Fallback
//!   Balance (target "gpt-4o")
//!     deployment "eastus": CircuitBreaker -> Retry -> Quota -> Timeout -> client
//!     deployment "westus": CircuitBreaker -> Retry -> Quota -> Timeout -> client
//!   next target ...
//! ```
//!
//! ## Why not `tower::balance`
//!
//! `tower::balance::p2c::Balance` with `tower::load::PeakEwma` is the
//! algorithm of the default strategy, and its decay rule is the one used
//! here; the service itself does not fit. It drives every endpoint to
//! readiness through a `ReadyCache` and is not `Clone` (sharing it takes a
//! `Buffer`: a task and a channel hop per call, microseconds where a pick
//! must take nanoseconds); an endpoint that fails its readiness is dropped
//! for good, while a deployment here comes back when its circuit closes;
//! a failed call goes back to the caller instead of to another endpoint;
//! and it has no weights, no health or quota checks and no other strategy.
//! `PeakEwma` keeps its estimate behind a `Mutex` locked on each read; here
//! it is two atomics per deployment. Deployments are boxed as fallback
//! targets are, so one balancer may mix providers.
//!
//! There is no `Layer` for it: like a fallback chain (and tower's own
//! balancer) it is built from several services, not around one.

mod book;
mod config;
mod deployment;
mod error;
mod future;
mod handle;
mod service;
#[cfg(test)]
mod tests;

pub use book::{Ejection, OutReason};
pub use config::{BalanceConfig, Strategy, UnknownStrategy};
pub use deployment::{Deployment, DeploymentService, HeadroomSource, Room};
pub use error::{AllDeploymentsOut, DeploymentOutcome, InvalidBalance};
pub use future::{ANSWERS, EJECTIONS, EXHAUSTED, FAILOVERS, ResponseFuture};
pub use handle::{BalanceHandle, DeploymentStatus};
pub use service::Balance;
