//! Validation: an answer counts as a success only once it passes its checks.
//!
//! Models drift from the format they were asked for: tool-call arguments
//! that are not JSON or miss a required field, a "JSON" answer with prose
//! around it. [`ValidateLayer`] checks every answer before it leaves the
//! target:
//!
//! - each tool call names a tool the request offered, and its arguments
//!   parse as JSON and match that tool's JSON Schema;
//! - a `json_object` answer parses as a JSON object, and a `json_schema`
//!   answer matches its schema (checked with the
//!   [`jsonschema`](https://docs.rs/jsonschema) crate; compiled schemas are
//!   cached);
//! - your own checks, as closures.
//!
//! A failed check asks the same target again, up to
//! [`retries`](ValidateConfig::retries) times, then fails with
//! [`ErrorKind::ValidationFailed`](staunch_core::ErrorKind::ValidationFailed)
//! (class `Unavailable`), carrying the tokens the rejected answers cost, so a
//! fallback chain moves on to the next target. Put it per target, outside
//! the breaker: [`TargetBuilder::validate`](crate::TargetBuilder::validate)
//! does.
//!
//! ```
//! use serde_json::json;
//! use staunch::core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message, ToolCall, ToolDefinition};
//! use staunch::validate::{ValidateConfig, ValidateLayer};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // A model that calls the tool without its required argument.
//! let model = service_fn(|r: ChatRequest| async move {
//!     Ok::<_, LlmError>(ChatResponse::tool_calls(&r.model, vec![ToolCall::new("call_1", "get_weather", "{}")]))
//! });
//! let service = ValidateLayer::new(ValidateConfig::new().retries(0)).layer(model);
//! let weather = ToolDefinition::new(
//!     "get_weather",
//!     json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
//! );
//! let request = ChatRequest::new("gpt-4o", vec![Message::user("Weather?")]).with_tools([weather]);
//! let err = service.oneshot(request).await.unwrap_err();
//! assert_eq!(err.kind, ErrorKind::ValidationFailed);
//! assert!(err.message.contains("city"), "{}", err.message);
//! # }
//! ```

mod check;
mod config;
mod future;
mod layer;
mod service;
#[cfg(test)]
mod tests;

pub use check::{Invalid, InvalidReason};
pub use config::ValidateConfig;
pub use future::ResponseFuture;
pub use layer::ValidateLayer;
pub use service::Validate;
