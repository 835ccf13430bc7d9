//! The gateway over an HTTP/2 upstream serves more streams at once than
//! one connection carries: with `max_streams_per_connection` at the
//! upstream's limit, streams past it go out on another connection instead
//! of waiting for the open ones to end.

mod common;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use staunch_gateway::Gateway;
use staunch_gateway::config::Config;
use staunch_mock::{Fault, MockServer, Route, Scenario};

#[tokio::test]
async fn streams_past_an_upstream_connections_limit_are_served_at_once() {
    // Every stream sends one token and stalls, holding its HTTP/2 stream
    // (for the 30 s idle timeout); the upstream serves two streams per
    // connection.
    let mut scenario = Scenario {
        http2_max_streams: 2,
        ..Scenario::default()
    };
    scenario.openai.script = vec![Fault::StallAfter { tokens: 1 }; 4];
    let mock = MockServer::start(scenario).await.expect("the mock starts");
    let text = format!(
        r#"
[providers.up]
kind = "openai-compatible"
base_url = "{base}"
http2_prior_knowledge = true
max_streams_per_connection = 2

[[routes]]
model = "gpt-4o"
targets = [{{ provider = "up", model = "gpt-4o" }}]
"#,
        base = mock.openai_base_url(),
    );
    let config = Config::parse(&text, "h2.toml").unwrap_or_else(|e| panic!("{e}"));
    let gateway = Gateway::build(config).await.expect("the gateway builds");
    let base = common::serve_in_process(&gateway).await;
    let http: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();

    let streams: Vec<_> = (0..4)
        .map(|_| {
            let body = json!({"model": "gpt-4o", "stream": true, "max_tokens": 32,
                          "messages": [{"role": "user", "content": "hi"}]});
            let request = http::Request::post(format!("{base}/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("a valid request");
            tokio::spawn(http.request(request))
        })
        .collect();
    // The gateway sends a stream's headers at its first token: all four
    // get theirs while every stream is still open upstream.
    let all = async {
        let mut heads = Vec::new();
        for stream in streams {
            heads.push(stream.await.expect("the request task"));
        }
        heads
    };
    let heads = tokio::time::timeout(Duration::from_secs(10), all)
        .await
        .unwrap_or_else(|_| {
            let stats = mock.stats();
            panic!(
                "streams waited behind the open ones: the mock saw {} requests on {} connections",
                stats.requests_to(Route::OpenAi),
                stats.connections
            )
        });
    for head in &heads {
        let head = head.as_ref().expect("the gateway answers");
        assert_eq!(head.status(), 200);
    }
    let stats = mock.stats();
    assert_eq!(stats.requests_to(Route::OpenAi), 4);
    assert_eq!(
        stats.connections, 2,
        "two streams on each of two connections"
    );
}
