//! The axum gateway example over loopback: OpenAI-shaped requests in,
//! answers with staunch's headers out, errors mapped, metrics exposed.

#[path = "../examples/axum_gateway/gateway.rs"]
mod gateway;

use bytes::Bytes;
use gateway::{Gateway, Limits, build, router, router_with};
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
        // A forced tool the request does not offer: the provider's 400.
        r#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "b"}}}"#,
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
    assert_eq!(r.json["error"]["code"], "invalid_json");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );

    // Metrics and health.
    let m = send(&client, "GET", &format!("{base}/metrics"), "").await;
    assert_eq!(m.status, 200);
    for line in [
        r#"staunch_requests_total{outcome="ok",tier="full",kind="none",class="none"} 1"#,
        r#"staunch_requests_total{outcome="ok",tier="reduced",kind="none",class="none"} 1"#,
        r#"staunch_requests_total{outcome="ok",tier="cached",kind="none",class="none"} 1"#,
        r#"staunch_requests_total{outcome="error",tier="none",kind="invalid_request",class="fatal"} 1"#,
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

/// The gateway over the mock with `limits`, on loopback; its base URL.
async fn serve_with(app: axum::Router) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    (base, server)
}

/// An OpenAI-shaped error with `status`, a JSON content type and `code`.
fn assert_openai_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(header(r, "content-type"), "application/json", "{}", r.text);
    let error = &r.json["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        r.text
    );
    assert_eq!(error["type"], "invalid_request_error", "{}", r.text);
    assert!(error["param"].is_null(), "{}", r.text);
    assert_eq!(error["code"], code, "{}", r.text);
    assert_eq!(
        r.json.as_object().map(|o| o.len()),
        Some(1),
        "only `error`: {}",
        r.text
    );
}

#[tokio::test]
async fn every_bad_input_gets_an_openai_shaped_json_error_and_the_gateway_keeps_serving() {
    use staunch::core::{ChatRequest, ChatResponse, LlmError};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    // A stack that echoes and counts (no metrics: the other test owns the
    // global recorder).
    let served = Arc::new(AtomicUsize::new(0));
    let stack = {
        let served = served.clone();
        tower::service_fn(move |request: ChatRequest| {
            served.fetch_add(1, SeqCst);
            let last = request
                .messages
                .last()
                .map(|m| m.text().into_owned())
                .unwrap_or_default();
            async move {
                Ok::<_, LlmError>(ChatResponse::new(
                    request.model,
                    format!("answer to: {last}"),
                ))
            }
        })
    };
    let limit = 64 * 1024;
    let app = router_with(
        Gateway {
            stack: tower::util::BoxCloneSyncService::new(stack),
            render_metrics: Arc::new(String::new),
            breakers: Vec::new(),
        },
        Limits {
            max_concurrent: 4,
            max_body_bytes: limit,
        },
    );
    let (base, server) = serve_with(app).await;
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let chat = format!("{base}/v1/chat/completions");

    // A body over the limit: 413, refused before the stack sees it.
    let huge = format!(
        r#"{{"model": "gpt-4o", "messages": [{{"role": "user", "content": "{}"}}]}}"#,
        "x".repeat(limit + 1024)
    );
    let r = send(&client, "POST", &chat, &huge).await;
    assert_openai_error(&r, 413, "request_too_large");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&limit.to_string()),
        "{}",
        r.text
    );

    // Not JSON; JSON of the wrong types; a required field missing.
    let r = send(&client, "POST", &chat, "{not json").await;
    assert_openai_error(&r, 400, "invalid_json");
    let r = send(&client, "POST", &chat, r#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"}"#).await;
    assert_openai_error(&r, 400, "invalid_type");
    let r = send(&client, "POST", &chat, r#"{"model": 7, "messages": []}"#).await;
    assert_openai_error(&r, 400, "invalid_type");
    let r = send(
        &client,
        "POST",
        &chat,
        r#"{"model": "gpt-4o", "messages": [{"role": "wizard", "content": "hi"}]}"#,
    )
    .await;
    assert_openai_error(&r, 400, "invalid_type");
    let r = send(&client, "POST", &chat, r#"{"model": "gpt-4o"}"#).await;
    assert_openai_error(&r, 400, "invalid_type");
    assert!(r.text.contains("messages"), "{}", r.text);

    // Unknown routes and wrong methods.
    let r = send(&client, "POST", &format!("{base}/v1/nope"), "{}").await;
    assert_openai_error(&r, 404, "not_found");
    assert!(r.text.contains("/v1/nope"), "{}", r.text);
    let r = send(&client, "GET", &chat, "").await;
    assert_openai_error(&r, 405, "method_not_allowed");
    assert!(header(&r, "allow").contains("POST"), "{:?}", r.headers);
    let r = send(&client, "DELETE", &format!("{base}/healthz"), "").await;
    assert_openai_error(&r, 405, "method_not_allowed");

    assert_eq!(served.load(SeqCst), 0, "no bad input reached the stack");

    // And a valid request still gets its answer.
    let ok = r#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "still there?"}]}"#;
    let r = send(&client, "POST", &chat, ok).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json["choices"][0]["message"]["content"],
        "answer to: still there?"
    );
    // A body right at the limit is accepted (the limit is on bytes, not a guess).
    let at_limit = format!(
        r#"{{"model": "gpt-4o", "messages": [{{"role": "user", "content": "{}"}}]}}"#,
        "y".repeat(limit - 128)
    );
    assert!(at_limit.len() <= limit);
    let r = send(&client, "POST", &chat, &at_limit).await;
    assert_eq!(r.status, 200, "{}", r.text);
    server.abort();
}

/// Waits, without a clock, until `done` holds; `changes` ticks whenever
/// the state it reads may have changed.
async fn until(changes: &mut tokio::sync::watch::Receiver<()>, done: impl Fn() -> bool) {
    while !done() {
        changes.changed().await.unwrap();
    }
}

#[tokio::test]
async fn no_more_than_the_concurrency_limit_of_chat_requests_run_at_once() {
    use staunch::core::{ChatRequest, ChatResponse, LlmError};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    const LIMIT: usize = 2;
    const SENT: usize = 6;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let arrived = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (tick, mut changes) = tokio::sync::watch::channel(());
    let tick = Arc::new(tick);

    // A stack that holds every request until the test opens the gate.
    let stack = {
        let (in_flight, most, gate, tick) =
            (in_flight.clone(), most.clone(), gate.clone(), tick.clone());
        tower::service_fn(move |request: ChatRequest| {
            let (in_flight, most, gate, tick) =
                (in_flight.clone(), most.clone(), gate.clone(), tick.clone());
            async move {
                let now = in_flight.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                tick.send_replace(());
                gate.acquire().await.unwrap().forget();
                in_flight.fetch_sub(1, SeqCst);
                Ok::<_, LlmError>(ChatResponse::new(request.model, "done"))
            }
        })
    };
    let app = router_with(
        Gateway {
            stack: tower::util::BoxCloneSyncService::new(stack),
            render_metrics: Arc::new(String::new),
            breakers: Vec::new(),
        },
        Limits {
            max_concurrent: LIMIT,
            max_body_bytes: 1024 * 1024,
        },
    )
    // Counts requests as they arrive, before the limit.
    .layer(axum::middleware::from_fn({
        let (arrived, tick) = (arrived.clone(), tick.clone());
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let (arrived, tick) = (arrived.clone(), tick.clone());
            async move {
                arrived.fetch_add(1, SeqCst);
                tick.send_replace(());
                next.run(request).await
            }
        }
    }));
    let (base, server) = serve_with(app).await;
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let chat = format!("{base}/v1/chat/completions");
    let requests: Vec<_> = (0..SENT)
        .map(|i| {
            let (client, chat) = (client.clone(), chat.clone());
            tokio::spawn(async move {
                let body = format!(
                    r#"{{"model": "m{i}", "messages": [{{"role": "user", "content": "hi"}}]}}"#
                );
                send(&client, "POST", &chat, &body).await
            })
        })
        .collect();

    // Every request has arrived and the limit's worth are being served.
    until(&mut changes, || {
        arrived.load(SeqCst) == SENT && in_flight.load(SeqCst) >= LIMIT
    })
    .await;
    assert_eq!(in_flight.load(SeqCst), LIMIT, "the others wait their turn");

    gate.add_permits(SENT);
    for request in requests {
        let r = request.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(
        most.load(SeqCst),
        LIMIT,
        "never more than the limit at once"
    );
    server.abort();
}
