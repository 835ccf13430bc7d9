//! A user's own axum app with `staunch-gateway` inside it: the app's
//! routes (`/`, `/hello`) and the gateway's OpenAI- and Anthropic-shaped
//! API, with the staunch stack behind it, on one listener.
//!
//! ```text
//! cargo run --example axum_gateway -- [--listen 127.0.0.1:3000]
//! curl -s localhost:3000/hello
//! curl -s localhost:3000/v1/chat/completions -H 'content-type: application/json' \
//!   -d '{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}' -D -
//! curl -s localhost:3000/metrics
//! ```
//!
//! `staunch_gateway::router` is an ordinary `axum::Router`, merged into the
//! app's own (`app.rs`). `POST /v1/chat/completions` (OpenAI) and
//! `POST /v1/messages` (Anthropic) say in headers what staunch did:
//! `x-staunch-model`, `x-staunch-tier`, `x-staunch-attempts` (and
//! `x-staunch-target`, `x-staunch-warning`); failures get the gateway's
//! statuses (404 for a model no route serves, 429 with `Retry-After`
//! rounded up, 502 for an upstream's own failure …). `GET /metrics` is
//! Prometheus text, `GET /readyz` the circuits' states.
//!
//! Memory stays bounded whatever clients send: at most
//! `STAUNCH_GATEWAY_MAX_CONCURRENT` (256) API requests are served at once,
//! bodies over `STAUNCH_GATEWAY_MAX_BODY_BYTES` (2 MiB) get a 413, and
//! every error is JSON in the client's API shape.
//!
//! With no `OPENAI_API_KEY`/`ANTHROPIC_API_KEY` in the environment, it
//! starts the embedded mock server (with a few faults) and points at it;
//! with them, at the real providers.

mod app;

use app::Upstreams;
use staunch_gateway::Gateway;
use staunch_mock::{Fault, MockServer, RandomFault, Scenario};

/// A user's own axum app with `staunch-gateway` inside it, on one listener.
#[derive(clap::Parser)]
#[command(name = "axum_gateway", args_override_self = true)]
struct Args {
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3000")]
    listen: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Args { listen } = clap::Parser::parse();
    let real = std::env::var_os("OPENAI_API_KEY").is_some()
        && std::env::var_os("ANTHROPIC_API_KEY").is_some();
    let mut _mock = None;
    let upstreams = if real {
        println!("using the real OpenAI and Anthropic APIs");
        Upstreams::Vendors
    } else {
        let mut scenario = Scenario {
            seed: 1,
            ..Scenario::default()
        };
        scenario.openai.random = vec![
            RandomFault {
                probability: 0.2,
                fault: Fault::RateLimit { retry_after: 0.2 },
            },
            RandomFault {
                probability: 0.1,
                fault: Fault::ServerError,
            },
        ];
        let mock = MockServer::start(scenario).await?;
        println!(
            "no provider keys set: using the embedded mock LLM server on {}",
            mock.url()
        );
        let at = Upstreams::At {
            openai: mock.openai_base_url(),
            anthropic: mock.anthropic_base_url(),
        };
        _mock = Some(mock);
        at
    };
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let mut config = app::config(upstreams);
    // Validation refuses an address that is not loopback: this config has
    // no client keys.
    config.server.listen = listener.local_addr()?;
    if let Some(n) = positive_var("STAUNCH_GATEWAY_MAX_CONCURRENT") {
        config.server.max_concurrency = n;
    }
    if let Some(n) = positive_var("STAUNCH_GATEWAY_MAX_BODY_BYTES") {
        config.server.max_body_bytes = n;
    }
    config.validate()?;
    println!(
        "limits: {} API requests at once, bodies up to {} bytes",
        config.server.max_concurrency, config.server.max_body_bytes
    );
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    // An installed recorder keeps every histogram sample until a scrape:
    // fold them into their summaries every 5 s, scraped or not.
    tokio::spawn(staunch_gateway::metrics_upkeep(prometheus.clone()));
    let gateway = Gateway::build(config)
        .await?
        .with_metrics(move || prometheus.render());
    println!("gateway listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app::app(gateway))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// The environment variable `name` as a positive number, if it is one.
fn positive_var(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
}
