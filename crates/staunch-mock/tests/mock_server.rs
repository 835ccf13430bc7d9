//! The mock server itself: scripts, seeded random faults, outage windows,
//! context windows, the control endpoint, scenario files, shutdown.
//!
//! The requests go over loopback with hyper's client (as in `streaming.rs`),
//! so the assertions are about what the mock serves: statuses and error
//! bodies. How the clients classify those is staunch-providers' business
//! (its `tests/providers_*.rs`).

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use staunch_mock::{Fault, MockServer, Outage, RandomFault, Route, Scenario};
use std::net::SocketAddr;
use std::time::Duration;

/// Sends `body` with `method` to `path` on a fresh HTTP/1.1 connection and
/// returns the status and the JSON body (`null` if not JSON); `Err` when the
/// connection closes without an answer.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Result<(u16, Value), hyper::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// An OpenAI chat request for `model` with `prompt`, as the client sends it.
fn openai_body(model: &str, prompt: &str) -> String {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": prompt},
        ],
        "max_tokens": 32,
    })
    .to_string()
}

/// The status and body of an OpenAI chat request for `model` with `prompt`.
async fn openai(server: &MockServer, model: &str, prompt: &str) -> (u16, Value) {
    send(
        server.addr(),
        "POST",
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-test-TOPSECRET")],
        openai_body(model, prompt),
    )
    .await
    .expect("an answer")
}

/// The status and body of an Anthropic messages request.
async fn anthropic(server: &MockServer) -> (u16, Value) {
    let body = json!({
        "model": "claude",
        "max_tokens": 32,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "What is 2+2?"}],
    });
    send(
        server.addr(),
        "POST",
        "/v1/messages",
        &[
            ("x-api-key", "sk-test-TOPSECRET"),
            ("anthropic-version", "2023-06-01"),
        ],
        body.to_string(),
    )
    .await
    .expect("an answer")
}

/// The statuses of `n` OpenAI requests in a row.
async fn statuses(server: &MockServer, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(openai(server, "gpt-4o", "What is 2+2?").await.0);
    }
    out
}

async fn control(server: &MockServer, method: &str, path: &str, body: &str) -> (u16, Value) {
    send(server.addr(), method, path, &[], body.to_owned())
        .await
        .expect("an answer")
}

#[tokio::test]
async fn the_script_plays_in_order_per_route() {
    let mut scenario = Scenario::default();
    scenario.openai.script = vec![Fault::ServerError, Fault::Ok, Fault::Unauthorized];
    scenario.anthropic.script = vec![Fault::Overloaded { retry_after: None }];
    let server = MockServer::start(scenario).await.unwrap();
    assert_eq!(statuses(&server, 4).await, [500, 200, 401, 200]);
    let (code, body) = anthropic(&server).await;
    assert_eq!(
        (code, &body["error"]["type"]),
        (529, &json!("overloaded_error"))
    );
    let stats = server.stats();
    assert_eq!(
        (
            stats.requests_to(Route::OpenAi),
            stats.requests_to(Route::Anthropic)
        ),
        (4, 1)
    );
    assert_eq!(
        (
            stats.served("ok"),
            stats.served("server_error"),
            stats.served("overloaded")
        ),
        (2, 1, 1)
    );
    let routes: Vec<_> = stats.recent.iter().map(|r| r.route).collect();
    assert_eq!(
        routes,
        [
            Route::OpenAi,
            Route::OpenAi,
            Route::OpenAi,
            Route::OpenAi,
            Route::Anthropic
        ]
    );
}

#[tokio::test]
async fn random_faults_repeat_with_the_seed() {
    let scenario = |seed| {
        let mut s = Scenario {
            seed,
            ..Scenario::default()
        };
        s.openai.random = vec![
            RandomFault {
                probability: 0.3,
                fault: Fault::ServerError,
            },
            RandomFault {
                probability: 0.3,
                fault: Fault::RateLimit { retry_after: 0.0 },
            },
        ];
        s
    };
    let a = statuses(&MockServer::start(scenario(11)).await.unwrap(), 40).await;
    let b = statuses(&MockServer::start(scenario(11)).await.unwrap(), 40).await;
    let c = statuses(&MockServer::start(scenario(12)).await.unwrap(), 40).await;
    assert_eq!(a, b, "same seed, same faults");
    assert_ne!(a, c, "another seed, other faults");
    let failures = a.iter().filter(|&&code| code != 200).count();
    assert!(
        (10..=35).contains(&failures),
        "about half of 40 should fail, {failures} did"
    );
}

#[tokio::test]
async fn an_outage_window_and_context_windows() {
    let mut scenario = Scenario {
        outage: Some(Outage {
            start_ms: 0,
            end_ms: 60_000,
            routes: vec!["anthropic".into()],
        }),
        ..Scenario::default()
    };
    scenario.context_windows.insert("gpt-4o-mini".into(), 100);
    let server = MockServer::start(scenario).await.unwrap();
    let (code, body) = anthropic(&server).await;
    assert_eq!(
        (code, &body["error"]["type"]),
        (529, &json!("overloaded_error"))
    );
    assert_eq!(
        openai(&server, "gpt-4o", "What is 2+2?").await.0,
        200,
        "openai is not in the outage"
    );

    let long = "word ".repeat(200);
    let (code, body) = openai(&server, "gpt-4o-mini", &long).await;
    assert_eq!(
        (code, &body["error"]["code"]),
        (400, &json!("context_length_exceeded"))
    );
    assert_eq!(
        openai(&server, "gpt-4o", &long).await.0,
        200,
        "no window for gpt-4o"
    );

    // The outage window is relative to the start, and reset restarts the clock.
    let mut later = server.scenario();
    later.outage = Some(Outage {
        start_ms: 60_000,
        end_ms: 120_000,
        routes: vec![],
    });
    server.set_scenario(later);
    server.reset();
    assert_eq!(anthropic(&server).await.0, 200);
    assert_eq!(
        server.stats().requests_to(Route::Anthropic),
        1,
        "reset forgot the earlier requests"
    );
}

#[tokio::test]
async fn the_control_endpoint_changes_the_scenario_at_runtime() {
    let server = MockServer::start(Scenario::default()).await.unwrap();
    assert_eq!(statuses(&server, 1).await, [200]);
    let (code, _) = control(
        &server,
        "POST",
        "/_mock/scenario",
        r#"{"openai": {"script": [{"type": "ok"}, {"type": "server_error"}]}}"#,
    )
    .await;
    assert_eq!(code, 200);
    // Request counts go on: the 2nd request gets script[1].
    assert_eq!(statuses(&server, 1).await, [500]);
    let (code, stats) = control(&server, "GET", "/_mock/stats", "").await;
    assert_eq!((code, stats["requests"]["openai"].as_u64()), (200, Some(2)));
    assert_eq!(stats["recent"][1]["fault"], "server_error");
    assert_eq!(stats["recent"][1]["headers"]["authorization"], "[present]");

    let (code, body) = control(&server, "POST", "/_mock/scenario", "not json").await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = control(
        &server,
        "POST",
        "/_mock/scenario",
        r#"{"openai": {"random": [{"probability": 2.0, "fault": {"type": "ok"}}]}}"#,
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        body["error"].as_str().unwrap().contains("probability"),
        "{body}"
    );
    let (code, _) = control(&server, "POST", "/_mock/reset", "").await;
    assert_eq!(code, 200);
    assert_eq!(server.stats().requests_to(Route::OpenAi), 0);
    let (code, _) = control(&server, "GET", "/nowhere", "").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn scenario_files_load_and_bad_ones_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("staunch-mock-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "seed = 3\n[openai]\nscript = [{ type = \"hang\" }, { type = \"latency\", ms = 5 }]\n",
    )
    .unwrap();
    let scenario = Scenario::from_file(&good).unwrap();
    assert_eq!(
        scenario.openai.script,
        [Fault::Hang, Fault::Latency { ms: 5 }]
    );

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[openai]\nscript = [{ type = \"explode\" }]\n").unwrap();
    let err = Scenario::from_file(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.toml") && err.contains("explode"), "{err}");
    let err = Scenario::from_file(&dir.join("missing.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("could not read"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn shutdown_closes_hanging_connections() {
    let mut scenario = Scenario::default();
    scenario.openai.script = vec![Fault::Hang];
    let server = MockServer::start(scenario).await.unwrap();
    let pending = tokio::spawn(send(
        server.addr(),
        "POST",
        "/v1/chat/completions",
        &[],
        openai_body("gpt-4o", "What is 2+2?"),
    ));
    while server.stats().requests_to(Route::OpenAi) == 0 {
        tokio::task::yield_now().await;
    }
    server.shutdown();
    let outcome = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the hanging call ends when the server stops")
        .unwrap();
    assert!(
        outcome.is_err(),
        "the connection closed without an answer: {outcome:?}"
    );
}
