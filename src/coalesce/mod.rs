//! Request coalescing: identical calls in flight at once share one
//! upstream call.
//!
//! An agent fleet often asks the same thing at the same moment (the same
//! document embedded by several workers, the same deterministic
//! classification prompt); each duplicate costs a provider call and a
//! slot of the rate limit. [`Coalesce`] keys each call by its
//! [`Fingerprint`](crate::fingerprint::Fingerprint): while a call is in
//! flight, an identical one waits for its answer instead of calling again.
//! Every caller gets its own copy of the answer (or of the error), with
//! [`ResponseMeta::shared`](staunch_core::ResponseMeta::shared) set when
//! more than one caller got it.
//!
//! - **Which calls.** Embeddings are always safe to share (the same input
//!   has the same vectors). A chat completion is shared only when
//!   [`CoalesceLayer::chat_when`] says so (say, at temperature 0), since
//!   two identical prompts may rightly want two different answers.
//!   Streamed answers are never shared: a stream has one reader.
//! - **Cancellation.** The upstream call runs on a task of its own: a
//!   caller that gives up (an outer timeout, a client gone) stops waiting
//!   without cancelling the call the others wait for. When every caller
//!   has gone, the call still ends (its tokens are billed either way) and
//!   its answer is dropped.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use staunch::coalesce::CoalesceLayer;
//! use staunch::core::{Embedding, EmbeddingRequest, EmbeddingResponse, LlmError};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let seen = calls.clone();
//! let provider = service_fn(move |r: EmbeddingRequest| {
//!     seen.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         tokio::time::sleep(std::time::Duration::from_millis(50)).await;
//!         Ok::<_, LlmError>(EmbeddingResponse::new(&r.model, vec![Embedding::new(0, vec![1.0])]))
//!     }
//! });
//! let service = CoalesceLayer::new().layer(provider);
//! let ask = || service.clone().oneshot(EmbeddingRequest::new("e", ["same text"]));
//! let (a, b) = tokio::join!(ask(), ask());
//! assert_eq!(calls.load(Ordering::SeqCst), 1, "one upstream call");
//! assert!(a.unwrap().meta.shared && b.unwrap().meta.shared);
//! # }
//! ```

mod layer;
mod service;
#[cfg(test)]
mod tests;

pub use layer::CoalesceLayer;
pub use service::{Coalesce, ResponseFuture};
