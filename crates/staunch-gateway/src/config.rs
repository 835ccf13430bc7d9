//! The gateway's configuration: a TOML file, parsed into [`Config`] and
//! validated so that every mistake is reported at once, each naming the
//! file, the line and the field:
//!
//! ```text
//! gateway.toml:14: routes[0].targets[1].provider: unknown provider "opnai"; known providers: anthropic, openai
//! gateway.toml:3: server.listen: refusing to serve without client keys on a public address (0.0.0.0); add [[client_keys]] or listen on 127.0.0.1
//! ```
//!
//! Every table denies unknown fields, so a typo is an error rather than a
//! silently ignored setting. Durations are written in seconds (`*_secs`,
//! integers or decimals) or milliseconds (`*_ms`). See
//! `examples/gateway.toml` for every option with its default.
//!
//! ```
//! use staunch_gateway::config::Config;
//!
//! let config = Config::parse(r#"
//!     [providers.openai]
//!     kind = "openai"
//!     api_key_env = "OPENAI_API_KEY"
//!
//!     [[routes]]
//!     model = "gpt-*"
//!     targets = [{ provider = "openai", model = "gpt-4o-mini" }]
//! "#, "gateway.toml").unwrap();
//! assert_eq!(config.route_for("gpt-4o").unwrap().targets[0].model, "gpt-4o-mini");
//! assert!(config.route_for("claude-3").is_none());
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

// ---------------------------------------------------------------------------
// The configuration
// ---------------------------------------------------------------------------

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The `[server]` table: where and how the gateway listens.
    pub server: Server,
    /// The `[providers.NAME]` tables: upstreams that routes send to, by name.
    pub providers: BTreeMap<String, Provider>,
    /// The `[[routes]]`, in file order: the first whose `model` matches a
    /// request's model serves it.
    pub routes: Vec<Route>,
    /// The `[[client_keys]]`: the keys clients may present. None: no
    /// authentication (allowed on a loopback address only).
    pub client_keys: Vec<ClientKey>,
}

/// The `[server]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// The address to listen on (`listen`, default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// The largest request body accepted, in bytes (`max_body_bytes`,
    /// default 2 MiB).
    pub max_body_bytes: usize,
    /// How many requests may be in flight at once (`max_concurrency`,
    /// default 256). More wait, unread, until one finishes.
    ///
    /// Each request in flight holds an upstream connection over HTTP/1.1
    /// (about 30 KiB with its buffers), so this also bounds memory
    /// (`docs/gateway-benchmarks.md` has measurements). And it bounds
    /// throughput to `max_concurrency` divided by the upstream's latency:
    /// 256 requests per second when answers take 1 s. Raise it for many
    /// long model calls.
    pub max_concurrency: usize,
    /// How long requests in flight may finish after a shutdown signal
    /// (`shutdown_grace_secs`, default 30).
    #[serde(rename = "shutdown_grace_secs", with = "secs")]
    pub shutdown_grace: Duration,
    /// How many client connections may be open at once
    /// (`max_connections`; default: half the process's open-file limit as
    /// read at start-up, at most 16,384).
    ///
    /// At the cap, a new connection takes the place of the connection that
    /// has waited longest for its request head (idle or still sending it);
    /// when every connection is serving a request, new ones wait in the
    /// listen backlog until one closes. The rest of the file descriptors
    /// stay free for upstream connections, Redis and the logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// How long a client may take to send a whole request head, from the
    /// connection's start or from its first byte on a kept-alive
    /// connection (`header_timeout_secs`, default 5). Slower connections
    /// are closed.
    #[serde(rename = "header_timeout_secs", with = "secs")]
    pub header_timeout: Duration,
    /// How long a kept-alive connection may sit idle between requests
    /// (`idle_timeout_secs`, default 60). A connection serving a request,
    /// a long stream included, is never idle.
    #[serde(rename = "idle_timeout_secs", with = "secs")]
    pub idle_timeout: Duration,
    /// The longest pause allowed while a request body arrives, and the grace
    /// before [`min_body_rate`](Self::min_body_rate) applies
    /// (`body_timeout_secs`, default 10).
    #[serde(rename = "body_timeout_secs", with = "secs")]
    pub body_timeout: Duration,
    /// The slowest average pace a request body may arrive at, in bytes per
    /// second, once [`body_timeout`](Self::body_timeout) has passed
    /// (`min_body_bytes_per_sec`, default 1024). A body slower than this, or
    /// one that pauses longer than `body_timeout`, is answered 408 and its
    /// connection closed.
    #[serde(rename = "min_body_bytes_per_sec")]
    pub min_body_rate: u64,
    /// The log format (`log_format`, `"json"` (default) or `"text"`).
    pub log_format: LogFormat,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 2 * 1024 * 1024,
            max_concurrency: 256,
            shutdown_grace: Duration::from_secs(30),
            max_connections: None,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(10),
            min_body_rate: 1024,
            log_format: LogFormat::Json,
        }
    }
}

/// How the gateway writes its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (`"json"`, the default).
    #[default]
    Json,
    /// Human-readable lines (`"text"`).
    Text,
}

/// What kind of upstream a provider is: which wire format it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderKind {
    /// OpenAI's API (`"openai"`); `base_url` defaults to OpenAI's.
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic's API (`"anthropic"`); `base_url` defaults to Anthropic's.
    #[serde(rename = "anthropic")]
    Anthropic,
    /// Any server speaking OpenAI Chat Completions (`"openai-compatible"`);
    /// `base_url` is required.
    #[serde(rename = "openai-compatible")]
    OpenAiCompatible,
    /// The embedded staunch-mock (`"mock"`): no network, no key.
    #[serde(rename = "mock")]
    Mock,
}

impl ProviderKind {
    /// The name used in the file: `"openai"`, `"anthropic"`,
    /// `"openai-compatible"` or `"mock"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenAiCompatible => "openai-compatible",
            ProviderKind::Mock => "mock",
        }
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
    /// How long a stream may take to send its first token
    /// (`first_token_timeout_secs`, 60).
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
    /// Kind `mock` only: a staunch-mock scenario file (TOML or JSON) with
    /// the faults the embedded mock serves (`scenario`). [`Config::load`]
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
}

impl Provider {
    fn default_connect_timeout() -> Duration {
        Duration::from_secs(10)
    }
    fn default_request_timeout() -> Duration {
        Duration::from_secs(600)
    }
    fn default_first_token_timeout() -> Duration {
        Duration::from_secs(60)
    }
    fn default_idle_timeout() -> Duration {
        Duration::from_secs(30)
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
            first_token_timeout: Self::default_first_token_timeout(),
            idle_timeout: Self::default_idle_timeout(),
            scenario: None,
            http2_prior_knowledge: false,
        }
    }
}

/// A `[[routes]]` entry: which requests it serves and the targets it tries,
/// in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The model names this route serves (`model`): exact, or a pattern
    /// where `*` matches any run of characters (`"gpt-*"`, `"*"`).
    pub model: String,
    /// The targets, tried in order: the first is the primary, the rest its
    /// fallbacks (`targets`, at least one).
    #[serde(default)]
    pub targets: Vec<RouteTarget>,
    /// What to do when a target refuses (`on_refusal`, `"fallback"` or
    /// `"return"`).
    #[serde(default)]
    pub on_refusal: OnRefusal,
    /// The time a whole request may take across every attempt
    /// (`deadline_secs`, none by default).
    #[serde(
        rename = "deadline_secs",
        with = "opt_secs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub deadline: Option<Duration>,
    /// What to answer when every target failed (`[routes.degrade]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degrade: Option<Degrade>,
    /// Limits on each request's size (`[routes.budget]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<RouteBudget>,
}

impl Route {
    /// A route for this model pattern to these targets, every other field
    /// at its default.
    pub fn new(model: impl Into<String>, targets: Vec<RouteTarget>) -> Self {
        Route {
            model: model.into(),
            targets,
            on_refusal: OnRefusal::default(),
            deadline: None,
            degrade: None,
            budget: None,
        }
    }

    /// Whether this route serves `model`: `*` in the pattern matches any
    /// run of characters (the empty one too); anything else must be equal.
    pub fn matches(&self, model: &str) -> bool {
        wildcard_match(&self.model, model)
    }
}

/// What a route does when a target answers with a refusal (a content
/// filter, a safety stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRefusal {
    /// Try the next target (`"fallback"`, the default).
    #[default]
    Fallback,
    /// Return the refusal to the client (`"return"`).
    Return,
}

/// One target of a route: a model at a provider, with its own retries,
/// breaker and timeout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTarget {
    /// The provider's name, a key of `[providers]` (`provider`).
    pub provider: String,
    /// The model asked of that provider (`model`).
    pub model: String,
    /// Its price, for cost budgets (`price = { input, output }`, dollars
    /// per million tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    /// Its context window in tokens (`context_window`): a request that
    /// cannot fit skips this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    /// Whether it accepts a conversation ending with an assistant turn
    /// (`accepts_prefill`, default false).
    #[serde(default)]
    pub accepts_prefill: bool,
    /// Its retries (`retry = { max_retries, base_delay_ms, max_delay_ms }`).
    #[serde(default)]
    pub retry: Retry,
    /// Its circuit breaker (`breaker = { consecutive_failures, break_secs }`).
    #[serde(default)]
    pub breaker: Breaker,
    /// The time one attempt may take (`attempt_timeout_secs`, 60).
    #[serde(
        rename = "attempt_timeout_secs",
        with = "secs",
        default = "RouteTarget::default_attempt_timeout"
    )]
    pub attempt_timeout: Duration,
    /// Its own quota (`quota = { requests_per_minute, tokens_per_minute,
    /// max_wait_ms }`, none by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

impl RouteTarget {
    fn default_attempt_timeout() -> Duration {
        Duration::from_secs(60)
    }

    /// This model at this provider, every other field at its default.
    pub fn new(provider: impl Into<String>, model: impl Into<String>) -> Self {
        RouteTarget {
            provider: provider.into(),
            model: model.into(),
            price: None,
            context_window: None,
            accepts_prefill: false,
            retry: Retry::default(),
            breaker: Breaker::default(),
            attempt_timeout: Self::default_attempt_timeout(),
            quota: None,
        }
    }
}

/// A model's price, in dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million prompt tokens (`input`).
    pub input: f64,
    /// Per million completion tokens (`output`).
    pub output: f64,
}

/// A target's retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    /// Retries after the first attempt (`max_retries`, 2).
    pub max_retries: u32,
    /// The first backoff (`base_delay_ms`, 500).
    #[serde(rename = "base_delay_ms", with = "millis")]
    pub base_delay: Duration,
    /// The largest backoff (`max_delay_ms`, 8000).
    #[serde(rename = "max_delay_ms", with = "millis")]
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_retries: 2,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_millis(8000),
        }
    }
}

/// A target's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Breaker {
    /// Failures in a row that open it (`consecutive_failures`, 5).
    pub consecutive_failures: u32,
    /// How long it stays open (`break_secs`, 30).
    #[serde(rename = "break_secs", with = "secs")]
    pub break_duration: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            consecutive_failures: 5,
            break_duration: Duration::from_secs(30),
        }
    }
}

/// A target's quota, kept by the gateway so that the provider never has
/// to refuse: requests and tokens per minute, each a bucket of that size
/// refilled continuously over the minute (as OpenAI and Anthropic describe
/// their own limits). A request that has no room waits for it up to
/// `max_wait_ms` (and the route's deadline); past that it is refused at
/// once, without calling the provider, and the route's next target
/// answers. A request reserves one request and its prompt estimate plus
/// its `max_tokens` (1,024 when unset) tokens, reconciled with the tokens
/// billed. The quota belongs to this target of this route, in this
/// gateway process; a reload starts it afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Requests per minute (`requests_per_minute`, none: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Tokens (prompt and completion) per minute (`tokens_per_minute`,
    /// none: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// The longest a request waits for room (`max_wait_ms`, 10000; 0
    /// never waits: a request without room goes to the next target at
    /// once).
    #[serde(
        rename = "max_wait_ms",
        with = "millis",
        default = "Quota::default_max_wait"
    )]
    pub max_wait: Duration,
}

impl Quota {
    fn default_max_wait() -> Duration {
        Duration::from_secs(10)
    }
}

impl Default for Quota {
    /// No limits yet, and a wait of at most 10 s.
    fn default() -> Self {
        Quota {
            requests_per_minute: None,
            tokens_per_minute: None,
            max_wait: Self::default_max_wait(),
        }
    }
}

/// A route's last resort when every target failed: a cached answer to the
/// same request, or a fixed one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Degrade {
    /// A fixed answer (`static_answer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_answer: Option<String>,
    /// How long a good answer stays cached for reuse (`cache_ttl_secs`;
    /// none: no cache).
    #[serde(
        rename = "cache_ttl_secs",
        with = "opt_secs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_ttl: Option<Duration>,
    /// How many answers the cache holds (`cache_capacity`, 1000).
    #[serde(default = "Degrade::default_cache_capacity")]
    pub cache_capacity: u64,
}

impl Degrade {
    fn default_cache_capacity() -> u64 {
        1000
    }
}

impl Default for Degrade {
    fn default() -> Self {
        Degrade {
            static_answer: None,
            cache_ttl: None,
            cache_capacity: Self::default_cache_capacity(),
        }
    }
}

/// A route's limits on each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteBudget {
    /// The most tokens (prompt and completion) one request may use
    /// (`per_request_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_request_tokens: Option<u64>,
}

/// A `[[client_keys]]` entry: a key a client may present, and its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientKey {
    /// A name for logs and metrics (`name`, unique).
    pub name: String,
    /// The SHA-256 of the key, 64 hex digits (`sha256`); stored in lower
    /// case (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
    /// The window the limits below count over (`window_secs`, 60).
    #[serde(
        rename = "window_secs",
        with = "secs",
        default = "ClientKey::default_window"
    )]
    pub window: Duration,
    /// The most tokens per window (`window_tokens`, none: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_tokens: Option<u64>,
    /// The most dollars per window (`window_cost`, none: no limit), priced
    /// with the targets' `price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_cost: Option<f64>,
}

impl ClientKey {
    fn default_window() -> Duration {
        Duration::from_secs(60)
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// One mistake in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the configuration came from: the file name.
    pub origin: String,
    /// The line (1-based), when known.
    pub line: Option<usize>,
    /// The field, as a path: `routes[0].targets[1].provider`. Empty when
    /// the error is about the whole file (it cannot be read).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `{origin}:{line}: {field}: {message}`, without `:{line}` when the
    /// line is unknown and without `{field}: ` when there is no field.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every mistake found in a configuration, in the order of the file
/// (errors without a line last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

impl Config {
    /// Parses and validates a configuration. `origin` names it in errors
    /// (the file name). Every error is reported, not just the first.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        let doc = Doc { origin, text };
        let root = match DeTable::parse(text) {
            Ok(root) => root,
            Err(_) => return Err(ConfigErrors(doc.syntax_errors())),
        };
        let mut errors = Vec::new();
        let mut layout = Layout::default();
        let mut config = Config {
            server: Server::default(),
            providers: BTreeMap::new(),
            routes: Vec::new(),
            client_keys: Vec::new(),
        };
        for (key, value) in root.get_ref().iter() {
            let name: &str = key.get_ref();
            let path = vec![Seg::Key(name.to_owned())];
            match name {
                "server" => {
                    if let Some(server) = doc.deserialize(value, &path, &mut errors) {
                        config.server = server;
                    }
                }
                "providers" => {
                    let Some(table) = doc.expect_table(value, &path, &mut errors) else {
                        continue;
                    };
                    for (pname, pvalue) in table.iter() {
                        let pname: &str = pname.get_ref();
                        layout.provider_names.insert(pname.to_owned());
                        let ppath = child(&path, Seg::Key(pname.to_owned()));
                        if let Some(p) = doc.deserialize(pvalue, &ppath, &mut errors) {
                            config.providers.insert(pname.to_owned(), p);
                        }
                    }
                }
                "routes" | "client_keys" => {
                    let Some(array) = doc.expect_array(value, &path, &mut errors) else {
                        // Reported; not also as "no routes".
                        layout.file_routes += usize::from(name == "routes");
                        continue;
                    };
                    for (i, item) in array.iter().enumerate() {
                        let ipath = child(&path, Seg::Index(i));
                        if name == "routes" {
                            layout.file_routes += 1;
                            if let Some(r) = doc.deserialize(item, &ipath, &mut errors) {
                                config.routes.push(r);
                                layout.route_index.push(i);
                            }
                        } else if let Some(k) = doc.deserialize(item, &ipath, &mut errors) {
                            config.client_keys.push(k);
                            layout.key_index.push(i);
                        }
                    }
                }
                _ => errors.push(doc.error_at(
                    &path,
                    Some(key.span()),
                    format!(
                        "unknown field `{name}`, expected one of `server`, `providers`, `routes`, `client_keys`"
                    ),
                )),
            }
        }
        for key in &mut config.client_keys {
            key.sha256.make_ascii_lowercase();
        }
        let mut check = Check {
            errors,
            layout,
            locate: &|path: &[Seg]| {
                let span = span_of(root.get_ref(), path)?;
                Some(line_of(text, span.start))
            },
            origin,
        };
        check.config(&config);
        let mut errors = check.errors;
        if errors.is_empty() {
            Ok(config)
        } else {
            errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
            Err(ConfigErrors(errors))
        }
    }

    /// Reads, parses and validates a configuration file (errors name it by
    /// its path). A mock provider's relative `scenario` path is resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            line: None,
            field: String::new(),
            message: format!("cannot read the configuration: {e}"),
        })?;
        let mut config = Config::parse(&text, &origin)?;
        if let Some(dir) = path.parent() {
            for provider in config.providers.values_mut() {
                if let Some(scenario) = &mut provider.scenario
                    && scenario.is_relative()
                {
                    *scenario = dir.join(&*scenario);
                }
            }
        }
        Ok(config)
    }

    /// Validates a configuration built in code, with the checks
    /// [`Config::parse`] makes (errors have no line, and their origin is
    /// `<config>`).
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut check = Check {
            errors: Vec::new(),
            layout: Layout {
                provider_names: self.providers.keys().cloned().collect(),
                file_routes: self.routes.len(),
                route_index: (0..self.routes.len()).collect(),
                key_index: (0..self.client_keys.len()).collect(),
            },
            locate: &|_: &[Seg]| None,
            origin: "<config>",
        };
        check.config(self);
        if check.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(check.errors))
        }
    }

    /// The route that serves `model`: the first whose pattern matches it.
    pub fn route_for(&self, model: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(model))
    }

    /// Whether clients must present a key: when keys are configured, and
    /// always on an address that is not loopback (validation refuses such
    /// an address without keys).
    pub fn auth_required(&self) -> bool {
        !self.client_keys.is_empty() || !self.server.listen.ip().is_loopback()
    }

    /// The built-in configuration used without a file and without provider
    /// keys: one `mock` provider (the embedded staunch-mock) and one route,
    /// `*`, to two mock targets (`mock-primary`, then `mock-fallback`), so
    /// that a fault on the first shows the fallback at work.
    pub fn mock() -> Config {
        Config {
            server: Server::default(),
            providers: BTreeMap::from([("mock".to_owned(), Provider::new(ProviderKind::Mock))]),
            routes: vec![Route::new(
                "*",
                vec![
                    RouteTarget::new("mock", "mock-primary"),
                    RouteTarget::new("mock", "mock-fallback"),
                ],
            )],
            client_keys: Vec::new(),
        }
    }
}

/// A `*` glob: `*` matches any run of characters, the rest literally.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole text must be the pattern.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

// ---------------------------------------------------------------------------
// Field paths, spans and lines
// ---------------------------------------------------------------------------

/// One step of a field path.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn child(path: &[Seg], seg: Seg) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(seg);
    p
}

fn key(path: &[Seg], k: &str) -> Vec<Seg> {
    child(path, Seg::Key(k.to_owned()))
}

fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if bare {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The span naming `path` in the document: the key's own span (a table
/// header's line, not its body's), an array element's span; for a path
/// that does not exist (a missing field) the nearest ancestor's.
fn span_of(root: &DeTable<'_>, path: &[Seg]) -> Option<Range<usize>> {
    let mut best = None;
    let mut table = Some(root);
    let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
    for seg in path {
        let found = match seg {
            Seg::Key(k) => table
                .and_then(|t| t.iter().find(|(key, _)| &**key.get_ref() == k))
                .map(|(key, value)| (key.span(), value)),
            Seg::Index(i) => array
                .and_then(|a| a.get(*i))
                .map(|value| (value.span(), value)),
        };
        let Some((span, value)) = found else {
            break;
        };
        best = Some(span);
        table = None;
        array = None;
        match value.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(a),
            _ => {}
        }
    }
    best
}

/// The deepest field under `value` (at `path`) whose key or value span
/// holds `offset`: where a serde error points.
fn locate(value: &Spanned<DeValue<'_>>, path: &[Seg], offset: usize) -> Option<Vec<Seg>> {
    fn holds(span: &Range<usize>, offset: usize) -> bool {
        span.contains(&offset) || span.start == offset
    }
    fn walk(
        value: &Spanned<DeValue<'_>>,
        path: &mut Vec<Seg>,
        offset: usize,
        best: &mut Option<(Vec<Seg>, usize)>,
    ) {
        let consider =
            |path: &Vec<Seg>, span: Range<usize>, best: &mut Option<(Vec<Seg>, usize)>| {
                if !holds(&span, offset) {
                    return;
                }
                let better = match best {
                    None => true,
                    Some((p, len)) => {
                        path.len() > p.len() || (path.len() == p.len() && span.len() < *len)
                    }
                };
                if better {
                    *best = Some((path.clone(), span.len()));
                }
            };
        match value.get_ref() {
            DeValue::Table(t) => {
                for (k, v) in t.iter() {
                    path.push(Seg::Key(k.get_ref().to_string()));
                    consider(path, k.span(), best);
                    consider(path, v.span(), best);
                    walk(v, path, offset, best);
                    path.pop();
                }
            }
            DeValue::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    path.push(Seg::Index(i));
                    consider(path, v.span(), best);
                    walk(v, path, offset, best);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut best = None;
    walk(value, &mut path.to_vec(), offset, &mut best);
    best.map(|(p, _)| p)
}

struct Doc<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Doc<'_> {
    fn error_at(&self, path: &[Seg], span: Option<Range<usize>>, message: String) -> ConfigError {
        ConfigError {
            origin: self.origin.to_owned(),
            line: span.map(|s| line_of(self.text, s.start)),
            field: render(path),
            message,
        }
    }

    /// TOML syntax errors, each with the field being written when the
    /// parser can tell.
    fn syntax_errors(&self) -> Vec<ConfigError> {
        let (partial, errors) = DeTable::parse_recoverable(self.text);
        let root = Spanned::new(partial.span(), DeValue::Table(partial.into_inner()));
        let mut out: Vec<ConfigError> = Vec::new();
        for e in errors {
            let span = e.span();
            let line = span.as_ref().map(|s| line_of(self.text, s.start));
            // One error per line: the parser's recovery can report a line's
            // mistake more than once.
            if line.is_some() && out.iter().any(|o| o.line == line) {
                continue;
            }
            let field = span
                .and_then(|s| locate(&root, &[], s.start))
                .map(|p| render(&p))
                .filter(|f| !f.is_empty())
                .unwrap_or_else(|| "syntax".to_owned());
            out.push(ConfigError {
                origin: self.origin.to_owned(),
                line,
                field,
                message: format!("invalid TOML: {}", e.message().trim_end()),
            });
        }
        out
    }

    fn deserialize<'i, T: Deserialize<'i>>(
        &self,
        value: &Spanned<DeValue<'i>>,
        path: &[Seg],
        errors: &mut Vec<ConfigError>,
    ) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().unwrap_or_else(|| value.span());
                let field = locate(value, path, span.start).unwrap_or_else(|| path.to_vec());
                errors.push(self.error_at(&field, Some(span), polish(e.message())));
                None
            }
        }
    }

    fn expect_table<'v, 'i>(
        &self,
        value: &'v Spanned<DeValue<'i>>,
        path: &[Seg],
        errors: &mut Vec<ConfigError>,
    ) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                errors.push(self.error_at(
                    path,
                    Some(value.span()),
                    format!("invalid type: {}, expected a table", other.type_str()),
                ));
                None
            }
        }
    }

    fn expect_array<'v, 'i>(
        &self,
        value: &'v Spanned<DeValue<'i>>,
        path: &[Seg],
        errors: &mut Vec<ConfigError>,
    ) -> Option<&'v [Spanned<DeValue<'i>>]> {
        match value.get_ref() {
            DeValue::Array(a) => Some(a),
            other => {
                errors.push(self.error_at(
                    path,
                    Some(value.span()),
                    format!(
                        "invalid type: {}, expected an array of tables ([[{}]])",
                        other.type_str(),
                        render(path)
                    ),
                ));
                None
            }
        }
    }
}

/// serde's messages, in the file's terms.
fn polish(message: &str) -> String {
    message
        .trim_end()
        .replace("expected usize", "expected a non-negative integer")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected u32", "expected a non-negative integer")
        .replace("expected f64", "expected a number")
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// Where the parsed items sit in the file: items that failed to
/// deserialize are missing from the `Config`, so its indexes are mapped
/// back to the file's.
#[derive(Default)]
struct Layout {
    /// Every provider name in the file, those that failed too.
    provider_names: BTreeSet<String>,
    /// How many routes the file has, those that failed too.
    file_routes: usize,
    /// The file index of each route in `Config::routes`.
    route_index: Vec<usize>,
    /// The file index of each key in `Config::client_keys`.
    key_index: Vec<usize>,
}

struct Check<'a> {
    errors: Vec<ConfigError>,
    layout: Layout,
    locate: &'a dyn Fn(&[Seg]) -> Option<usize>,
    origin: &'a str,
}

impl Check<'_> {
    fn error(&mut self, path: Vec<Seg>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            origin: self.origin.to_owned(),
            line: (self.locate)(&path),
            field: render(&path),
            message: message.into(),
        });
    }

    fn positive(&mut self, path: Vec<Seg>, d: Duration) {
        if d.is_zero() {
            self.error(path, "must be greater than 0");
        }
    }

    fn config(&mut self, config: &Config) {
        self.server(config);
        for (name, provider) in &config.providers {
            self.provider(name, provider);
        }
        self.routes(config);
        self.client_keys(config);
    }

    fn server(&mut self, config: &Config) {
        let s = &config.server;
        let at = |k: &str| key(&[Seg::Key("server".into())], k);
        if s.max_body_bytes == 0 {
            self.error(at("max_body_bytes"), "must be greater than 0");
        }
        if s.max_concurrency == 0 {
            self.error(at("max_concurrency"), "must be greater than 0");
        }
        if s.max_connections == Some(0) {
            self.error(at("max_connections"), "must be greater than 0");
        }
        // Zero would close every connection at once; more than an hour
        // is no bound against a client that trickles bytes.
        let bounds = Duration::from_millis(10)..=Duration::from_secs(3_600);
        for (name, value) in [
            ("header_timeout_secs", s.header_timeout),
            ("idle_timeout_secs", s.idle_timeout),
            ("body_timeout_secs", s.body_timeout),
        ] {
            if !bounds.contains(&value) {
                self.error(
                    at(name),
                    format!(
                        "must be between 0.01 and 3600 seconds (got {})",
                        value.as_secs_f64()
                    ),
                );
            }
        }
        if s.min_body_rate == 0 {
            self.error(
                at("min_body_bytes_per_sec"),
                "must be greater than 0 (a body may then take forever)",
            );
        }
        if !s.listen.ip().is_loopback() && config.client_keys.is_empty() {
            self.error(
                at("listen"),
                format!(
                    "refusing to serve without client keys on a public address ({}); \
                     add [[client_keys]] or listen on 127.0.0.1",
                    s.listen.ip()
                ),
            );
        }
    }

    fn provider(&mut self, name: &str, p: &Provider) {
        let path = vec![Seg::Key("providers".into()), Seg::Key(name.to_owned())];
        if name.is_empty() {
            self.error(path.clone(), "a provider needs a non-empty name");
        }
        match &p.base_url {
            None if p.kind == ProviderKind::OpenAiCompatible => self.error(
                key(&path, "base_url"),
                "a provider of kind \"openai-compatible\" needs base_url \
                 (e.g. \"http://localhost:8000/v1\")",
            ),
            Some(_) if p.kind == ProviderKind::Mock => self.error(
                key(&path, "base_url"),
                "a provider of kind \"mock\" is embedded and has no base_url",
            ),
            Some(url) => match url.parse::<http::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.authority().is_some() => {}
                _ => self.error(
                    key(&path, "base_url"),
                    format!("{url:?} is not an http:// or https:// URL"),
                ),
            },
            None => {}
        }
        if let Some(env) = &p.api_key_env
            && (env.is_empty() || env.contains('=') || env.contains('\0'))
        {
            self.error(
                key(&path, "api_key_env"),
                format!("{env:?} is not an environment variable name"),
            );
        }
        for (hname, hvalue) in &p.headers {
            let hpath = child(&key(&path, "headers"), Seg::Key(hname.clone()));
            if http::HeaderName::from_bytes(hname.as_bytes()).is_err() {
                self.error(hpath, format!("{hname:?} is not a valid header name"));
            } else if http::HeaderValue::from_str(hvalue).is_err() {
                self.error(hpath, "not a valid header value");
            }
        }
        self.positive(key(&path, "connect_timeout_secs"), p.connect_timeout);
        self.positive(key(&path, "request_timeout_secs"), p.request_timeout);
        self.positive(
            key(&path, "first_token_timeout_secs"),
            p.first_token_timeout,
        );
        self.positive(key(&path, "idle_timeout_secs"), p.idle_timeout);
        if p.http2_prior_knowledge {
            let plain = p
                .base_url
                .as_deref()
                .and_then(|url| url.parse::<http::Uri>().ok())
                .is_some_and(|uri| uri.scheme_str() == Some("http"));
            if !plain {
                self.error(
                    key(&path, "http2_prior_knowledge"),
                    "only for a plain http:// base_url (https:// negotiates HTTP/2 on its own)",
                );
            }
        }
        if p.scenario.is_some() && p.kind != ProviderKind::Mock {
            self.error(
                key(&path, "scenario"),
                format!(
                    "only a provider of kind \"mock\" takes a scenario (this one is \"{}\")",
                    p.kind
                ),
            );
        }
    }

    fn routes(&mut self, config: &Config) {
        let routes_path = vec![Seg::Key("routes".into())];
        if self.layout.file_routes == 0 {
            self.error(
                routes_path.clone(),
                "no routes: add at least one [[routes]] with a model pattern and its targets",
            );
        }
        let known = if self.layout.provider_names.is_empty() {
            "no providers are defined; add a [providers.NAME] table".to_owned()
        } else {
            let names: Vec<&str> = self
                .layout
                .provider_names
                .iter()
                .map(String::as_str)
                .collect();
            format!("known providers: {}", names.join(", "))
        };
        for (ci, route) in config.routes.iter().enumerate() {
            let fi = self.layout.route_index[ci];
            let path = child(&routes_path, Seg::Index(fi));
            let model_path = key(&path, "model");
            if route.model.is_empty() {
                self.error(
                    model_path.clone(),
                    "an empty model pattern matches nothing; use \"*\" for every model",
                );
            } else if let Some((ei, earlier)) = config.routes[..ci]
                .iter()
                .enumerate()
                .find(|(_, e)| e.model == route.model)
            {
                let first = self.layout.route_index[ei];
                let line = self.line_note(key(&child(&routes_path, Seg::Index(first)), "model"));
                self.error(
                    model_path.clone(),
                    format!(
                        "duplicate route for model {:?} (first at routes[{first}]{line})",
                        earlier.model
                    ),
                );
            } else if let Some((ei, earlier)) =
                config.routes[..ci].iter().enumerate().find(|(_, e)| {
                    (!route.model.contains('*') && e.matches(&route.model))
                        || (!e.model.is_empty() && e.model.chars().all(|c| c == '*'))
                })
            {
                let first = self.layout.route_index[ei];
                let line = self.line_note(key(&child(&routes_path, Seg::Index(first)), "model"));
                self.error(
                    model_path.clone(),
                    format!(
                        "unreachable route: routes[{first}]{line} (model {:?}) comes first and \
                         serves {:?}; put the more specific route first",
                        earlier.model, route.model
                    ),
                );
            }
            if route.targets.is_empty() {
                self.error(
                    key(&path, "targets"),
                    "a route needs at least one target: targets = [{ provider = \"...\", model = \"...\" }]",
                );
            }
            for (ti, target) in route.targets.iter().enumerate() {
                let tpath = child(&key(&path, "targets"), Seg::Index(ti));
                self.target(&tpath, target, &known);
            }
            if let Some(d) = route.deadline {
                self.positive(key(&path, "deadline_secs"), d);
            }
            if let Some(degrade) = &route.degrade {
                let dpath = key(&path, "degrade");
                if degrade.static_answer.is_none() && degrade.cache_ttl.is_none() {
                    self.error(
                        dpath.clone(),
                        "degrade needs static_answer or cache_ttl_secs (or remove it)",
                    );
                }
                if let Some(ttl) = degrade.cache_ttl {
                    self.positive(key(&dpath, "cache_ttl_secs"), ttl);
                    if degrade.cache_capacity == 0 {
                        self.error(key(&dpath, "cache_capacity"), "must be greater than 0");
                    }
                }
            }
            if let Some(RouteBudget {
                per_request_tokens: Some(0),
            }) = route.budget
            {
                self.error(
                    key(&key(&path, "budget"), "per_request_tokens"),
                    "must be greater than 0",
                );
            }
        }
    }

    fn line_note(&self, path: Vec<Seg>) -> String {
        match (self.locate)(&path) {
            Some(line) => format!(", line {line}"),
            None => String::new(),
        }
    }

    fn target(&mut self, path: &[Seg], t: &RouteTarget, known: &str) {
        if !self.layout.provider_names.contains(&t.provider) {
            self.error(
                key(path, "provider"),
                format!("unknown provider {:?}; {known}", t.provider),
            );
        }
        if t.model.is_empty() {
            self.error(key(path, "model"), "a target needs a model name");
        }
        if let Some(price) = t.price {
            let ppath = key(path, "price");
            for (name, v) in [("input", price.input), ("output", price.output)] {
                if !(v.is_finite() && v >= 0.0) {
                    self.error(
                        key(&ppath, name),
                        "must be a price ≥ 0 (dollars per million tokens)",
                    );
                }
            }
        }
        if t.context_window == Some(0) {
            self.error(key(path, "context_window"), "must be greater than 0");
        }
        if t.retry.base_delay > t.retry.max_delay {
            self.error(
                key(&key(path, "retry"), "base_delay_ms"),
                format!(
                    "base_delay_ms ({}) is larger than max_delay_ms ({})",
                    t.retry.base_delay.as_millis(),
                    t.retry.max_delay.as_millis()
                ),
            );
        }
        if t.breaker.consecutive_failures == 0 {
            self.error(
                key(&key(path, "breaker"), "consecutive_failures"),
                "must be at least 1",
            );
        }
        self.positive(
            key(&key(path, "breaker"), "break_secs"),
            t.breaker.break_duration,
        );
        self.positive(key(path, "attempt_timeout_secs"), t.attempt_timeout);
        if let Some(quota) = &t.quota {
            let qpath = key(path, "quota");
            if quota.requests_per_minute.is_none() && quota.tokens_per_minute.is_none() {
                self.error(
                    qpath.clone(),
                    "quota needs requests_per_minute or tokens_per_minute (or remove it)",
                );
            }
            for (name, limit) in [
                ("requests_per_minute", quota.requests_per_minute),
                ("tokens_per_minute", quota.tokens_per_minute),
            ] {
                if limit == Some(0) {
                    self.error(
                        key(&qpath, name),
                        "must be greater than 0 (leave it out for no limit)",
                    );
                }
            }
        }
    }

    fn client_keys(&mut self, config: &Config) {
        let keys_path = vec![Seg::Key("client_keys".into())];
        for (ci, k) in config.client_keys.iter().enumerate() {
            let path = child(&keys_path, Seg::Index(self.layout.key_index[ci]));
            if k.name.is_empty() {
                self.error(key(&path, "name"), "a client key needs a non-empty name");
            } else if let Some(ei) = config.client_keys[..ci]
                .iter()
                .position(|e| e.name == k.name)
            {
                let first = self.layout.key_index[ei];
                self.error(
                    key(&path, "name"),
                    format!(
                        "duplicate client key name {:?} (first at client_keys[{first}])",
                        k.name
                    ),
                );
            }
            if k.sha256.len() != 64 || !k.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                self.error(
                    key(&path, "sha256"),
                    format!(
                        "must be exactly 64 hex digits, the SHA-256 of the key \
                         (`printf %s \"$KEY\" | sha256sum`); found {} characters",
                        k.sha256.chars().count()
                    ),
                );
            } else if let Some(ei) = config.client_keys[..ci]
                .iter()
                .position(|e| e.sha256.eq_ignore_ascii_case(&k.sha256))
            {
                let first = self.layout.key_index[ei];
                self.error(
                    key(&path, "sha256"),
                    format!("the same key as client_keys[{first}]"),
                );
            }
            self.positive(key(&path, "window_secs"), k.window);
            if k.window_tokens == Some(0) {
                self.error(key(&path, "window_tokens"), "must be greater than 0");
            }
            if let Some(cost) = k.window_cost
                && !(cost.is_finite() && cost > 0.0)
            {
                self.error(key(&path, "window_cost"), "must be a number of dollars > 0");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Durations in seconds
// ---------------------------------------------------------------------------

fn secs_to_duration<E: serde::de::Error>(secs: f64) -> Result<Duration, E> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        E::custom(format!(
            "invalid value: {secs}, expected a number of seconds ≥ 0"
        ))
    })
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::secs_to_duration(f64::deserialize(d)?)
    }

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_nanos() == 0 {
            s.serialize_u64(d.as_secs())
        } else {
            s.serialize_f64(d.as_secs_f64())
        }
    }
}

mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(super::secs_to_duration)
            .transpose()
    }

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::secs::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
