//! Helpers for the tests that drive the clients against the mock server
//! over loopback. Each test file compiles its own copy and uses only some;
//! the root crate's tests include this file too (`tests/support/mod.rs`).
#![allow(dead_code)]

use staunch_core::{ChatRequest, Message};
use staunch_mock::{Fault, MockServer, Scenario};
use staunch_providers::{Anthropic, AnthropicConfig, ApiKey, HttpOptions, OpenAi, OpenAiConfig};
use std::collections::BTreeMap;
use std::time::Duration;

/// The key the tests send; it must never show up in any output.
pub const KEY: &str = "sk-test-TOPSECRET-0123456789";

pub fn http() -> HttpOptions {
    HttpOptions::new()
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(5))
}

pub fn openai(server: &MockServer) -> OpenAi {
    OpenAi::new(
        OpenAiConfig::new()
            .base_url(server.openai_base_url())
            .api_key(ApiKey::new(KEY))
            .http(http()),
    )
    .expect("valid config")
}

pub fn anthropic(server: &MockServer) -> Anthropic {
    Anthropic::new(
        AnthropicConfig::new()
            .base_url(server.anthropic_base_url())
            .api_key(ApiKey::new(KEY))
            .http(http()),
    )
    .expect("valid config")
}

pub async fn server(openai: Vec<Fault>, anthropic: Vec<Fault>) -> MockServer {
    let mut scenario = Scenario::default();
    scenario.openai.script = openai;
    scenario.anthropic.script = anthropic;
    MockServer::start(scenario).await.expect("mock server")
}

/// A custom response: any status, body and headers.
pub fn status(status: u16, body: &str, headers: &[(&str, &str)]) -> Fault {
    Fault::Status {
        status,
        body: body.to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    }
}

pub fn ask(model: &str) -> ChatRequest {
    ChatRequest::new(
        model,
        vec![Message::system("Be brief."), Message::user("What is 2+2?")],
    )
    .with_max_tokens(32)
}
