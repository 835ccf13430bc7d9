//! The gateway's HTTP surface: an OpenAI-shaped chat endpoint over any
//! staunch stack, the metrics, and the breakers' health. Shared by the
//! example and its integration test.
//!
//! Its memory is bounded whatever clients send: at most
//! [`Limits::max_concurrent`] chat requests are served at once (the rest
//! wait, holding no body), and a body larger than
//! [`Limits::max_body_bytes`] is refused with 413 before it is read
//! whole. Every 4xx it produces (a body too large, not JSON, of the wrong
//! shape, an unknown route, a wrong method) is an OpenAI-shaped JSON
//! error, `{"error": {"message", "type", "param", "code"}}`.

use axum::Json;
use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use staunch::circuit_breaker::CircuitBreakerHandle;
use staunch::core::{ChatRequest, ChatResponse, ErrorClass, ErrorKind, LlmError};
use std::sync::Arc;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use staunch::core::Price;
use staunch::degrade::DegradeConfig;
use staunch::fallback::{Fallback, Target};
use staunch::observe::InstrumentLayer;
use staunch::{ServiceBuilderExt, TargetBuilder};
use staunch_providers::openai::wire::{self, IngressError};
use staunch_providers::{Anthropic, OpenAi};
use tower::ServiceBuilder;

/// The stack the gateway serves.
pub type Stack = BoxCloneSyncService<ChatRequest, ChatResponse, LlmError>;

#[derive(Clone)]
pub struct Gateway {
    pub stack: Stack,
    pub render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    pub breakers: Vec<CircuitBreakerHandle>,
}

/// What the gateway lets in.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Chat requests served at once; more wait their turn
    /// (`STAUNCH_GATEWAY_MAX_CONCURRENT`, default 64).
    pub max_concurrent: usize,
    /// The largest request body accepted, in bytes; larger ones get a 413
    /// (`STAUNCH_GATEWAY_MAX_BODY_BYTES`, default 2 MiB).
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent: 64,
            max_body_bytes: 2 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// The defaults, overridden by `STAUNCH_GATEWAY_MAX_CONCURRENT` and
    /// `STAUNCH_GATEWAY_MAX_BODY_BYTES` when they are set to positive
    /// numbers.
    pub fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|n| *n > 0)
        };
        let defaults = Limits::default();
        Limits {
            max_concurrent: var("STAUNCH_GATEWAY_MAX_CONCURRENT")
                .unwrap_or(defaults.max_concurrent),
            max_body_bytes: var("STAUNCH_GATEWAY_MAX_BODY_BYTES")
                .unwrap_or(defaults.max_body_bytes),
        }
    }
}

/// The gateway with [`Limits::from_env`].
pub fn router(gateway: Gateway) -> Router {
    router_with(gateway, Limits::from_env())
}

/// The gateway with explicit limits.
pub fn router_with(gateway: Gateway, limits: Limits) -> Router {
    let max_concurrent = limits.max_concurrent.max(1);
    // One semaphore for the chat route, whatever axum clones.
    let concurrency = tower::limit::GlobalConcurrencyLimitLayer::new(max_concurrent);
    let max_body = limits.max_body_bytes;
    Router::new()
        .route(
            "/v1/chat/completions",
            post(move |state, body| chat(state, body, max_body)).layer(concurrency),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(gateway)
}

async fn not_found(method: Method, uri: Uri) -> Response {
    openai_error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        &format!("Invalid URL ({method} {})", uri.path()),
        Some("not_found"),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    openai_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        &format!("{method} is not allowed on {}", uri.path()),
        Some("method_not_allowed"),
    )
}

fn openai_error(status: StatusCode, kind: &str, message: &str, code: Option<&str>) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": kind, "param": null, "code": code}})),
    )
        .into_response()
}

async fn chat(
    State(gateway): State<Gateway>,
    body: Result<axum::body::Bytes, BytesRejection>,
    max_body: usize,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return openai_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                &format!("the request body is larger than the gateway's limit of {max_body} bytes"),
                Some("request_too_large"),
            );
        }
        Err(rejection) => {
            return openai_error(
                rejection.status(),
                "invalid_request_error",
                &format!("could not read the request body: {}", rejection.body_text()),
                None,
            );
        }
    };
    let decoded = match wire::decode_request(&body) {
        Ok(decoded) => decoded,
        Err(e) => {
            let code = match &e {
                IngressError::Json(_) => "invalid_json",
                IngressError::Body(_) => "invalid_type",
                _ => "invalid_value",
            };
            let mut response = openai_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &e.to_string(),
                Some(code),
            );
            if let Some(field) = e.field()
                && let Ok(body) = serde_json::to_vec(&json!({"error": {
                    "message": e.to_string(), "type": "invalid_request_error",
                    "param": field, "code": code}}))
            {
                *response.body_mut() = axum::body::Body::from(body);
            }
            return response;
        }
    };
    drop(body);
    let include_usage = decoded.include_usage;
    let request = decoded.request.with_stream(decoded.stream);
    match gateway.stack.oneshot(request).await {
        Ok(answer) if answer.is_streaming() => stream_response(answer, include_usage),
        Ok(answer) => answer_response(answer),
        Err(error) => error_response(&error),
    }
}

fn header(value: impl AsRef<str>) -> HeaderValue {
    HeaderValue::from_str(value.as_ref()).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// What staunch did, as headers.
fn meta_headers(answer: &ChatResponse) -> HeaderMap {
    let meta = &answer.meta;
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-staunch-model",
        header(meta.model.as_deref().unwrap_or(&answer.model)),
    );
    headers.insert("x-staunch-tier", header(meta.tier.as_str()));
    headers.insert("x-staunch-attempts", header(meta.attempts.to_string()));
    if let Some(provider) = &meta.provider {
        headers.insert("x-staunch-provider", header(provider));
    }
    if let Some(warning) = &meta.warning {
        headers.insert("x-staunch-warning", header(warning));
    }
    headers
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn answer_response(answer: ChatResponse) -> Response {
    let mut headers = meta_headers(&answer);
    let body = wire::encode_response(&answer, unix_now());
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (StatusCode::OK, headers, body).into_response()
}

/// A streamed answer as OpenAI server-sent events. After the commit point a
/// failure goes out as an in-band `data: {"error": …}` event and the
/// connection closes without `[DONE]`, so no client mistakes a broken
/// stream for a complete one.
fn stream_response(mut answer: ChatResponse, include_usage: bool) -> Response {
    let mut headers = meta_headers(&answer);
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    let Some(events) = answer.take_stream() else {
        return answer_response(answer);
    };
    let model = answer
        .meta
        .model
        .clone()
        .unwrap_or_else(|| answer.model.clone());
    let id = if answer.id.is_empty() {
        "chatcmpl-staunch".to_owned()
    } else {
        answer.id.clone()
    };
    let sse = SseBody {
        events,
        id,
        model,
        created: unix_now(),
        include_usage,
        first: true,
        ended: false,
    };
    (StatusCode::OK, headers, axum::body::Body::from_stream(sse)).into_response()
}

/// The events of a stream, written as Chat Completions chunks.
struct SseBody {
    events: staunch::core::EventStream,
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    first: bool,
    ended: bool,
}

impl futures_core::Stream for SseBody {
    type Item = Result<axum::body::Bytes, std::convert::Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            let item = match this.events.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(item) => item,
            };
            let bytes = match item {
                Some(Ok(event)) => {
                    match wire::encode_chunk(
                        &event,
                        &this.id,
                        &this.model,
                        this.created,
                        this.first,
                        this.include_usage,
                    ) {
                        Some(chunk) => {
                            this.first = false;
                            chunk
                        }
                        None => continue,
                    }
                }
                Some(Err(error)) => {
                    this.ended = true;
                    wire::encode_stream_error(&error)
                }
                None => {
                    this.ended = true;
                    wire::STREAM_DONE.to_vec()
                }
            };
            return Poll::Ready(Some(Ok(axum::body::Bytes::from(bytes))));
        }
    }
}

/// Maps a failure to the status an OpenAI client expects, so its own retry
/// logic does the right thing.
fn error_response(error: &LlmError) -> Response {
    let status = match (error.kind, error.class()) {
        (ErrorKind::BudgetExhausted | ErrorKind::RateLimited, _) => StatusCode::TOO_MANY_REQUESTS,
        (ErrorKind::ContextLengthExceeded | ErrorKind::ContentFiltered, _) => {
            StatusCode::BAD_REQUEST
        }
        (_, ErrorClass::Fatal) => StatusCode::BAD_REQUEST,
        (ErrorKind::Timeout, _) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = openai_error(
        status,
        "staunch_error",
        &error.to_string(),
        Some(error.kind.as_str()),
    );
    if let Some(wait) = error.retry_after {
        response
            .headers_mut()
            .insert("retry-after", header(wait.as_secs().max(1).to_string()));
    }
    response
}

async fn metrics(State(gateway): State<Gateway>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        (gateway.render_metrics)(),
    )
        .into_response()
}

async fn health(State(gateway): State<Gateway>) -> Response {
    let breakers: Vec<Value> = gateway
        .breakers
        .iter()
        .map(|b| json!({"name": b.name(), "state": b.state().as_str(), "call_permitted": b.is_call_permitted()}))
        .collect();
    Json(json!({"breakers": breakers})).into_response()
}

fn target<S>(
    name: &'static str,
    client: S,
    model: &'static str,
    price: Price,
) -> Result<(Target, CircuitBreakerHandle), Box<dyn std::error::Error>>
where
    S: tower::Service<ChatRequest, Response = ChatResponse, Error = LlmError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    Ok(TargetBuilder::new(name, client)
        .model(model)
        .price(price)
        .build()?)
}

/// The stack over an OpenAI-compatible and an Anthropic-compatible client.
pub fn build(
    openai: OpenAi,
    anthropic: Anthropic,
) -> Result<(Stack, Vec<CircuitBreakerHandle>), Box<dyn std::error::Error>> {
    let (a, ha) = target("openai", openai, "gpt-4o", Price::per_million(2.5, 10.0))?;
    let (b, hb) = target(
        "anthropic",
        anthropic,
        "claude-sonnet-4-5",
        Price::per_million(3.0, 15.0),
    )?;
    let stack = ServiceBuilder::new()
        .layer(InstrumentLayer::new())
        .degrade(
            DegradeConfig::new()
                .cache(std::time::Duration::from_secs(600), 10_000)
                .static_answer("The assistant is unavailable right now; please retry shortly."),
        )
        .service(Fallback::new([a, b])?);
    Ok((BoxCloneSyncService::new(stack), vec![ha, hb]))
}
