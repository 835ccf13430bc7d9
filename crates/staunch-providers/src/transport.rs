//! The HTTP transport shared by the clients: a pooled hyper client over
//! rustls, with timeouts and a bound on the response size.

use crate::ConfigError;
use crate::lanes::{LaneSlot, Lanes};
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use staunch_core::BoxError;
use staunch_core::{Deadline, ErrorKind, LlmError};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

/// Connection and size limits of a client.
///
/// | setting | default |
/// |---|---|
/// | `connect_timeout` | 10 s |
/// | `request_timeout` (whole request: headers and body; a request's [`Deadline`] cuts it shorter) | 600 s, as the official SDKs |
/// | `max_response_bytes` | 16 MiB |
/// | `pool_idle_timeout` | 90 s |
/// | `header_timeout` (streams: until the response headers) | 60 s |
/// | `first_token_timeout` (streams: from the request to the first content event) | 60 s |
/// | `idle_timeout` (streams: between two events after the first content) | 30 s |
/// | `retry_first_token_timeout` | off: a missed first token moves to the next target at once |
/// | `max_event_bytes` (streams: one server-sent event) | 1 MiB |
/// | `http2_prior_knowledge` (HTTP/2 on a plain `http://` URL) | off: HTTP/1.1 there; `https://` negotiates HTTP/2 or 1.1 |
/// | `max_streams_per_connection` (HTTP/2: requests in flight on one connection before another opens) | 100 |
/// | `transport` (a tower HTTP client of your own) | none: a pooled hyper client over rustls |
///
/// A streamed request is bounded by the first four stream limits (and its
/// [`Deadline`]) instead of `request_timeout`, since a long answer may
/// legitimately stream for minutes.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_response_bytes: usize,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) header_timeout: Duration,
    pub(crate) first_token_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) retry_first_token_timeout: bool,
    pub(crate) max_event_bytes: usize,
    pub(crate) http2_prior_knowledge: bool,
    pub(crate) max_streams_per_connection: usize,
    pub(crate) transport: Option<CustomTransport>,
}

/// The body of an upstream's answer: hyper's own, or a user transport's.
pub(crate) enum WireBody {
    /// With the request's place in its connection lane, given back when
    /// the body is dropped.
    Hyper {
        body: hyper::body::Incoming,
        _slot: LaneSlot,
    },
    Custom(UnsyncBoxBody<Bytes, BoxError>),
}

impl http_body::Body for WireBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            WireBody::Hyper { body, .. } => {
                std::pin::Pin::new(body).poll_frame(cx).map_err(Into::into)
            }
            WireBody::Custom(body) => std::pin::Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            WireBody::Hyper { body, .. } => body.is_end_stream(),
            WireBody::Custom(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            WireBody::Hyper { body, .. } => body.size_hint(),
            WireBody::Custom(body) => body.size_hint(),
        }
    }
}

type CustomService = BoxCloneSyncService<Request<Full<Bytes>>, http::Response<WireBody>, BoxError>;

/// A user's own HTTP client, boxed once.
#[derive(Clone)]
pub(crate) struct CustomTransport(CustomService);

impl std::fmt::Debug for CustomTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomTransport")
    }
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            max_response_bytes: 16 * 1024 * 1024,
            pool_idle_timeout: Duration::from_secs(90),
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
            first_token_timeout: Self::DEFAULT_FIRST_TOKEN_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            retry_first_token_timeout: false,
            max_event_bytes: 1024 * 1024,
            http2_prior_knowledge: false,
            max_streams_per_connection: Self::DEFAULT_MAX_STREAMS_PER_CONNECTION,
            transport: None,
        }
    }
}

impl HttpOptions {
    /// The default [`connect_timeout`](Self::connect_timeout): 10 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default [`request_timeout`](Self::request_timeout): 600 s.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
    /// The default [`header_timeout`](Self::header_timeout): 60 s.
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
    /// The default [`first_token_timeout`](Self::first_token_timeout): 60 s.
    pub const DEFAULT_FIRST_TOKEN_TIMEOUT: Duration = Duration::from_secs(60);
    /// The default [`idle_timeout`](Self::idle_timeout): 30 s.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
    /// The default [`max_streams_per_connection`](Self::max_streams_per_connection):
    /// 100, the lowest stream limit providers' HTTP/2 servers advertise.
    pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: usize = 100;

    /// The defaults of the table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long to wait for a connection.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long a whole request may take, response body included. A
    /// request carrying a [`Deadline`] is cut at whichever comes first.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// The largest response body accepted.
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.max_response_bytes = n;
        self
    }

    /// Streams: how long to wait for the response headers. An upstream that
    /// accepts and stays silent is abandoned after it with a `Timeout`
    /// that, like a missed first token, moves the chain to the next target
    /// instead of asking the silent one again (see
    /// [`retry_first_token_timeout`](Self::retry_first_token_timeout)).
    pub fn header_timeout(mut self, d: Duration) -> Self {
        self.header_timeout = d;
        self
    }

    /// Streams: how long, from the request, the first content event may
    /// take. A miss is a `Timeout` that, unless
    /// [`retry_first_token_timeout`](Self::retry_first_token_timeout) is on,
    /// says `x-should-retry: false`, so the chain moves to the next target
    /// instead of asking the slow one again.
    pub fn first_token_timeout(mut self, d: Duration) -> Self {
        self.first_token_timeout = d;
        self
    }

    /// Streams: whether a missed first token (or missed response headers)
    /// may be retried on the same target.
    pub fn retry_first_token_timeout(mut self, on: bool) -> Self {
        self.retry_first_token_timeout = on;
        self
    }

    /// Streams: the longest silence between two events after the first
    /// content; a stall ends the stream with a `Timeout` error.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Streams: the largest single server-sent event accepted.
    pub fn max_event_bytes(mut self, n: usize) -> Self {
        self.max_event_bytes = n;
        self
    }

    /// How long an idle pooled connection is kept.
    pub fn pool_idle_timeout(mut self, d: Duration) -> Self {
        self.pool_idle_timeout = d;
        self
    }

    /// Sends every request through `service`, a tower HTTP client of your
    /// own (with tower-http's tracing, decompression or auth layers, a
    /// proxy connector, hyper-util's client with settings of yours),
    /// instead of staunch's pooled hyper client. `connect_timeout`,
    /// `pool_idle_timeout` and `http2_prior_knowledge` are then the
    /// service's business; everything else staunch bounds still holds over
    /// it: the request timeout and deadline, the stream limits (headers,
    /// first token, idle), the response size bound, key redaction and the
    /// classification of errors. An error of the service is a `Network`
    /// error unless it says more (a tower timeout is a `Timeout`), and a
    /// body that ends short of the `content-length` it declared is a
    /// `TruncatedResponse`, as hyper would have caught it.
    ///
    /// The answer's body may be any `http_body::Body` of `Bytes`. The
    /// requests staunch sends are `http::Request<Full<Bytes>>`: a client
    /// over another request body type (a boxed body, axum's `Body`) goes
    /// behind a `map_request` that converts the body, as the second
    /// example shows.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use staunch_providers::HttpOptions;
    ///
    /// // A service answering every request with an empty 200: any
    /// // `Service<http::Request<Full<Bytes>>, Response = http::Response<B>>`.
    /// let service = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
    /// });
    /// let options = HttpOptions::new().transport(service);
    /// # let _ = options;
    /// ```
    ///
    /// A client whose requests carry a boxed body:
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::combinators::UnsyncBoxBody;
    /// use http_body_util::{BodyExt, Full};
    /// use staunch_providers::HttpOptions;
    /// use tower::ServiceExt;
    ///
    /// type Boxed = UnsyncBoxBody<Bytes, std::convert::Infallible>;
    /// let users_client = tower::service_fn(|_: http::Request<Boxed>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
    /// });
    /// let adapted = users_client
    ///     .map_request(|request: http::Request<Full<Bytes>>| request.map(BodyExt::boxed_unsync));
    /// let options = HttpOptions::new().transport(adapted);
    /// # let _ = options;
    /// ```
    pub fn transport<S, B>(mut self, service: S) -> Self
    where
        S: Service<Request<Full<Bytes>>, Response = http::Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let service = service
            .map_response(|response: http::Response<B>| {
                response.map(|body| WireBody::Custom(UnsyncBoxBody::new(body.map_err(Into::into))))
            })
            .map_err(Into::into);
        self.transport = Some(CustomTransport(BoxCloneSyncService::new(service)));
        self
    }

    /// Speak HTTP/2 from the first byte, without negotiating it: for a
    /// plain `http://` upstream known to serve HTTP/2 (h2c). Its requests
    /// then share one connection instead of taking one each. Only for such
    /// an upstream: an `https://` one negotiates HTTP/2 (or 1.1) by ALPN
    /// without it, and one that speaks only HTTP/1.1 fails every request.
    pub fn http2_prior_knowledge(mut self, on: bool) -> Self {
        self.http2_prior_knowledge = on;
        self
    }

    /// HTTP/2: how many requests may be in flight on one connection before
    /// the client opens another to the same upstream (at least 1). An
    /// HTTP/2 server serves a limited number of streams at once on a
    /// connection (its `SETTINGS_MAX_CONCURRENT_STREAMS`: 100 at some
    /// providers, 200-256 at others), and hyper's pool keeps a single
    /// connection per upstream, so past that limit a request would wait
    /// for another's answer to end, for as long as a streamed answer
    /// takes. Set it at or below the upstream's limit. Over HTTP/1.1 each
    /// request holds a connection of its own and this changes nothing.
    /// Past 64 connections' worth of requests in flight, further ones share
    /// the least busy connection.
    pub fn max_streams_per_connection(mut self, n: usize) -> Self {
        self.max_streams_per_connection = n.max(1);
        self
    }
}

/// A response read in full.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// What sends the requests: staunch's pooled hyper client (spread over
/// lanes, one HTTP/2 connection each), or a user's.
#[derive(Clone)]
enum Sender {
    Hyper(Lanes),
    Custom(CustomService),
}

impl Sender {
    async fn request(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<http::Response<WireBody>, LlmError> {
        match self {
            Sender::Hyper(lanes) => {
                // The place is held until the answer's body is dropped, or
                // with this future if it is dropped first.
                let (client, slot) = lanes.take();
                client
                    .request(request)
                    .await
                    .map(|response| response.map(|body| WireBody::Hyper { body, _slot: slot }))
                    .map_err(send_error)
            }
            Sender::Custom(service) => service.clone().oneshot(request).await.map_err(custom_error),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Transport {
    client: Sender,
    options: Arc<HttpOptions>,
}

impl Transport {
    pub(crate) fn new(options: HttpOptions) -> Result<Self, ConfigError> {
        if let Some(CustomTransport(service)) = &options.transport {
            return Ok(Transport {
                client: Sender::Custom(service.clone()),
                options: Arc::new(options),
            });
        }
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(options.connect_timeout));
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .map_err(|e| ConfigError::Tls(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let lanes = Lanes::new(
            https,
            options.pool_idle_timeout,
            options.http2_prior_knowledge,
            options.max_streams_per_connection,
        );
        Ok(Transport {
            client: Sender::Hyper(lanes),
            options: Arc::new(options),
        })
    }

    /// Sends `request` and reads the whole response, within the request
    /// timeout, the request's deadline and the size bound.
    pub(crate) async fn send(
        &self,
        request: Request<Full<Bytes>>,
        deadline: Option<Deadline>,
    ) -> Result<RawResponse, LlmError> {
        let timeout = self.options.request_timeout;
        let by_deadline = deadline.filter(|d| d.remaining() < timeout);
        if let Some(d) = by_deadline
            && d.is_expired()
        {
            return Err(d.exceeded());
        }
        let limit = self.options.max_response_bytes;
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, limit)
                .collect()
                .await
                .map_err(|e| body_error(e, limit))?
                .to_bytes();
            short_of_its_length(&parts.headers, body.len())?;
            Ok(RawResponse {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        let limit_at = match by_deadline {
            Some(d) => d.instant(),
            None => tokio::time::Instant::now() + timeout,
        };
        match tokio::time::timeout_at(limit_at, exchange).await {
            Ok(result) => result,
            Err(_) => Err(match by_deadline {
                Some(d) => d.exceeded(),
                None => LlmError::new(
                    ErrorKind::Timeout,
                    format!("no complete response within {timeout:?}"),
                ),
            }),
        }
    }
}

/// The head of a streamed response, its body still to be read.
pub(crate) struct StreamingResponse {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: WireBody,
}

impl Transport {
    /// The options.
    pub(crate) fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// Sends `request` and waits for the response headers only, within the
    /// header timeout, the first-token time (`first_token_by`: no first
    /// token can come before the headers) and the request's deadline; the
    /// body is left to read.
    pub(crate) async fn send_streaming(
        &self,
        request: Request<Full<Bytes>>,
        deadline: Option<Deadline>,
        first_token_by: tokio::time::Instant,
    ) -> Result<StreamingResponse, LlmError> {
        let timeout = self.options.header_timeout;
        let headers_by = tokio::time::Instant::now() + timeout;
        let by_deadline = deadline.filter(|d| d.instant() < headers_by.min(first_token_by));
        if let Some(d) = by_deadline
            && d.is_expired()
        {
            return Err(d.exceeded());
        }
        let limit_at = match by_deadline {
            Some(d) => d.instant(),
            None => headers_by.min(first_token_by),
        };
        match tokio::time::timeout_at(limit_at, self.client.request(request)).await {
            Ok(Ok(response)) => {
                let (parts, body) = response.into_parts();
                Ok(StreamingResponse {
                    status: parts.status.as_u16(),
                    headers: parts.headers,
                    body,
                })
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(match by_deadline {
                Some(d) => d.exceeded(),
                // A silent upstream is abandoned for the next target, not
                // asked again (unless told to retry slow starts).
                None => {
                    let message = if first_token_by < headers_by {
                        format!(
                            "no response headers, so no first token, within the first-token timeout of {:?}",
                            self.options.first_token_timeout
                        )
                    } else {
                        format!("no response headers within {timeout:?}")
                    };
                    LlmError::new(ErrorKind::Timeout, message)
                        .with_should_retry(self.options.retry_first_token_timeout)
                }
            }),
        }
    }

    /// Reads the rest of an error answer's body, bounded in size and time.
    pub(crate) async fn read_error_body(&self, body: WireBody) -> Bytes {
        let limit = self.options.max_response_bytes.min(64 * 1024);
        let read = Limited::new(body, limit).collect();
        match tokio::time::timeout(self.options.header_timeout, read).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            _ => Bytes::new(),
        }
    }
}

fn send_error(error: hyper_util::client::legacy::Error) -> LlmError {
    let connect = error.is_connect();
    let mut llm = LlmError::from_box(Box::new(error));
    if connect && llm.kind != ErrorKind::Timeout {
        llm.kind = ErrorKind::Connect;
    } else if llm.kind == ErrorKind::Other {
        llm.kind = ErrorKind::Network;
    }
    llm
}

/// A user transport's error: what it says it is (a tower timeout, a
/// connection refused), else a network failure.
fn custom_error(error: BoxError) -> LlmError {
    let mut llm = LlmError::from_box(error);
    if llm.kind == ErrorKind::Other {
        llm.kind = ErrorKind::Network;
    }
    llm
}

/// A body that ended, without an error, before the `content-length` its
/// headers declared: hyper catches that on its own connections, a user's
/// transport may not, and half an answer must not be parsed as a whole
/// one. A longer body is left alone (a decompressing layer that kept the
/// header makes one); the size bound holds either way.
fn short_of_its_length(headers: &HeaderMap, received: usize) -> Result<(), LlmError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(declared) if (received as u64) < declared => Err(LlmError::new(
            ErrorKind::TruncatedResponse,
            format!(
                "the response body ended after {received} of the {declared} bytes its content-length declared"
            ),
        )),
        _ => Ok(()),
    }
}

fn body_error(error: Box<dyn std::error::Error + Send + Sync>, limit: usize) -> LlmError {
    if error.is::<http_body_util::LengthLimitError>() {
        return LlmError::new(
            ErrorKind::MalformedResponse,
            format!("the response body is larger than the {limit}-byte limit"),
        );
    }
    LlmError::new(
        ErrorKind::TruncatedResponse,
        "the connection closed before the response body was complete",
    )
    .with_source(error)
}
