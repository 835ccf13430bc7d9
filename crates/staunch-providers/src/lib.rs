//! LLM provider clients for [staunch](https://docs.rs/staunch): OpenAI Chat
//! Completions (and every OpenAI-compatible server: vLLM, Ollama, LM
//! Studio, OpenRouter, Azure deployments), the OpenAI Responses API and
//! Anthropic Messages, each a cloneable tower `Service<ChatRequest,
//! Response = ChatResponse, Error = LlmError>` on hyper 1 with rustls.
//!
//! The clients read the providers' real error bodies and headers into
//! [`ErrorKind`](staunch_core::ErrorKind)s and `retry_after`, so the
//! staunch layers above them know what to retry, what to fall back from and
//! what to give up on. Responses are bounded in size, requests in time,
//! connections pooled; keys never print.
//!
//! Google Gemini `generateContent` is a client of the same kind
//! ([`Gemini`]), with its wire format in [`gemini::wire`].
//!
//! The wire parsers are public ([`openai::wire::parse`],
//! [`responses::wire::parse`], [`anthropic::wire::parse`]): they take a
//! status, headers and body bytes and never panic.
//!
//! ```
//! use staunch_providers::openai::wire;
//! use http::HeaderMap;
//! use staunch_core::ErrorKind;
//!
//! let body = br#"{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}}"#;
//! let err = wire::parse(429, &HeaderMap::new(), body).unwrap_err();
//! assert_eq!(err.kind, ErrorKind::QuotaExhausted);
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod anthropic;
mod client;
pub mod config;
mod dialect;
pub mod gemini;
pub mod headers;
pub mod ingress;
mod json;
mod key;
mod lanes;
pub mod openai;
pub mod responses;
mod sse;
mod streaming;
#[cfg(test)]
mod test_strategies;
mod transport;

pub use anthropic::{Anthropic, AnthropicConfig};
pub use gemini::{Gemini, GeminiConfig};
pub use key::ApiKey;
pub use openai::{OpenAi, OpenAiConfig};
pub use responses::{OpenAiResponses, OpenAiResponsesConfig};
pub use transport::HttpOptions;

/// A client configuration that can't work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The base URL and path do not make an `http(s)://host/...` URL.
    #[error("not an http(s) URL with a host: {0:?}")]
    Url(String),
    /// A header name or value is not valid in HTTP.
    #[error("invalid header: {0:?}")]
    Header(String),
    /// The key contains characters a header can't carry.
    #[error("the API key contains characters that are not allowed in an HTTP header")]
    Key,
    /// TLS could not be set up.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}
