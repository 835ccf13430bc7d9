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
    /// 429 rate limit, with `Retry-After` (and OpenAI's `retry-after-ms`).
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
            Fault::Status { .. } => "status",
        }
    }
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
}

/// A window of time, relative to the server's start (or last reset), in
/// which every request of the affected routes fails as overloaded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    /// Start, in milliseconds.
    pub start_ms: u64,
    /// End (exclusive), in milliseconds.
    pub end_ms: u64,
    /// The routes that are down (`openai`, `anthropic`); empty means both.
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
/// "#).unwrap();
/// assert_eq!(scenario.openai.script.len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scenario {
    /// Seed of the random draws: the same seed and arrival order give the
    /// same faults.
    pub seed: u64,
    /// Latency added to every answer, in milliseconds.
    pub latency_ms: u64,
    /// Context windows by model, in tokens: a prompt estimated larger gets
    /// the provider's overflow error.
    pub context_windows: BTreeMap<String, u64>,
    /// A window in which routes are down.
    pub outage: Option<Outage>,
    /// Faults of `/v1/chat/completions`.
    pub openai: RouteScenario,
    /// Faults of `/v1/messages`.
    pub anthropic: RouteScenario,
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
        for (route, r) in [("openai", &self.openai), ("anthropic", &self.anthropic)] {
            for f in &r.random {
                if !(0.0..=1.0).contains(&f.probability) {
                    return Err(format!(
                        "{route}: probability {} is not in [0, 1]",
                        f.probability
                    ));
                }
            }
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
