//! Graceful degradation: answer from the cache or with a static answer when
//! every target has failed.
//!
//! [`DegradeLayer`] is the outermost layer of the recommended stack. When
//! its cache is on ([`DegradeConfig::cache`]; off by default, see there for
//! its cost) it remembers successful answers (in [moka](https://docs.rs/moka),
//! bounded by a TTL and a capacity) under a fingerprint of the whole request,
//! and when
//! the stack below fails with anything but a `Fatal` error it serves, in
//! order: the cached answer to the same request
//! ([`QualityTier::Cached`](staunch_core::QualityTier)), the configured
//! static answer ([`QualityTier::Static`](staunch_core::QualityTier)), or
//! the error. Every degraded answer says so in `meta.tier` and
//! `meta.warning`. Requests marked [`NoDegrade`] are never degraded.
//!
//! ```
//! use staunch::core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message, QualityTier};
//! use staunch::degrade::{DegradeConfig, DegradeLayer};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let down = service_fn(|_: ChatRequest| async {
//!     Err::<ChatResponse, _>(LlmError::new(ErrorKind::Overloaded, "Overloaded").with_status(529))
//! });
//! let service = DegradeLayer::new(DegradeConfig::new().static_answer("Please try again shortly."))
//!     .layer(down);
//! let answer = service
//!     .oneshot(ChatRequest::new("gpt-4o", vec![Message::user("hi")]))
//!     .await
//!     .unwrap();
//! assert_eq!(answer.meta.tier, QualityTier::Static);
//! assert_eq!(answer.text(), "Please try again shortly.");
//! assert!(answer.meta.warning.as_deref().unwrap().contains("overloaded"));
//! # }
//! ```

mod cache;
mod config;
mod future;
mod layer;
mod service;
#[cfg(test)]
mod tests;

pub use config::{DegradeConfig, NoDegrade};
pub use future::ResponseFuture;
pub use layer::DegradeLayer;
pub use service::Degrade;
