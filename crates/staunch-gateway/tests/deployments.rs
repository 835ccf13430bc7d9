//! Many deployments per model through the gateway (issue 25): a target's
//! `deployments` balanced and failed over, a revoked key taking its
//! deployment out and not the model, hedging to another deployment,
//! coalescing identical requests, and the config errors of each, over
//! loopback with the mock as the providers.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use staunch_gateway::Gateway;
use staunch_gateway::config::{Config, ConfigError};
use staunch_mock::{Fault, MockServer, Route, Scenario};

type Http = Client<HttpConnector, Full<Bytes>>;

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: Value,
}

async fn ask(http: &Http, base: &str, body: Value) -> Reply {
    let request = http::Request::post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a request");
    let response = http.request(request).await.expect("the gateway answers");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("a body").to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn chat() -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
}

/// A mock whose chat route answers every request with `fault`.
async fn mock(fault: Fault) -> MockServer {
    let mut scenario = Scenario::default();
    scenario.openai.script = vec![fault; 64];
    MockServer::start(scenario).await.expect("the mock starts")
}

async fn gateway(text: &str) -> (Gateway, String, Http) {
    let config = Config::parse(text, "deployments.toml").unwrap_or_else(|e| panic!("{e}"));
    let gateway = Gateway::build(config).await.expect("the gateway builds");
    let base = common::serve_in_process(&gateway).await;
    (
        gateway,
        base,
        Client::builder(TokioExecutor::new()).build_http(),
    )
}

fn providers(names_and_mocks: &[(&str, &MockServer)]) -> String {
    names_and_mocks
        .iter()
        .map(|(name, m)| {
            format!(
                "[providers.{name}]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\n",
                m.openai_base_url()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_revoked_key_takes_its_deployment_out_and_the_other_answers_everything() {
    let revoked = mock(Fault::Unauthorized).await;
    let good = mock(Fault::Ok).await;
    let text = format!(
        r#"{}
[[routes]]
model = "gpt-4o"
targets = [{{ model = "gpt-4o", balance = "weighted", deployments = [
  {{ provider = "key-old", weight = 5 }},
  {{ provider = "key-new" }},
] }}]
"#,
        providers(&[("key-old", &revoked), ("key-new", &good)])
    );
    let (_gw, base, http) = gateway(&text).await;
    for _ in 0..12 {
        let r = ask(&http, &base, chat()).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.headers["x-staunch-deployment"], "key-new/gpt-4o");
        assert_eq!(r.headers["x-staunch-target"], "gpt-4o");
    }
    // The 401 took the old key out at once: it was asked once, never again.
    assert_eq!(revoked.stats().requests_to(Route::OpenAi), 1);
    assert_eq!(good.stats().requests_to(Route::OpenAi), 12);
}

#[tokio::test]
async fn a_balanced_target_falls_back_only_when_every_deployment_is_out() {
    let down = mock(Fault::ServerError).await;
    let also_down = mock(Fault::ServerError).await;
    let backup = mock(Fault::Ok).await;
    let text = format!(
        r#"{}
[[routes]]
model = "gpt-4o"
targets = [
  {{ model = "gpt-4o", retry = {{ max_retries = 0 }}, deployments = [{{ provider = "a" }}, {{ provider = "b" }}] }},
  {{ provider = "backup", model = "gpt-4o-mini" }},
]
"#,
        providers(&[("a", &down), ("b", &also_down), ("backup", &backup)])
    );
    let (_gw, base, http) = gateway(&text).await;
    let r = ask(&http, &base, chat()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["x-staunch-model"], "gpt-4o-mini");
    // Both deployments were tried before the chain moved on.
    assert_eq!(down.stats().requests_to(Route::OpenAi), 1);
    assert_eq!(also_down.stats().requests_to(Route::OpenAi), 1);
    assert_eq!(r.headers["x-staunch-attempts"], "3");
}

#[tokio::test]
async fn a_hedge_answers_from_the_other_deployment_when_the_first_is_slow() {
    let slow = mock(Fault::Latency { ms: 3_000 }).await;
    let fast = mock(Fault::Ok).await;
    // Weighted toward the slow one, which is asked first almost always;
    // the hedge after 100 ms goes to the fast one.
    let text = format!(
        r#"{}
[[routes]]
model = "gpt-4o"
targets = [{{ model = "gpt-4o", balance = "weighted", hedge = {{ after = 100, budget = 1.0 }}, deployments = [
  {{ provider = "slow", weight = 1000 }},
  {{ provider = "fast" }},
] }}]
"#,
        providers(&[("slow", &slow), ("fast", &fast)])
    );
    let (_gw, base, http) = gateway(&text).await;
    let mut hedged = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let r = ask(&http, &base, chat()).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.headers["x-staunch-deployment"], "fast/gpt-4o");
        assert!(
            started.elapsed() < Duration::from_millis(2_500),
            "{:?}",
            started.elapsed()
        );
        hedged += 1;
    }
    assert_eq!(hedged, 3);
    assert!(slow.stats().requests_to(Route::OpenAi) >= 1);
}

#[tokio::test]
async fn identical_requests_at_temperature_zero_share_one_upstream_call() {
    let upstream = mock(Fault::Latency { ms: 300 }).await;
    let text = format!(
        r#"{}
[[routes]]
model = "gpt-4o"
coalesce = true
targets = [{{ provider = "only", model = "gpt-4o" }}]
"#,
        providers(&[("only", &upstream)])
    );
    let (_gw, base, http) = gateway(&text).await;
    let zero = json!({"model": "gpt-4o", "temperature": 0.0, "messages": [{"role": "user", "content": "same"}]});
    let (a, b, c) = tokio::join!(
        ask(&http, &base, zero.clone()),
        ask(&http, &base, zero.clone()),
        ask(&http, &base, zero),
    );
    for r in [&a, &b, &c] {
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(
        a.body["choices"][0]["message"],
        c.body["choices"][0]["message"]
    );
    assert_eq!(upstream.stats().requests_to(Route::OpenAi), 1);
    // At a higher temperature each asks on its own.
    let warm = json!({"model": "gpt-4o", "temperature": 0.7, "messages": [{"role": "user", "content": "same"}]});
    let _ = tokio::join!(ask(&http, &base, warm.clone()), ask(&http, &base, warm));
    assert_eq!(upstream.stats().requests_to(Route::OpenAi), 3);
}

fn errors(text: &str) -> Vec<ConfigError> {
    match Config::parse(text, "gw.toml") {
        Ok(c) => panic!("expected errors, parsed {c:#?}"),
        Err(e) => e.0,
    }
}

#[test]
fn deployment_settings_that_cannot_work_are_named_with_their_field() {
    let base = "[providers.a]\nkind = \"openai\"\n[providers.b]\nkind = \"openai\"\n";
    let cases = [
        (
            r#"targets = [{ provider = "a", model = "m", deployments = [{ provider = "b" }] }]"#,
            "routes[0].targets[0].provider",
            "not both",
        ),
        (
            r#"targets = [{ model = "m" }]"#,
            "routes[0].targets[0].provider",
            "deployments",
        ),
        (
            r#"targets = [{ model = "m", deployments = [{ provider = "a" }, { provider = "zz" }] }]"#,
            "routes[0].targets[0].deployments[1].provider",
            "unknown provider",
        ),
        (
            r#"targets = [{ model = "m", deployments = [{ provider = "a" }, { provider = "a" }] }]"#,
            "routes[0].targets[0].deployments[1].provider",
            "already",
        ),
        (
            r#"targets = [{ model = "m", balance = "fastest", deployments = [{ provider = "a" }, { provider = "b" }] }]"#,
            "routes[0].targets[0].balance",
            "p2c",
        ),
        (
            r#"targets = [{ provider = "a", model = "m", hedge = { after = 100 } }]"#,
            "routes[0].targets[0].hedge",
            "needs deployments",
        ),
        (
            r#"targets = [{ model = "m", hedge = { budget = 0.0 }, deployments = [{ provider = "a" }, { provider = "b" }] }]"#,
            "routes[0].targets[0].hedge.budget",
            "fraction",
        ),
        (
            r#"targets = [{ model = "m", hedge = { after = "p99" }, deployments = [{ provider = "a" }, { provider = "b" }] }]"#,
            "routes[0].targets[0].hedge.after",
            "p95",
        ),
    ];
    for (target, field, says) in cases {
        let text = format!("{base}[[routes]]\nmodel = \"m\"\n{target}\n");
        let errors = errors(&text);
        let found = errors
            .iter()
            .find(|e| e.field.starts_with(field))
            .unwrap_or_else(|| panic!("no error at {field} for {target}: {errors:#?}"));
        assert!(
            found.to_string().contains(says),
            "{field}: {found} does not say {says:?}"
        );
    }
}
