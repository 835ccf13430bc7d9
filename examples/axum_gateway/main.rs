//! An OpenAI-compatible gateway on axum with the staunch stack behind it.
//!
//! ```text
//! cargo run --example axum_gateway -- [--listen 127.0.0.1:3000]
//! curl -s localhost:3000/v1/chat/completions -H 'content-type: application/json' \
//!   -d '{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}' -D -
//! curl -s localhost:3000/metrics
//! ```
//!
//! `POST /v1/chat/completions` takes and returns the OpenAI shape, and says
//! in headers what staunch did: `x-staunch-model`, `x-staunch-tier`,
//! `x-staunch-attempts` (and `x-staunch-provider`, `x-staunch-warning`).
//! `GET /metrics` is Prometheus text; `GET /healthz` the breakers' states.
//!
//! Memory stays bounded whatever clients send: at most
//! `STAUNCH_GATEWAY_MAX_CONCURRENT` (64) chat requests are served at once,
//! bodies over `STAUNCH_GATEWAY_MAX_BODY_BYTES` (2 MiB) get a 413, and every
//! 4xx is an OpenAI-shaped JSON error.
//!
//! With no `OPENAI_API_KEY`/`ANTHROPIC_API_KEY` in the environment, it
//! starts the embedded mock server (with a few faults) and points at it;
//! with them, at the real providers.

mod gateway;

use gateway::{Gateway, Limits, build, router};
use staunch_mock::{Fault, MockServer, RandomFault, Scenario};
use staunch_providers::{Anthropic, AnthropicConfig, OpenAi, OpenAiConfig};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen = "127.0.0.1:3000".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: axum_gateway [--listen ADDR]"
                )
                .into());
            }
        }
    }
    let real = std::env::var_os("OPENAI_API_KEY").is_some()
        && std::env::var_os("ANTHROPIC_API_KEY").is_some();
    let mut _mock = None;
    let (openai, anthropic) = if real {
        println!("using the real OpenAI and Anthropic APIs");
        (
            OpenAi::new(OpenAiConfig::new())?,
            Anthropic::new(AnthropicConfig::new())?,
        )
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
        let pair = (
            OpenAi::new(
                OpenAiConfig::new()
                    .base_url(mock.openai_base_url())
                    .no_api_key(),
            )?,
            Anthropic::new(AnthropicConfig::new().base_url(mock.anthropic_base_url()))?,
        );
        _mock = Some(mock);
        pair
    };
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    // An installed recorder keeps every histogram sample until a scrape:
    // fold them into their summaries every 5 s, scraped or not, so memory
    // stays bounded (staunch-gateway's `metrics_upkeep` does the same).
    let upkeep = prometheus.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let (stack, breakers) = build(openai, anthropic)?;
    let app = router(Gateway {
        stack,
        render_metrics: Arc::new(move || prometheus.render()),
        breakers,
    });
    let limits = Limits::from_env();
    println!(
        "limits: {} chat requests at once, bodies up to {} bytes",
        limits.max_concurrent, limits.max_body_bytes
    );
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("gateway listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
