//! Splitting a batch that is too large for a provider: an embeddings call
//! with more inputs (or more tokens) than one request to the target may
//! carry is sent as several requests that fit, one after another, and
//! their answers joined back in input order.
//!
//! OpenAI takes at most 2,048 inputs and 300,000 tokens in one embeddings
//! request; self-hosted servers (TEI, vLLM) are often much smaller. A
//! caller should not have to know which target will answer. Put the layer
//! above the retry and the quota (as [`TargetBuilder::split_batches`](crate::TargetBuilder::split_batches)
//! does) so that each part is admitted by the quota with its own tokens
//! and retried on its own. A call that is not a batch (a chat completion)
//! or that fits passes through untouched.
//!
//! ```
//! use staunch::batch::SplitBatchLayer;
//! use staunch::core::{Embedding, EmbeddingRequest, EmbeddingResponse, LlmError};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // A server that takes at most two inputs per request.
//! let server = service_fn(|r: EmbeddingRequest| async move {
//!     assert!(r.input.len() <= 2);
//!     let data = (0..r.input.len()).map(|i| Embedding::new(i, vec![i as f32])).collect();
//!     Ok::<_, LlmError>(EmbeddingResponse::new(&r.model, data))
//! });
//! let service = ServiceBuilder::new()
//!     .layer(SplitBatchLayer::new(2, u64::MAX))
//!     .service(server);
//! let answer = service.oneshot(EmbeddingRequest::new("e", ["a", "b", "c", "d", "e"])).await.unwrap();
//! let indices: Vec<usize> = answer.data.iter().map(|e| e.index).collect();
//! assert_eq!(indices, [0, 1, 2, 3, 4]);
//! assert_eq!(answer.meta.attempts, 3, "three requests");
//! # }
//! ```

mod future;
mod layer;
mod service;
#[cfg(test)]
mod tests;

pub use future::ResponseFuture;
pub use layer::SplitBatchLayer;
pub use service::SplitBatch;
