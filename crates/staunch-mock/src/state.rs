//! The server's shared state: the scenario, the random draws, what it saw.

use crate::render::{self, Dialect};
use crate::scenario::{Fault, RouteScenario, Scenario};
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, OnceLock};
use tokio::time::Instant;

/// Declares the routes: each a variant of [`Route`], named after its
/// [`Scenario`] field (`RouteScenario`, its faults) and served by a dialect
/// (`src/render/`). A new route is one line here, its `Scenario` field,
/// and its line in `Scenario::default`.
macro_rules! routes {
    ($($(#[doc = $doc:literal])+ $variant:ident($name:ident) => $dialect:path;)+) => {
        /// The routes the mock serves.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Route {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl Route {
            /// Every route.
            pub const ALL: &'static [Route] = &[$(Route::$variant),+];

            /// Its name: its field of [`Scenario`], its key in the stats,
            /// what an outage's `routes` names it by (`openai`,
            /// `anthropic`, `embeddings`, `gemini`, `responses`,
            /// `gemini_embeddings`), and what it serializes as.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Route::$variant => stringify!($name),)+
                }
            }

            /// Its faults in `scenario`.
            pub(crate) fn faults<'s>(&self, scenario: &'s Scenario) -> &'s RouteScenario {
                match self {
                    $(Route::$variant => &scenario.$name,)+
                }
            }

            /// The dialect it speaks.
            pub(crate) fn dialect(&self) -> &'static dyn Dialect {
                match self {
                    $(Route::$variant => &$dialect,)+
                }
            }
        }
    };
}

routes! {
    /// `POST /v1/chat/completions`.
    OpenAi(openai) => render::openai::Chat;
    /// `POST /v1/messages`.
    Anthropic(anthropic) => render::anthropic::Messages;
    /// `POST /v1/embeddings` (OpenAI's embeddings).
    Embeddings(embeddings) => render::embeddings::Embeddings;
    /// `POST /v1beta/models/{model}:generateContent` and
    /// `:streamGenerateContent` (Google Gemini).
    Gemini(gemini) => render::gemini::Gemini;
    /// `POST /v1/responses` (OpenAI Responses).
    Responses(responses) => render::responses::Responses;
    /// `POST /v1beta/models/{model}:batchEmbedContents` and
    /// `:embedContent` (Google Gemini's embeddings).
    GeminiEmbeddings(gemini_embeddings) => render::gemini_embeddings::GeminiEmbeddings;
}

impl Serialize for Route {
    /// As its name ([`Route::as_str`]).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Route {
    /// The provider whose API the route copies: `openai` (chat, embeddings,
    /// responses), `anthropic` or `gemini` (chat, embeddings).
    pub fn provider(&self) -> &'static str {
        self.dialect().provider()
    }

    /// The route serving `method path` (the path without its query).
    pub(crate) fn serving(method: &http::Method, path: &str) -> Option<Route> {
        Route::ALL
            .iter()
            .copied()
            .find(|route| route.dialect().serves(method, path))
    }
}

/// How much of what it saw the mock keeps: the newest requests, at most
/// `max_requests` of them and `max_bytes` of bodies and headers in all
/// (oldest evicted first; a body larger than the whole budget is kept as a
/// truncated prefix). Counts per route and fault are kept whatever the
/// limits.
///
/// ```
/// use staunch_mock::RecordLimits;
///
/// let limits = RecordLimits::default().max_requests(10).max_bytes(64 * 1024);
/// assert_eq!((limits.max_requests, limits.max_bytes), (10, 65_536));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordLimits {
    /// Requests kept at most (default 100).
    pub max_requests: usize,
    /// Bytes of bodies and headers kept at most (default 4 MiB).
    pub max_bytes: usize,
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits {
            max_requests: 100,
            max_bytes: 4 * 1024 * 1024,
        }
    }
}

impl RecordLimits {
    /// Sets the most requests kept.
    pub fn max_requests(mut self, n: usize) -> Self {
        self.max_requests = n;
        self
    }

    /// Sets the most bytes kept.
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }
}

/// A recorded request body: the raw bytes as sent (or their first bytes,
/// when the body was larger than the record's budget), read as JSON on
/// demand. Index it like a [`Value`]: `body["messages"][0]["role"]`.
/// The record itself never holds a parsed copy; a clone (what
/// [`MockStats`] hands out) parses once, on first use.
pub struct RecordedBody {
    bytes: Bytes,
    truncated: bool,
    parsed: OnceLock<Value>,
}

impl RecordedBody {
    fn new(bytes: Bytes, truncated: bool) -> Self {
        RecordedBody {
            bytes,
            truncated,
            parsed: OnceLock::new(),
        }
    }

    /// The bytes kept.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether only a prefix of the body was kept.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// The body as JSON: `null` if it was not JSON or was truncated.
    pub fn json(&self) -> &Value {
        self.parsed.get_or_init(|| self.parse())
    }

    fn parse(&self) -> Value {
        if self.truncated {
            return Value::Null;
        }
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

impl Clone for RecordedBody {
    /// Shares the bytes; the clone parses on its own.
    fn clone(&self) -> Self {
        RecordedBody::new(self.bytes.clone(), self.truncated)
    }
}

impl std::fmt::Debug for RecordedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordedBody")
            .field("bytes", &self.bytes.len())
            .field("truncated", &self.truncated)
            .finish()
    }
}

impl Serialize for RecordedBody {
    /// As its JSON (`null` if not JSON or truncated), parsed for the
    /// occasion and not kept.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.parsed.get() {
            Some(value) => value.serialize(serializer),
            None => self.parse().serialize(serializer),
        }
    }
}

impl std::ops::Index<&str> for RecordedBody {
    type Output = Value;

    fn index(&self, key: &str) -> &Value {
        &self.json()[key]
    }
}

impl std::ops::Index<usize> for RecordedBody {
    type Output = Value;

    fn index(&self, i: usize) -> &Value {
        &self.json()[i]
    }
}

/// A request the mock received.
#[derive(Clone, Debug, Serialize)]
pub struct Received {
    /// Its route.
    pub route: Route,
    /// Milliseconds since the start (or last reset).
    pub at_ms: u64,
    /// The fault it was served.
    pub fault: &'static str,
    /// Its body, as raw bytes read as JSON on demand (`null` if it was not
    /// JSON, or was too large to keep whole).
    pub body: RecordedBody,
    /// The body's size as sent, in bytes.
    pub body_bytes: usize,
    /// Whether only a prefix of the body was kept.
    pub body_truncated: bool,
    /// Its headers; credential values (`authorization`, `x-api-key`,
    /// `api-key`, `x-goog-api-key`) are recorded as `[present]`, never as
    /// sent.
    pub headers: BTreeMap<String, String>,
}

impl Received {
    /// The bytes this record holds: body kept plus header names and values.
    pub fn recorded_bytes(&self) -> usize {
        self.body.bytes.len() + headers_bytes(&self.headers)
    }
}

fn headers_bytes(headers: &BTreeMap<String, String>) -> usize {
    headers.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// What the mock has seen since it started (or was last reset).
#[derive(Clone, Debug, Default, Serialize)]
pub struct MockStats {
    /// Requests per route.
    pub requests: BTreeMap<String, u64>,
    /// Faults served, by name (`ok` for normal answers).
    pub faults: BTreeMap<String, u64>,
    /// Connections accepted.
    pub connections: u64,
    /// The last requests, oldest first, within the [`RecordLimits`].
    pub recent: VecDeque<Received>,
    /// The bytes `recent` holds (see [`Received::recorded_bytes`]); never
    /// more than [`RecordLimits::max_bytes`].
    pub recorded_bytes: usize,
}

impl MockStats {
    /// Requests that reached `route`.
    pub fn requests_to(&self, route: Route) -> u64 {
        self.requests.get(route.as_str()).copied().unwrap_or(0)
    }

    /// How many times `fault` (by [`Fault::name`]) was served.
    pub fn served(&self, fault: &str) -> u64 {
        self.faults.get(fault).copied().unwrap_or(0)
    }
}

struct Inner {
    scenario: Scenario,
    rng: SmallRng,
    started: Instant,
    stats: MockStats,
    limits: RecordLimits,
}

impl MockStats {
    /// Drops the oldest requests until `requests` more requests and `room`
    /// more bytes fit in `limits`.
    fn evict_for(&mut self, requests: usize, room: usize, limits: RecordLimits) {
        while let Some(oldest) = self.recent.front() {
            let full = self.recent.len() + requests > limits.max_requests
                || self.recorded_bytes + room > limits.max_bytes;
            if !full {
                break;
            }
            self.recorded_bytes -= oldest.recorded_bytes();
            self.recent.pop_front();
        }
    }

    /// Keeps `received` within `limits`: its body cut to what fits, the
    /// oldest requests evicted to make room.
    fn record(&mut self, mut received: Received, body: &[u8], limits: RecordLimits) {
        if limits.max_requests == 0 {
            return;
        }
        if headers_bytes(&received.headers) > limits.max_bytes {
            received.headers.clear();
        }
        let room = limits.max_bytes - headers_bytes(&received.headers);
        let kept = body.len().min(room);
        // A copy of just the bytes kept, so the record never pins the
        // connection's read buffer.
        received.body = RecordedBody::new(Bytes::copy_from_slice(&body[..kept]), kept < body.len());
        received.body_truncated = kept < body.len();
        let cost = received.recorded_bytes();
        self.evict_for(1, cost, limits);
        self.recorded_bytes += cost;
        self.recent.push_back(received);
    }
}

pub(crate) struct State {
    inner: Mutex<Inner>,
}

/// What the scenario decided for one request.
pub(crate) struct Admitted {
    /// The fault to serve (`Ok` for a normal answer).
    pub(crate) fault: Fault,
    /// Latency to add before answering, in milliseconds.
    pub(crate) latency_ms: u64,
    /// The route's delay before each streamed content event.
    pub(crate) token_ms: u64,
    /// Whether the route refuses assistant prefills.
    pub(crate) reject_prefill: bool,
    /// The default length of embedding vectors.
    pub(crate) embedding_dimensions: u32,
    /// The most inputs an embeddings request may carry.
    pub(crate) embedding_max_inputs: usize,
    /// The context window of the request's model, if set.
    pub(crate) context_window: Option<u64>,
}

/// The bytes of text in a message's content (a string, or the text of its
/// parts and blocks: `text`, tool results' `content`, `tool_use` input) and
/// in its OpenAI `tool_calls` arguments.
fn text_bytes(message: &Value) -> usize {
    fn content(c: &Value) -> usize {
        match c {
            Value::String(s) => s.len(),
            Value::Array(parts) => parts
                .iter()
                .map(|p| match p {
                    Value::String(s) => s.len(),
                    _ => {
                        p.get("text").and_then(Value::as_str).map_or(0, str::len)
                            + p.get("content").map_or(0, content)
                            + p.get("input").map_or(0, |i| i.to_string().len())
                    }
                })
                .sum(),
            _ => 0,
        }
    }
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map_or(0, |calls| {
            calls
                .iter()
                .filter_map(|c| c["function"]["arguments"].as_str())
                .map(str::len)
                .sum()
        });
    message.get("content").map_or(0, content) + calls
}

/// A rough token count: about four bytes of text per token plus framing.
pub(crate) fn estimate_tokens(body: &Value) -> u64 {
    let mut total = 0;
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for m in messages {
            total += (text_bytes(m) as u64).div_ceil(4) + 4;
        }
    }
    if let Some(system) = body.get("system").and_then(Value::as_str) {
        total += (system.len() as u64).div_ceil(4) + 4;
    }
    total
}

impl State {
    pub(crate) fn new(scenario: Scenario) -> Self {
        State {
            inner: Mutex::new(Inner {
                rng: SmallRng::seed_from_u64(scenario.seed),
                scenario,
                started: Instant::now(),
                stats: MockStats::default(),
                limits: RecordLimits::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_scenario(&self, scenario: Scenario) {
        let mut inner = self.lock();
        inner.rng = SmallRng::seed_from_u64(scenario.seed);
        inner.scenario = scenario;
    }

    pub(crate) fn scenario(&self) -> Scenario {
        self.lock().scenario.clone()
    }

    pub(crate) fn reset(&self) {
        let mut inner = self.lock();
        inner.stats = MockStats::default();
        inner.started = Instant::now();
        inner.rng = SmallRng::seed_from_u64(inner.scenario.seed);
    }

    pub(crate) fn set_limits(&self, limits: RecordLimits) {
        let mut inner = self.lock();
        inner.limits = limits;
        inner.stats.evict_for(0, 0, limits);
    }

    pub(crate) fn limits(&self) -> RecordLimits {
        self.lock().limits
    }

    pub(crate) fn stats(&self) -> MockStats {
        self.lock().stats.clone()
    }

    /// Counts a connection accepted, and says how many HTTP/2 streams it
    /// may carry at once.
    pub(crate) fn connected(&self) -> u32 {
        let mut inner = self.lock();
        inner.stats.connections += 1;
        inner.scenario.http2_max_streams
    }

    /// Records a request (its raw `bytes`, within the limits) and decides
    /// what it gets from its `model` and parsed `body` (`null` if not
    /// JSON), with the latency to add and the route's streaming and prefill
    /// settings.
    pub(crate) fn admit(
        &self,
        route: Route,
        model: &str,
        body: &Value,
        bytes: &[u8],
        headers: BTreeMap<String, String>,
    ) -> Admitted {
        let mut inner = self.lock();
        let at_ms = inner.started.elapsed().as_millis() as u64;
        let nth = inner.stats.requests_to(route) as usize;
        let scenario = &inner.scenario;
        let routes = route.faults(scenario);
        let down = scenario.outage.as_ref().is_some_and(|o| {
            (o.start_ms..o.end_ms).contains(&at_ms)
                && (o.routes.is_empty()
                    || o.routes
                        .iter()
                        .any(|r| r == route.as_str() || r == route.provider()))
        });
        let context_window = scenario.context_windows.get(model).copied();
        let too_long =
            context_window.is_some_and(|window| route.dialect().overflow_tokens(body) > window);
        let latency_ms = scenario.latency_ms;
        let token_ms = routes.stream_token_ms.unwrap_or(scenario.stream_token_ms);
        let reject_prefill = routes.reject_prefill;
        let embedding_dimensions = scenario.embedding_dimensions;
        let embedding_max_inputs = scenario.embedding_max_inputs;
        let scripted = routes.script.get(nth).cloned();
        let random = routes.random.clone();
        let fault = if down {
            Fault::Overloaded { retry_after: None }
        } else if too_long {
            Fault::ContextOverflow
        } else if let Some(f) = scripted {
            f
        } else {
            let mut chosen = Fault::Ok;
            for candidate in random {
                if inner.rng.random_bool(candidate.probability.clamp(0.0, 1.0)) {
                    chosen = candidate.fault;
                    break;
                }
            }
            chosen
        };
        let limits = inner.limits;
        let stats = &mut inner.stats;
        *stats.requests.entry(route.as_str().to_owned()).or_default() += 1;
        *stats.faults.entry(fault.name().to_owned()).or_default() += 1;
        let received = Received {
            route,
            at_ms,
            fault: fault.name(),
            body: RecordedBody::new(Bytes::new(), false),
            body_bytes: bytes.len(),
            body_truncated: false,
            headers,
        };
        stats.record(received, bytes, limits);
        Admitted {
            fault,
            latency_ms,
            token_ms,
            reject_prefill,
            embedding_dimensions,
            embedding_max_inputs,
            context_window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn each_route_has_one_name_everywhere() {
        let scenario = serde_json::to_value(Scenario::default()).unwrap();
        for route in Route::ALL {
            let name = route.as_str();
            assert_eq!(serde_json::to_value(route).unwrap(), name, "{route:?}");
            assert!(scenario.get(name).is_some(), "Scenario has a field {name}");
        }
        let served = [
            ("/v1/chat/completions", Route::OpenAi),
            ("/v1/messages", Route::Anthropic),
            ("/v1/embeddings", Route::Embeddings),
            (
                "/v1beta/models/gemini-2.5-flash:generateContent",
                Route::Gemini,
            ),
            (
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                Route::Gemini,
            ),
            ("/v1/responses", Route::Responses),
            (
                "/v1beta/models/gemini-embedding-001:batchEmbedContents",
                Route::GeminiEmbeddings,
            ),
            (
                "/v1/models/gemini-embedding-001:embedContent",
                Route::GeminiEmbeddings,
            ),
        ];
        for (path, route) in served {
            assert_eq!(Route::serving(&Method::POST, path), Some(route), "{path}");
            assert_eq!(Route::serving(&Method::GET, path), None, "{path}");
        }
        for path in [
            "/v1beta/models/:generateContent",
            "/v1beta/models/x:countTokens",
            "/v2/x",
        ] {
            assert_eq!(Route::serving(&Method::POST, path), None, "{path}");
        }
    }
}
