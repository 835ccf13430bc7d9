//! `staunch-mock`: serve a mock LLM scenario on loopback.
//!
//! ```text
//! staunch-mock [--scenario FILE.toml|FILE.json] [--port N]
//! ```
//! Prints the address, then serves until interrupted (Ctrl-C).

use staunch_mock::{MockServer, Scenario};
use std::net::SocketAddr;
use std::path::PathBuf;

fn usage() -> ! {
    eprintln!("usage: staunch-mock [--scenario FILE.toml|FILE.json] [--port N]");
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let mut scenario_path: Option<PathBuf> = None;
    let mut port: u16 = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--scenario" => scenario_path = Some(args.next().unwrap_or_else(|| usage()).into()),
            "--port" => {
                port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| usage());
            }
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument {other:?}");
                usage();
            }
        }
    }
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
    println!(
        "  control:            {}/_mock/stats, /_mock/scenario, /_mock/reset",
        server.url()
    );
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
    server.shutdown();
}
