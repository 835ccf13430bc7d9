//! # staunch-gateway
//!
//! The staunch stack behind OpenAI- and Anthropic-compatible HTTP, so that
//! agents in any language reach models through it with only a base URL:
//!
//! - `POST /v1/chat/completions` and `GET /v1/models` (OpenAI shape) and
//!   `POST /v1/messages` (Anthropic shape), both translated through the
//!   neutral model so either client can be served by either provider,
//!   streaming and tools included;
//! - `POST /v1/embeddings` (OpenAI shape) through the same routes, over the
//!   targets that serve embeddings, falling back only within one vector
//!   space;
//! - routes from a public model name (exact or a `*` pattern) to ordered
//!   targets, each with its own breaker, retry and attempt timeout, behind
//!   degrade and budget layers ([`config`]);
//! - client keys stored as SHA-256 hashes and compared in constant time,
//!   each with an optional token/cost budget;
//! - `/metrics`, `/healthz`, `/readyz`, `x-request-id`, errors in each
//!   ingress's own shape, upstream statuses passed through where they mean
//!   something to the client.
//!
//! ```no_run
//! use staunch_gateway::{Gateway, config::Config, router};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::load(std::path::Path::new("gateway.toml"))?;
//! let listen = config.server.listen;
//! let gateway = Gateway::build(config).await?;
//! let listener = tokio::net::TcpListener::bind(listen).await?;
//! axum::serve(listener, router(gateway)).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod api_limit;
mod auth;
mod build;
pub mod config;
mod errors;
mod ingress;
pub mod json_log;
pub mod log_filter;
pub mod log_writer;
pub mod metric_handles;
mod ops;
mod request_id;
pub mod server;
#[cfg(feature = "otlp")]
pub mod telemetry;

pub use build::{Gateway, GatewayError};
pub use ops::{COST_BUCKETS, DEPTH_BUCKETS, METRICS_UPKEEP_EVERY, metrics_upkeep, prometheus};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use errors::Shape;
use staunch_providers::ingress::{AnthropicMessages, GeminiContent, OpenAiChat};
use std::convert::Infallible;
use tower::Service;

/// The gateway's routes, with the body and concurrency limits of the
/// configuration it was built from, as an axum [`Router`] to serve or to
/// merge into an application of your own. It routes every request to
/// [`service`]'s stack.
pub fn router(gateway: Gateway) -> Router {
    Router::new().fallback_service(service(gateway))
}

/// The gateway's routes as one tower service: what [`router`] serves, and
/// what [`server::serve`] serves directly. A request id, its span and the
/// access log line, the body limit and the cap on model requests at once
/// are applied once around the routes, not around each of them (each
/// layer of an axum router wraps every route in a boxed service of its
/// own, cloned for every request).
pub fn service(
    gateway: Gateway,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ Sync
+ 'static {
    let server = gateway.config().server;
    use api_limit::routes;
    let routes = Router::new()
        .route(routes::CHAT, post(ingress::openai_chat))
        .route(routes::EMBEDDINGS, post(ingress::openai_embeddings))
        .route(routes::MESSAGES, post(ingress::anthropic_messages))
        .route(routes::RESPONSES, post(ingress::openai_responses))
        .route(routes::MODELS, get(ingress::models))
        .route(routes::GEMINI, post(ingress::gemini))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(gateway);
    tower::ServiceBuilder::new()
        .layer(request_id::RequestIdLayer)
        .layer(DefaultBodyLimit::max(server.max_body_bytes))
        .layer(api_limit::ApiLimitLayer::new(server.max_concurrency))
        .service(routes)
}

fn shape_of(uri: &Uri) -> Shape<'static> {
    if uri.path().starts_with("/v1/messages") {
        &AnthropicMessages
    } else if uri.path().starts_with("/v1beta/") {
        &GeminiContent
    } else {
        &OpenAiChat
    }
}

async fn not_found(method: Method, uri: Uri) -> Response {
    errors::reply(
        shape_of(&uri),
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no such endpoint: {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    errors::reply(
        shape_of(&uri),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("{method} is not allowed on {}", uri.path()),
    )
}
