//! [`HttpCall`]: an HTTP request as a staunch [`Call`].

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri, Version};
use serde::Deserialize;
use staunch_core::{Call, ErrorKind, Extensions, LlmError, Operation};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use tokio::time::Instant;

use super::HttpAnswer;

/// The default bound on a request body: 32 MiB, the largest request body
/// the major providers accept (Anthropic's Messages limit).
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// What one request's head is: shared by every attempt's clone.
#[derive(Debug)]
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

/// An HTTP request to an LLM provider, as the staunch layers see it: an
/// `http::Request<Bytes>` whose body is held whole so that every retry
/// sends it again, identically.
///
/// # Replayable bodies: what they cost and how they are bounded
///
/// A retry (or a fallback, or a half-open probe) sends the same request
/// again, so the body cannot be a one-shot stream: it is buffered once, as
/// [`Bytes`]. That costs one copy of the body per request, when it is
/// buffered (nothing at all when it is already `Bytes`, as in
/// [`HttpCall::new`]), and nothing per attempt: cloning `Bytes` is a
/// reference count, and the head (method, URI, headers) is shared behind
/// an `Arc` until an attempt turns it into the `http::Request` its client
/// sends. A body larger than the bound (by default
/// [`DEFAULT_MAX_BODY_BYTES`], set with [`HttpCall::with_limit`]) is
/// refused with an `InvalidRequest` error that says so, before anything is
/// sent.
///
/// # What is read from the body, once
///
/// At construction the JSON body (when it is one) is scanned once, without
/// building a tree, for `model`, `stream` and the output cap
/// (`max_tokens`, `max_completion_tokens` or `max_output_tokens`). A body
/// without a `model` (Gemini names it in the path) takes it from a
/// `/models/<model>:<method>` path. Nothing else of the body is ever read.
///
/// ```
/// use bytes::Bytes;
/// use staunch::core::Call;
/// use staunch::http_call::HttpCall;
///
/// let request = http::Request::post("https://api.openai.com/v1/chat/completions")
///     .body(Bytes::from_static(br#"{"model": "gpt-4o", "max_tokens": 64, "messages": []}"#))
///     .unwrap();
/// let call = HttpCall::new(request).unwrap();
/// assert_eq!(call.model(), "gpt-4o");
/// assert_eq!(call.max_output_tokens(), Some(64));
/// assert!(!call.is_stream());
/// ```
#[derive(Clone)]
pub struct HttpCall {
    head: Arc<Head>,
    body: Bytes,
    model: Arc<str>,
    max_output: Option<u64>,
    stream: bool,
    extensions: Extensions,
    started: Option<Instant>,
}

/// The fields of a request body worth knowing, borrowed where possible;
/// every other field is skipped by the scanner, not stored.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
}

fn model_in_path(uri: &Uri) -> Option<&str> {
    let (_, rest) = uri.path().split_once("/models/")?;
    let model = rest.split([':', '/']).next()?;
    (!model.is_empty()).then_some(model)
}

impl HttpCall {
    /// The call of `request`, bounded by [`DEFAULT_MAX_BODY_BYTES`].
    pub fn new(request: Request<Bytes>) -> Result<HttpCall, LlmError> {
        Self::with_limit(request, DEFAULT_MAX_BODY_BYTES)
    }

    /// The call of `request`, refused when its body is larger than
    /// `max_body_bytes`.
    pub fn with_limit(
        request: Request<Bytes>,
        max_body_bytes: usize,
    ) -> Result<HttpCall, LlmError> {
        let (parts, body) = request.into_parts();
        if body.len() > max_body_bytes {
            return Err(too_large(body.len(), max_body_bytes));
        }
        let peek: Option<Peek<'_>> = serde_json::from_slice(&body).ok();
        let model = peek
            .as_ref()
            .and_then(|p| p.model.as_deref())
            .or_else(|| model_in_path(&parts.uri))
            .unwrap_or_default()
            .into();
        let (stream, max_output) = match &peek {
            Some(p) => (
                p.stream.unwrap_or(false),
                p.max_tokens
                    .or(p.max_completion_tokens)
                    .or(p.max_output_tokens),
            ),
            None => (false, None),
        };
        let stream = stream || parts.uri.path().contains("streamGenerateContent");
        Ok(HttpCall {
            head: Arc::new(Head {
                method: parts.method,
                uri: parts.uri,
                version: parts.version,
                headers: parts.headers,
            }),
            body,
            model,
            max_output,
            stream,
            extensions: Extensions::default(),
            started: None,
        })
    }

    /// The call of a request whose body is any `http_body::Body` (an axum
    /// or hyper request being proxied): the body is read into one buffer,
    /// at most `max_body_bytes` of it; a larger body is refused as
    /// [`with_limit`](Self::with_limit) refuses it, and a body that fails
    /// to arrive is an `InvalidRequest` error too (the caller's side broke).
    pub async fn buffer<B>(request: Request<B>, max_body_bytes: usize) -> Result<HttpCall, LlmError>
    where
        B: http_body::Body,
        B::Error: Into<staunch_core::BoxError>,
    {
        use http_body_util::BodyExt;
        let (parts, body) = request.into_parts();
        let body = match http_body_util::Limited::new(body, max_body_bytes)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                return Err(LlmError::new(
                    ErrorKind::InvalidRequest,
                    format!(
                        "the request body is larger than the {max_body_bytes}-byte limit of HttpCall"
                    ),
                ));
            }
            Err(error) => {
                return Err(LlmError::new(
                    ErrorKind::InvalidRequest,
                    "could not read the request body",
                )
                .with_source(BodyError(error.to_string())));
            }
        };
        Self::with_limit(Request::from_parts(parts, body), max_body_bytes)
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.head.method
    }

    /// The URI.
    pub fn uri(&self) -> &Uri {
        &self.head.uri
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// The body, as it is sent on every attempt.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The request one attempt sends: the shared head copied, the body
    /// shared (a reference count). The call's extensions stay with the
    /// call: layers below the classifier see the HTTP request's own.
    pub fn to_request<B: From<Bytes>>(&self) -> Request<B> {
        let mut request = Request::new(B::from(self.body.clone()));
        *request.method_mut() = self.head.method.clone();
        *request.uri_mut() = self.head.uri.clone();
        *request.version_mut() = self.head.version;
        *request.headers_mut() = self.head.headers.clone();
        request
    }

    /// Who is asked: the URI's host, for the answer's meta and errors.
    pub(super) fn provider(&self) -> &str {
        self.head.uri.host().unwrap_or("http")
    }
}

fn too_large(len: usize, max: usize) -> LlmError {
    LlmError::new(
        ErrorKind::InvalidRequest,
        format!(
            "the request body is {len} bytes, over the {max}-byte limit of HttpCall (retries need the body buffered; raise the bound with HttpCall::with_limit)"
        ),
    )
}

/// A request body that failed to arrive, as text.
#[derive(Debug)]
struct BodyError(String);

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BodyError {}

impl fmt::Debug for HttpCall {
    /// Method, URI path, model and body size; never a header value (they
    /// carry the key) nor the body.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCall")
            .field("method", &self.head.method)
            .field("path", &self.head.uri.path())
            .field("model", &self.model)
            .field("stream", &self.stream)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// The call trait for raw HTTP.
///
/// `OPERATION` is [`Operation::Chat`]: the operation is a constant of the
/// type, while an HTTP call's real operation is only known per request
/// (its path), so no constant could name it truly; almost all LLM traffic
/// sent this way is chat completions or messages, and chat's defaults (a
/// 30 s attempt timeout) fit generation. A new `Operation::Http` variant
/// would cost every match on the operation (metrics labels, the gateway) a
/// case for a name that still would not say what the request does; read
/// [`HttpCall::uri`]'s path where the exact endpoint matters.
impl Call for HttpCall {
    type Answer = HttpAnswer;

    const OPERATION: Operation = Operation::Chat;

    #[inline]
    fn model(&self) -> &str {
        &self.model
    }

    /// A clone whose JSON body's `model` is `model` (the body is rewritten:
    /// one parse and one write, on a fallback with a model of its own). A
    /// body that is not a JSON object is sent unchanged.
    fn clone_for_model(&self, model: &str) -> Self {
        let mut call = self.clone();
        call.model = model.into();
        if let Ok(serde_json::Value::Object(mut map)) =
            serde_json::from_slice::<serde_json::Value>(&self.body)
        {
            map.insert("model".into(), model.into());
            if let Ok(body) = serde_json::to_vec(&map) {
                call.body = Bytes::from(body);
            }
        }
        call
    }

    /// The body's size in bytes over four, rounded up: the usual
    /// four-characters-a-token rule applied to the whole body, JSON syntax
    /// included, so an overestimate (the safe side for quotas).
    #[inline]
    fn estimated_input_tokens(&self) -> u64 {
        (self.body.len() as u64).div_ceil(4)
    }

    #[inline]
    fn max_output_tokens(&self) -> Option<u64> {
        self.max_output
    }

    #[inline]
    fn is_stream(&self) -> bool {
        self.stream
    }

    #[inline]
    fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    #[inline]
    fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }

    #[inline]
    fn start_clock(&mut self) -> Instant {
        *self.started.get_or_insert_with(Instant::now)
    }

    #[inline]
    fn started(&self) -> Option<Instant> {
        self.started
    }
}
