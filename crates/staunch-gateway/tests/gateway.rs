//! The gateway over loopback: both ingress shapes, streaming and not, tools,
//! fallback across dialects, client keys, limits (body size, concurrency),
//! reload, and bad input of every kind. The upstream providers are the mock
//! on 127.0.0.1.

mod common;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sha2::Digest;
use staunch_gateway::config::Config;
use staunch_gateway::{Gateway, router};
use staunch_mock::{Fault, MockServer, Scenario};

use staunch_test::http::{HttpClient as Http, Reply};

/// A POST of `body` to `url` with `headers`, read whole.
async fn send(http: &Http, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
    staunch_test::http::send(http, "POST", url, headers, body).await
}

fn sha256_hex(key: &str) -> String {
    sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A config: `gpt-4o` on OpenAI then Anthropic, `claude-*` on Anthropic,
/// both providers the mock.
fn config_text(mock: &MockServer, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 65536
{extra}

[providers.openai]
kind = "openai-compatible"
base_url = "{openai}"

[providers.anthropic]
kind = "anthropic"
base_url = "{anthropic}"

[[routes]]
model = "gpt-4o"
  [[routes.targets]]
  provider = "openai"
  model = "gpt-4o"
  retry = {{ max_retries = 0 }}
  [[routes.targets]]
  provider = "anthropic"
  model = "claude-sonnet-4-5"

[[routes]]
model = "claude-*"
  [[routes.targets]]
  provider = "anthropic"
  model = "claude-sonnet-4-5"
"#,
        openai = mock.openai_base_url(),
        anthropic = mock.anthropic_base_url(),
    )
}

struct Running {
    base: String,
    http: Http,
    gateway: Gateway,
    mock: MockServer,
}

impl Running {
    /// POST `body` to `path` on the gateway.
    async fn post(&self, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
        send(&self.http, &format!("{}{path}", self.base), headers, body).await
    }
}

/// The values of the `field:` lines of an SSE body, in order.
fn sse<'a>(text: &'a str, field: &str) -> Vec<&'a str> {
    let prefix = format!("{field}: ");
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

async fn start(openai: Vec<Fault>, anthropic: Vec<Fault>, extra: &str) -> Running {
    let mut scenario = Scenario::default();
    scenario.openai.script = openai;
    scenario.anthropic.script = anthropic;
    let mock = MockServer::start(scenario).await.unwrap();
    let config = Config::parse(&config_text(&mock, extra), "test.toml").unwrap();
    let gateway = Gateway::build(config).await.unwrap();
    Running {
        base: serve(gateway.clone()).await,
        http: Client::builder(TokioExecutor::new()).build_http(),
        gateway,
        mock,
    }
}

/// Serves `gateway` on a loopback port; its base URL.
async fn serve(gateway: Gateway) -> String {
    common::serve_in_process(&gateway).await
}

fn chat(model: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 32})
        .to_string()
}

#[tokio::test]
async fn both_shapes_answer_and_say_which_model_answered() {
    let gw = start(vec![], vec![], "").await;
    let r = gw.post("/v1/chat/completions", &[], chat("gpt-4o")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["object"], "chat.completion");
    assert_eq!(r.json()["model"], "gpt-4o");
    assert_eq!(r.headers["x-staunch-model"], "gpt-4o");
    assert!(r.headers.contains_key("x-request-id"));

    let body = json!({"model": "claude-3", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]});
    let r = gw.post("/v1/messages", &[], body.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["type"], "message");
    assert_eq!(r.json()["model"], "claude-sonnet-4-5");
    assert_eq!(r.json()["content"][0]["type"], "text");

    let r = gw
        .post(
            "/v1/chat/completions",
            &[("x-request-id", "abc-123")],
            chat("gpt-4o"),
        )
        .await;
    assert_eq!(
        r.headers["x-request-id"], "abc-123",
        "a caller's id is kept"
    );
}

#[tokio::test]
async fn an_openai_client_is_served_by_anthropic_when_openai_fails() {
    let gw = start(vec![Fault::Unauthorized], vec![], "").await;
    let r = gw.post("/v1/chat/completions", &[], chat("gpt-4o")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["model"],
        "claude-sonnet-4-5",
        "the model that actually answered"
    );
    assert_eq!(r.headers["x-staunch-tier"], "reduced");
    assert_eq!(r.json()["choices"][0]["message"]["role"], "assistant");
}

#[tokio::test]
async fn tools_and_streams_go_through_both_shapes() {
    let gw = start(vec![], vec![], "").await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Weather?"}], "tools": tools});
    let r = gw.post("/v1/chat/completions", &[], body.to_string()).await;
    let call = &r.json()["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather", "{}", r.text);
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string());

    let body = json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "hi"}]});
    let r = gw.post("/v1/chat/completions", &[], body.to_string()).await;
    assert_eq!(r.headers["content-type"], "text/event-stream");
    let data: Vec<&str> = sse(r.text.as_str(), "data");
    assert_eq!(data.last(), Some(&"[DONE]"));
    let text: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "mock answer to: hi");

    let body = json!({"model": "claude-x", "max_tokens": 32, "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    let r = gw.post("/v1/messages", &[], body.to_string()).await;
    let events: Vec<&str> = sse(r.text.as_str(), "event");
    assert_eq!(events.first(), Some(&"message_start"));
    assert_eq!(events.last(), Some(&"message_stop"));
}

#[tokio::test]
async fn a_break_after_the_commit_point_goes_out_in_band_without_a_terminator() {
    let gw = start(
        vec![Fault::CutAfter { tokens: 2 }],
        vec![Fault::CutAfter { tokens: 2 }],
        "",
    )
    .await;
    let body =
        json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = gw.post("/v1/chat/completions", &[], body.to_string()).await;
    let data: Vec<&str> = sse(r.text.as_str(), "data");
    assert!(!data.contains(&"[DONE]"), "{}", r.text);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "truncated_response");

    let body = json!({"model": "claude-x", "max_tokens": 32, "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    let r = gw.post("/v1/messages", &[], body.to_string()).await;
    let events: Vec<&str> = sse(r.text.as_str(), "event");
    assert_eq!(events.last(), Some(&"error"), "{}", r.text);
    assert!(!events.contains(&"message_stop"));
}

#[tokio::test]
async fn client_keys_are_required_once_configured_and_budgets_apply() {
    let keys = format!(
        "[[client_keys]]\nname = \"team\"\nsha256 = \"{}\"\nwindow_tokens = 40\n",
        sha256_hex("team-secret")
    );
    // The extra text lands in [server]; put the keys after it in their own table.
    let gw = start(vec![], vec![], "").await;
    let config = format!("{}\n{keys}", config_text(&gw.mock, ""));
    gw.gateway
        .reload(Config::parse(&config, "keys.toml").unwrap())
        .await
        .unwrap();

    let url = format!("{}/v1/chat/completions", gw.base);
    let r = send(&gw.http, &url, &[], chat("gpt-4o")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    let r = send(
        &gw.http,
        &url,
        &[("authorization", "Bearer wrong")],
        chat("gpt-4o"),
    )
    .await;
    assert_eq!(r.status, 401);
    let body = json!({"model": "claude-x", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]});
    let r = gw
        .post("/v1/messages", &[("x-api-key", "nope")], body.to_string())
        .await;
    assert_eq!((r.status, r.json()["type"].as_str()), (401, Some("error")));
    assert_eq!(r.json()["error"]["type"], "authentication_error");

    let ok = send(
        &gw.http,
        &url,
        &[("authorization", "Bearer team-secret")],
        chat("gpt-4o"),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    // The key's 40-token window cannot hold another ~37-token request: a 429.
    let spent = send(
        &gw.http,
        &url,
        &[("authorization", "Bearer team-secret")],
        chat("gpt-4o"),
    )
    .await;
    assert_eq!(spent.status, 429, "{}", spent.text);
    assert_eq!(spent.json()["error"]["code"], "budget_exhausted");
}

#[tokio::test]
async fn a_request_refused_by_its_keys_budget_is_counted_in_the_request_metrics() {
    // This test's own recorder: a `tokio::test` runs the gateway, its
    // connections and the client on this one thread, so nothing the other
    // tests record reaches it.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let mock = MockServer::start(Scenario::default()).await.unwrap();
    let keys = format!(
        "[[client_keys]]\nname = \"team\"\nsha256 = \"{}\"\nwindow_tokens = 40\n",
        sha256_hex("team-secret")
    );
    let config = format!("{}\n{keys}", config_text(&mock, ""));
    let gateway = Gateway::build(Config::parse(&config, "keys.toml").unwrap())
        .await
        .unwrap()
        .with_metrics(move || scrape.render());
    let base = serve(gateway).await;
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("{base}/v1/chat/completions");
    let key = [("authorization", "Bearer team-secret")];

    let ok = send(&http, &url, &key, chat("gpt-4o")).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    // The key's 40-token window cannot hold another ~37-token request.
    let refused = send(&http, &url, &key, chat("gpt-4o")).await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(refused.json()["error"]["code"], "budget_exhausted");

    let response = http
        .get(format!("{base}/metrics").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    for line in [
        r#"staunch_requests_total{outcome="ok",tier="full",kind="none",class="none"} 1"#,
        r#"staunch_requests_total{outcome="error",tier="none",kind="budget_exhausted",class="fatal"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[tokio::test]
async fn metrics_has_the_genai_conventions_histograms_with_their_names_units_and_buckets() {
    // The gateway's own exporter settings, on this test's own recorder.
    let recorder = staunch_gateway::prometheus().build_recorder();
    let scrape = recorder.handle();
    let _recording = metrics::set_default_local_recorder(&recorder);
    staunch::observe::semconv::describe_metrics();
    let mock = MockServer::start(Scenario::default()).await.unwrap();
    let gateway = Gateway::build(Config::parse(&config_text(&mock, ""), "m.toml").unwrap())
        .await
        .unwrap()
        .with_metrics(move || scrape.render());
    let base = serve(gateway).await;
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let ok = send(
        &http,
        &format!("{base}/v1/chat/completions"),
        &[],
        chat("gpt-4o"),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    let response = http
        .get(format!("{base}/metrics").parse().unwrap())
        .await
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let has = |prefix: &str| text.lines().any(|l| l.starts_with(prefix));
    // Histograms (buckets, not a summary's quantiles), with the unit in
    // the name and the conventions' first boundary.
    assert!(
        has("# TYPE gen_ai_client_operation_duration_seconds histogram"),
        "{text}"
    );
    assert!(has("# TYPE gen_ai_client_token_usage histogram"), "{text}");
    let bucket = text
        .lines()
        .find(|l| {
            l.starts_with("gen_ai_client_operation_duration_seconds_bucket{")
                && l.contains(r#"le="0.01""#)
        })
        .unwrap_or_else(|| panic!("no 0.01 s bucket in\n{text}"));
    for label in [
        r#"gen_ai_operation_name="chat""#,
        r#"gen_ai_request_model="gpt-4o""#,
        r#"gen_ai_provider_name="openai""#,
    ] {
        assert!(bucket.contains(label), "{label} missing in {bucket}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("gen_ai_client_token_usage_bucket{")
                && l.contains(r#"gen_ai_token_type="input""#)
                && l.contains(r#"le="67108864""#)),
        "{text}"
    );
    // The request metrics keep their names.
    assert!(has("staunch_requests_total{"), "{text}");
    // staunch's own histograms are histograms too (buckets add up across
    // replicas; a summary's quantiles do not): no summary at all.
    assert!(
        text.lines().any(
            |l| l.starts_with("staunch_request_duration_seconds_bucket{")
                && l.contains(r#"le="0.01""#)
        ),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("staunch_fallback_depth_bucket{") && l.contains(r#"le="0""#)),
        "{text}"
    );
    assert!(!text.contains("quantile="), "a summary in\n{text}");
}

#[tokio::test]
async fn upstream_statuses_pass_through_where_they_mean_something() {
    let wait = Fault::RateLimit { retry_after: 120.0 };
    let gw = start(vec![wait.clone(); 4], vec![wait; 4], "").await;
    let r = gw.post("/v1/chat/completions", &[], chat("gpt-4o")).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.headers.contains_key("retry-after"));

    let gw = start(
        vec![Fault::ContextOverflow],
        vec![Fault::ContextOverflow],
        "",
    )
    .await;
    let r = gw.post("/v1/chat/completions", &[], chat("gpt-4o")).await;
    assert_eq!(
        r.status, 400,
        "a request too long for every target stays a 400"
    );
}

#[tokio::test]
async fn bad_input_of_every_kind_gets_a_clear_4xx_in_the_right_shape() {
    let gw = start(vec![], vec![], "").await;
    let openai = format!("{}/v1/chat/completions", gw.base);
    let anthropic = format!("{}/v1/messages", gw.base);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let huge = format!(
        "{{\"model\": \"gpt-4o\", \"messages\": [{{\"role\": \"user\", \"content\": \"{}\"}}]}}",
        "x".repeat(100_000)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("invalid JSON", b"{not json".to_vec(), 400),
        (
            "wrong types",
            br#"{"model": 7, "messages": "hi"}"#.to_vec(),
            400,
        ),
        ("deep nesting", deep.into_bytes(), 400),
        ("invalid UTF-8", b"{\"model\": \"\xff\xfe\"}".to_vec(), 400),
        (
            "unknown part type",
            br#"{"model": "gpt-4o", "messages": [{"role": "user", "content": [{"text": "x"}]}]}"#
                .to_vec(),
            400,
        ),
        ("unknown model", chat("llama-9").into_bytes(), 404),
        ("huge body", huge.into_bytes(), 413),
    ];
    for (what, body, status) in cases {
        let r = send(&gw.http, &openai, &[], body.clone()).await;
        assert_eq!(r.status, status, "{what}: {}", r.text);
        assert!(
            r.json()["error"]["message"].is_string(),
            "{what}: OpenAI shape: {}",
            r.text
        );
        let r = send(&gw.http, &anthropic, &[], body).await;
        assert!(r.status >= 400 && r.status < 500, "{what}");
        assert_eq!(
            r.json()["type"],
            "error",
            "{what}: Anthropic shape: {}",
            r.text
        );
    }
    // Still serving, with bounded memory.
    let r = send(&gw.http, &openai, &[], chat("gpt-4o")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_reload_changes_the_routes_and_a_bad_one_is_refused() {
    let gw = start(vec![], vec![], "").await;
    let url = format!("{}/v1/chat/completions", gw.base);
    assert_eq!(send(&gw.http, &url, &[], chat("gpt-5")).await.status, 404);
    let renamed = config_text(&gw.mock, "").replace(
        "model = \"gpt-4o\"\n  [[routes.targets]]",
        "model = \"gpt-5\"\n  [[routes.targets]]",
    );
    gw.gateway
        .reload(Config::parse(&renamed, "new.toml").unwrap())
        .await
        .unwrap();
    assert_eq!(send(&gw.http, &url, &[], chat("gpt-5")).await.status, 200);

    // A configuration that can't be built is refused; the old one serves.
    let mut bad = Config::parse(&renamed, "bad.toml").unwrap();
    bad.providers
        .get_mut("openai")
        .unwrap()
        .headers
        .insert("bad header".into(), "x".into());
    assert!(gw.gateway.reload(bad).await.is_err());
    assert_eq!(send(&gw.http, &url, &[], chat("gpt-5")).await.status, 200);
    // And one that does not parse never gets that far.
    assert!(Config::parse("[[routes]]\nmodel = 3", "broken.toml").is_err());
}

#[tokio::test]
async fn readiness_follows_the_circuits_and_models_are_listed() {
    let gw = start(vec![], vec![], "").await;
    let get = |path: &str| {
        let url = format!("{}{path}", gw.base);
        let http = gw.http.clone();
        async move {
            let response = http.get(url.parse().unwrap()).await.unwrap();
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    let (status, ready) = get("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(ready["ready"], true);
    let (status, models) = get("/v1/models").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["gpt-4o", "claude-*"]);
    assert_eq!(get("/healthz").await.0, 200);
}

#[tokio::test]
async fn requests_beyond_max_concurrency_wait_for_a_slot_and_then_are_served() {
    use staunch_mock::Route;
    use std::time::Duration;
    use tower::ServiceExt;

    let running = start(vec![], vec![Fault::Hang], "max_concurrency = 1").await;
    let app = router(running.gateway.clone());
    let post = |model: &str| {
        http::Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(chat(model)))
            .unwrap()
    };
    // The first request takes the one slot and hangs at the upstream.
    let first = tokio::spawn(app.clone().oneshot(post("claude-sonnet-4-5")));
    while running.mock.stats().requests_to(Route::Anthropic) == 0 {
        assert!(!first.is_finished(), "the hung request ended");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The second waits: it neither answers nor reaches the upstream.
    let mut second = tokio::spawn(app.clone().oneshot(post("gpt-4o")));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut second)
            .await
            .is_err(),
        "a request beyond max_concurrency was answered while the slot was taken"
    );
    assert_eq!(running.mock.stats().requests_to(Route::OpenAi), 0);
    // Only model requests take a slot: health checks, metrics and unknown
    // paths are answered while every slot is taken.
    let get = |path: &str| {
        http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    for (path, status) in [("/healthz", 200), ("/readyz", 200), ("/nowhere", 404)] {
        let response = tokio::time::timeout(Duration::from_secs(5), app.clone().oneshot(get(path)))
            .await
            .unwrap_or_else(|_| panic!("{path} waited for a model request's slot"))
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
    }
    // A waiting request whose client gives up holds no slot afterwards.
    let mut given_up = tokio::spawn(app.clone().oneshot(post("gpt-4o")));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut given_up)
            .await
            .is_err()
    );
    given_up.abort();
    // Once the first is gone, the waiting one is served, and the slot
    // serves the next one after it.
    first.abort();
    let response = second.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(running.mock.stats().requests_to(Route::OpenAi), 1);
    let response =
        tokio::time::timeout(Duration::from_secs(5), app.clone().oneshot(post("gpt-4o")))
            .await
            .expect("the slot was not given back")
            .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(running.mock.stats().requests_to(Route::OpenAi), 2);
}
