//! What the mock does with each request: scripted faults, random faults, an
//! outage window, context windows, latency.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A fault (or a normal answer) the mock serves to one request, rendered in
/// the wire format of the route it arrived on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Fault {
    /// A normal answer.
    Ok,
    /// A normal answer after `ms` milliseconds.
    Latency {
        /// The delay.
        ms: u64,
    },
    /// 429 rate limit, with `Retry-After` (and OpenAI's `retry-after-ms`; Gemini
    /// sends a `RetryInfo` detail instead).
    RateLimit {
        /// Seconds to wait.
        retry_after: f64,
    },
    /// OpenAI 503 "engine overloaded" / Anthropic 529 `overloaded_error`.
    Overloaded {
        /// Seconds to wait, if sent.
        #[serde(default)]
        retry_after: Option<f64>,
    },
    /// 500 server error.
    ServerError,
    /// 502 from a gateway, with an HTML body.
    BadGateway,
    /// OpenAI 429 `insufficient_quota` / Anthropic 429 with the spend limit reached.
    Quota,
    /// 401 authentication error.
    Unauthorized,
    /// The provider's 400 context-overflow error.
    ContextOverflow,
    /// A 200 whose answer the content filter stopped (OpenAI
    /// `finish_reason: content_filter`, Anthropic `stop_reason: refusal`).
    ContentFilter,
    /// A 200 whose tool call has broken arguments. OpenAI: `arguments` is
    /// text that is not JSON (the valid arguments cut in half, e.g.
    /// `{"city":"`). Anthropic, whose `input` is always an object: an
    /// object without the schema's required properties (or, when it requires
    /// none, another object the schema refuses). When the answer calls no
    /// tool (the request has no tools, `tool_choice` is `none`, the
    /// conversation ends with tool results) or the schema can't be broken
    /// this way, the answer is normal; the fault is still counted as served.
    BadToolArguments,
    /// A 200 whose JSON is valid but breaks the schema asked for: a tool
    /// call's arguments (OpenAI) or `input` (Anthropic, which carries a JSON
    /// output format as a forced tool), or an OpenAI `json_schema` answer,
    /// with the first required property of the wrong type (else a required
    /// property missing; see [`schema::violation`](crate::schema::violation));
    /// an OpenAI `json_object` answer that is a JSON array. When the answer
    /// is neither a tool call nor JSON (no tools, no format), or the schema
    /// accepts anything, the answer is normal; the fault is still counted as
    /// served.
    SchemaViolation,
    /// A 200 whose body is not JSON.
    Malformed,
    /// A 200 whose JSON body stops halfway (the HTTP message is complete).
    CutJson,
    /// A 200 whose body stops halfway and the connection closes.
    Truncated,
    /// No answer until the client gives up or the server stops.
    Hang,
    /// The connection closes without an answer.
    Reset,
    /// A stream whose headers (and opening events) go out at once and
    /// whose first content event comes `ms` later. Without `stream`: the
    /// normal answer, `ms` later.
    SlowFirstToken {
        /// The delay before the first content event.
        ms: u64,
    },
    /// A stream that stops after `tokens` content events: nothing more
    /// arrives (no finish, no terminator) and the connection stays open
    /// until the client gives up or the server stops.
    StallAfter {
        /// Content events sent before the stall.
        tokens: usize,
    },
    /// A stream whose connection closes abruptly after `tokens` content
    /// events (no finish, no terminator).
    CutAfter {
        /// Content events sent before the cut.
        tokens: usize,
    },
    /// A stream with one event that is not valid JSON, after `n` content
    /// events; the stream then goes on normally (the broken event carries
    /// none of the answer, so skipping it loses nothing).
    MalformedEventAt {
        /// Content events sent before the broken event.
        n: usize,
    },
    /// A complete stream (content, finish reason, usage) without its
    /// terminator (`data: [DONE]` / `message_stop`); the body then ends.
    NoTerminator,
    /// A stream that carries an in-band error event after `n` content
    /// events, then ends: OpenAI `data: {"error": {...}}`, Anthropic
    /// `event: error`.
    ErrorEventAt {
        /// Content events sent before the error.
        n: usize,
        /// The error sent.
        #[serde(default)]
        kind: StreamErrorKind,
    },
    /// A 200 event stream whose first frame is an error event (overloaded):
    /// the provider failed before any content.
    ErrorFirstFrame,
    /// Any status with a body and headers of your own.
    Status {
        /// The status code.
        status: u16,
        /// The body, sent as it is.
        #[serde(default)]
        body: String,
        /// Extra headers.
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
}

impl Fault {
    /// A short name, for the stats.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Ok => "ok",
            Fault::Latency { .. } => "latency",
            Fault::RateLimit { .. } => "rate_limit",
            Fault::Overloaded { .. } => "overloaded",
            Fault::ServerError => "server_error",
            Fault::BadGateway => "bad_gateway",
            Fault::Quota => "quota",
            Fault::Unauthorized => "unauthorized",
            Fault::ContextOverflow => "context_overflow",
            Fault::ContentFilter => "content_filter",
            Fault::BadToolArguments => "bad_tool_arguments",
            Fault::SchemaViolation => "schema_violation",
            Fault::Malformed => "malformed",
            Fault::CutJson => "cut_json",
            Fault::Truncated => "truncated",
            Fault::Hang => "hang",
            Fault::Reset => "reset",
            Fault::SlowFirstToken { .. } => "slow_first_token",
            Fault::StallAfter { .. } => "stall_after",
            Fault::CutAfter { .. } => "cut_after",
            Fault::MalformedEventAt { .. } => "malformed_event_at",
            Fault::NoTerminator => "no_terminator",
            Fault::ErrorEventAt { .. } => "error_event_at",
            Fault::ErrorFirstFrame => "error_first_frame",
            Fault::Status { .. } => "status",
        }
    }

    /// Whether this fault only changes streamed answers (a request without
    /// `stream` gets the normal answer; [`SlowFirstToken`](Fault::SlowFirstToken)
    /// delays it).
    pub fn is_stream_fault(&self) -> bool {
        matches!(
            self,
            Fault::SlowFirstToken { .. }
                | Fault::StallAfter { .. }
                | Fault::CutAfter { .. }
                | Fault::MalformedEventAt { .. }
                | Fault::NoTerminator
                | Fault::ErrorEventAt { .. }
                | Fault::ErrorFirstFrame
        )
    }
}

/// The error an in-band stream error event carries
/// ([`Fault::ErrorEventAt`]), in the route's own format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamErrorKind {
    /// OpenAI `server_error` "The engine is currently overloaded…" /
    /// Anthropic `overloaded_error` "Overloaded".
    #[default]
    Overloaded,
    /// OpenAI `server_error` / Anthropic `api_error`.
    Server,
    /// OpenAI `rate_limit_exceeded` / Anthropic `rate_limit_error`.
    RateLimit,
}

/// A fault drawn at random with `probability` (0.0–1.0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandomFault {
    /// The chance of this fault per request.
    pub probability: f64,
    /// The fault.
    pub fault: Fault,
}

/// The faults of one route.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteScenario {
    /// The Nth request of the route gets `script[N]`; requests past the end
    /// of the script are drawn from `random`.
    pub script: Vec<Fault>,
    /// Faults drawn in order with their probabilities (the first that hits
    /// wins); a request that draws none gets a normal answer.
    pub random: Vec<RandomFault>,
    /// Milliseconds before each streamed content event on this route
    /// (`None`: the scenario's [`stream_token_ms`](Scenario::stream_token_ms)).
    pub stream_token_ms: Option<u64>,
    /// Refuse an assistant prefill (a conversation ending with the
    /// assistant's turn) with a 400 `invalid_request_error` "prefill is not
    /// supported", instead of continuing it.
    pub reject_prefill: bool,
}

/// A window of time, relative to the server's start (or last reset), in
/// which every request of the affected routes fails as overloaded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    /// Start, in milliseconds.
    pub start_ms: u64,
    /// End (exclusive), in milliseconds.
    pub end_ms: u64,
    /// The routes that are down, by name (`openai`, `anthropic`,
    /// `embeddings`, `gemini`, `responses`, `gemini_embeddings`) or
    /// provider (`openai` covers its embeddings and responses too, `gemini`
    /// its embeddings); empty means all.
    #[serde(default)]
    pub routes: Vec<String>,
}

/// Everything the mock does, loadable from TOML or JSON, or built in code.
///
/// ```
/// let scenario: staunch_mock::Scenario = toml::from_str(r#"
///     seed = 7
///     latency_ms = 2
///     [context_windows]
///     "gpt-4o-mini" = 16000
///     [outage]
///     start_ms = 1000
///     end_ms = 3000
///     routes = ["anthropic"]
///     [openai]
///     script = [{ type = "rate_limit", retry_after = 0.5 }, { type = "ok" }]
///     random = [{ probability = 0.1, fault = { type = "overloaded" } }]
///     [anthropic]
///     stream_token_ms = 0
///     reject_prefill = true
///     script = [
///         { type = "stall_after", tokens = 3 },
///         { type = "error_event_at", n = 2, kind = "overloaded" },
///     ]
/// "#).unwrap();
/// assert_eq!(scenario.openai.script.len(), 2);
/// assert_eq!(scenario.stream_token_ms, staunch_mock::DEFAULT_STREAM_TOKEN_MS);
/// assert_eq!(scenario.anthropic.script[0], staunch_mock::Fault::StallAfter { tokens: 3 });
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scenario {
    /// Seed of the random draws: the same seed and arrival order give the
    /// same faults.
    pub seed: u64,
    /// Latency added to every answer, in milliseconds.
    pub latency_ms: u64,
    /// Milliseconds before each content event of a streamed answer
    /// ([`DEFAULT_STREAM_TOKEN_MS`] by default; 0: as fast as possible). A
    /// route can set its own.
    pub stream_token_ms: u64,
    /// Context windows by model, in tokens: a prompt estimated larger gets
    /// the provider's overflow error.
    pub context_windows: BTreeMap<String, u64>,
    /// A window in which routes are down.
    pub outage: Option<Outage>,
    /// Faults of `/v1/chat/completions`.
    pub openai: RouteScenario,
    /// Faults of `/v1/messages`.
    pub anthropic: RouteScenario,
    /// Faults of `/v1/embeddings`: the same faults as chat, in OpenAI's
    /// format; those about streams, content filters, tool calls and JSON
    /// answers leave its normal answer.
    pub embeddings: RouteScenario,
    /// Faults of Gemini's `/v1beta/models/{model}:generateContent` and
    /// `:streamGenerateContent`, in Google's format.
    pub gemini: RouteScenario,
    /// Faults of OpenAI's `/v1/responses`.
    pub responses: RouteScenario,
    /// Faults of Gemini's `/v1beta/models/{model}:batchEmbedContents` and
    /// `:embedContent`, in Google's format; like [`Scenario::embeddings`],
    /// the faults about streams and answers' content leave its normal
    /// answer. A batch takes at most 100 inputs (Gemini's limit) or
    /// [`Scenario::embedding_max_inputs`] if fewer.
    pub gemini_embeddings: RouteScenario,
    /// The length of embedding vectors when a request sets no `dimensions`
    /// ([`DEFAULT_EMBEDDING_DIMENSIONS`]: short, for speed).
    pub embedding_dimensions: u32,
    /// The most inputs one embeddings request may carry
    /// ([`DEFAULT_EMBEDDING_MAX_INPUTS`], OpenAI's limit); a larger batch
    /// gets OpenAI's 400 "Too many inputs".
    pub embedding_max_inputs: usize,
    /// The streams one HTTP/2 connection may carry at once, as the
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` a provider's server advertises
    /// ([`DEFAULT_HTTP2_MAX_STREAMS`]); a client past it waits for a stream
    /// to end or opens another connection. Read when a connection opens.
    pub http2_max_streams: u32,
}

/// The default [`Scenario::embedding_dimensions`].
pub const DEFAULT_EMBEDDING_DIMENSIONS: u32 = 16;

/// The default [`Scenario::embedding_max_inputs`] (OpenAI's limit).
pub const DEFAULT_EMBEDDING_MAX_INPUTS: usize = 2048;

/// The default [`Scenario::http2_max_streams`] (hyper's).
pub const DEFAULT_HTTP2_MAX_STREAMS: u32 = 200;

/// The default [`Scenario::stream_token_ms`].
pub const DEFAULT_STREAM_TOKEN_MS: u64 = 5;

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            seed: 0,
            latency_ms: 0,
            stream_token_ms: DEFAULT_STREAM_TOKEN_MS,
            context_windows: BTreeMap::new(),
            outage: None,
            openai: RouteScenario::default(),
            anthropic: RouteScenario::default(),
            embeddings: RouteScenario::default(),
            gemini: RouteScenario::default(),
            responses: RouteScenario::default(),
            gemini_embeddings: RouteScenario::default(),
            embedding_dimensions: DEFAULT_EMBEDDING_DIMENSIONS,
            embedding_max_inputs: DEFAULT_EMBEDDING_MAX_INPUTS,
            http2_max_streams: DEFAULT_HTTP2_MAX_STREAMS,
        }
    }
}

/// A scenario file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("could not read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid scenario.
    #[error("{path} is not a valid scenario: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl Scenario {
    /// Reads a scenario from a TOML file (or JSON, by a `.json` extension).
    pub fn from_file(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: shown.clone(),
            source,
        })?;
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        } else {
            toml::from_str(&text).map_err(|e| e.to_string())
        };
        let scenario: Scenario = parsed.map_err(|message| ScenarioError::Invalid {
            path: shown.clone(),
            message,
        })?;
        scenario
            .validate()
            .map_err(|message| ScenarioError::Invalid {
                path: shown,
                message,
            })?;
        Ok(scenario)
    }

    /// Checks probabilities and the outage window.
    pub fn validate(&self) -> Result<(), String> {
        for route in crate::state::Route::ALL {
            for f in &route.faults(self).random {
                if !(0.0..=1.0).contains(&f.probability) {
                    return Err(format!(
                        "{}: probability {} is not in [0, 1]",
                        route.as_str(),
                        f.probability
                    ));
                }
            }
        }
        if !(1..=crate::render::embeddings::MAX_DIMENSIONS)
            .contains(&u64::from(self.embedding_dimensions))
        {
            return Err(format!(
                "embedding_dimensions {} is not in [1, {}]",
                self.embedding_dimensions,
                crate::render::embeddings::MAX_DIMENSIONS
            ));
        }
        if self.embedding_max_inputs == 0 {
            return Err("embedding_max_inputs must be at least 1".to_owned());
        }
        if let Some(o) = &self.outage
            && o.end_ms < o.start_ms
        {
            return Err(format!(
                "outage ends ({}) before it starts ({})",
                o.end_ms, o.start_ms
            ));
        }
        Ok(())
    }
}
