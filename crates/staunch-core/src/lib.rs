//! Provider-neutral types for LLM calls: the request, the response with an
//! honest account of how it was produced, token usage and prices, and the
//! error type with its classification.
//!
//! These types are shared by every staunch layer and provider client. They
//! start no runtime and do no I/O; [`Deadline`] reads tokio's clock so that
//! tests can pause it.
//!
//! ```
//! use staunch_core::{ChatRequest, ErrorClass, ErrorKind, LlmError, Message};
//!
//! let request = ChatRequest::new("gpt-4o", [Message::system("Be brief."), Message::user("Hi")])
//!     .with_max_tokens(64);
//! // Cloning shares the message list: retries and fallbacks clone freely.
//! let copy = request.clone();
//! assert!(std::sync::Arc::ptr_eq(&request.messages, &copy.messages));
//!
//! let error = LlmError::new(ErrorKind::RateLimited, "slow down").with_status(429);
//! assert_eq!(error.class(), ErrorClass::Transient);
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod allowance;
mod call;
pub mod classify_http;
mod content;
mod deadline;
mod dialect;
mod embedding;
mod error;
mod extensions;
pub mod metrics;
mod quota_refusal;
mod redact;
mod request;
mod response;
mod stream;
mod tool;
mod usage;
pub mod wire_time;

pub use allowance::Allowance;
pub use call::{Answer, Call, Operation, TypedCall};
pub use content::{Content, ContentPart, PartRef, PartsIter};
pub use deadline::{Deadline, DeadlineExceeded, DeadlineScope};
pub use dialect::{Dialect, Extras};
pub use embedding::{
    Embedding, EmbeddingInput, EmbeddingRequest, EmbeddingRequestParts, EmbeddingResponse,
    EmbeddingResponseParts, EncodingFormat,
};
pub use error::{
    BoxError, Classify, DefaultClassify, ErrorClass, ErrorDetails, ErrorKind, LlmError,
};
pub use extensions::Extensions;
pub use quota_refusal::QuotaRefusal;
pub use redact::redact_secrets;
pub use request::{ChatRequest, ChatRequestParts, Message, Role};
pub use response::{ChatResponse, ChatResponseParts, FinishReason, QualityTier, ResponseMeta};
pub use stream::{EventStream, ResponseStream, StreamAccumulator, StreamEvent};
pub use tool::{ResponseFormat, ToolCall, ToolChoice, ToolDefinition};
pub use usage::{Price, Usage};
