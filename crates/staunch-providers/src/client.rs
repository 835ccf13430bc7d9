//! What both clients share: building the HTTP request, sending it, and
//! telling the truth about the outcome.

use crate::ConfigError;
use crate::key::ApiKey;
use crate::transport::{HttpOptions, Transport};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Uri};
use http_body_util::Full;
use staunch_core::{ChatResponse, Deadline, ErrorKind, LlmError};
use tokio::time::Instant;
use tracing::Instrument;

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
    headers: HeaderMap,
    transport: Transport,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("provider", &self.provider)
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
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
        for (name, value) in extra {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| ConfigError::Header(name.clone()))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|_| ConfigError::Header(name.to_string()))?;
            headers.insert(name, value);
        }
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
        Ok(Core {
            provider,
            uri,
            headers,
            transport: Transport::new(http)?,
        })
    }

    /// POSTs `body` and reads the answer with `parse`, within `deadline`;
    /// tags errors and the response with the provider, the model and the
    /// latency.
    pub(crate) async fn exchange(
        &self,
        model: String,
        deadline: Option<Deadline>,
        body: Vec<u8>,
        parse: fn(u16, &HeaderMap, &[u8]) -> Result<ChatResponse, LlmError>,
    ) -> Result<ChatResponse, LlmError> {
        let started = Instant::now();
        let span = tracing::debug_span!(
            target: "staunch::providers",
            "llm.http",
            provider = %self.provider,
            model = %model,
            status = tracing::field::Empty,
        );
        let mut request = Request::post(self.uri.clone());
        if let Some(headers) = request.headers_mut() {
            headers.extend(self.headers.clone());
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| {
            LlmError::new(
                ErrorKind::InvalidRequest,
                "could not build the HTTP request",
            )
            .with_source(e)
        });
        let outcome = async {
            let raw = self.transport.send(request?, deadline).await?;
            tracing::Span::current().record("status", raw.status);
            let mut result = parse(raw.status, &raw.headers, &raw.body);
            if let Err(error) = &mut result
                && error.request_id.is_none()
            {
                error.request_id = crate::headers::request_id(&raw.headers);
            }
            result
        }
        .instrument(span)
        .await;
        match outcome {
            Ok(mut response) => {
                response.meta.provider = Some(self.provider.clone());
                response.meta.model = Some(model);
                response.meta.latency = started.elapsed();
                Ok(response)
            }
            Err(mut error) => {
                error.provider.get_or_insert_with(|| self.provider.clone());
                error.model.get_or_insert(model);
                Err(error)
            }
        }
    }
}
