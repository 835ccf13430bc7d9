//! A gRPC service that summarizes text with an LLM behind staunch: OpenAI
//! first, Anthropic second, both the mock, whose OpenAI side rate-limits
//! and then fails, so the answers come through a 429 and an outage.
//!
//! ```text
//! cargo run --example tonic_summarize --features tonic
//! ```
//!
//! It serves on 127.0.0.1 (a free port, printed), then calls itself a few
//! times with tonic's client, each call with a `grpc-timeout`, and prints
//! what came back: the summary and the model that answered, or the gRPC
//! status staunch's error became.

#[path = "service.rs"]
mod service;

use service::{SUMMARIZE, SummarizeReply, SummarizeRequest, Summarizer};
use staunch::TargetBuilder;
use staunch::fallback::Fallback;
use staunch_mock::{Fault, MockServer, Scenario};
use staunch_providers::{Anthropic, AnthropicConfig, ApiKey, OpenAi, OpenAiConfig};
use std::time::Duration;
use tower::util::BoxCloneSyncService;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // OpenAI rate-limits, then fails three times; Anthropic answers.
    let mut scenario = Scenario::default();
    scenario.openai.script = vec![
        Fault::RateLimit { retry_after: 0.5 },
        Fault::ServerError,
        Fault::ServerError,
        Fault::ServerError,
    ];
    let mock = MockServer::start(scenario).await?;
    let openai = OpenAi::new(
        OpenAiConfig::new()
            .base_url(mock.openai_base_url())
            .api_key(ApiKey::new("sk-mock")),
    )?;
    let anthropic = Anthropic::new(
        AnthropicConfig::new()
            .base_url(mock.anthropic_base_url())
            .api_key(ApiKey::new("sk-ant-mock")),
    )?;
    let (openai, _) = TargetBuilder::new("openai", openai)
        .model("gpt-4o")
        .build()?;
    let (anthropic, _) = TargetBuilder::new("anthropic", anthropic)
        .model("claude-sonnet-4-5")
        .build()?;
    let stack = BoxCloneSyncService::new(Fallback::new([openai, anthropic])?);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Summarizer::new(stack))
            .serve_with_incoming(incoming),
    );
    println!("Summarizer serving on http://{addr}");

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = tonic::client::Grpc::new(channel);
    for text in [
        "The quick brown fox jumps over the lazy dog.",
        "Rust is fast.",
    ] {
        client.ready().await?;
        let mut request = tonic::Request::new(SummarizeRequest { text: text.into() });
        request.set_timeout(Duration::from_secs(10));
        let reply: Result<tonic::Response<SummarizeReply>, tonic::Status> = client
            .unary(
                request,
                http::uri::PathAndQuery::from_static(SUMMARIZE),
                tonic_prost::ProstCodec::default(),
            )
            .await;
        match reply {
            Ok(reply) => {
                let reply = reply.into_inner();
                println!(
                    "{:?} -> {:?} ({}, {} attempt(s), {})",
                    text, reply.summary, reply.model, reply.attempts, reply.tier
                );
            }
            Err(status) => println!("{text:?} -> gRPC {:?}: {}", status.code(), status.message()),
        }
    }
    Ok(())
}
