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
//! A model name can come from a client (a gateway's glob route passes it
//! on), so at most [`MAX_MODEL_LABELS`] (64) distinct names label metrics in a
//! process (see [`limit_model_labels`]); later ones are labelled
//! [`OTHER_MODEL`] (`_OTHER`), while spans keep the name as sent.
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
//!     Ok::<_, LlmError>(ChatResponse::new(&r.model, "ok"))
//! });
//! let service = ServiceBuilder::new().layer(InstrumentLayer::new()).service(provider);
//! let answer = service.oneshot(ChatRequest::new("gpt-4o", vec![Message::user("hi")])).await;
//! assert!(answer.is_ok());
//! # }
//! ```
//!
//! # OpenTelemetry: the same spans in your own subscriber
//!
//! The request span follows the OpenTelemetry GenAI semantic conventions
//! ([`semconv`]): its `otel.name` field names it `{operation} {model}`
//! (`chat gpt-4o`), its `otel.kind` field makes it a `client` span, and its
//! `gen_ai.*` fields are the conventions' attributes. So the
//! [`tracing-opentelemetry`](https://docs.rs/tracing-opentelemetry) layer
//! in your own `tracing_subscriber` turns it into the span an OpenTelemetry
//! backend expects, as the gateway's OTLP export does (`[telemetry]` in
//! its configuration). Match the crates' release train: tracing-opentelemetry
//! 0.32 goes with opentelemetry and opentelemetry_sdk 0.31 (and, for OTLP,
//! opentelemetry-otlp 0.31).
//!
//! - Give the tracer provider your exporter: `opentelemetry_otlp::SpanExporter`
//!   with `with_batch_exporter` for a collector (below, one that keeps the
//!   spans in memory).
//! - The retry layer's `llm.attempt` spans, one per call to a provider and
//!   children of the request span, are at DEBUG level: let `staunch=debug`
//!   spans through the OpenTelemetry layer's filter to export them.
//! - The request span's parent is whatever span is current when the
//!   request is called (your HTTP server's, say), so the trace reads
//!   from your handler down to each attempt.
//! - Message content is never recorded, nor keys.
//!
//! ```
//! use opentelemetry::trace::TracerProvider as _;
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//! use staunch::core::{ChatRequest, ChatResponse, LlmError, Message};
//! use staunch::observe::InstrumentLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tracing_subscriber::filter::{LevelFilter, Targets};
//! use tracing_subscriber::prelude::*;
//! # use opentelemetry_sdk::error::OTelSdkResult;
//! # use opentelemetry_sdk::trace::{SpanData, SpanExporter};
//! # use std::sync::{Arc, Mutex};
//! # /// An exporter that keeps the spans, for this example.
//! # #[derive(Debug, Clone, Default)]
//! # struct Kept(Arc<Mutex<Vec<SpanData>>>);
//! # impl SpanExporter for Kept {
//! #     async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
//! #         self.0.lock().unwrap().extend(batch);
//! #         Ok(())
//! #     }
//! # }
//! # let exporter = Kept::default();
//! # let kept = exporter.clone();
//!
//! let provider = SdkTracerProvider::builder()
//!     .with_simple_exporter(exporter)
//!     .build();
//! let otel = tracing_opentelemetry::layer()
//!     .with_tracer(provider.tracer("my-agent"))
//!     .with_filter(
//!         Targets::new()
//!             .with_target("staunch", LevelFilter::DEBUG)
//!             .with_default(LevelFilter::INFO),
//!     );
//! let subscriber = tracing_subscriber::registry().with(otel);
//!
//! let provider_call = service_fn(|r: ChatRequest| async move {
//!     Ok::<_, LlmError>(ChatResponse::new(&r.model, "ok"))
//! });
//! let service = ServiceBuilder::new()
//!     .layer(InstrumentLayer::new())
//!     .service(provider_call);
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! tracing::subscriber::with_default(subscriber, || {
//!     runtime.block_on(async {
//!         let request = ChatRequest::new("gpt-4o", vec![Message::user("hi")]);
//!         service.oneshot(request).await.unwrap();
//!     })
//! });
//! provider.shutdown().unwrap();
//! # let spans = kept.0.lock().unwrap();
//! # let chat = spans.iter().find(|s| s.name == "chat gpt-4o").expect("the request span");
//! # assert_eq!(chat.span_kind, opentelemetry::trace::SpanKind::Client);
//! # assert!(chat.attributes.iter().any(|kv| {
//! #     kv.key.as_str() == "gen_ai.operation.name" && kv.value.as_str() == "chat"
//! # }));
//! ```

mod future;
mod genai_metrics;
mod layer;
mod model_label;
mod request_model;
pub use crate::metrics as names;
pub mod semconv;
mod service;
#[cfg(test)]
mod tests;

pub use future::ResponseFuture;
pub use layer::InstrumentLayer;
pub use model_label::{MAX_MODEL_LABELS, OTHER_MODEL, limit_model_labels};
pub use service::Instrument;
