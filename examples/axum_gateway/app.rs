//! The example's application: a user's own axum routes with
//! `staunch-gateway`'s routes merged in, and the gateway's configuration,
//! written in code. Shared by the example and its integration test
//! (`tests/gateway.rs`).
//!
//! Everything about the LLM API (the OpenAI and Anthropic shapes, the
//! errors and their statuses, the limits, `/metrics`, `/healthz`,
//! `/readyz`) is `staunch_gateway::router`'s: this file only decides what
//! the gateway serves and where it sits in the app.

use axum::Router;
use axum::routing::get;
use staunch_gateway::Gateway;
use staunch_gateway::config::{
    Config, Degrade, Price, Provider, ProviderKind, Route, RouteTarget, Server,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// Where the two providers are.
pub enum Upstreams {
    /// The vendors' own APIs, with the keys in `OPENAI_API_KEY` and
    /// `ANTHROPIC_API_KEY`.
    Vendors,
    /// Servers speaking the two APIs at these base URLs, with no key (the
    /// embedded mock).
    At {
        /// Where the OpenAI API is (`…/v1`).
        openai: String,
        /// Where the Anthropic API is.
        anthropic: String,
    },
}

/// The gateway's configuration:
///
/// - `gpt-4o`: OpenAI, then Claude when OpenAI fails, behind a cache of
///   good answers (10 minutes) and a static answer as the last resort;
/// - `claude-*`: Claude alone, its failures passed to the client.
pub fn config(upstreams: Upstreams) -> Config {
    let (openai, anthropic) = match upstreams {
        Upstreams::Vendors => {
            let mut openai = Provider::new(ProviderKind::OpenAi);
            openai.api_key_env = Some("OPENAI_API_KEY".to_owned());
            let mut anthropic = Provider::new(ProviderKind::Anthropic);
            anthropic.api_key_env = Some("ANTHROPIC_API_KEY".to_owned());
            (openai, anthropic)
        }
        Upstreams::At {
            openai: o,
            anthropic: a,
        } => {
            let mut openai = Provider::new(ProviderKind::OpenAiCompatible);
            openai.base_url = Some(o);
            let mut anthropic = Provider::new(ProviderKind::Anthropic);
            anthropic.base_url = Some(a);
            (openai, anthropic)
        }
    };
    let gpt = RouteTarget {
        price: Some(Price {
            input: 2.5,
            output: 10.0,
        }),
        ..RouteTarget::new("openai", "gpt-4o")
    };
    let claude = RouteTarget {
        price: Some(Price {
            input: 3.0,
            output: 15.0,
        }),
        ..RouteTarget::new("anthropic", "claude-sonnet-4-5")
    };
    let degraded = Route {
        degrade: Some(Degrade {
            static_answer: Some(
                "The assistant is unavailable right now; please retry shortly.".to_owned(),
            ),
            cache_ttl: Some(Duration::from_secs(600)),
            cache_capacity: 10_000,
        }),
        ..Route::new("gpt-4o", vec![gpt, claude.clone()])
    };
    Config {
        server: Server::default(),
        providers: BTreeMap::from([
            ("openai".to_owned(), openai),
            ("anthropic".to_owned(), anthropic),
        ]),
        routes: vec![degraded, Route::new("claude-*", vec![claude])],
        client_keys: Vec::new(),
        telemetry: Default::default(),
        shared: Default::default(),
    }
}

/// The whole app: its own routes, and the gateway's beside them. The
/// gateway's fallback answers every other path: a 404 in the OpenAI
/// error shape.
pub fn app(gateway: Gateway) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/hello", get(hello))
        .merge(staunch_gateway::router(gateway))
}

/// `GET /`: what this app serves.
async fn index() -> &'static str {
    "An app with an LLM gateway inside:\n\
     GET /hello                  this app's own handler\n\
     POST /v1/chat/completions   OpenAI shape (models gpt-4o, claude-*)\n\
     POST /v1/messages           Anthropic shape\n\
     GET /v1/models, /metrics, /healthz, /readyz\n"
}

/// `GET /hello`: one of the app's own handlers, untouched by the gateway's
/// limits and middleware.
async fn hello() -> &'static str {
    "hello from the app\n"
}
