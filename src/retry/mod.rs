//! Retry failed LLM calls: only the errors worth retrying, never sooner
//! than the provider asked, never past the deadline, never more than the
//! budget allows.
//!
//! [`RetryLayer`] wraps any `Service<ChatRequest, Response = ChatResponse>`
//! (a provider client, a tower stack, a scripted fake) in [`Retry`], a
//! tower `Layer`/`Service` pair with a retry loop of its own (tower's
//! [`tower::retry`] clones the policy and the inner service for every call;
//! this loop clones a service only when it retries) and an LLM-aware
//! policy:
//!
//! - Only [`Transient`](staunch_core::ErrorClass::Transient) errors are
//!   retried (rate limits, overload, 5xx, timeouts, connection failures,
//!   truncated answers). `Unavailable` errors (quota, auth, unknown model,
//!   context overflow, content filter) return at once so a fallback can try
//!   another target; `Fatal` ones return at once, full stop. A server's
//!   `x-should-retry` overrides the class.
//! - The wait before retry `n` (from 0) is drawn uniformly from
//!   `[0, min(max_delay, base_delay · 2^n)]`: the cap applies before the
//!   jitter, so clients spread out instead of all sleeping the cap.
//! - A `Retry-After` from the provider is waited exactly, unless it is
//!   longer than `max_retry_after`: then the layer gives up at once, so
//!   that a fallback can answer instead of the caller sleeping for minutes.
//! - A [`RetryBudget`] bounds retries to a fraction of traffic, so a
//!   fleet-wide outage can't multiply the load.
//! - No wait passes the request's [`Deadline`](crate::Deadline).
//! - Tokens billed by failed attempts are added to the response's
//!   `meta.failed_usage` or to the final error's `spent`.
//!
//! Put tower's `TimeoutLayer` inside it for a per-attempt timeout (a
//! timed-out attempt is a transient `Timeout` and is retried), and outside
//! it, or a [`Deadline`](crate::Deadline), for the total.
//!
//! ```
//! use std::time::Duration;
//! use staunch::core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message};
//! use staunch::retry::{NoJitter, RetryConfig, RetryLayer};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let provider = {
//!     let calls = calls.clone();
//!     service_fn(move |req: ChatRequest| {
//!         let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!         async move {
//!             if n == 0 {
//!                 Err(LlmError::new(ErrorKind::Overloaded, "Overloaded").with_status(529))
//!             } else {
//!                 Ok(ChatResponse::new(&req.model, "hello"))
//!             }
//!         }
//!     })
//! };
//! let service = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryConfig::new().jitter(NoJitter)))
//!     .timeout(Duration::from_secs(30)) // per attempt
//!     .service(provider);
//!
//! let request = ChatRequest::new("claude-sonnet-4-5", vec![Message::user("hi")]);
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.meta.attempts, 2);
//! assert_eq!(response.meta.retry_wait, Duration::from_millis(500));
//! # }
//! ```

mod any;
mod attempt;
mod config;
mod future;
mod jitter;
mod layer;
mod policy;
mod service;
#[cfg(test)]
mod tests;
mod window;

pub use any::AnyRetryPolicy;
pub use config::{InvalidRetryBudget, RetryBudget, RetryConfig};
pub use future::ResponseFuture;
pub use jitter::{FullJitter, Jitter, NoJitter, SeededJitter};
pub use layer::RetryLayer;
pub use service::Retry;
