//! The access log line the gateway writes for each request: its shape is
//! what log pipelines parse, so it is pinned here key for key, whether the
//! request spans keep their outcome fields or not (they never show in it).

mod common;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use staunch_gateway::Gateway;
use staunch_gateway::config::Config;
use staunch_gateway::json_log::JsonLog;
use staunch_gateway::log_filter::log_filter;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_subscriber::prelude::*;

const CONFIG: &str = r#"
[providers.mock]
kind = "mock"

[[routes]]
model = "*"
  [[routes.targets]]
  provider = "mock"
  model = "mock-model"
"#;

/// Every line the layer writes.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The access line of one chat request through a gateway whose request
/// spans keep their outcome fields or not.
async fn access_line(span_outcome: bool) -> String {
    let lines = Lines::default();
    let writer = lines.clone();
    // As the binary sets up its log, with no RUST_LOG.
    let subscriber = tracing_subscriber::registry()
        .with(JsonLog::new(move || writer.clone()))
        .with(log_filter(None).layer());
    let _default = tracing::subscriber::set_default(subscriber);

    let config = Config::parse(CONFIG, "test.toml").unwrap();
    let gateway = Gateway::build(config)
        .await
        .unwrap()
        .span_outcome(span_outcome);
    let base = common::serve_in_process(&gateway).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = hyper::Request::post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();

    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let served: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(r#""message":"served""#))
        .collect();
    assert_eq!(served.len(), 1, "{text}");
    served[0].to_owned()
}

/// `line` with what changes from request to request blanked: the
/// timestamp (checked to be RFC 3339 UTC with microseconds), the request
/// id (`req_` and 24 hex digits) and the milliseconds (a number).
fn blanked(line: &str) -> String {
    let (head, rest) = line.split_at(line.find(r#""timestamp":""#).unwrap() + 13);
    let (stamp, rest) = rest.split_at(27);
    assert!(
        stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{line}"
    );
    let mut out = format!("{head}T{rest}");
    while let Some(at) = out.find("req_") {
        let id = &out[at + 4..at + 28];
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{line}");
        out.replace_range(at..at + 28, "ID");
    }
    let at = out.find(r#""ms":"#).unwrap() + 5;
    let end = at + out[at..].find('}').unwrap();
    assert!(out[at..end].parse::<f64>().unwrap() >= 0.0, "{line}");
    out.replace_range(at..end, "MS");
    out
}

#[tokio::test]
async fn the_access_line_keeps_its_shape_with_or_without_span_outcomes() {
    // tracing-subscriber's JSON shape, key for key and in its order: the
    // message first among the fields, as a format string's would be; the
    // request's span with its fields by name and then its name, and the
    // scope of that one span.
    let span =
        r#"{"method":"POST","path":"/v1/chat/completions","request_id":"ID","name":"request"}"#;
    let want = format!(
        r#"{{"timestamp":"T","level":"INFO","fields":{{"message":"served","status":200,"model":"mock-model","tier":"full","ms":MS}},"target":"staunch_gateway","span":{span},"spans":[{span}]}}"#
    );
    for span_outcome in [true, false] {
        let line = access_line(span_outcome).await;
        assert_eq!(blanked(&line), want, "span_outcome {span_outcome}: {line}");
        serde_json::from_str::<serde_json::Value>(&line).unwrap();
    }
}
