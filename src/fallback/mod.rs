//! Fallback chains: when a target fails, ask the next one.
//!
//! A [`Fallback`] holds an ordered list of [`Target`]s, each a boxed service
//! with a name, an optional model rewrite (so one request can go to
//! `gpt-4o`, then `claude-sonnet-4-5`, then `gpt-4o-mini`), a context window,
//! a price and an optional health check (a circuit breaker's handle).
//! [`FallbackLayer`] is the same as a layer around a primary service, so
//! chains nest in a `ServiceBuilder`.
//!
//! ```
//! use staunch::core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message, QualityTier};
//! use staunch::fallback::{Fallback, Target};
//! use tower::{service_fn, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let down = service_fn(|_: ChatRequest| async {
//!     Err::<ChatResponse, _>(LlmError::new(ErrorKind::Overloaded, "Overloaded").with_status(529))
//! });
//! let up = service_fn(|r: ChatRequest| async move {
//!     Ok::<_, LlmError>(ChatResponse::new(&r.model, "hello from the backup"))
//! });
//! let chain = Fallback::new([
//!     Target::new("anthropic", down).model("claude-sonnet-4-5"),
//!     Target::new("openai", up).model("gpt-4o"),
//! ])
//! .expect("two targets");
//!
//! let response = chain.oneshot(ChatRequest::new("any", vec![Message::user("hi")])).await.unwrap();
//! assert_eq!(response.meta.target.as_deref(), Some("openai"));
//! assert_eq!(response.meta.model.as_deref(), Some("gpt-4o"));
//! assert_eq!(response.meta.tier, QualityTier::Reduced);
//! assert_eq!((response.meta.fallback_depth, response.meta.attempts), (1, 2));
//! # }
//! ```

mod continuation;
mod future;
mod layer;
mod service;
mod split;
mod target;
#[cfg(test)]
mod tests;

pub use crate::health::TargetHealth;
pub use continuation::ContinuationOrder;
pub use future::ResponseFuture;
pub use layer::FallbackLayer;
pub use service::{Fallback, InvalidChain};
pub use split::DeadlineSplit;
pub use target::{Target, TargetService};
