//! Observability: what the layers did, as tracing spans and metrics.
//!
//! [`InstrumentLayer`] (outermost) opens one `llm.request` span per logical
//! request and records the request metrics when it ends. Inside it the
//! retry layer opens one `llm.attempt` span per call to the service below it
//! (fields `model`, `attempt`, and on completion `outcome`, `provider`,
//! `error_kind`, `status`) and logs each retry with its delay; breaker
//! transitions, fallbacks, degradations and budget refusals are events with
//! targets `staunch::circuit_breaker`, `staunch::fallback`,
//! `staunch::degrade` and `staunch::budget`. No span or event carries a
//! credential: provider messages are passed through
//! [`redact_secrets`](staunch_core::redact_secrets) before they are shown.
//!
//! Metrics go through the [`metrics`](https://docs.rs/metrics) facade, so
//! any exporter (Prometheus, StatsD, OpenTelemetry) can collect them; with
//! no recorder installed they cost next to nothing. Their names are the
//! constants of [`names`]; labels are kept low-cardinality (provider,
//! model, target and breaker names, error kinds, tiers, fixed reasons).
//! Tokens of failed attempts that a successful answer reports are counted
//! under the answering provider; those of a failed request under the
//! provider of each target that spent them.
//!
//! ```
//! use staunch::core::{ChatRequest, ChatResponse, LlmError, Message};
//! use staunch::observe::InstrumentLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let provider = service_fn(|r: ChatRequest| async move {
//!     Ok::<_, LlmError>(ChatResponse::new(r.model, "ok"))
//! });
//! let service = ServiceBuilder::new().layer(InstrumentLayer::new()).service(provider);
//! let answer = service.oneshot(ChatRequest::new("gpt-4o", vec![Message::user("hi")])).await;
//! assert!(answer.is_ok());
//! # }
//! ```

mod future;
mod genai_metrics;
mod layer;
pub use crate::metrics as names;
pub mod semconv;
mod service;
#[cfg(test)]
mod tests;

pub use future::ResponseFuture;
pub use layer::InstrumentLayer;
pub use service::Instrument;
