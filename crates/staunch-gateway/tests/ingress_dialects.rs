//! The Responses and Gemini ingresses when the upstream fails, over
//! loopback (issue 24): after the commit point a broken stream is a
//! `response.failed` event (Responses) or an in-band error frame (Gemini),
//! never a clean completion; before it, a failure is an error in the
//! client's own shape and status.

mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use staunch_gateway::Gateway;
use staunch_gateway::config::Config;
use staunch_mock::{Fault, MockServer, Scenario};

struct Running {
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
    _mock: MockServer,
    _gateway: Gateway,
}

/// A gateway whose route `m` has one OpenAI-compatible target on a mock
/// that answers every request with `fault`, and no retries.
async fn start(fault: Fault) -> Running {
    let mut scenario = Scenario {
        stream_token_ms: 0,
        ..Scenario::default()
    };
    scenario.openai.script = vec![fault; 8];
    let mock = MockServer::start(scenario).await.expect("the mock starts");
    let text = format!(
        r#"
[providers.upstream]
kind = "openai-compatible"
base_url = "{}"

[[routes]]
model = "m"
targets = [{{ provider = "upstream", model = "gpt-4o", retry = {{ max_retries = 0 }} }}]
"#,
        mock.openai_base_url()
    );
    let config = Config::parse(&text, "dialects.toml").unwrap_or_else(|e| panic!("{e}"));
    let gateway = Gateway::build(config).await.expect("the gateway builds");
    Running {
        base: common::serve_in_process(&gateway).await,
        http: Client::builder(TokioExecutor::new()).build_http(),
        _mock: mock,
        _gateway: gateway,
    }
}

impl Running {
    /// POSTs `body` to `path`: the status, the headers and the whole body.
    async fn post(&self, path: &str, body: Value) -> (u16, http::HeaderMap, String) {
        let request = http::Request::post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("a valid request");
        let response = self
            .http
            .request(request)
            .await
            .expect("the gateway answers");
        let (parts, body) = response.into_parts();
        // A broken stream may end the body with an error after its last
        // frame: keep what arrived.
        let mut text = Vec::new();
        let mut body = body;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        text.extend_from_slice(&data);
                    }
                }
                Err(_) => break,
            }
        }
        (
            parts.status.as_u16(),
            parts.headers,
            String::from_utf8(text).expect("UTF-8"),
        )
    }
}

/// The JSON of each `data:` line.
fn data(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

#[tokio::test]
async fn a_responses_stream_cut_after_its_commit_point_ends_with_response_failed() {
    let gw = start(Fault::CutAfter { tokens: 2 }).await;
    let body = json!({"model": "m", "input": "hi there", "stream": true});
    let (status, _, text) = gw.post("/v1/responses", body).await;
    assert_eq!(status, 200, "{text}");
    let events = data(&text);
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"response.created"), "{types:?}");
    assert!(types.contains(&"response.output_text.delta"), "{types:?}");
    assert_eq!(types.last(), Some(&"response.failed"), "{types:?}");
    assert!(!types.contains(&"response.completed"), "{types:?}");
    let failed = events.last().expect("an event");
    assert_eq!(failed["response"]["status"], "failed");
    assert!(
        failed["response"]["error"]["message"].is_string(),
        "{failed}"
    );
    // Every event carries its place in the stream.
    let numbers: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().expect("a sequence number"))
        .collect();
    assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_gemini_stream_cut_after_its_commit_point_ends_with_an_error_frame() {
    let gw = start(Fault::CutAfter { tokens: 2 }).await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi there"}]}]});
    let (status, _, text) = gw
        .post("/v1beta/models/m:streamGenerateContent?alt=sse", body)
        .await;
    assert_eq!(status, 200, "{text}");
    let frames = data(&text);
    let (last, before) = frames.split_last().expect("frames");
    assert!(last["error"]["message"].is_string(), "{last}");
    assert!(!before.is_empty(), "text went out before the cut: {text}");
    for frame in before {
        assert!(
            frame["candidates"][0]["content"]["parts"][0]["text"].is_string(),
            "{frame}"
        );
        assert!(
            frame["candidates"][0].get("finishReason").is_none(),
            "{frame}"
        );
    }
}

#[tokio::test]
async fn a_rate_limit_before_the_commit_point_is_each_dialects_own_error() {
    // One gateway each: the first 429 opens the target's circuit for the
    // upstream's 7 s, and this test is about the 429 itself.
    let gw = start(Fault::RateLimit { retry_after: 7.0 }).await;
    let gemini = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let (status, headers, text) = gw.post("/v1beta/models/m:generateContent", gemini).await;
    assert_eq!(status, 429, "{text}");
    let error: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(error["error"]["code"], 429, "{error}");
    assert_eq!(error["error"]["status"], "RESOURCE_EXHAUSTED", "{error}");
    assert_eq!(headers["retry-after"], "7");

    let gw = start(Fault::RateLimit { retry_after: 7.0 }).await;
    let responses = json!({"model": "m", "input": "hi"});
    let (status, headers, text) = gw.post("/v1/responses", responses).await;
    assert_eq!(status, 429, "{text}");
    let error: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(error["error"]["type"], "rate_limit_error", "{error}");
    assert_eq!(headers["x-staunch-error-kind"], "rate_limited");
}

#[tokio::test]
async fn a_gemini_path_the_gateway_does_not_serve_is_a_google_404() {
    let gw = start(Fault::Ok).await;
    let (status, _, text) = gw.post("/v1beta/models/m:countTokens", json!({})).await;
    assert_eq!(status, 404, "{text}");
    let error: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(error["error"]["status"], "NOT_FOUND", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("generateContent")
    );
}
