//! Google Gemini `generateContent` (the Generative Language API).
//!
//! Gemini puts the model and the mode in the URL:
//! `POST {base}/v1beta/models/{model}:generateContent`, and for a stream
//! `POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse`, and
//! for embeddings `POST {base}/v1beta/models/{model}:batchEmbedContents`.
//! The key goes in the `x-goog-api-key` header.

mod answer;
mod embeddings;
mod error;
mod events;
mod ingress;
pub(crate) mod ingress_seam;
mod request;
pub mod wire;

use crate::ConfigError;
use crate::client::{Auth, Core, HeadersDebug, Masked, endpoint, redact_url};
use crate::dialect::conversation::invalid;
use crate::key::ApiKey;
use crate::transport::HttpOptions;
use http::{HeaderName, Uri};
use staunch_core::{
    ChatRequest, ChatResponse, Dialect, EmbeddingRequest, EmbeddingResponse, LlmError,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Settings of a [`Gemini`] client.
///
/// | setting | default |
/// |---|---|
/// | `provider` | `gemini` |
/// | `base_url` | `https://generativelanguage.googleapis.com` |
/// | `version` | `v1beta` (the API version in the path) |
/// | `api_key` | `GOOGLE_API_KEY`, else `GEMINI_API_KEY`, from the environment, sent as `x-goog-api-key` |
/// | `header` | none |
/// | `http` | [`HttpOptions`] defaults |
///
/// Its `Debug` output shows no secret: the key and custom header values
/// print as `[redacted]`.
#[derive(Clone)]
pub struct GeminiConfig {
    provider: String,
    base_url: String,
    version: String,
    api_key: Option<ApiKey>,
    headers: Vec<(String, String)>,
    http: HttpOptions,
}

impl std::fmt::Debug for GeminiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiConfig")
            .field("provider", &self.provider)
            .field("base_url", &Masked(redact_url(&self.base_url)))
            .field("version", &self.version)
            .field("api_key", &self.api_key)
            .field("headers", &HeadersDebug(&self.headers))
            .field("http", &self.http)
            .finish()
    }
}

impl Default for GeminiConfig {
    fn default() -> Self {
        GeminiConfig {
            provider: "gemini".to_owned(),
            base_url: "https://generativelanguage.googleapis.com".to_owned(),
            version: "v1beta".to_owned(),
            // The order google-genai reads them in.
            api_key: ApiKey::from_env("GOOGLE_API_KEY")
                .or_else(|| ApiKey::from_env("GEMINI_API_KEY")),
            headers: Vec::new(),
            http: HttpOptions::default(),
        }
    }
}

impl GeminiConfig {
    /// The defaults of the table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// The provider's name in responses, errors and metrics.
    pub fn provider(mut self, name: impl Into<String>) -> Self {
        self.provider = name.into();
        self
    }

    /// The API's base URL (without the version).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The API version in the path (`v1beta`, `v1alpha`, `v1`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The API key (instead of the environment's).
    pub fn api_key(mut self, key: ApiKey) -> Self {
        self.api_key = Some(key);
        self
    }

    /// Sends no key (a local proxy that adds its own).
    pub fn no_api_key(mut self) -> Self {
        self.api_key = None;
        self
    }

    /// A header sent with every request. Its value counts as a secret (a
    /// key may travel in it): it is sent marked sensitive and masked out of
    /// errors and `Debug` output.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Connection and size limits.
    pub fn http(mut self, options: HttpOptions) -> Self {
        self.http = options;
        self
    }
}

/// A Gemini client: a cloneable
/// `Service<ChatRequest, Response = ChatResponse, Error = LlmError>` on a
/// pooled hyper client with rustls. Clones share the connection pool.
///
/// Errors are classified by Gemini's `error.status` (`RESOURCE_EXHAUSTED`
/// is `RateLimited` with the `RetryInfo` delay, or `QuotaExhausted` for a
/// per-day quota; `UNAVAILABLE` is `Overloaded`, …); a `SAFETY` (or other
/// policy) finish and a blocked prompt are `ContentFiltered` errors. The
/// key never appears in `Debug` output, errors or spans.
///
/// ```no_run
/// use staunch_core::{ChatRequest, Message};
/// use staunch_providers::{Gemini, GeminiConfig};
/// use tower::ServiceExt;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Gemini::new(GeminiConfig::new())?;
/// let answer = client
///     .oneshot(ChatRequest::new("gemini-2.5-flash", vec![Message::user("Say hi")]))
///     .await?;
/// println!("{}", answer.text());
/// # Ok(()) }
/// ```
///
/// # Embeddings
///
/// The same client serves embeddings: a
/// `Service<EmbeddingRequest, Response = EmbeddingResponse, Error =
/// LlmError>` that POSTs the whole batch to
/// `{base}/{version}/models/{model}:batchEmbedContents` with the same key,
/// headers, transport, timeouts, response size bound and error mapping as
/// chat. `dimensions` is sent as each input's `outputDimensionality`; a
/// Gemini extra such as `taskType` (`RETRIEVAL_QUERY`,
/// `RETRIEVAL_DOCUMENT`, …) or `title` goes with every input of the batch.
/// Vectors come back in input order as `f32`s; `encoding_format` is not
/// sent (Gemini answers floats; base64 is for whoever writes the answer on,
/// such as the gateway). Gemini reports no tokens for embeddings, so the
/// answer's usage is the request's estimate
/// ([`EmbeddingRequest::estimated_input_tokens`]). Token-id inputs can't be
/// expressed: they are refused before the wire with a `FeatureUnsupported`
/// error naming them. Gemini takes at most
/// [`wire::MAX_BATCH_INPUTS`] (100) inputs a call and answers more with a
/// 400; split larger batches (a gateway target's `max_batch_inputs`).
///
/// ```no_run
/// use staunch_core::{Dialect, EmbeddingRequest};
/// use staunch_providers::{Gemini, GeminiConfig};
/// use tower::ServiceExt;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Gemini::new(GeminiConfig::new())?;
/// let request = EmbeddingRequest::new("gemini-embedding-001", ["first", "second"])
///     .with_dimensions(768)
///     .with_extra(Dialect::Gemini, "taskType", "RETRIEVAL_DOCUMENT");
/// let answer = client.oneshot(request).await?;
/// assert_eq!(answer.dimensions(), Some(768));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Gemini {
    core: Arc<Core>,
}

impl Gemini {
    /// A client for `config`, or why the config can't work (a bad URL or
    /// header).
    pub fn new(config: GeminiConfig) -> Result<Self, ConfigError> {
        // The fixed part of the URL; the model and the mode follow it.
        let version = config.version.trim_matches('/');
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ConfigError::Url(format!(
                "{} (API version {version:?})",
                config.base_url
            )));
        }
        // A query on the base URL (a proxy's) stays a query.
        let (base, query) = match config.base_url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (config.base_url.as_str(), None),
        };
        let uri = endpoint(base, version, query)?;
        let core = Core::new(
            config.provider,
            uri,
            config.api_key.as_ref(),
            &Auth::Header(HeaderName::from_static("x-goog-api-key")),
            &config.headers,
            config.http,
        )?;
        Ok(Gemini {
            core: Arc::new(core),
        })
    }
}

impl Service<ChatRequest> for Gemini {
    type Response = ChatResponse;
    type Error = LlmError;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, LlmError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let core = self.core.clone();
        Box::pin(async move { core.call(&GeminiWire, request).await })
    }
}

impl Service<EmbeddingRequest> for Gemini {
    type Response = EmbeddingResponse;
    type Error = LlmError;
    type Future = Pin<Box<dyn Future<Output = Result<EmbeddingResponse, LlmError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: EmbeddingRequest) -> Self::Future {
        let core = self.core.clone();
        Box::pin(async move {
            core.embed_at(
                Dialect::Gemini,
                request,
                |base, request| method_uri(base, &request.model, "batchEmbedContents", None),
                wire::encode_embeddings,
                wire::parse_embeddings,
            )
            .await
        })
    }
}

/// The path of `model` under the API version: `models/{model}`, or a
/// tuned model's `tunedModels/{name}`; a leading `models/` is accepted.
/// A name with a character that is not safe in a path segment is refused
/// (nothing is sent), never sent to another path.
pub(crate) fn model_path(model: &str) -> Result<String, LlmError> {
    let (collection, name) = match model.split_once('/') {
        Some(("models", name)) => ("models", name),
        Some(("tunedModels", name)) => ("tunedModels", name),
        _ => ("models", model),
    };
    let safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    if name.is_empty() || name == "." || name == ".." || !name.bytes().all(safe) {
        return Err(invalid(format!(
            "the model name {model:?} can't go in a Gemini URL: \
             it may hold only letters, digits, `-`, `.` and `_`"
        )));
    }
    Ok(format!("{collection}/{name}"))
}

/// The URL of one call: `{base}/{model path}:generateContent`, or
/// `:streamGenerateContent?alt=sse` for a stream; a query the base URL
/// carries is kept.
pub(crate) fn call_uri(base: &Uri, model: &str, stream: bool) -> Result<Uri, LlmError> {
    if stream {
        method_uri(base, model, "streamGenerateContent", Some("alt=sse"))
    } else {
        method_uri(base, model, "generateContent", None)
    }
}

/// The URL of `method` on `model`: `{base}/{model path}:{method}`, with
/// the base URL's query and then `query`, if any.
fn method_uri(base: &Uri, model: &str, method: &str, query: Option<&str>) -> Result<Uri, LlmError> {
    let path = model_path(model)?;
    let head = format!(
        "{}://{}{}/{path}:{method}",
        base.scheme_str().unwrap_or("https"),
        base.authority().map_or("", |a| a.as_str()),
        base.path().trim_end_matches('/'),
    );
    let query: Vec<&str> = base
        .query()
        .into_iter()
        .filter(|q| !q.is_empty())
        .chain(query)
        .collect();
    let url = if query.is_empty() {
        head
    } else {
        format!("{head}?{}", query.join("&"))
    };
    url.parse().map_err(|e| {
        invalid(format!(
            "the model name {model:?} does not make a Gemini URL"
        ))
        .with_source(e)
    })
}

/// The Gemini dialect behind the client seam.
struct GeminiWire;

impl crate::dialect::Wire for GeminiWire {
    const DIALECT: Dialect = Dialect::Gemini;

    fn encode(&self, request: &ChatRequest) -> Result<Vec<u8>, LlmError> {
        wire::encode_request(request)
    }

    fn parse(
        &self,
        _request: &ChatRequest,
        status: u16,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<ChatResponse, LlmError> {
        wire::parse(status, headers, body)
    }

    fn events(&self, _request: &ChatRequest) -> Box<dyn crate::dialect::EventParser> {
        Box::new(events::GeminiEvents::new())
    }

    fn uri(&self, base: &Uri, request: &ChatRequest) -> Result<Option<Uri>, LlmError> {
        call_uri(base, &request.model, request.stream).map(Some)
    }
}

impl crate::dialect::EventParser for events::GeminiEvents {
    fn parse(&mut self, frame: &crate::sse::SseFrame) -> crate::sse::Step {
        events::GeminiEvents::parse(self, frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use staunch_core::ErrorKind;

    fn base(url: &str) -> Uri {
        let (url, query) = match url.split_once('?') {
            Some((url, query)) => (url, Some(query)),
            None => (url, None),
        };
        endpoint(url, "v1beta", query).unwrap()
    }

    #[test]
    fn the_url_names_the_model_and_the_mode() {
        let b = base("https://generativelanguage.googleapis.com");
        assert_eq!(
            call_uri(&b, "gemini-2.5-flash", false).unwrap().to_string(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            call_uri(&b, "models/gemini-2.0-flash-001", true)
                .unwrap()
                .to_string(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash-001:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            call_uri(&b, "tunedModels/my_model-1", false)
                .unwrap()
                .to_string(),
            "https://generativelanguage.googleapis.com/v1beta/tunedModels/my_model-1:generateContent"
        );
        let b = base("http://127.0.0.1:8080/proxy/?tenant=a");
        assert_eq!(
            call_uri(&b, "gemini-pro", true).unwrap().to_string(),
            "http://127.0.0.1:8080/proxy/v1beta/models/gemini-pro:streamGenerateContent?tenant=a&alt=sse"
        );
        assert_eq!(
            method_uri(
                &b,
                "models/gemini-embedding-001",
                "batchEmbedContents",
                None
            )
            .unwrap()
            .to_string(),
            "http://127.0.0.1:8080/proxy/v1beta/models/gemini-embedding-001:batchEmbedContents?tenant=a"
        );
    }

    #[test]
    fn an_unsafe_model_name_is_refused() {
        let b = base("https://generativelanguage.googleapis.com");
        for model in [
            "",
            "..",
            "models/",
            "gemini/../../v1/files",
            "gemini-pro:streamGenerateContent",
            "gemini pro",
            "gemini?key=x",
            "gemini#x",
            "gemini%2F",
            "models/a/b",
            "ümlaut",
        ] {
            let e = call_uri(&b, model, false).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidRequest, "{model:?}");
            assert!(e.message.contains("Gemini URL"), "{e}");
        }
    }

    #[test]
    fn the_config_prints_no_secret_and_checks_its_url() {
        let config = GeminiConfig::new()
            .api_key(ApiKey::new("AIzaSyA-very-secret-key-123"))
            .header("x-proxy-token", "proxy-secret-value-9")
            .base_url("https://user:pw@example.com");
        let debug = format!("{config:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
        assert!(!debug.contains("proxy-secret"), "{debug}");
        assert!(!debug.contains("pw@"), "{debug}");
        let client = Gemini::new(config).unwrap();
        assert!(!format!("{client:?}").contains("very-secret"));
        assert!(Gemini::new(GeminiConfig::new().base_url("not a url")).is_err());
        assert!(Gemini::new(GeminiConfig::new().version("v1/../x")).is_err());
    }
}
