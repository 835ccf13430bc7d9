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

mod durations;
mod embeddings;
mod errors;
mod keys;
mod load;
mod providers;
mod routes;
mod server;
mod shared;
mod spans;
mod targets;
mod telemetry;
mod validate;

use std::collections::BTreeMap;

use serde::Serialize;

pub(crate) use embeddings::{EmbeddingPlan, plan as embedding_plan};
pub use errors::{ConfigError, ConfigErrors};
pub use keys::ClientKey;
pub use providers::{Provider, ProviderKind};
pub use routes::{ContinueOn, Degrade, OnRefusal, Route, RouteBudget};
pub use server::{LogFormat, Server};
pub use shared::Shared;
pub use targets::{Breaker, DeploymentEntry, Hedge, HedgeAfter, Price, Quota, Retry, RouteTarget};
pub use telemetry::{OtlpProtocol, Telemetry};

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
    /// The `[telemetry]` table: OTLP export of spans and metrics (off by
    /// default).
    #[serde(skip_serializing_if = "Telemetry::is_default")]
    pub telemetry: Telemetry,
    /// The `[shared]` table: quotas and breakers shared by replicas
    /// through Redis (off by default).
    #[serde(skip_serializing_if = "Shared::is_default")]
    pub shared: Shared,
}

impl Config {
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
    /// keys: one `mock` provider (the embedded staunch-mock) and two
    /// routes: `*embed*` (embedding models such as `text-embedding-3-small`)
    /// to the mock's `mock-embedding`, and `*` to two mock targets
    /// (`mock-primary`, then `mock-fallback`), so that a fault on the first
    /// shows the fallback at work. The mock's vectors depend on the model,
    /// so `*` serves chat only: its two models are two vector spaces.
    pub fn mock() -> Config {
        Config {
            server: Server::default(),
            providers: BTreeMap::from([("mock".to_owned(), Provider::new(ProviderKind::Mock))]),
            routes: vec![
                Route::new("*embed*", vec![RouteTarget::new("mock", "mock-embedding")]),
                Route::new(
                    "*",
                    vec![
                        RouteTarget::new("mock", "mock-primary"),
                        RouteTarget::new("mock", "mock-fallback"),
                    ],
                ),
            ],
            client_keys: Vec::new(),
            telemetry: Telemetry::default(),
            shared: Shared::default(),
        }
    }

    /// How `route` serves embeddings, by the kinds of its providers.
    pub(crate) fn embedding_plan(&self, route: &Route) -> EmbeddingPlan {
        embedding_plan(route, |name| self.providers.get(name).map(|p| p.kind))
    }
}
