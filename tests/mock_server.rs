//! The mock server itself: scripts, seeded random faults, outage windows,
//! context windows, the control endpoint, scenario files, shutdown.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use staunch::core::{ChatRequest, ErrorKind, Message};
use staunch_mock::{Fault, MockServer, Outage, RandomFault, Route, Scenario};
use std::time::Duration;
use support::wire::{anthropic, ask, openai};
use tower::ServiceExt;

async fn kinds(server: &MockServer, n: usize) -> Vec<Option<ErrorKind>> {
    let client = openai(server);
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            client
                .clone()
                .oneshot(ask("gpt-4o"))
                .await
                .err()
                .map(|e| e.kind),
        );
    }
    out
}

#[tokio::test]
async fn the_script_plays_in_order_per_route() {
    let mut scenario = Scenario::default();
    scenario.openai.script = vec![Fault::ServerError, Fault::Ok, Fault::Unauthorized];
    scenario.anthropic.script = vec![Fault::Overloaded { retry_after: None }];
    let server = MockServer::start(scenario).await.unwrap();
    assert_eq!(
        kinds(&server, 4).await,
        [
            Some(ErrorKind::Server),
            None,
            Some(ErrorKind::Authentication),
            None
        ]
    );
    let err = anthropic(&server).oneshot(ask("claude")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Overloaded);
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
    let a = kinds(&MockServer::start(scenario(11)).await.unwrap(), 40).await;
    let b = kinds(&MockServer::start(scenario(11)).await.unwrap(), 40).await;
    let c = kinds(&MockServer::start(scenario(12)).await.unwrap(), 40).await;
    assert_eq!(a, b, "same seed, same faults");
    assert_ne!(a, c, "another seed, other faults");
    let failures = a.iter().filter(|k| k.is_some()).count();
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
    let err = anthropic(&server).oneshot(ask("claude")).await.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::Overloaded, Some(529)));
    assert!(
        openai(&server).oneshot(ask("gpt-4o")).await.is_ok(),
        "openai is not in the outage"
    );

    let long = ChatRequest::new("gpt-4o-mini", vec![Message::user("word ".repeat(200))]);
    let err = openai(&server).oneshot(long.clone()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ContextLengthExceeded);
    assert!(
        openai(&server)
            .oneshot(long.with_model("gpt-4o"))
            .await
            .is_ok(),
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
    assert!(anthropic(&server).oneshot(ask("claude")).await.is_ok());
    assert_eq!(
        server.stats().requests_to(Route::Anthropic),
        1,
        "reset forgot the earlier requests"
    );
}

async fn control(
    server: &MockServer,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", server.url()))
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn the_control_endpoint_changes_the_scenario_at_runtime() {
    let server = MockServer::start(Scenario::default()).await.unwrap();
    assert_eq!(kinds(&server, 1).await, [None]);
    let (code, _) = control(
        &server,
        "POST",
        "/_mock/scenario",
        r#"{"openai": {"script": [{"type": "ok"}, {"type": "server_error"}]}}"#,
    )
    .await;
    assert_eq!(code, 200);
    // Request counts go on: the 2nd request gets script[1].
    assert_eq!(kinds(&server, 1).await, [Some(ErrorKind::Server)]);
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
    let client = openai(&server);
    let pending = tokio::spawn(client.clone().oneshot(ask("gpt-4o")));
    while server.stats().requests_to(Route::OpenAi) == 0 {
        tokio::task::yield_now().await;
    }
    server.shutdown();
    let err = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the hanging call ends when the server stops")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::Network | ErrorKind::TruncatedResponse),
        "{err:?}"
    );
}
