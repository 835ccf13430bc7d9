//! OTLP export, end to end: the `staunch-gateway` binary with
//! `[telemetry]` pointing at an OTLP/HTTP receiver written here (hyper on
//! loopback, protobuf decoded with opentelemetry-proto) serves one chat
//! request over a mock provider that fails once; what the receiver gets
//! must be the GenAI conventions' client span with its attempts, the
//! resource's `service.name`, and the `gen_ai.client.*` histograms with
//! the conventions' units and buckets, and never a key or a message.
//!
//! The binary, not the library in this process: a process has one global
//! tracing subscriber and one metrics recorder.
#![cfg(unix)]

mod common;

use std::convert::Infallible;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use prost::Message;
use staunch::observe::semconv::{DURATION_BUCKETS, TOKEN_BUCKETS};
use staunch_mock::{Fault, MockServer, Scenario};

const API_KEY: &str = "sk-otlp-test-3f9a1c7e5b2d";
const COLLECTOR_TOKEN: &str = "collector-token-8e41d0b7";
const CLIENT_KEY: &str = "change-me";
const PROMPT: &str = "the tangerine walrus recites tax law at midnight";

/// One OTLP request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    content_type: String,
    token: Option<String>,
    body: Bytes,
}

/// An OTLP/HTTP receiver on loopback: it keeps every request and answers
/// each with an empty (successful) export response.
struct Collector {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let store = store.clone();
                let service = hyper::service::service_fn(move |request| {
                    let store = store.clone();
                    async move { Ok::<_, Infallible>(receive(request, &store).await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Collector { url, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn spans(&self) -> Vec<(Vec<KeyValue>, Span)> {
        let mut spans = Vec::new();
        for r in self.received().iter().filter(|r| r.path == "/v1/traces") {
            let request = ExportTraceServiceRequest::decode(r.body.clone()).unwrap();
            for resource in request.resource_spans {
                let attrs = resource.resource.map(|r| r.attributes).unwrap_or_default();
                for scope in resource.scope_spans {
                    for span in scope.spans {
                        spans.push((attrs.clone(), span));
                    }
                }
            }
        }
        spans
    }

    /// The metrics of the last metrics export (cumulative: it holds all).
    fn metrics(&self) -> Vec<(Vec<KeyValue>, Metric)> {
        let mut metrics = Vec::new();
        let received = self.received();
        let Some(last) = received.iter().rfind(|r| r.path == "/v1/metrics") else {
            return metrics;
        };
        let request = ExportMetricsServiceRequest::decode(last.body.clone()).unwrap();
        for resource in request.resource_metrics {
            let attrs = resource.resource.map(|r| r.attributes).unwrap_or_default();
            for scope in resource.scope_metrics {
                for metric in scope.metrics {
                    metrics.push((attrs.clone(), metric));
                }
            }
        }
        metrics
    }
}

async fn receive(
    request: hyper::Request<Incoming>,
    store: &Mutex<Vec<Received>>,
) -> hyper::Response<Full<Bytes>> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let path = request.uri().path().to_owned();
    let content_type = header("content-type").unwrap_or_default();
    let token = header("x-collector-token");
    let body = request.into_body().collect().await.unwrap().to_bytes();
    store.lock().unwrap().push(Received {
        path,
        content_type,
        token,
        body,
    });
    hyper::Response::builder()
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// An integer attribute: an OTLP integer, not a numeric string
/// (tracing-opentelemetry writes a field recorded as a `u64` as a string,
/// so staunch records its counts signed).
fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

/// Polls `done` every 50 ms until it holds, at most `limit`.
async fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the process to exit, at most `limit`.
async fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the gateway did not exit within {limit:?} of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A configuration with `[telemetry]` pointing at `collector` (and
/// `telemetry`'s lines), `gpt-4o` routed to `gpt-4o-mini` on `mock`.
fn config(collector: &Collector, mock: &MockServer, telemetry: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
log_format = "json"
shutdown_grace_secs = 5

[telemetry]
otlp_endpoint = "{collector}"
headers = {{ x-collector-token = "{COLLECTOR_TOKEN}" }}
service_name = "staunch-otlp-test"
{telemetry}

[providers.openai]
kind = "openai-compatible"
base_url = "{openai}"
api_key_env = "STAUNCH_OTLP_TEST_KEY"

[[routes]]
model = "gpt-4o"
  [[routes.targets]]
  provider = "openai"
  model = "gpt-4o-mini"
  retry = {{ max_retries = 2, base_delay_ms = 10, max_delay_ms = 50 }}

[[client_keys]]
name = "test"
# "change-me"
sha256 = "e2186dbdb1bb4193608605e84f33208765b5693b55edd4f730a719a100eeea6f"
"#,
        collector = collector.url,
        openai = mock.openai_base_url(),
    )
}

/// Runs the binary with `telemetry`'s lines in its `[telemetry]`, sends
/// one chat request (whose first attempt fails), waits for a metrics
/// export if `wait_for_metrics`, then stops the gateway with SIGTERM (which
/// exports what is left). Returns the collector and the answer's text.
async fn run(telemetry: &str, wait_for_metrics: bool) -> (Collector, String) {
    let collector = Collector::start().await;
    let mut scenario = Scenario::default();
    // One failed attempt, then an answer: two attempt spans.
    scenario.openai.script = vec![Fault::ServerError, Fault::Ok];
    let mock = MockServer::start(scenario).await.unwrap();
    let dir = common::tempdir();
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config(&collector, &mock, telemetry)).unwrap();
    let stderr_path = dir.join("stderr.log");
    let mut command = Command::new(common::BIN);
    command
        .arg("--config")
        .arg(&path)
        .env("STAUNCH_OTLP_TEST_KEY", API_KEY)
        .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        .env_remove("OTEL_EXPORTER_OTLP_METRICS_HEADERS")
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env_remove("OTEL_SERVICE_NAME")
        .stderr(Stdio::from(std::fs::File::create(&stderr_path).unwrap()));
    let (mut child, url) = common::spawn_listening(&mut command);
    let logs = || std::fs::read_to_string(&stderr_path).unwrap_or_default();

    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body = serde_json::json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 32,
    });
    let request = hyper::Request::post(format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {CLIENT_KEY}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = http.request(request).await.unwrap();
    let status = response.status();
    let answer = response.into_body().collect().await.unwrap().to_bytes();
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(status, 200, "{answer}\n{}", logs());
    let answer_text = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();

    // Metrics go out every second; spans in batches. SIGTERM drains the
    // gateway and exports what is left of both before it exits.
    if wait_for_metrics {
        wait_for(Duration::from_secs(20), "a metrics export", || {
            collector.received().iter().any(|r| r.path == "/v1/metrics")
        })
        .await;
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = wait_exit(&mut child, Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit:?}\n{}", logs());
    (collector, answer_text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_a_collector_over_otlp() {
    let (collector, answer_text) = run(
        "protocol = \"http/protobuf\"\nsampling_ratio = 1.0\nmetrics_interval_secs = 1",
        true,
    )
    .await;
    wait_for(Duration::from_secs(10), "the chat span", || {
        collector
            .spans()
            .iter()
            .any(|(_, s)| s.name == "chat gpt-4o")
    })
    .await;

    // Every export went to its signal's path, in protobuf, with the
    // configured header; none holds a key or a message.
    let received = collector.received();
    for r in &received {
        assert!(
            r.path == "/v1/traces" || r.path == "/v1/metrics",
            "{}",
            r.path
        );
        assert_eq!(r.content_type, "application/x-protobuf");
        assert_eq!(r.token.as_deref(), Some(COLLECTOR_TOKEN));
        let text = String::from_utf8_lossy(&r.body);
        for secret in [API_KEY, COLLECTOR_TOKEN, CLIENT_KEY, PROMPT] {
            assert!(!text.contains(secret), "{secret:?} exported to {}", r.path);
        }
        if answer_text.len() >= 12 {
            assert!(!text.contains(&answer_text), "the answer exported");
        }
    }

    // The client span of the GenAI conventions.
    let spans = collector.spans();
    let (resource, chat) = spans.iter().find(|(_, s)| s.name == "chat gpt-4o").unwrap();
    assert_eq!(
        string_attr(resource, "service.name"),
        Some("staunch-otlp-test")
    );
    assert_eq!(chat.kind, SpanKind::Client as i32);
    let a = &chat.attributes;
    assert_eq!(string_attr(a, "gen_ai.operation.name"), Some("chat"));
    assert_eq!(string_attr(a, "gen_ai.request.model"), Some("gpt-4o"));
    assert_eq!(string_attr(a, "gen_ai.provider.name"), Some("openai"));
    assert_eq!(
        string_attr(a, "gen_ai.response.model"),
        Some("gpt-4o-mini"),
        "{a:#?}"
    );
    assert_eq!(int_attr(a, "gen_ai.request.max_tokens"), Some(32), "{a:#?}");
    let input = int_attr(a, "gen_ai.usage.input_tokens").unwrap();
    let output = int_attr(a, "gen_ai.usage.output_tokens").unwrap();
    assert!(input > 0 && output > 0, "{input} {output}");
    assert_eq!(int_attr(a, "attempts"), Some(2), "{a:#?}");
    // The server that answered: the mock, on loopback.
    assert_eq!(
        string_attr(a, "server.address"),
        Some("127.0.0.1"),
        "{a:#?}"
    );
    assert!(int_attr(a, "server.port").is_some_and(|p| p > 0), "{a:#?}");

    // Its attempts: the failed one and the one that answered.
    let attempts: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.parent_span_id == chat.span_id && s.trace_id == chat.trace_id)
        .filter(|s| s.name == "llm.attempt")
        .collect();
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    let outcomes: Vec<&str> = attempts
        .iter()
        .filter_map(|s| string_attr(&s.attributes, "outcome"))
        .collect();
    let mut outcomes = outcomes;
    outcomes.sort_unstable();
    assert_eq!(outcomes, ["error", "ok"]);

    // The histograms, with the conventions' units and buckets.
    let metrics = collector.metrics();
    let find = |name: &str| {
        metrics
            .iter()
            .find(|(_, m)| m.name == name)
            .unwrap_or_else(|| {
                let names: Vec<&str> = metrics.iter().map(|(_, m)| m.name.as_str()).collect();
                panic!("no {name} in {names:?}")
            })
    };
    let (resource, duration) = find("gen_ai.client.operation.duration");
    assert_eq!(
        string_attr(resource, "service.name"),
        Some("staunch-otlp-test")
    );
    assert_eq!(duration.unit, "s");
    let Some(metric::Data::Histogram(histogram)) = &duration.data else {
        panic!("{duration:#?}");
    };
    let point = &histogram.data_points[0];
    assert_eq!(point.explicit_bounds, DURATION_BUCKETS);
    assert_eq!(point.count, 1);
    assert_eq!(
        string_attr(&point.attributes, "gen_ai.operation.name"),
        Some("chat")
    );
    assert_eq!(
        string_attr(&point.attributes, "gen_ai.request.model"),
        Some("gpt-4o")
    );

    let (_, tokens) = find("gen_ai.client.token.usage");
    assert_eq!(tokens.unit, "{token}");
    let Some(metric::Data::Histogram(histogram)) = &tokens.data else {
        panic!("{tokens:#?}");
    };
    let mut types: Vec<&str> = histogram
        .data_points
        .iter()
        .inspect(|p| assert_eq!(p.explicit_bounds, TOKEN_BUCKETS))
        .filter_map(|p| string_attr(&p.attributes, "gen_ai.token.type"))
        .collect();
    types.sort_unstable();
    assert_eq!(types, ["input", "output"]);
}

/// `http/json` with `export_metrics = false`: the same client span, in
/// OTLP's JSON encoding, and no metrics export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_carries_the_spans_and_metrics_can_stay_off() {
    let (collector, _) = run("protocol = \"http/json\"\nexport_metrics = false", false).await;
    // The exporter waits for each answer, and the gateway exited after its
    // last export: everything has arrived.
    let received = collector.received();
    assert!(!received.is_empty());
    let mut chat = None;
    for r in &received {
        assert_eq!(r.path, "/v1/traces");
        assert_eq!(r.content_type, "application/json");
        assert_eq!(r.token.as_deref(), Some(COLLECTOR_TOKEN));
        let text = String::from_utf8_lossy(&r.body);
        for secret in [API_KEY, COLLECTOR_TOKEN, CLIENT_KEY, PROMPT] {
            assert!(!text.contains(secret), "{secret:?} exported");
        }
        let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        for resource in json["resourceSpans"].as_array().unwrap() {
            for scope in resource["scopeSpans"].as_array().unwrap() {
                for span in scope["spans"].as_array().unwrap() {
                    if span["name"] == "chat gpt-4o" {
                        chat = Some((resource["resource"].clone(), span.clone()));
                    }
                }
            }
        }
    }
    let (resource, span) = chat.expect("the chat span");
    let attr = |attrs: &serde_json::Value, key: &str| {
        attrs
            .as_array()
            .unwrap()
            .iter()
            .find(|kv| kv["key"] == key)
            .map(|kv| kv["value"].clone())
    };
    assert_eq!(
        attr(&resource["attributes"], "service.name").unwrap()["stringValue"],
        "staunch-otlp-test"
    );
    // OTLP/JSON writes enums as their numbers: 3 is SPAN_KIND_CLIENT.
    assert_eq!(span["kind"], SpanKind::Client as i32, "{span:#}");
    let attrs = &span["attributes"];
    assert_eq!(
        attr(attrs, "gen_ai.operation.name").unwrap()["stringValue"],
        "chat"
    );
    assert_eq!(
        attr(attrs, "gen_ai.response.model").unwrap()["stringValue"],
        "gpt-4o-mini"
    );
    assert!(
        attr(attrs, "gen_ai.usage.output_tokens").is_some(),
        "{span:#}"
    );
}
