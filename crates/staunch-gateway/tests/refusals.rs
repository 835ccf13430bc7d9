//! Content-policy refusals over loopback (issue 22, point 4): by default a
//! refusal is returned, as a 400 with the provider's own code and message in
//! the client's error shape, and the next target is never called;
//! `on_refusal = "fallback"` lets the next target answer instead.
//!
//! The upstreams are the mock on 127.0.0.1: its OpenAI side refuses (a 400
//! `content_policy_violation`, or a 200 stopped by the content filter), its
//! Anthropic side would answer.

mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use staunch_gateway::Gateway;
use staunch_gateway::config::Config;
use staunch_mock::{Fault, MockServer, Route, Scenario};
use std::collections::BTreeMap;

type Http = Client<HttpConnector, Full<Bytes>>;

/// OpenAI's answer to an image prompt its safety system rejects.
const POLICY_MESSAGE: &str = "Your request was rejected as a result of our safety system. \
Your prompt may contain text that is not allowed by our safety system.";

fn policy_violation() -> Fault {
    let body = json!({"error": {
        "message": POLICY_MESSAGE,
        "type": "invalid_request_error",
        "param": null,
        "code": "content_policy_violation",
    }});
    Fault::Status {
        status: 400,
        body: body.to_string(),
        headers: BTreeMap::new(),
    }
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: Value,
    text: String,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

struct Running {
    base: String,
    http: Http,
    mock: MockServer,
    _gateway: Gateway,
}

impl Running {
    async fn post(&self, path: &str, body: Value) -> Reply {
        let request = http::Request::post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("a valid request");
        let response = self
            .http
            .request(request)
            .await
            .expect("the gateway answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a whole body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    /// An OpenAI client's chat request for the `gpt-4o` route.
    async fn openai(&self) -> Reply {
        let body = json!({"model": "gpt-4o", "max_tokens": 16,
                          "messages": [{"role": "user", "content": "something refused"}]});
        self.post("/v1/chat/completions", body).await
    }

    /// An Anthropic client's request for the same route.
    async fn anthropic(&self) -> Reply {
        let body = json!({"model": "gpt-4o", "max_tokens": 16,
                          "messages": [{"role": "user", "content": "something refused"}]});
        self.post("/v1/messages", body).await
    }

    fn calls(&self, route: Route) -> u64 {
        self.mock.stats().requests_to(route)
    }
}

/// The gateway over the mock: route `gpt-4o` tries OpenAI first (no
/// retries), then Anthropic, each answering by its script first;
/// `on_refusal` is the route's line, if any.
async fn start(openai: Vec<Fault>, anthropic: Vec<Fault>, on_refusal: &str) -> Running {
    let mut scenario = Scenario::default();
    scenario.openai.script = openai;
    scenario.anthropic.script = anthropic;
    let mock = MockServer::start(scenario).await.expect("the mock starts");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[providers.openai]
kind = "openai-compatible"
base_url = "{openai}"

[providers.anthropic]
kind = "anthropic"
base_url = "{anthropic}"

[[routes]]
model = "gpt-4o"
{on_refusal}
  [[routes.targets]]
  provider = "openai"
  model = "gpt-4o"
  retry = {{ max_retries = 0 }}
  [[routes.targets]]
  provider = "anthropic"
  model = "claude-sonnet-4-5"
"#,
        openai = mock.openai_base_url(),
        anthropic = mock.anthropic_base_url(),
    );
    let config = Config::parse(&text, "refusals.toml").expect("a valid config");
    let gateway = Gateway::build(config).await.expect("the gateway builds");
    let base = common::serve_in_process(&gateway).await;
    Running {
        base,
        http: Client::builder(TokioExecutor::new()).build_http(),
        mock,
        _gateway: gateway,
    }
}

/// What every returned refusal has: a 400, staunch's kind in a header, the
/// refusing target named, one call made.
fn assert_refused(r: &Reply) {
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.header("x-staunch-error-kind"), "content_filtered");
    assert_eq!(r.header("x-staunch-target"), "openai/gpt-4o");
    assert_eq!(r.header("x-staunch-attempts"), "1");
}

#[tokio::test]
async fn a_refusal_is_returned_with_the_providers_code_and_message_by_default() {
    let gw = start(vec![policy_violation(), policy_violation()], vec![], "").await;

    let r = gw.openai().await;
    assert_refused(&r);
    assert_eq!(
        r.body,
        json!({"error": {
            "message": POLICY_MESSAGE,
            "type": "invalid_request_error",
            "param": null,
            "code": "content_policy_violation",
        }}),
        "OpenAI's shape, with OpenAI's code and message"
    );

    let r = gw.anthropic().await;
    assert_refused(&r);
    assert_eq!(
        r.body,
        json!({"type": "error", "error": {
            "type": "invalid_request_error",
            "message": POLICY_MESSAGE,
            "details": {"error_code": "content_policy_violation"},
        }}),
        "Anthropic's shape, with the provider's code and message"
    );

    assert_eq!(gw.calls(Route::OpenAi), 2);
    assert_eq!(
        gw.calls(Route::Anthropic),
        0,
        "the next target is never asked"
    );
}

#[tokio::test]
async fn a_refusal_that_came_as_a_success_is_named_in_each_apis_word() {
    let gw = start(vec![Fault::ContentFilter, Fault::ContentFilter], vec![], "").await;
    let message = "the answer was stopped by the content filter (finish_reason: content_filter)";

    let r = gw.openai().await;
    assert_refused(&r);
    assert_eq!(r.body["error"]["code"], "content_filter", "{}", r.text);
    assert_eq!(r.body["error"]["type"], "invalid_request_error");
    assert_eq!(r.body["error"]["message"], message);

    let r = gw.anthropic().await;
    assert_refused(&r);
    assert_eq!(
        r.body["error"]["type"], "invalid_request_error",
        "{}",
        r.text
    );
    assert_eq!(r.body["error"]["details"]["error_code"], "refusal");
    assert_eq!(r.body["error"]["message"], message);

    assert_eq!(gw.calls(Route::OpenAi), 2);
    assert_eq!(gw.calls(Route::Anthropic), 0);
}

#[tokio::test]
async fn fallback_on_refusal_is_an_opt_in_and_the_next_target_answers() {
    let gw = start(
        vec![policy_violation(), Fault::ContentFilter],
        vec![],
        r#"on_refusal = "fallback""#,
    )
    .await;

    let r = gw.openai().await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["model"], "claude-sonnet-4-5");
    assert_eq!(r.header("x-staunch-target"), "anthropic/claude-sonnet-4-5");
    assert_eq!(r.header("x-staunch-tier"), "reduced");

    let r = gw.anthropic().await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["type"], "message");
    assert_eq!(r.header("x-staunch-target"), "anthropic/claude-sonnet-4-5");

    assert_eq!(gw.calls(Route::OpenAi), 2);
    assert_eq!(gw.calls(Route::Anthropic), 2);
}

#[tokio::test]
async fn other_failures_keep_staunchs_kind_and_say_it_in_a_header() {
    // Both targets refuse the key: not the request's fault, so the client
    // gets staunch's account of every target, and its kind.
    let gw = start(vec![Fault::Unauthorized], vec![Fault::Unauthorized], "").await;
    let r = gw.openai().await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "authentication", "{}", r.text);
    assert_eq!(r.header("x-staunch-error-kind"), "authentication");
    assert_eq!(r.header("x-staunch-target"), "anthropic/claude-sonnet-4-5");
    assert_eq!(r.header("x-staunch-attempts"), "2");
    assert_eq!(gw.calls(Route::OpenAi), 1);
    assert_eq!(gw.calls(Route::Anthropic), 1);
}
