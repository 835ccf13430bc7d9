//! The `[providers.NAME]` tables: the upstreams routes send to.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use staunch_providers::HttpOptions;

use super::durations::secs;

/// What kind of upstream a provider is: which wire format it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderKind {
    /// OpenAI's API (`"openai"`); `base_url` defaults to OpenAI's.
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic's API (`"anthropic"`); `base_url` defaults to Anthropic's.
    #[serde(rename = "anthropic")]
    Anthropic,
    /// Google's Gemini API (`"gemini"`, `generateContent`); `base_url`
    /// defaults to Google's.
    #[serde(rename = "gemini")]
    Gemini,
    /// OpenAI's Responses API (`"openai-responses"`, `POST /responses`);
    /// `base_url` defaults to OpenAI's.
    #[serde(rename = "openai-responses")]
    OpenAiResponses,
    /// Any server speaking OpenAI Chat Completions (`"openai-compatible"`);
    /// `base_url` is required.
    #[serde(rename = "openai-compatible")]
    OpenAiCompatible,
    /// The embedded staunch-mock (`"mock"`): no network, no key.
    #[serde(rename = "mock")]
    Mock,
}

impl ProviderKind {
    /// The name used in the file: `"openai"`, `"anthropic"`, `"gemini"`,
    /// `"openai-responses"`, `"openai-compatible"` or `"mock"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::OpenAiResponses => "openai-responses",
            ProviderKind::OpenAiCompatible => "openai-compatible",
            ProviderKind::Mock => "mock",
        }
    }
}

impl ProviderKind {
    /// Whether it serves embeddings (`POST /v1/embeddings`): OpenAI, any
    /// OpenAI-compatible server, Gemini (through its
    /// `batchEmbedContents`) and the mock do; Anthropic has no embeddings
    /// API, and a Responses provider is configured for chat only.
    pub fn serves_embeddings(self) -> bool {
        !matches!(
            self,
            ProviderKind::Anthropic | ProviderKind::OpenAiResponses
        )
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `[providers.NAME]` table: one upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Which API it speaks (`kind`, required).
    pub kind: ProviderKind,
    /// Where it is (`base_url`): required for `openai-compatible`, the
    /// vendor's own URL when absent for `openai` and `anthropic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The environment variable holding its API key (`api_key_env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Extra headers sent with every request (`headers`, a table of
    /// name = value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// How long to wait for a connection (`connect_timeout_secs`, 10).
    #[serde(
        rename = "connect_timeout_secs",
        with = "secs",
        default = "Provider::default_connect_timeout"
    )]
    pub connect_timeout: Duration,
    /// How long a whole request may take (`request_timeout_secs`, 600).
    #[serde(
        rename = "request_timeout_secs",
        with = "secs",
        default = "Provider::default_request_timeout"
    )]
    pub request_timeout: Duration,
    /// Streams: how long to wait for the response headers
    /// (`header_timeout_secs`, 60). The first-token timeout runs from the
    /// request too, so the shorter of the two gives up on an upstream that
    /// accepts and stays silent.
    #[serde(
        rename = "header_timeout_secs",
        with = "secs",
        default = "Provider::default_header_timeout"
    )]
    pub header_timeout: Duration,
    /// How long a stream may take, from the request, to send its first
    /// token (`first_token_timeout_secs`, 60).
    #[serde(
        rename = "first_token_timeout_secs",
        with = "secs",
        default = "Provider::default_first_token_timeout"
    )]
    pub first_token_timeout: Duration,
    /// How long a stream may go silent between events
    /// (`idle_timeout_secs`, 30).
    #[serde(
        rename = "idle_timeout_secs",
        with = "secs",
        default = "Provider::default_idle_timeout"
    )]
    pub idle_timeout: Duration,
    /// Whether a stream that missed its first token (or its headers) may be
    /// retried on this provider (`retry_first_token_timeout`, default
    /// false): by default the route moves to its next target instead, as
    /// an upstream that never answered is the likeliest to stay silent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_first_token_timeout: bool,
    /// Kind `mock` only: a staunch-mock scenario file (TOML or JSON) with
    /// the faults the embedded mock serves (`scenario`). [`Config::load`](super::Config::load)
    /// resolves a relative path against the config file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<PathBuf>,
    /// Speak HTTP/2 to a plain `http://` `base_url` without negotiating it
    /// (`http2_prior_knowledge`, default false): for an upstream known to
    /// serve h2c, so that its requests share one connection instead of
    /// holding one each. Not for `https://` (which negotiates HTTP/2 by
    /// ALPN on its own) nor kind `mock`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub http2_prior_knowledge: bool,
    /// HTTP/2: how many requests may be in flight on one connection to
    /// this provider before the gateway opens another
    /// (`max_streams_per_connection`, default 100, at least 1). A provider's
    /// server serves a limited number of streams at once per connection
    /// (100 to 256 at the large providers), and a stream holds its place for
    /// as long as its answer streams: past the limit, one connection would
    /// make the next requests wait for others to end. Over HTTP/1.1 every
    /// request holds a connection anyway.
    #[serde(default = "Provider::default_max_streams_per_connection")]
    pub max_streams_per_connection: usize,
}

impl Provider {
    fn default_connect_timeout() -> Duration {
        HttpOptions::DEFAULT_CONNECT_TIMEOUT
    }
    fn default_request_timeout() -> Duration {
        HttpOptions::DEFAULT_REQUEST_TIMEOUT
    }
    fn default_header_timeout() -> Duration {
        HttpOptions::DEFAULT_HEADER_TIMEOUT
    }
    fn default_first_token_timeout() -> Duration {
        HttpOptions::DEFAULT_FIRST_TOKEN_TIMEOUT
    }
    fn default_idle_timeout() -> Duration {
        HttpOptions::DEFAULT_IDLE_TIMEOUT
    }
    fn default_max_streams_per_connection() -> usize {
        HttpOptions::DEFAULT_MAX_STREAMS_PER_CONNECTION
    }

    /// A provider of this kind with every other field at its default.
    pub fn new(kind: ProviderKind) -> Self {
        Provider {
            kind,
            base_url: None,
            api_key_env: None,
            headers: BTreeMap::new(),
            connect_timeout: Self::default_connect_timeout(),
            request_timeout: Self::default_request_timeout(),
            header_timeout: Self::default_header_timeout(),
            first_token_timeout: Self::default_first_token_timeout(),
            idle_timeout: Self::default_idle_timeout(),
            retry_first_token_timeout: false,
            scenario: None,
            http2_prior_knowledge: false,
            max_streams_per_connection: Self::default_max_streams_per_connection(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigErrors};

    const ROUTE: &str =
        "\n[[routes]]\nmodel = \"*\"\ntargets = [{ provider = \"up\", model = \"m\" }]\n";

    fn provider(lines: &str) -> Result<Config, ConfigErrors> {
        Config::parse(&format!("[providers.up]\n{lines}\n{ROUTE}"), "gw.toml")
    }

    #[test]
    fn http2_prior_knowledge_is_off_by_default_and_read() {
        let c = provider("kind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:8000/v1\"")
            .unwrap();
        assert!(!c.providers["up"].http2_prior_knowledge);
        let c = provider(
            "kind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:8000/v1\"\nhttp2_prior_knowledge = true",
        )
        .unwrap();
        assert!(c.providers["up"].http2_prior_knowledge);
    }

    #[test]
    fn max_streams_per_connection_defaults_to_100_is_read_and_is_at_least_1() {
        let c = provider("kind = \"openai\"").unwrap();
        assert_eq!(c.providers["up"].max_streams_per_connection, 100);
        let c = provider("kind = \"openai\"\nmax_streams_per_connection = 8").unwrap();
        assert_eq!(c.providers["up"].max_streams_per_connection, 8);
        let errors = provider("kind = \"openai\"\nmax_streams_per_connection = 0")
            .unwrap_err()
            .0;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "providers.up.max_streams_per_connection");
        assert!(
            errors[0].message.contains("at least 1"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn http2_prior_knowledge_needs_a_plain_http_url() {
        for lines in [
            "kind = \"openai-compatible\"\nbase_url = \"https://example.com/v1\"\nhttp2_prior_knowledge = true",
            "kind = \"openai\"\nhttp2_prior_knowledge = true",
            "kind = \"mock\"\nhttp2_prior_knowledge = true",
        ] {
            let errors = provider(lines).unwrap_err().0;
            assert_eq!(errors.len(), 1, "{lines}: {errors:#?}");
            assert_eq!(errors[0].field, "providers.up.http2_prior_knowledge");
            assert!(errors[0].message.contains("http://"), "{}", errors[0]);
        }
    }
}
