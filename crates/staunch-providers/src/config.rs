//! What every provider client's configuration has (a name, an endpoint, a
//! key, headers, HTTP options), as one trait: code that reads providers
//! from a file configures any dialect's client the same way, and a new
//! dialect joins it with one line here.
//!
//! ```
//! use staunch_providers::config::ClientConfig;
//! use staunch_providers::{GeminiConfig, HttpOptions};
//!
//! fn client<C: ClientConfig>(name: &str, url: &str) -> Result<C::Client, staunch_providers::ConfigError> {
//!     C::default()
//!         .with_provider(name)
//!         .with_base_url(url)
//!         .with_http(HttpOptions::new())
//!         .build()
//! }
//! let gemini = client::<GeminiConfig>("gemini-eu", "http://127.0.0.1:9")?;
//! # Ok::<(), staunch_providers::ConfigError>(())
//! ```

use crate::{ApiKey, ConfigError, HttpOptions};
use staunch_core::{ChatRequest, ChatResponse, LlmError};

/// A provider client's configuration, whatever its dialect.
pub trait ClientConfig: Default + Sized {
    /// The client it builds: a cloneable chat service.
    type Client: tower::Service<ChatRequest, Response = ChatResponse, Error = LlmError>
        + Clone
        + Send
        + 'static;

    /// The provider's name in responses, errors and metrics.
    fn with_provider(self, name: &str) -> Self;
    /// The API's base URL.
    fn with_base_url(self, url: &str) -> Self;
    /// The API key, instead of the one the dialect reads from the
    /// environment by default.
    fn with_api_key(self, key: ApiKey) -> Self;
    /// A header sent with every request (its value counts as a secret).
    fn with_header(self, name: &str, value: &str) -> Self;
    /// Timeouts, limits and the transport.
    fn with_http(self, options: HttpOptions) -> Self;
    /// The client, or why the configuration can't work.
    fn build(self) -> Result<Self::Client, ConfigError>;
}

/// Implements [`ClientConfig`] with the configuration's own builder methods.
macro_rules! client_config {
    ($($config:ty => $client:ty;)*) => {$(
        impl ClientConfig for $config {
            type Client = $client;

            fn with_provider(self, name: &str) -> Self {
                self.provider(name)
            }

            fn with_base_url(self, url: &str) -> Self {
                self.base_url(url)
            }

            fn with_api_key(self, key: ApiKey) -> Self {
                self.api_key(key)
            }

            fn with_header(self, name: &str, value: &str) -> Self {
                self.header(name, value)
            }

            fn with_http(self, options: HttpOptions) -> Self {
                self.http(options)
            }

            fn build(self) -> Result<$client, ConfigError> {
                <$client>::new(self)
            }
        }
    )*};
}

client_config! {
    crate::OpenAiConfig => crate::OpenAi;
    crate::AnthropicConfig => crate::Anthropic;
    crate::GeminiConfig => crate::Gemini;
    crate::OpenAiResponsesConfig => crate::OpenAiResponses;
}
