//! The OpenTelemetry GenAI semantic conventions staunch follows, in one
//! place: [semantic-conventions v1.41.0][v1.41.0], whose GenAI part is
//! marked *development*.
//!
//! The conventions are moving to their own repository
//! (`semantic-conventions-genai`), whose first release renames the span
//! and the metrics (`gen_ai.client.inference.*`). When staunch follows the
//! rename, this file (and the span declaration in
//! [`Instrument`](super::Instrument), whose field names a test checks
//! against these constants) is what changes.
//!
//! What staunch records under these names:
//!
//! - One span per logical request (the [`Instrument`](super::Instrument)
//!   layer's), named `{gen_ai.operation.name} {gen_ai.request.model}` for
//!   OpenTelemetry (its `otel.name` field; its tracing name is
//!   `llm.request`), of kind `client`, with the attributes of [`attr`] and
//!   staunch's own account beside them (`outcome`, `tier`, `attempts`,
//!   `fallback_depth`, `target`). One child span per attempt (the retry
//!   layer's `llm.attempt`). Message content is never recorded; keys
//!   never either.
//! - The metrics of [`metric`], with the units and bucket boundaries the
//!   conventions give ([`DURATION_BUCKETS`], [`TOKEN_BUCKETS`]). The
//!   Prometheus exporter names them `gen_ai_client_operation_duration_seconds`,
//!   `gen_ai_client_token_usage` and
//!   `gen_ai_client_operation_time_to_first_chunk_seconds` (dots become
//!   underscores, the unit is a suffix), with the attributes as labels
//!   (`gen_ai_operation_name`, ...).
//!
//! ```
//! use staunch::observe::semconv;
//! assert_eq!(semconv::VERSION, "1.41.0");
//! assert_eq!(semconv::metric::OPERATION_DURATION, "gen_ai.client.operation.duration");
//! assert_eq!(semconv::provider_name("anthropic-eu"), "anthropic");
//! ```
//!
//! [v1.41.0]: https://github.com/open-telemetry/semantic-conventions/tree/v1.41.0/docs/gen-ai

/// The version of the semantic conventions followed.
pub const VERSION: &str = "1.41.0";

/// Span and metric attribute names.
pub mod attr {
    /// `chat`, `embeddings`.
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    /// The provider, in the conventions' well-known values where one fits
    /// (`openai`, `anthropic`, `gcp.gemini`, `azure.ai.openai`, ...).
    pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
    /// The model the request named.
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    /// The most tokens the request lets the model write.
    pub const REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
    /// Whether the request asked for a stream (staunch's addition; the
    /// conventions have no attribute for it yet).
    pub const REQUEST_STREAM: &str = "gen_ai.request.stream";
    /// The model that answered.
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    /// The answer's id.
    pub const RESPONSE_ID: &str = "gen_ai.response.id";
    /// Why the model stopped, one per choice (staunch answers one).
    pub const RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
    /// Input tokens the answer used.
    pub const USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    /// Output tokens the answer used.
    pub const USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    /// `input` or `output`, on the token usage metric.
    pub const TOKEN_TYPE: &str = "gen_ai.token.type";
    /// What failed: staunch's error kind (`rate_limited`, `timeout`, ...).
    pub const ERROR_TYPE: &str = "error.type";
    /// The host of the server that answered.
    pub const SERVER_ADDRESS: &str = "server.address";
    /// The port of the server that answered.
    pub const SERVER_PORT: &str = "server.port";
}

/// Metric names (the conventions' own; a Prometheus exporter rewrites the
/// dots and adds the unit).
pub mod metric {
    /// Histogram, seconds: the whole logical operation, every attempt
    /// included (for a stream: until its last event).
    pub const OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
    /// Histogram, `{token}`: tokens used, by `gen_ai.token.type`.
    pub const TOKEN_USAGE: &str = "gen_ai.client.token.usage";
    /// Histogram, seconds: from the request to the first chunk of a
    /// stream (its commit point). Recorded for streams only.
    pub const TIME_TO_FIRST_CHUNK: &str = "gen_ai.client.operation.time_to_first_chunk";
}

/// The bucket boundaries of the duration histograms, in seconds.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// The bucket boundaries of the token usage histogram.
pub const TOKEN_BUCKETS: [f64; 14] = [
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// Describes the metrics of [`metric`] to the installed `metrics`
/// recorder: their units (seconds, `{token}`) and what they measure. Call
/// it once after installing a recorder; an exporter that adds units to
/// names (Prometheus's recommended naming) then writes
/// `gen_ai_client_operation_duration_seconds`.
pub fn describe_metrics() {
    metrics::describe_histogram!(
        metric::OPERATION_DURATION,
        metrics::Unit::Seconds,
        "GenAI operation duration (OpenTelemetry GenAI semantic conventions)"
    );
    metrics::describe_histogram!(
        metric::TOKEN_USAGE,
        metrics::Unit::Count,
        "Input and output tokens used, by gen_ai.token.type"
    );
    metrics::describe_histogram!(
        metric::TIME_TO_FIRST_CHUNK,
        metrics::Unit::Seconds,
        "Time from a streamed request to its first chunk"
    );
}

/// The conventions' name for a provider configured as `provider`: the
/// well-known value its name starts with (`anthropic-eu` is `anthropic`,
/// `gemini` is `gcp.gemini`, `azure-east` is `azure.ai.openai`), else the
/// name as it is.
pub fn provider_name(provider: &str) -> &str {
    const KNOWN: [(&str, &str); 9] = [
        ("azure", "azure.ai.openai"),
        ("openai", "openai"),
        ("anthropic", "anthropic"),
        ("gemini", "gcp.gemini"),
        ("vertex", "gcp.vertex_ai"),
        ("bedrock", "aws.bedrock"),
        ("mistral", "mistral_ai"),
        ("groq", "groq"),
        ("deepseek", "deepseek"),
    ];
    let lower = provider.as_bytes();
    KNOWN
        .iter()
        .find(|(prefix, _)| {
            lower.len() >= prefix.len()
                && lower[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        })
        .map_or(provider, |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_get_the_well_known_names() {
        assert_eq!(provider_name("OpenAI-primary"), "openai");
        assert_eq!(provider_name("azure-eastus"), "azure.ai.openai");
        assert_eq!(provider_name("gemini"), "gcp.gemini");
        assert_eq!(provider_name("mock"), "mock");
        assert_eq!(provider_name(""), "");
    }

    #[test]
    fn buckets_rise() {
        assert!(DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert!(TOKEN_BUCKETS.windows(2).all(|w| w[0] * 4.0 == w[1]));
    }
}
