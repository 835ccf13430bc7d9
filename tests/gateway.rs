//! The axum_gateway example's app over loopback: the app's own routes beside
//! `staunch-gateway`'s, OpenAI-shaped requests in, answers with staunch's
//! headers out, the gateway's error mapping, metrics exposed.

#[path = "../examples/axum_gateway/app.rs"]
mod app;

use app::Upstreams;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use staunch_gateway::Gateway;
use staunch_mock::{Fault, MockServer, Route, Scenario};

use staunch_test::http::{HttpClient as Http, Reply};

/// `method url` with a JSON `body`, read whole.
async fn send(client: &Http, method: &str, url: &str, body: &str) -> Reply {
    staunch_test::http::send(client, method, url, &[], body.to_owned()).await
}

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply.header(name)
}

/// The example's app over `mock`, on loopback: its base URL. `tune` may
/// change the example's configuration first.
async fn serve(
    mock: &MockServer,
    render_metrics: impl Fn() -> String + Send + Sync + 'static,
    tune: impl FnOnce(&mut staunch_gateway::config::Config),
) -> String {
    let mut config = app::config(Upstreams::At {
        openai: mock.openai_base_url(),
        anthropic: mock.anthropic_base_url(),
    });
    tune(&mut config);
    config.validate().unwrap();
    let gateway = Gateway::build(config)
        .await
        .unwrap()
        .with_metrics(render_metrics);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, app::app(gateway)).into_future());
    base
}

#[test]
fn the_configuration_for_the_vendors_apis_is_valid() {
    app::config(Upstreams::Vendors).validate().unwrap();
}

#[tokio::test]
async fn the_app_serves_its_own_routes_and_the_gateway_answers_and_says_what_staunch_did() {
    // This test's own recorder: a `tokio::test` runs the app, its
    // connections, the mock and the client on this one thread.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    let _recording = metrics::set_default_local_recorder(&recorder);
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
    let base = serve(&mock, move || scrape.render(), |_| {}).await;
    let client: Http = Client::builder(TokioExecutor::new()).build_http();

    // The app's own routes, beside the gateway's.
    let r = send(&client, "GET", &format!("{base}/hello"), "").await;
    assert_eq!((r.status, r.text.as_str()), (200, "hello from the app\n"));
    let r = send(&client, "GET", &format!("{base}/"), "").await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("/v1/chat/completions"), "{}", r.text);

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
    assert_eq!(r.json()["object"], "chat.completion");
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "mock answer to: hi"
    );
    assert_eq!(r.json()["choices"][0]["finish_reason"], "stop");
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
            header(&r, "x-staunch-target")
        ),
        ("2", "anthropic/claude-sonnet-4-5")
    );

    // 3. The caller's own mistake comes back as a 400, not degraded.
    let r = send(
        &client,
        "POST",
        &chat,
        // A forced tool the request does not offer: the provider's 400.
        r#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "b"}}}"#,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    // The provider's own code passes through; staunch's kind is a header.
    assert_eq!(r.json()["error"]["code"], "invalid_request_error");
    assert_eq!(header(&r, "x-staunch-error-kind"), "invalid_request");

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

    // Metrics and readiness.
    let m = send(&client, "GET", &format!("{base}/metrics"), "").await;
    assert_eq!(m.status, 200);
    for line in [
        r#"staunch_requests_total{outcome="ok",tier="full",kind="none",class="none"} 1"#,
        r#"staunch_requests_total{outcome="ok",tier="reduced",kind="none",class="none"} 1"#,
        r#"staunch_requests_total{outcome="ok",tier="cached",kind="none",class="none"} 1"#,
        r#"staunch_requests_total{outcome="error",tier="none",kind="invalid_request",class="fatal"} 1"#,
        r#"staunch_retries_total{provider="openai",kind="rate_limited"} 1"#,
        r#"staunch_fallbacks_total{from="openai/gpt-4o",to="anthropic/claude-sonnet-4-5"} 2"#,
    ] {
        assert!(
            m.text.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            m.text
        );
    }
    let r = send(&client, "GET", &format!("{base}/readyz"), "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["routes"][0]["targets"][0]["target"],
        "openai/gpt-4o"
    );
    assert_eq!(r.json()["routes"][1]["targets"][0]["circuit"], "closed");
}

#[tokio::test]
async fn failures_get_the_gateways_statuses_in_the_clients_shape() {
    let mut scenario = Scenario::default();
    scenario.anthropic.script = vec![
        Fault::Status {
            status: 404,
            body: r#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-sonnet-4-5"}}"#.into(),
            headers: Default::default(),
        },
        Fault::ServerError,
        Fault::RateLimit { retry_after: 1.5 },
    ];
    let mock = MockServer::start(scenario).await.unwrap();
    // No retries on `claude-*`, so that each fault reaches the client.
    let base = serve(&mock, String::new, |config| {
        config.routes[1].targets[0].retry.max_retries = 0;
    })
    .await;
    let client: Http = Client::builder(TokioExecutor::new()).build_http();
    let chat = format!("{base}/v1/chat/completions");
    let ask = |model: &str| {
        format!(r#"{{"model": "{model}", "messages": [{{"role": "user", "content": "hi"}}]}}"#)
    };

    // A model no route serves: 404, before any upstream is called.
    let r = send(&client, "POST", &chat, &ask("llama-9")).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    assert_eq!(mock.stats().requests_to(Route::Anthropic), 0);

    // The upstream does not know the model: 404 too.
    let r = send(&client, "POST", &chat, &ask("claude-sonnet-4-5")).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "model_not_found");

    // The upstream's own failure: 502 Bad Gateway.
    let r = send(&client, "POST", &chat, &ask("claude-sonnet-4-5")).await;
    assert_eq!(r.status, 502, "{}", r.text);

    // A rate limit: 429, its Retry-After of 1.5 s rounded up, never down.
    let r = send(&client, "POST", &chat, &ask("claude-sonnet-4-5")).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(header(&r, "retry-after"), "2", "{:?}", r.headers);
    assert_eq!(mock.stats().requests_to(Route::Anthropic), 3);

    // The Anthropic shape gets the same statuses, in its own error body.
    let body = r#"{"model": "mistral-x", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}"#;
    let r = send(&client, "POST", &format!("{base}/v1/messages"), body).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json()["type"], "error");

    // Bad input, an unknown path and a wrong method: clear 4xx, in JSON.
    let r = send(&client, "POST", &chat, "{not json").await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let r = send(&client, "POST", &format!("{base}/v1/nope"), "{}").await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let r = send(&client, "GET", &chat, "").await;
    assert_eq!(r.status, 405, "{}", r.text);
    let huge = ask(&"x".repeat(3 * 1024 * 1024));
    let r = send(&client, "POST", &chat, &huge).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (413, Some("request_too_large"))
    );

    // And the app's own route is still there.
    let r = send(&client, "GET", &format!("{base}/hello"), "").await;
    assert_eq!(r.status, 200);
}
