//! The two ingress shapes: OpenAI `POST /v1/chat/completions`, `POST
//! /v1/embeddings` (and `GET /v1/models`) and Anthropic `POST /v1/messages`,
//! translated through the neutral model so either client can be served by
//! either provider.

mod sse;

use crate::auth::{self, Access};
use crate::build::{CompiledRoute, Gateway};
use crate::errors::{Shape, failure, reply};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use staunch::Deadline;
use staunch::budget::BudgetLayer;
use staunch::observe::InstrumentLayer;
use staunch_core::{Answer, Call, EncodingFormat, LlmError};
use staunch_providers::ingress::{
    AnthropicMessages, ChatIngress, Endpoint, GeminiContent, OpenAiChat, OpenAiResponsesApi,
};
use staunch_providers::openai;
use staunch_providers::openai::wire::IngressError;
use tower::{Service, ServiceExt};

/// The request's headers, taken from it: axum's `HeaderMap` extractor
/// copies them (two allocations and a reference count per value, per
/// request), and nothing after a handler's extractors reads them (the
/// body's extractor reads the body only).
pub(crate) struct Headers(HeaderMap);

impl<S: Send + Sync> FromRequestParts<S> for Headers {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Headers(std::mem::take(&mut parts.headers)))
    }
}

/// `POST /v1/chat/completions`.
pub(crate) async fn openai_chat(
    State(gateway): State<Gateway>,
    Headers(headers): Headers,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    chat(OpenAiChat, gateway, headers, Endpoint::default(), body).await
}

/// `POST /v1/messages`.
pub(crate) async fn anthropic_messages(
    State(gateway): State<Gateway>,
    Headers(headers): Headers,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    chat(
        AnthropicMessages,
        gateway,
        headers,
        Endpoint::default(),
        body,
    )
    .await
}

/// `POST /v1/responses`: OpenAI's Responses API, stateless (a request that
/// relies on stored state, `store: true` or `previous_response_id`, gets a
/// 400 saying so).
pub(crate) async fn openai_responses(
    State(gateway): State<Gateway>,
    Headers(headers): Headers,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    chat(
        OpenAiResponsesApi,
        gateway,
        headers,
        Endpoint::default(),
        body,
    )
    .await
}

/// `POST /v1beta/models/{model}:generateContent` and
/// `:streamGenerateContent` (Gemini's; google-genai asks for server-sent
/// events with `?alt=sse`, the only streaming form served here).
pub(crate) async fn gemini(
    State(gateway): State<Gateway>,
    Path(rest): Path<String>,
    Headers(headers): Headers,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (model, stream) = match rest.rsplit_once(':') {
        Some((model, "generateContent")) => (model, false),
        Some((model, "streamGenerateContent")) => (model, true),
        _ => {
            return reply(
                &GeminiContent,
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!(
                    "no method at models/{rest}: the gateway serves :generateContent and :streamGenerateContent"
                ),
            );
        }
    };
    let endpoint = Endpoint::new(Some(model), stream);
    chat(GeminiContent, gateway, headers, endpoint, body).await
}

/// A chat request from a client of `I`'s dialect: read, served by the
/// route's chat stack (whatever the providers' dialects), and answered in
/// `I`'s dialect, whole or streamed.
pub(crate) async fn chat<I: ChatIngress>(
    ingress: I,
    gateway: Gateway,
    headers: HeaderMap,
    endpoint: Endpoint<'_>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let shape: Shape<'_> = &ingress;
    let body = match read(shape, body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let inbound = match ingress.decode(&body, &endpoint) {
        Ok(inbound) => inbound,
        Err(e) => return bad_request(shape, &e),
    };
    drop(body);
    let options = inbound.options;
    let stack = |route: &CompiledRoute, budget, instrument| Ok(route.stack(budget, instrument));
    serve(
        gateway,
        shape,
        headers,
        inbound.request,
        stack,
        move |answer| {
            if answer.is_streaming() {
                return sse::stream(&ingress, answer, &options);
            }
            match ingress.encode(&answer, &options) {
                Ok(body) => json(answer_headers(&answer), body),
                Err(e) => reply(
                    shape,
                    StatusCode::BAD_GATEWAY,
                    "untranslatable_answer",
                    &e.to_string(),
                ),
            }
        },
    )
    .await
}

/// `POST /v1/embeddings`: OpenAI's embeddings, through the route's
/// embeddings stack. A route that serves no embeddings (its targets have no
/// embeddings API, or name models of different vector spaces) answers 400
/// `embeddings_unsupported`, saying why.
pub(crate) async fn openai_embeddings(
    State(gateway): State<Gateway>,
    Headers(headers): Headers,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match read(&OpenAiChat, body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let request = match openai::wire::decode_embeddings_request(&body) {
        Ok(request) => request,
        Err(e) => return bad_request(&OpenAiChat, &e),
    };
    drop(body);
    let format = request.encoding_format.unwrap_or(EncodingFormat::Float);
    let stack = |route: &CompiledRoute, budget, instrument| {
        route.embeddings(budget, instrument).map_err(|why| {
            Box::new(reply(
                &OpenAiChat,
                StatusCode::BAD_REQUEST,
                "embeddings_unsupported",
                why,
            ))
        })
    };
    serve(
        gateway,
        &OpenAiChat,
        headers,
        request,
        stack,
        move |answer| {
            let body = openai::wire::encode_embeddings_response(&answer, format);
            json(answer_headers(&answer), body)
        },
    )
    .await
}

/// `GET /v1/models`: the routes' model names.
pub(crate) async fn models(State(gateway): State<Gateway>, Headers(headers): Headers) -> Response {
    let running = gateway.current();
    if let Access::Denied = auth::check(&running, &headers) {
        return denied(&OpenAiChat);
    }
    let data: Vec<serde_json::Value> = running
        .routes
        .iter()
        .map(|r| serde_json::json!({"id": r.route.model, "object": "model", "created": 0, "owned_by": "staunch"}))
        .collect();
    axum::Json(serde_json::json!({"object": "list", "data": data})).into_response()
}

fn read(shape: Shape<'_>, body: Result<Bytes, BytesRejection>) -> Result<Bytes, Box<Response>> {
    body.map_err(|rejection| {
        Box::new(if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            reply(
                shape,
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "the request body is larger than the gateway's limit",
            )
        } else if crate::server::BodyTooSlow::in_chain(&rejection) {
            reply(
                shape,
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                &rejection.body_text(),
            )
        } else {
            reply(
                shape,
                StatusCode::BAD_REQUEST,
                "invalid_body",
                &format!("could not read the request body: {}", rejection.body_text()),
            )
        })
    })
}

fn bad_request(shape: Shape<'_>, error: &IngressError) -> Response {
    let code = match error {
        IngressError::Json(_) => "invalid_json",
        IngressError::Body(_) => "invalid_type",
        _ => "invalid_value",
    };
    reply(shape, StatusCode::BAD_REQUEST, code, &error.to_string())
}

fn denied(shape: Shape<'_>) -> Response {
    reply(
        shape,
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "a valid gateway key is required (Authorization: Bearer KEY, x-api-key: KEY or x-goog-api-key: KEY)",
    )
}

/// Authenticates, routes, bounds by the route's deadline, charges the
/// key's budget, and calls the route's stack for this kind of call (which
/// `stack` picks, or answers why the route has none).
///
/// The request's headers are dropped before the stack is called: their
/// values are slices of the connection's read buffer, and holding them
/// while the upstream answers would make the server allocate a second
/// buffer for the connection's next read (8 KiB per request in flight).
async fn serve<C, S>(
    gateway: Gateway,
    shape: Shape<'_>,
    headers: HeaderMap,
    mut request: C,
    stack: impl FnOnce(&CompiledRoute, Option<BudgetLayer>, InstrumentLayer) -> Result<S, Box<Response>>,
    answer: impl FnOnce(C::Answer) -> Response,
) -> Response
where
    C: Call,
    S: Service<C, Response = C::Answer, Error = LlmError>,
{
    let running = gateway.current();
    let budget = match auth::check(&running, &headers) {
        Access::Denied => return denied(shape),
        Access::Open => None,
        Access::Key(key) => {
            tracing::debug!(target: "staunch_gateway", key = %key.name, "client key");
            key.budget.clone()
        }
    };
    drop(headers);
    let Some(route) = running.route(request.model()) else {
        return reply(
            shape,
            StatusCode::NOT_FOUND,
            "model_not_found",
            &format!("no route serves the model {:?}", request.model()),
        );
    };
    if let Some(deadline) = route.route.deadline {
        request.extensions_mut().insert(Deadline::after(deadline));
    }
    let stack = match stack(route, budget, gateway.instrument) {
        Ok(stack) => stack,
        Err(response) => return *response,
    };
    // The configuration the request started on stays alive until its
    // answer has gone out, a stream's to its last event, so that a reload
    // meanwhile (which may stop an embedded mock upstream) cuts nothing.
    match stack.oneshot(request).await {
        Ok(response) if response.is_streaming() => answer(response).map(|body| {
            axum::body::Body::new(Holding {
                body,
                _running: running,
            })
        }),
        Ok(response) => answer(response),
        Err(error) => failure(shape, &error),
    }
}

pin_project_lite::pin_project! {
    /// A streamed answer's body, holding what its upstream needs alive.
    struct Holding<T> {
        #[pin]
        body: axum::body::Body,
        _running: T,
    }
}

impl<T> http_body::Body for Holding<T> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A header value of `value`, or `invalid` when it cannot be one.
fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// How many values [`repeated_header`] keeps per thread.
const REPEATED_HEADERS: usize = 32;

thread_local! {
    /// Header values made lately on this thread, by their text.
    static REPEATED: std::cell::RefCell<Vec<(Box<str>, HeaderValue)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// [`header`] for a value that repeats from one answer to the next (a
/// model's, a target's, a tier's name): a clone of the one made before on
/// this thread, which costs no allocation (a new value copies its text onto
/// the heap), once that clone has made it shareable. At most
/// [`REPEATED_HEADERS`] of them are kept per thread, forgotten all at once
/// when there would be more. Only for names from the configuration and the
/// answer, never anything secret.
fn repeated_header(value: &str) -> HeaderValue {
    REPEATED
        .try_with(|kept| {
            let mut kept = kept.try_borrow_mut().ok()?;
            if let Some((_, made)) = kept.iter().find(|(text, _)| **text == *value) {
                return Some(made.clone());
            }
            if kept.len() == REPEATED_HEADERS {
                kept.clear();
            }
            let made = header(value);
            kept.push((Box::from(value), made.clone()));
            Some(made)
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| header(value))
}

/// `x-staunch-attempts` for the counts most answers have.
const ATTEMPTS: [HeaderValue; 4] = [
    HeaderValue::from_static("0"),
    HeaderValue::from_static("1"),
    HeaderValue::from_static("2"),
    HeaderValue::from_static("3"),
];

// Header names as constants: a name given as a `&str` is copied onto the
// heap at each insert.
pub(crate) const X_STAUNCH_MODEL: HeaderName = HeaderName::from_static("x-staunch-model");
pub(crate) const X_STAUNCH_TIER: HeaderName = HeaderName::from_static("x-staunch-tier");
const X_STAUNCH_ATTEMPTS: HeaderName = HeaderName::from_static("x-staunch-attempts");
const X_STAUNCH_TARGET: HeaderName = HeaderName::from_static("x-staunch-target");
const X_STAUNCH_DEPLOYMENT: HeaderName = HeaderName::from_static("x-staunch-deployment");
const X_STAUNCH_WARNING: HeaderName = HeaderName::from_static("x-staunch-warning");

/// What staunch did, as headers (with room for the content type).
pub(crate) fn answer_headers(answer: &impl Answer) -> HeaderMap {
    let meta = answer.meta();
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(X_STAUNCH_MODEL, repeated_header(answer.answered_model()));
    headers.insert(X_STAUNCH_TIER, repeated_header(meta.tier.as_str()));
    let attempts = ATTEMPTS.get(meta.attempts as usize).cloned();
    headers.insert(
        X_STAUNCH_ATTEMPTS,
        attempts.unwrap_or_else(|| HeaderValue::from(meta.attempts)),
    );
    if let Some(target) = &meta.target {
        headers.insert(X_STAUNCH_TARGET, repeated_header(target));
    }
    if let Some(deployment) = &meta.deployment {
        headers.insert(X_STAUNCH_DEPLOYMENT, repeated_header(deployment));
    }
    if let Some(warning) = &meta.warning {
        headers.insert(X_STAUNCH_WARNING, header(warning));
    }
    headers
}

/// A 200 with `body` as JSON, and `headers`.
fn json(mut headers: HeaderMap, body: Vec<u8>) -> Response {
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Built directly: as a tuple's part the map would be copied, entry by
    // entry, into the response's own.
    let mut response = Response::new(axum::body::Body::from(body));
    *response.headers_mut() = headers;
    response
}
