//! `staunch-mock`: serve a mock LLM scenario on loopback.
//!
//! ```text
//! staunch-mock [--scenario FILE.toml|FILE.json] [--port N]
//! ```
//! Prints the address, then serves until interrupted (Ctrl-C).

use staunch_mock::{MockServer, Scenario};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Serve a mock LLM scenario (OpenAI, Anthropic and Gemini wire formats) on
/// loopback until interrupted.
#[derive(clap::Parser)]
#[command(name = "staunch-mock", args_override_self = true)]
struct Args {
    /// The scenario to serve (TOML or JSON); the default scenario without it.
    #[arg(long, value_name = "FILE.toml|FILE.json")]
    scenario: Option<PathBuf>,
    /// The port on 127.0.0.1 (0 picks a free one).
    #[arg(long, value_name = "N", default_value_t = 0)]
    port: u16,
}

#[tokio::main]
async fn main() {
    let Args {
        scenario: scenario_path,
        port,
    } = clap::Parser::parse();
    let scenario = match &scenario_path {
        Some(path) => match Scenario::from_file(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        },
        None => Scenario::default(),
    };
    let server =
        match MockServer::start_on(SocketAddr::from(([127, 0, 0, 1], port)), scenario).await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("could not listen on 127.0.0.1:{port}: {e}");
                std::process::exit(1);
            }
        };
    println!("staunch-mock listening on {}", server.url());
    println!("  OpenAI base URL:    {}", server.openai_base_url());
    println!("  Anthropic base URL: {}", server.anthropic_base_url());
    println!("  Gemini base URL:    {}", server.gemini_base_url());
    println!(
        "  control:            {}/_mock/stats, /_mock/scenario, /_mock/reset",
        server.url()
    );
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
    server.shutdown();
}
