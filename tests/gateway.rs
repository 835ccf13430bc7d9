//! The axum gateway example over loopback: OpenAI-shaped requests in,
//! answers with staunch's headers out, errors mapped, metrics exposed.

#[path = "../examples/axum_gateway/gateway.rs"]
mod gateway;

use bytes::Bytes;
use gateway::{Gateway, build, router};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use staunch_mock::{Fault, MockServer, Route, Scenario};
use staunch_providers::{Anthropic, AnthropicConfig, OpenAi, OpenAiConfig};
use std::sync::Arc;

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    json: serde_json::Value,
    text: String,
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: &str,
    url: &str,
    body: &str,
) -> Reply {
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        json: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn the_gateway_answers_in_openai_shape_and_says_what_staunch_did() {
    let mut scenario = Scenario::default();
    scenario.openai.script = vec![
        Fault::RateLimit { retry_after: 0.05 }, // request 1: retried
        Fault::Ok,
        Fault::Quota,                           // request 2: falls back to Claude
        Fault::Status { status: 400, body: r#"{"error":{"message":"'messages' must not be empty","type":"invalid_request_error","code":null}}"#.into(), headers: Default::default() },
        Fault::Quota,                           // request 4: everything down
    ];
    scenario.anthropic.script = vec![Fault::Ok, Fault::Unauthorized];
    let mock = MockServer::start(scenario).await.unwrap();
    let openai = OpenAi::new(
        OpenAiConfig::new()
            .base_url(mock.openai_base_url())
            .no_api_key(),
    )
    .unwrap();
    let anthropic =
        Anthropic::new(AnthropicConfig::new().base_url(mock.anthropic_base_url())).unwrap();
    let (stack, breakers) = build(openai, anthropic).unwrap();
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let app = router(Gateway {
        stack,
        render_metrics: Arc::new(move || prometheus.render()),
        breakers,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let chat = format!("{base}/v1/chat/completions");
    let ask = r#"{"model": "gpt-4o", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}], "max_tokens": 16, "stop": "END"}"#;

    // 1. A 429, retried after its Retry-After.
    let r = send(&client, "POST", &chat, ask).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (
            header(&r, "x-staunch-tier"),
            header(&r, "x-staunch-attempts")
        ),
        ("full", "2")
    );
    assert_eq!(header(&r, "x-staunch-model"), "gpt-4o");
    assert_eq!(r.json["object"], "chat.completion");
    assert_eq!(
        r.json["choices"][0]["message"]["content"],
        "mock answer to: hi"
    );
    assert_eq!(r.json["choices"][0]["finish_reason"], "stop");
    let sent = mock.stats().recent.back().unwrap().body.clone();
    assert_eq!(
        (sent["max_tokens"].as_u64(), sent["stop"][0].as_str()),
        (Some(16), Some("END"))
    );

    // 2. The primary's quota is gone: Claude answers.
    let other = r#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "another"}]}"#;
    let r = send(&client, "POST", &chat, other).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (header(&r, "x-staunch-tier"), header(&r, "x-staunch-model")),
        ("reduced", "claude-sonnet-4-5")
    );
    assert_eq!(
        (
            header(&r, "x-staunch-attempts"),
            header(&r, "x-staunch-provider")
        ),
        ("2", "anthropic")
    );

    // 3. The caller's own mistake comes back as a 400, not degraded.
    let r = send(
        &client,
        "POST",
        &chat,
        r#"{"model": "gpt-4o", "messages": []}"#,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "invalid_request");

    // 4. Everything down: the cached answer to request 1, marked as such.
    let r = send(&client, "POST", &chat, ask).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(header(&r, "x-staunch-tier"), "cached");
    assert!(
        header(&r, "x-staunch-warning").contains("cached"),
        "{:?}",
        r.headers
    );
    assert_eq!(
        (
            mock.stats().requests_to(Route::OpenAi),
            mock.stats().requests_to(Route::Anthropic)
        ),
        (5, 2)
    );

    // Bodies that are not requests are refused clearly.
    let r = send(&client, "POST", &chat, "{not json").await;
    assert_eq!(r.status, 400);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid request body")
    );
    let r = send(
        &client,
        "POST",
        &chat,
        r#"{"model": "gpt-4o", "messages": [], "stream": true}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (400, Some("stream_unsupported"))
    );

    // Metrics and health.
    let m = send(&client, "GET", &format!("{base}/metrics"), "").await;
    assert_eq!(m.status, 200);
    for line in [
        r#"staunch_requests_total{outcome="ok",tier="full",kind="none"} 1"#,
        r#"staunch_requests_total{outcome="ok",tier="reduced",kind="none"} 1"#,
        r#"staunch_requests_total{outcome="ok",tier="cached",kind="none"} 1"#,
        r#"staunch_requests_total{outcome="error",tier="none",kind="invalid_request"} 1"#,
        r#"staunch_retries_total{provider="openai",kind="rate_limited"} 1"#,
        r#"staunch_fallbacks_total{from="openai",to="anthropic"} 2"#,
    ] {
        assert!(
            m.text.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            m.text
        );
    }
    let h = send(&client, "GET", &format!("{base}/healthz"), "").await;
    assert_eq!(h.json["breakers"][0]["name"], "openai");
    assert_eq!(h.json["breakers"][1]["state"], "closed");
    server.abort();
}
