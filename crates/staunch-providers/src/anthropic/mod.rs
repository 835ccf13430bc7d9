//! Anthropic Messages.

mod answer;
mod error;
mod events;
mod ingress;
pub(crate) mod ingress_seam;
mod request;
pub mod wire;

use crate::ConfigError;
use crate::client::{Auth, Core, HeadersDebug, Masked, endpoint, redact_url};
use crate::key::ApiKey;
use crate::transport::HttpOptions;
use http::HeaderName;
use staunch_core::{ChatRequest, ChatResponse, LlmError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Settings of an [`Anthropic`] client.
///
/// | setting | default |
/// |---|---|
/// | `provider` | `anthropic` |
/// | `base_url` | `https://api.anthropic.com` |
/// | `api_key` | `ANTHROPIC_API_KEY` from the environment, sent as `x-api-key` |
/// | `version` | `2023-06-01` (the `anthropic-version` header) |
/// | `default_max_tokens` | 4,096 (the API requires `max_tokens`) |
/// | `header` | none (e.g. `anthropic-beta`) |
/// | `http` | [`HttpOptions`] defaults |
///
/// Its `Debug` output shows no secret: the key and custom header values
/// print as `[redacted]`.
#[derive(Clone)]
pub struct AnthropicConfig {
    provider: String,
    base_url: String,
    api_key: Option<ApiKey>,
    version: String,
    default_max_tokens: u32,
    headers: Vec<(String, String)>,
    http: HttpOptions,
}

impl std::fmt::Debug for AnthropicConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicConfig")
            .field("provider", &self.provider)
            .field("base_url", &Masked(redact_url(&self.base_url)))
            .field("api_key", &self.api_key)
            .field("version", &self.version)
            .field("default_max_tokens", &self.default_max_tokens)
            .field("headers", &HeadersDebug(&self.headers))
            .field("http", &self.http)
            .finish()
    }
}

impl Default for AnthropicConfig {
    fn default() -> Self {
        AnthropicConfig {
            provider: "anthropic".to_owned(),
            base_url: "https://api.anthropic.com".to_owned(),
            api_key: ApiKey::from_env("ANTHROPIC_API_KEY"),
            version: "2023-06-01".to_owned(),
            default_max_tokens: 4_096,
            headers: Vec::new(),
            http: HttpOptions::default(),
        }
    }
}

impl AnthropicConfig {
    /// The defaults of the table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// The provider's name in responses, errors and metrics.
    pub fn provider(mut self, name: impl Into<String>) -> Self {
        self.provider = name.into();
        self
    }

    /// The API's base URL (without `/v1`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The API key (instead of the environment's).
    pub fn api_key(mut self, key: ApiKey) -> Self {
        self.api_key = Some(key);
        self
    }

    /// The `anthropic-version` header.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// `max_tokens` for requests that set none.
    pub fn default_max_tokens(mut self, n: u32) -> Self {
        self.default_max_tokens = n;
        self
    }

    /// A header sent with every request. Its value counts as a secret (a
    /// key may travel in it): it is sent marked sensitive and masked out of
    /// errors and `Debug` output (except well-known settings such as
    /// `anthropic-beta`).
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

/// An Anthropic Messages client: a cloneable
/// `Service<ChatRequest, Response = ChatResponse, Error = LlmError>` on a
/// pooled hyper client with rustls. Clones share the connection pool.
///
/// Errors are classified by Anthropic's `error.type` (`overloaded_error` is
/// `Overloaded`, a `rate_limit_error` that reports the spend limit is
/// `QuotaExhausted`, "prompt is too long" is `ContextLengthExceeded`, …),
/// with `retry-after`, `x-should-retry` and the request id; a `refusal`
/// stop reason is a `ContentFiltered` error. The key never appears in
/// `Debug` output, errors or spans.
///
/// ```no_run
/// use staunch_core::{ChatRequest, Message};
/// use staunch_providers::{Anthropic, AnthropicConfig};
/// use tower::ServiceExt;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Anthropic::new(AnthropicConfig::new())?;
/// let answer = client
///     .oneshot(ChatRequest::new("claude-sonnet-4-5", vec![Message::user("Say hi")]).with_max_tokens(64))
///     .await?;
/// println!("{}", answer.text());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Anthropic {
    core: Arc<Core>,
    default_max_tokens: u32,
}

impl Anthropic {
    /// A client for `config`, or why the config can't work.
    pub fn new(config: AnthropicConfig) -> Result<Self, ConfigError> {
        let uri = endpoint(&config.base_url, "/v1/messages", None)?;
        let mut headers = config.headers;
        headers.push(("anthropic-version".to_owned(), config.version));
        let core = Core::new(
            config.provider,
            uri,
            config.api_key.as_ref(),
            &Auth::Header(HeaderName::from_static("x-api-key")),
            &headers,
            config.http,
        )?;
        Ok(Anthropic {
            core: Arc::new(core),
            default_max_tokens: config.default_max_tokens,
        })
    }
}

impl Service<ChatRequest> for Anthropic {
    type Response = ChatResponse;
    type Error = LlmError;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, LlmError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let core = self.core.clone();
        let wire = AnthropicWire {
            default_max_tokens: self.default_max_tokens,
        };
        Box::pin(async move { core.call(&wire, request).await })
    }
}

/// The Anthropic dialect behind the client seam.
struct AnthropicWire {
    default_max_tokens: u32,
}

impl crate::dialect::Wire for AnthropicWire {
    const DIALECT: staunch_core::Dialect = staunch_core::Dialect::Anthropic;

    fn encode(&self, request: &ChatRequest) -> Result<Vec<u8>, LlmError> {
        wire::encode_request(request, self.default_max_tokens)
    }

    fn parse(
        &self,
        request: &ChatRequest,
        status: u16,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<ChatResponse, LlmError> {
        wire::parse_for(request, status, headers, body)
    }

    fn events(&self, request: &ChatRequest) -> Box<dyn crate::dialect::EventParser> {
        // A JSON output format's forced tool streams as the answer's text.
        Box::new(match request::json_tool(request) {
            Some((name, _)) => events::AnthropicEvents::with_json_tool(name),
            None => events::AnthropicEvents::new(),
        })
    }
}

impl crate::dialect::EventParser for events::AnthropicEvents {
    fn parse(&mut self, frame: &crate::sse::SseFrame) -> crate::sse::Step {
        events::AnthropicEvents::parse(self, frame)
    }
}
