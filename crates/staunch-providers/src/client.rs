//! What both clients share: building the HTTP request, sending it, and
//! telling the truth about the outcome.

use crate::ConfigError;
use crate::dialect::Wire;
use crate::key::{ApiKey, MASK, Redactor};
use crate::transport::{HttpOptions, Transport};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::Full;
use staunch_core::{
    ChatRequest, ChatResponse, Deadline, EmbeddingRequest, EmbeddingResponse, ErrorKind, LlmError,
    ResponseMeta, redact_secrets,
};
use std::fmt;
use tokio::time::Instant;
use tracing::Instrument;

/// An answer the client core tags with who gave it (provider, model,
/// latency, rate-limit headers): every operation's response.
pub(crate) trait Answered {
    fn meta_mut(&mut self) -> &mut ResponseMeta;
}

impl Answered for ChatResponse {
    fn meta_mut(&mut self) -> &mut ResponseMeta {
        &mut self.meta
    }
}

impl Answered for EmbeddingResponse {
    fn meta_mut(&mut self) -> &mut ResponseMeta {
        &mut self.meta
    }
}

/// How the key is sent.
#[derive(Clone, Debug)]
pub(crate) enum Auth {
    /// `authorization: Bearer <key>` (OpenAI and most compatible servers).
    Bearer,
    /// The key alone in a named header (`x-api-key`, Azure's `api-key`).
    Header(HeaderName),
}

#[derive(Clone)]
pub(crate) struct Core {
    pub(crate) provider: String,
    uri: Uri,
    /// The server every answer comes from, read from `uri` once: its host
    /// and port (the scheme's default when the URL names none).
    server: Option<(String, u16)>,
    headers: HeaderMap,
    transport: Transport,
    /// The key, custom header values and query values, masked out of every
    /// error before it leaves [`Core::exchange`].
    redactor: Redactor,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("provider", &self.provider)
            .field("uri", &Masked(redact_url(&self.uri.to_string())))
            .finish_non_exhaustive()
    }
}

/// Header and query names whose values are protocol settings, not secrets:
/// they are neither masked out of errors nor marked sensitive.
const PUBLIC_NAMES: [&str; 7] = [
    "anthropic-version",
    "anthropic-beta",
    "openai-beta",
    "api-version",
    "content-type",
    "accept",
    "user-agent",
];

fn is_public(name: &str) -> bool {
    PUBLIC_NAMES.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// Text that `Debug` prints as it is (for already-masked strings).
pub(crate) struct Masked(pub(crate) String);

impl fmt::Debug for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Custom headers for `Debug`: names print, values are `[redacted]`
/// (except well-known settings such as `anthropic-version`).
pub(crate) struct HeadersDebug<'a>(pub(crate) &'a [(String, String)]);

impl fmt::Debug for HeadersDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, value)| {
                let shown = if is_public(name) {
                    value.as_str()
                } else {
                    MASK
                };
                (name.as_str(), shown)
            }))
            .finish()
    }
}

/// A query string with every value replaced by `[redacted]`, names kept
/// (`api-version` values are kept).
pub(crate) fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_public(name) => pair.to_owned(),
            Some((name, _)) => format!("{name}={MASK}"),
            None if pair.is_empty() => String::new(),
            None => MASK.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A URL (or a path) for `Debug`: user info and query values masked.
pub(crate) fn redact_url(url: &str) -> String {
    let (mut head, query) = match url.split_once('?') {
        Some((head, query)) => (head.to_owned(), Some(query)),
        None => (url.to_owned(), None),
    };
    if let Some(scheme_end) = head.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = head[authority_start..]
            .find('/')
            .map_or(head.len(), |i| authority_start + i);
        if let Some(at) = head[authority_start..authority_end].rfind('@') {
            head.replace_range(authority_start..authority_start + at, MASK);
        }
    }
    match query {
        Some(query) => {
            let (query, fragment) = query.split_once('#').unwrap_or((query, ""));
            let mut out = format!("{head}?{}", redact_query(query));
            if !fragment.is_empty() {
                out.push('#');
                out.push_str(MASK);
            }
            out
        }
        None => head,
    }
}

/// The secret values of a query string (and of user info in the URL).
fn uri_secrets(uri: &Uri) -> Vec<&str> {
    let mut secrets = Vec::new();
    if let Some(authority) = uri.authority()
        && let Some((user_info, _)) = authority.as_str().rsplit_once('@')
    {
        secrets.push(user_info);
        secrets.extend(user_info.split(':'));
    }
    if let Some(query) = uri.query() {
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some((name, _)) if is_public(name) => {}
                Some((_, value)) => secrets.push(value),
                None => secrets.push(pair),
            }
        }
    }
    secrets
}

/// Joins a base URL and a path, keeping exactly one slash between them.
pub(crate) fn endpoint(base: &str, path: &str, query: Option<&str>) -> Result<Uri, ConfigError> {
    let mut url = format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(q.trim_start_matches('?'));
    }
    let uri: Uri = url.parse().map_err(|_| ConfigError::Url(url.clone()))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        _ => Err(ConfigError::Url(url)),
    }
}

impl Core {
    pub(crate) fn new(
        provider: String,
        uri: Uri,
        key: Option<&ApiKey>,
        auth: &Auth,
        extra: &[(String, String)],
        http: HttpOptions,
    ) -> Result<Self, ConfigError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut secrets: Vec<&str> = uri_secrets(&uri);
        for (name, text) in extra {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| ConfigError::Header(name.clone()))?;
            let mut value = HeaderValue::try_from(text.as_str())
                .map_err(|_| ConfigError::Header(name.to_string()))?;
            if !is_public(name.as_str()) {
                // A custom header may carry a key (`api-key`, a gateway's
                // token): never printed, never indexed by HPACK, masked out
                // of errors.
                value.set_sensitive(true);
                secrets.push(text);
                if let Some((_, token)) = text.split_once(' ') {
                    secrets.push(token);
                }
            }
            headers.insert(name, value);
        }
        if let Some(key) = key {
            secrets.push(key.expose());
        }
        let redactor = Redactor::new(secrets);
        if let Some(key) = key {
            let (name, text) = match auth {
                Auth::Bearer => (
                    http::header::AUTHORIZATION,
                    format!("Bearer {}", key.expose()),
                ),
                Auth::Header(name) => (name.clone(), key.expose().to_owned()),
            };
            let mut value = HeaderValue::try_from(text).map_err(|_| ConfigError::Key)?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let server = uri.host().map(|host| {
            let default = if uri.scheme_str() == Some("http") {
                80
            } else {
                443
            };
            (host.to_owned(), uri.port_u16().unwrap_or(default))
        });
        Ok(Core {
            provider,
            uri,
            server,
            headers,
            transport: Transport::new(http)?,
            redactor,
        })
    }

    /// `error` with the client's secrets masked out of everything it
    /// carries (then, as a second net, anything shaped like a credential
    /// out of the message and the request id). Runs on the error path only.
    fn scrub(&self, mut error: LlmError) -> LlmError {
        let r = &self.redactor;
        r.redact_in_place(&mut error.message);
        if let std::borrow::Cow::Owned(m) = redact_secrets(&error.message) {
            error.message = m;
        }
        if let Some(id) = &mut error.request_id {
            r.redact_in_place(id);
            if let std::borrow::Cow::Owned(masked) = redact_secrets(id) {
                *id = masked;
            }
        }
        if let Some(target) = &mut error.target {
            r.redact_in_place(target);
        }
        if !error.earlier.is_empty() {
            let earlier = std::mem::take(&mut error.earlier);
            error.earlier = earlier.into_iter().map(|e| self.scrub(e)).collect();
        }
        // A cause whose text carries a secret is replaced by its masked text.
        let masked_source = std::error::Error::source(&error).and_then(|s| {
            let text = s.to_string();
            match r.redact(&text) {
                std::borrow::Cow::Owned(m) => Some(m),
                std::borrow::Cow::Borrowed(_) => None,
            }
        });
        if let Some(text) = masked_source {
            error = error.with_source(MaskedSource(text));
        }
        error
    }

    /// Sends `request` in `wire`'s dialect: builds the body (a request the
    /// dialect can't express fails here, before anything is sent), POSTs it
    /// within the request's deadline and reads the answer.
    pub(crate) async fn call<W: Wire>(
        &self,
        wire: &W,
        mut request: ChatRequest,
    ) -> Result<ChatResponse, LlmError> {
        // The latency runs from the request's start: a layer above that
        // spans attempts (retry, fallback) started it, or it starts here.
        let started = request.start_clock();
        let body = match wire.encode(&request) {
            Ok(body) => body,
            Err(error) => return Err(self.refused(W::DIALECT, error, &request.model)),
        };
        // A dialect may name the model or the mode in the URL.
        let uri = match wire.uri(&self.uri, &request) {
            Ok(Some(uri)) => std::borrow::Cow::Owned(uri),
            Ok(None) => std::borrow::Cow::Borrowed(&self.uri),
            Err(error) => return Err(self.refused(W::DIALECT, error, &request.model)),
        };
        let deadline = Deadline::of(&request);
        let model = request.model.clone();
        if request.stream {
            return self
                .stream(wire, &uri, &request, deadline, started, body)
                .await;
        }
        self.exchange(
            &uri,
            model,
            deadline,
            started,
            body,
            |status, headers, body| wire.parse(&request, status, headers, body),
        )
        .await
    }

    /// Sends an embeddings `request` to `uri` (the dialect's embeddings
    /// endpoint): the body from `encode` (a request it refuses fails here,
    /// before anything is sent), the answer read by `parse`, with the same
    /// transport, deadline, size bound, error mapping and redaction as a
    /// chat call.
    pub(crate) async fn embed(
        &self,
        uri: &Uri,
        dialect: staunch_core::Dialect,
        request: EmbeddingRequest,
        encode: impl FnOnce(&EmbeddingRequest) -> Result<Vec<u8>, LlmError>,
        parse: impl FnOnce(
            &EmbeddingRequest,
            u16,
            &HeaderMap,
            &[u8],
        ) -> Result<EmbeddingResponse, LlmError>,
    ) -> Result<EmbeddingResponse, LlmError> {
        self.embed_at(dialect, request, |_, _| Ok(uri.clone()), encode, parse)
            .await
    }

    /// As [`Core::embed`], for a dialect that names the model in the URL:
    /// `uri` makes the request's URL from the client's own (the base it
    /// was built with) once the body is encoded; a URL it refuses fails
    /// before anything is sent, as a refused body does.
    pub(crate) async fn embed_at(
        &self,
        dialect: staunch_core::Dialect,
        mut request: EmbeddingRequest,
        uri: impl FnOnce(&Uri, &EmbeddingRequest) -> Result<Uri, LlmError>,
        encode: impl FnOnce(&EmbeddingRequest) -> Result<Vec<u8>, LlmError>,
        parse: impl FnOnce(
            &EmbeddingRequest,
            u16,
            &HeaderMap,
            &[u8],
        ) -> Result<EmbeddingResponse, LlmError>,
    ) -> Result<EmbeddingResponse, LlmError> {
        let started = request.start_clock();
        let body = match encode(&request) {
            Ok(body) => body,
            Err(error) => return Err(self.refused(dialect, error, &request.model)),
        };
        let uri = match uri(&self.uri, &request) {
            Ok(uri) => uri,
            Err(error) => return Err(self.refused(dialect, error, &request.model)),
        };
        let deadline = request.extensions.get::<Deadline>().copied();
        let model = request.model.clone();
        self.exchange(
            &uri,
            model,
            deadline,
            started,
            body,
            |status, headers, body| parse(&request, status, headers, body),
        )
        .await
    }

    /// A request refused before the wire: no attempt was made.
    fn refused(&self, dialect: staunch_core::Dialect, error: LlmError, model: &str) -> LlmError {
        let mut error = self.scrub(error).with_attempts(0);
        tracing::debug!(
            target: "staunch::providers",
            provider = %self.provider,
            dialect = dialect.as_str(),
            kind = error.kind.as_str(),
            "refused before the wire"
        );
        error.provider.get_or_insert_with(|| self.provider.clone());
        error.model.get_or_insert_with(|| model.to_owned());
        error
    }

    /// Sends a streamed request and reads it up to its commit point: the
    /// first content event. Everything before it is an ordinary error; the
    /// answer carries the rest as its stream.
    async fn stream<W: Wire>(
        &self,
        wire: &W,
        uri: &Uri,
        request: &ChatRequest,
        deadline: Option<Deadline>,
        started: Instant,
        body: Vec<u8>,
    ) -> Result<ChatResponse, LlmError> {
        let model = request.model.clone();
        let span = tracing::debug_span!(
            target: "staunch::providers",
            "llm.http",
            provider = %self.provider,
            model = %model,
            stream = true,
            status = tracing::field::Empty,
        );
        // The status goes on this span only: with the span unwanted, the
        // current span is the caller's, and its `status` is not this one.
        let traced = !span.is_disabled();
        let options = self.transport.options();
        // The first-token timeout is this attempt's own.
        let first_token_by = Instant::now() + options.first_token_timeout;
        let outcome = async {
            let http = self.http_request(uri, body);
            let head = self
                .transport
                .send_streaming(http, deadline, first_token_by)
                .await?;
            if traced {
                tracing::Span::current().record("status", head.status);
            }
            if !(200..300).contains(&head.status) {
                let bytes = self.transport.read_error_body(head.body).await;
                let error = match wire.parse(request, head.status, &head.headers, &bytes) {
                    Err(error) => error,
                    Ok(_) => LlmError::new(ErrorKind::Other, "an error status with an answer"),
                };
                return Err(with_headers(error, &head.headers));
            }
            let mut live = crate::streaming::LiveStream::new(
                head.body,
                wire.events(request),
                options.max_event_bytes,
                first_token_by,
                options.idle_timeout,
                deadline,
                request.estimated_input_tokens(),
                options.retry_first_token_timeout,
                self.provider.clone(),
                model.clone(),
            );
            let limits = crate::headers::rate_limit(&head.headers);
            match live.open().await {
                crate::streaming::Opened::Committed => {
                    let mut response = ChatResponse::streaming(model.clone(), Box::pin(live));
                    response.meta.rate_limit_headers = limits;
                    Ok(response)
                }
                crate::streaming::Opened::Failed(error) => Err(error),
            }
        }
        .instrument(span)
        .await;
        self.settle(outcome, model, started)
    }

    /// The HTTP request of `body` to `uri`, with the client's headers.
    ///
    /// The header map has room for the two the connection adds (`host`,
    /// `content-length`): filled to its capacity, it would be grown, its
    /// entries rehashed, at the first of them.
    fn http_request(&self, uri: &Uri, body: Vec<u8>) -> Request<Full<Bytes>> {
        let mut headers = HeaderMap::with_capacity(self.headers.len() + 2);
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = headers;
        request
    }

    /// POSTs `body` to `uri` and reads the answer with `parse`, within
    /// `deadline`; tags errors and the response with the provider, the
    /// model and the latency.
    pub(crate) async fn exchange<R: Answered>(
        &self,
        uri: &Uri,
        model: String,
        deadline: Option<Deadline>,
        started: Instant,
        body: Vec<u8>,
        parse: impl FnOnce(u16, &HeaderMap, &[u8]) -> Result<R, LlmError>,
    ) -> Result<R, LlmError> {
        let span = tracing::debug_span!(
            target: "staunch::providers",
            "llm.http",
            provider = %self.provider,
            model = %model,
            status = tracing::field::Empty,
        );
        // As in `stream`: the status goes on this span or nowhere.
        let traced = !span.is_disabled();
        let request = self.http_request(uri, body);
        let outcome = async {
            let raw = self.transport.send(request, deadline).await?;
            if traced {
                tracing::Span::current().record("status", raw.status);
            }
            match parse(raw.status, &raw.headers, &raw.body) {
                Ok(mut response) => {
                    response.meta_mut().rate_limit_headers =
                        crate::headers::rate_limit(&raw.headers);
                    Ok(response)
                }
                Err(error) => Err(with_headers(error, &raw.headers)),
            }
        }
        .instrument(span)
        .await;
        self.settle(outcome, model, started)
    }

    /// The outcome of one exchange, told who gave it: the provider, the
    /// model and the latency on an answer; the provider and model (where
    /// the error did not name them) on an error, scrubbed of secrets.
    fn settle<R: Answered>(
        &self,
        outcome: Result<R, LlmError>,
        model: String,
        started: Instant,
    ) -> Result<R, LlmError> {
        match outcome {
            Ok(mut response) => {
                let meta = response.meta_mut();
                meta.answered_by(self.provider.clone(), model);
                if let Some((host, port)) = &self.server {
                    meta.answered_from(host.as_str(), *port);
                }
                meta.record_latency(started);
                Ok(response)
            }
            Err(error) => {
                let mut error = self.scrub(error);
                error.provider.get_or_insert_with(|| self.provider.clone());
                error.model.get_or_insert(model);
                Err(error)
            }
        }
    }
}

/// `error` with what the response's headers say of it: the provider's
/// request id (where the body gave none) and the rate-limit headers.
fn with_headers(mut error: LlmError, headers: &HeaderMap) -> LlmError {
    if error.request_id.is_none() {
        error.request_id = crate::headers::request_id(headers);
    }
    error.rate_limit_headers = crate::headers::rate_limit(headers);
    error
}

/// The cause of an error, as text with the client's secrets masked.
#[derive(Debug)]
struct MaskedSource(String);

impl fmt::Display for MaskedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MaskedSource {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_queries_print_without_secrets() {
        assert_eq!(
            redact_url("https://user:pw@host:8/v1/x?api-version=1&key=abc&t#frag"),
            "https://[redacted]@host:8/v1/x?api-version=1&key=[redacted]&[redacted]#[redacted]"
        );
        assert_eq!(redact_url("http://h/p"), "http://h/p");
        assert_eq!(redact_query("code=x&"), "code=[redacted]&");
    }

    #[test]
    fn answers_name_the_server_and_its_port_or_the_schemes_default() {
        for (base, server) in [
            ("https://api.openai.com/v1", ("api.openai.com", 443)),
            ("http://localhost/v1", ("localhost", 80)),
            ("http://127.0.0.1:8000/v1", ("127.0.0.1", 8000)),
            ("https://user:pw@example.com:8443/v1", ("example.com", 8443)),
        ] {
            let uri = endpoint(base, "/chat/completions", None).unwrap();
            let core = Core::new(
                "p".into(),
                uri,
                None,
                &Auth::Bearer,
                &[],
                crate::HttpOptions::default(),
            )
            .unwrap();
            let answer = core
                .settle(Ok(ChatResponse::new("m", "hi")), "m".into(), Instant::now())
                .unwrap();
            assert_eq!(
                (
                    answer.meta.server_address.as_deref(),
                    answer.meta.server_port
                ),
                (Some(server.0), Some(server.1)),
                "{base}"
            );
        }
    }

    #[test]
    fn errors_lose_every_secret_of_the_client() {
        let uri = endpoint(
            "http://127.0.0.1:9/v1?token=QUERYSECRET99",
            "/c",
            Some("key=QKEY1234567"),
        )
        .unwrap();
        let core = Core::new(
            "p".into(),
            uri,
            Some(&ApiKey::new("KEY-0123456789abcdef")),
            &Auth::Bearer,
            &[
                ("x-gw".into(), "Token HEADERSECRET1".into()),
                ("anthropic-version".into(), "2023-06-01".into()),
            ],
            crate::HttpOptions::default(),
        )
        .unwrap();
        let debug = format!("{core:?}");
        for s in ["QUERYSECRET99", "QKEY1234567"] {
            assert!(!debug.contains(s), "{debug}");
        }
        let mut inner = LlmError::new(ErrorKind::Server, "earlier KEY-0123456789");
        inner.target = Some("t HEADERSECRET1".into());
        let mut error = LlmError::new(
            ErrorKind::Authentication,
            "bad KEY-0123456789abcdef, QUERYSECRET99, QKEY1234567, HEADERSECRET1; 2023-06-01",
        )
        .with_request_id("req 0123456789abcdef")
        .with_source(std::io::Error::other("io KEY-0123456789abcdef"));
        error.earlier.push(inner);
        let error = core.scrub(error);
        assert_eq!(
            error.message,
            // The header's " HEADERSECRET1" is a suffix of its value, space and all.
            "bad [redacted], [redacted], [redacted],[redacted]; 2023-06-01"
        );
        assert_eq!(error.request_id.as_deref(), Some("req [redacted]"));
        assert_eq!(error.earlier[0].message, "earlier [redacted]");
        assert_eq!(error.earlier[0].target.as_deref(), Some("t[redacted]"));
        let source = std::error::Error::source(&error).unwrap().to_string();
        assert_eq!(source, "io [redacted]");
        assert!(core.headers.get("x-gw").unwrap().is_sensitive());
        assert!(
            !core
                .headers
                .get("anthropic-version")
                .unwrap()
                .is_sensitive()
        );
        assert!(core.headers.get("authorization").unwrap().is_sensitive());
    }
}
