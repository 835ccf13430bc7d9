//! OpenAI Chat Completions and embeddings, and every server that speaks
//! them.

mod answer;
mod chunk;
mod chunk_scan;
mod embeddings;
mod error;
mod events;
pub(crate) mod ingress;
pub(crate) mod ingress_seam;
mod request;
pub mod wire;

pub use ingress::Decoded;

use crate::ConfigError;
use crate::client::{Auth, Core, HeadersDebug, Masked, endpoint, redact_query, redact_url};
use crate::key::ApiKey;
use crate::transport::HttpOptions;
use http::HeaderName;
use http::Uri;
use staunch_core::{ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, LlmError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Settings of an [`OpenAi`] client.
///
/// | setting | default |
/// |---|---|
/// | `provider` (name in responses, errors, metrics) | `openai` |
/// | `base_url` | `https://api.openai.com/v1` |
/// | `path` | `/chat/completions` |
/// | `embeddings_path` | `/embeddings` |
/// | `api_key` | `OPENAI_API_KEY` from the environment, sent as `Authorization: Bearer` |
/// | `query` | none (Azure: `api-version=…`) |
/// | `header` | none (e.g. `OpenAI-Organization`) |
/// | `http` | [`HttpOptions`] defaults |
///
/// Any OpenAI-compatible server works by its base URL: vLLM
/// (`http://host:8000/v1`), Ollama (`http://localhost:11434/v1`), LM Studio,
/// OpenRouter; an Azure deployment with
/// [`azure_deployment`](Self::azure_deployment).
///
/// Its `Debug` output shows no secret: the key, custom header values and
/// query values print as `[redacted]`.
#[derive(Clone)]
pub struct OpenAiConfig {
    provider: String,
    base_url: String,
    path: String,
    embeddings_path: String,
    api_key: Option<ApiKey>,
    auth: Auth,
    query: Option<String>,
    headers: Vec<(String, String)>,
    http: HttpOptions,
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("provider", &self.provider)
            .field("base_url", &Masked(redact_url(&self.base_url)))
            .field("path", &Masked(redact_url(&self.path)))
            .field(
                "embeddings_path",
                &Masked(redact_url(&self.embeddings_path)),
            )
            .field("api_key", &self.api_key)
            .field("auth", &self.auth)
            .field(
                "query",
                &self.query.as_deref().map(|q| Masked(redact_query(q))),
            )
            .field("headers", &HeadersDebug(&self.headers))
            .field("http", &self.http)
            .finish()
    }
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            provider: "openai".to_owned(),
            base_url: "https://api.openai.com/v1".to_owned(),
            path: "/chat/completions".to_owned(),
            embeddings_path: "/embeddings".to_owned(),
            api_key: ApiKey::from_env("OPENAI_API_KEY"),
            auth: Auth::Bearer,
            query: None,
            headers: Vec::new(),
            http: HttpOptions::default(),
        }
    }
}

impl OpenAiConfig {
    /// The defaults of the table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// The provider's name in responses, errors and metrics.
    pub fn provider(mut self, name: impl Into<String>) -> Self {
        self.provider = name.into();
        self
    }

    /// The server's base URL (up to and including `/v1`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The path of the chat endpoint under the base URL.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The path of the embeddings endpoint under the base URL.
    pub fn embeddings_path(mut self, path: impl Into<String>) -> Self {
        self.embeddings_path = path.into();
        self
    }

    /// The API key (instead of the environment's).
    pub fn api_key(mut self, key: ApiKey) -> Self {
        self.api_key = Some(key);
        self
    }

    /// Sends no key (local servers).
    pub fn no_api_key(mut self) -> Self {
        self.api_key = None;
        self
    }

    /// A query string added to every request. Its values count as
    /// secrets (a key may travel as `key=…`): they are masked out of errors
    /// and `Debug` output (except `api-version`).
    pub fn query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    /// A header sent with every request. Its value counts as a secret (a
    /// key may travel in it): it is sent marked sensitive and masked out of
    /// errors and `Debug` output (except well-known settings such as
    /// `anthropic-version`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Connection and size limits.
    pub fn http(mut self, options: HttpOptions) -> Self {
        self.http = options;
        self
    }

    /// An Azure OpenAI deployment: `https://{resource}.openai.azure.com/openai/deployments/{deployment}/chat/completions?api-version={version}`
    /// (and `…/{deployment}/embeddings?api-version={version}` for an
    /// embeddings deployment) with the key in the `api-key` header.
    pub fn azure_deployment(
        mut self,
        resource_url: impl Into<String>,
        deployment: &str,
        api_version: &str,
        key: ApiKey,
    ) -> Self {
        self.provider = "azure-openai".to_owned();
        self.base_url = format!(
            "{}/openai/deployments/{deployment}",
            resource_url.into().trim_end_matches('/')
        );
        self.path = "/chat/completions".to_owned();
        self.embeddings_path = "/embeddings".to_owned();
        self.query = Some(format!("api-version={api_version}"));
        self.auth = Auth::Header(HeaderName::from_static("api-key"));
        self.api_key = Some(key);
        self
    }
}

/// An OpenAI Chat Completions client: a cloneable
/// `Service<ChatRequest, Response = ChatResponse, Error = LlmError>` on a
/// pooled hyper client with rustls (HTTP/1.1 and HTTP/2). Clones share the
/// connection pool.
///
/// Every failure is an [`LlmError`] classified from the status, the error
/// body and the headers (`retry-after-ms`, `retry-after`, `x-should-retry`,
/// `x-request-id`); a `finish_reason: content_filter` answer is a
/// `ContentFiltered` error. The key never appears in `Debug` output, errors
/// or spans.
///
/// ```no_run
/// use staunch_core::{ChatRequest, Message};
/// use staunch_providers::{OpenAi, OpenAiConfig};
/// use tower::ServiceExt;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // OPENAI_API_KEY from the environment; or a local vLLM / Ollama:
/// // OpenAiConfig::new().base_url("http://localhost:11434/v1").no_api_key()
/// let client = OpenAi::new(OpenAiConfig::new())?;
/// let answer = client
///     .oneshot(ChatRequest::new("gpt-4o-mini", vec![Message::user("Say hi")]))
///     .await?;
/// println!("{}", answer.text());
/// # Ok(()) }
/// ```
///
/// # Embeddings
///
/// The same client serves embeddings: a
/// `Service<EmbeddingRequest, Response = EmbeddingResponse, Error =
/// LlmError>` that POSTs to `{base_url}/embeddings` (see
/// [`OpenAiConfig::embeddings_path`]) with the same key, headers, transport,
/// timeouts, response size bound and error mapping as chat. It works with
/// OpenAI-compatible embedding servers by their base URL: vLLM, Hugging
/// Face TEI (`http://host:8080/v1`), Ollama (`http://localhost:11434/v1`).
/// Vectors come back in input order as `f32`s whether the server sent JSON
/// numbers or base64 ([`EncodingFormat`](staunch_core::EncodingFormat));
/// an answer with a vector missing, repeated or of the wrong size is a
/// `MalformedResponse`, never a silently wrong batch
/// ([`wire::parse_embeddings`]). A batch of thousands of large vectors sent
/// as JSON numbers can pass the [`HttpOptions::max_response_bytes`] bound
/// (16 MiB by default); ask for base64 (a quarter the size) or raise it.
///
/// ```no_run
/// use staunch_core::EmbeddingRequest;
/// use staunch_providers::{OpenAi, OpenAiConfig};
/// use tower::ServiceExt;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = OpenAi::new(OpenAiConfig::new())?;
/// let answer = client
///     .oneshot(EmbeddingRequest::new("text-embedding-3-small", ["first", "second"]))
///     .await?;
/// assert_eq!(answer.data.len(), 2);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OpenAi {
    core: Arc<Core>,
    embeddings: Arc<Uri>,
}

impl std::fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAi")
            .field("core", &self.core)
            .field(
                "embeddings",
                &Masked(redact_url(&self.embeddings.to_string())),
            )
            .finish()
    }
}

impl OpenAi {
    /// A client for `config`, or why the config can't work (a bad URL or
    /// header).
    pub fn new(config: OpenAiConfig) -> Result<Self, ConfigError> {
        let uri = endpoint(&config.base_url, &config.path, config.query.as_deref())?;
        let embeddings = endpoint(
            &config.base_url,
            &config.embeddings_path,
            config.query.as_deref(),
        )?;
        let core = Core::new(
            config.provider,
            uri,
            config.api_key.as_ref(),
            &config.auth,
            &config.headers,
            config.http,
        )?;
        Ok(OpenAi {
            core: Arc::new(core),
            embeddings: Arc::new(embeddings),
        })
    }
}

impl Service<ChatRequest> for OpenAi {
    type Response = ChatResponse;
    type Error = LlmError;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, LlmError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let core = self.core.clone();
        Box::pin(async move { core.call(&OpenAiWire, request).await })
    }
}

impl Service<EmbeddingRequest> for OpenAi {
    type Response = EmbeddingResponse;
    type Error = LlmError;
    type Future = Pin<Box<dyn Future<Output = Result<EmbeddingResponse, LlmError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: EmbeddingRequest) -> Self::Future {
        let (core, uri) = (self.core.clone(), self.embeddings.clone());
        Box::pin(async move {
            core.embed(
                &uri,
                staunch_core::Dialect::OpenAi,
                request,
                wire::encode_embeddings,
                wire::parse_embeddings,
            )
            .await
        })
    }
}

/// The OpenAI dialect behind the client seam.
struct OpenAiWire;

impl crate::dialect::Wire for OpenAiWire {
    const DIALECT: staunch_core::Dialect = staunch_core::Dialect::OpenAi;

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
        Box::new(events::OpenAiEvents::new())
    }
}

impl crate::dialect::EventParser for events::OpenAiEvents {
    fn parse(&mut self, frame: &crate::sse::SseFrame) -> crate::sse::Step {
        events::OpenAiEvents::parse(self, frame)
    }
}
