//! [`ClassifyHttpLayer`]: a user's HTTP client as a `Service<HttpCall>`,
//! its non-2xx answers turned into classified [`LlmError`]s.

use super::{HttpAnswer, HttpCall};
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use staunch_core::{
    Answer, BoxError, Call, Deadline, ErrorKind, LlmError, classify_http, redact_secrets,
};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// The default bound on a buffered (JSON) answer: 32 MiB, as staunch's
/// own clients bound theirs.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// Puts [`ClassifyHttp`] over a user's HTTP client (any
/// `Service<http::Request<B>, Response = http::Response<RB>>`, hyper-util's
/// client, a tower-http stack, a reqwest adapter): the innermost staunch
/// layer of a stack over raw HTTP. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct ClassifyHttpLayer<B = Full<Bytes>> {
    max_answer_bytes: usize,
    _body: PhantomData<fn() -> B>,
}

impl ClassifyHttpLayer {
    /// The layer for a client that takes `http::Request<Full<Bytes>>`
    /// (hyper-util's client with `Full<Bytes>` bodies).
    pub fn new() -> Self {
        Self::with_body()
    }
}

impl Default for ClassifyHttpLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> ClassifyHttpLayer<B> {
    /// The layer for a client whose request body is `B` (any type made
    /// from `Bytes`: `Full<Bytes>`, `String` is not, `Bytes` itself is).
    pub fn with_body() -> Self {
        ClassifyHttpLayer {
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            _body: PhantomData,
        }
    }

    /// The most bytes of a JSON answer read ([`DEFAULT_MAX_ANSWER_BYTES`]
    /// by default); a larger answer fails as `MalformedResponse`. Streams
    /// are not buffered and not bounded here.
    pub fn max_answer_bytes(mut self, bytes: usize) -> Self {
        self.max_answer_bytes = bytes;
        self
    }
}

impl<S, B> Layer<S> for ClassifyHttpLayer<B> {
    type Service = ClassifyHttp<S, B>;

    fn layer(&self, inner: S) -> ClassifyHttp<S, B> {
        ClassifyHttp {
            inner,
            max_answer_bytes: self.max_answer_bytes,
            _body: PhantomData,
        }
    }
}

/// `classify_http(client)`: the client under [`ClassifyHttpLayer::new`].
pub fn classify_http<S>(client: S) -> ClassifyHttp<S> {
    ClassifyHttpLayer::new().layer(client)
}

/// A user's HTTP client as a `Service<HttpCall>` answering [`HttpAnswer`]s
/// and failing with [`LlmError`]s classified as staunch's own clients
/// classify them (staunch-core's [`classify_http::any`]): status, the
/// JSON error body (at most [`classify_http::MAX_ERROR_BODY_BYTES`] of it
/// read, credentials masked), `Retry-After` / `retry-after-ms`,
/// `x-should-retry`, the request id and the rate-limit headers. A client
/// error (connect, I/O) is `Network` unless it is one staunch knows.
pub struct ClassifyHttp<S, B = Full<Bytes>> {
    inner: S,
    max_answer_bytes: usize,
    _body: PhantomData<fn() -> B>,
}

impl<S: Clone, B> Clone for ClassifyHttp<S, B> {
    fn clone(&self) -> Self {
        ClassifyHttp {
            inner: self.inner.clone(),
            max_answer_bytes: self.max_answer_bytes,
            _body: PhantomData,
        }
    }
}

impl<S: fmt::Debug, B> fmt::Debug for ClassifyHttp<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifyHttp")
            .field("inner", &self.inner)
            .field("max_answer_bytes", &self.max_answer_bytes)
            .finish()
    }
}

fn transport_error(error: impl Into<BoxError>) -> LlmError {
    let mut error = LlmError::from_box(error.into());
    if error.kind == ErrorKind::Other {
        error.kind = ErrorKind::Network;
    }
    error
}

/// The future of [`ClassifyHttp`].
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<HttpAnswer, LlmError>> + Send>>;

impl<S, B, RB> Service<HttpCall> for ClassifyHttp<S, B>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: From<Bytes>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = HttpAnswer;
    type Error = LlmError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx).map_err(transport_error)
    }

    fn call(&mut self, mut call: HttpCall) -> ResponseFuture {
        let started = call.start_clock();
        let deadline = call.extensions().get::<Deadline>().copied();
        let sent = self.inner.call(call.to_request());
        let max_answer_bytes = self.max_answer_bytes;
        Box::pin(async move {
            let provider = call.provider().to_owned();
            let model = call.model().to_owned();
            let exchange = answer(sent, &call, max_answer_bytes);
            // The call's deadline bounds the exchange (a JSON answer's body
            // and an error's included), as it bounds a staunch client's;
            // a stream's body is the caller's once its headers are in.
            let outcome = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline.instant(), exchange)
                    .await
                    .unwrap_or_else(|_| Err(deadline.exceeded())),
                None => exchange.await,
            };
            match outcome {
                Ok(mut answer) => {
                    let meta = answer.meta_mut();
                    meta.answered_by(provider, model);
                    meta.record_latency(started);
                    Ok(answer)
                }
                Err(mut error) => {
                    error.provider.get_or_insert(provider);
                    error.model.get_or_insert(model);
                    Err(error)
                }
            }
        })
    }
}

async fn answer<F, RB, E>(
    sent: F,
    call: &HttpCall,
    max_answer_bytes: usize,
) -> Result<HttpAnswer, LlmError>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let response = sent.await.map_err(transport_error)?;
    let (parts, body) = response.into_parts();
    let limits = classify_http::rate_limit_headers(&parts.headers);
    if !parts.status.is_success() {
        let bytes = read_error_body(body).await;
        let mut error = classify_http::any(parts.status.as_u16(), &parts.headers, &bytes);
        if let std::borrow::Cow::Owned(masked) = redact_secrets(&error.message) {
            error.message = masked;
        }
        return Err(error);
    }
    let event_stream = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    let mut answer = if event_stream || (call.is_stream() && !is_json(&parts.headers)) {
        // The commit point: the headers of a stream are its answer.
        HttpAnswer::streaming(parts, body.map_err(Into::into).boxed_unsync())
    } else {
        let bytes = match Limited::new(body, max_answer_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                return Err(LlmError::new(
                    ErrorKind::MalformedResponse,
                    format!("the answer is larger than the {max_answer_bytes}-byte limit"),
                ));
            }
            // The body broke off: the next attempt may arrive whole.
            Err(error) => return Err(broken_body(error)),
        };
        HttpAnswer::buffered(parts, bytes)
    };
    answer.meta_mut().rate_limit_headers = limits;
    Ok(answer)
}

fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"))
}

/// A body that broke off: `TruncatedResponse` (the next attempt may
/// arrive whole) unless the error is one staunch knows better.
fn broken_body(error: BoxError) -> LlmError {
    let mut error = transport_error(error);
    if error.kind == ErrorKind::Network {
        error.kind = ErrorKind::TruncatedResponse;
    }
    error
}

/// At most [`classify_http::MAX_ERROR_BODY_BYTES`] of an error body; the
/// rest is dropped unread, and a body that breaks off gives what came.
async fn read_error_body<RB>(body: RB) -> Bytes
where
    RB: Body<Data = Bytes>,
{
    let max = classify_http::MAX_ERROR_BODY_BYTES;
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while out.len() < max {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let take = data.len().min(max - out.len());
                    out.extend_from_slice(&data[..take]);
                }
            }
            _ => break,
        }
    }
    Bytes::from(out)
}
