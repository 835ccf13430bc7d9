//! Streaming failover through the gateway over loopback (issue 22): a
//! silent upstream, a stall mid-stream and a flapping provider, each broken
//! on purpose by the mock, with the route the issue describes ("primary
//! then fallback", 2 retries, a 30 s attempt and idle timeout, a 10 s
//! first-token timeout). The whole test runs on tokio's paused time, so
//! the timeouts cost no wall-clock time and the elapsed times are exact.
//!
//! The primary is the mock's OpenAI side, the fallback its Anthropic side.

mod common;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use staunch_gateway::Gateway;
use staunch_gateway::config::Config;
use staunch_mock::{Fault, MockServer, RandomFault, Route, Scenario};
use tokio::time::Instant;

type Http = Client<HttpConnector, Full<Bytes>>;

/// The answer the mock streams to "hi", whichever side serves it.
const ANSWER: &str = "mock answer to: hi";

struct Running {
    base: String,
    http: Http,
    mock: MockServer,
    _gateway: Gateway,
}

/// What a client received.
struct Reply {
    status: u16,
    target: String,
    /// The streamed text, in order.
    text: String,
    /// The stream ended with `[DONE]`.
    done: bool,
    raw: String,
}

impl Running {
    /// A chat request for route `gpt-4o`, streamed or not.
    async fn ask(&self, stream: bool) -> Reply {
        let body = json!({"model": "gpt-4o", "stream": stream, "max_tokens": 32,
                          "messages": [{"role": "user", "content": "hi"}]});
        let request = http::Request::post(format!("{}/v1/chat/completions", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("a valid request");
        let response = self
            .http
            .request(request)
            .await
            .expect("the gateway answers");
        let status = response.status().as_u16();
        let target = response
            .headers()
            .get("x-staunch-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a whole body")
            .to_bytes();
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        let (text, done) = if stream {
            let data: Vec<&str> = raw
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            let text = data
                .iter()
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .filter_map(|c| {
                    c["choices"][0]["delta"]["content"]
                        .as_str()
                        .map(str::to_owned)
                })
                .collect();
            (text, data.last() == Some(&"[DONE]"))
        } else {
            let body: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
            let text = body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (text, status == 200)
        };
        Reply {
            status,
            target,
            text,
            done,
            raw,
        }
    }

    fn calls(&self, route: Route) -> u64 {
        self.mock.stats().requests_to(route)
    }
}

/// The issue's route, over a mock that serves `openai` and `anthropic`
/// first; `route` and `target` are extra lines for the route and for both
/// of its targets.
async fn start(scenario: Scenario, route: &str, target: &str) -> Running {
    let mock = MockServer::start(scenario).await.expect("the mock starts");
    let text = format!(
        r#"
[providers.openai]
kind = "openai-compatible"
base_url = "{openai}"
first_token_timeout_secs = 10
idle_timeout_secs = 30

[providers.anthropic]
kind = "anthropic"
base_url = "{anthropic}"
first_token_timeout_secs = 10
idle_timeout_secs = 30

[defaults.target]
attempt_timeout_secs = 30
retry = {{ max_retries = 2 }}
{target}

[[routes]]
model = "gpt-4o"
{route}
targets = [
  {{ provider = "openai", model = "gpt-4o" }},
  {{ provider = "anthropic", model = "claude-sonnet-4-5" }},
]
"#,
        openai = mock.openai_base_url(),
        anthropic = mock.anthropic_base_url(),
    );
    let config = Config::parse(&text, "failover.toml").unwrap_or_else(|e| panic!("{e}"));
    let gateway = Gateway::build(config).await.expect("the gateway builds");
    let base = common::serve_in_process(&gateway).await;
    Running {
        base,
        http: Client::builder(TokioExecutor::new()).build_http(),
        mock,
        _gateway: gateway,
    }
}

fn script(openai: Vec<Fault>) -> Scenario {
    let mut scenario = Scenario::default();
    scenario.openai.script = openai;
    scenario
}

/// A primary that accepts the request and sends nothing, not even headers:
/// the fallback answers after one first-token timeout (10 s), where the
/// old code waited out the attempt timeout three times (90 s).
#[tokio::test(start_paused = true)]
async fn a_silent_primary_is_given_up_on_at_the_first_token_timeout_and_not_retried() {
    let gw = start(script(vec![Fault::Hang; 3]), "", "").await;
    let started = Instant::now();
    let r = gw.ask(true).await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.target, "anthropic/claude-sonnet-4-5");
    assert_eq!(r.text, ANSWER);
    assert!(r.done, "{}", r.raw);
    assert_eq!(gw.calls(Route::OpenAi), 1, "the silent primary asked once");
    assert_eq!(gw.calls(Route::Anthropic), 1);
    println!("silent primary: the fallback answered after {took:?}");
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(11),
        "one first-token timeout (10 s), not three attempt timeouts: {took:?}"
    );
}

/// A stream that stalls after three tokens, on a route whose targets accept
/// a prefill: with the default `continue_on = "next"` the fallback
/// continues it after one idle timeout (30 s); `"same"` goes back to the
/// primary, which stalls again, and costs two.
#[tokio::test(start_paused = true)]
async fn a_stalled_stream_continues_on_the_next_target_after_one_idle_timeout() {
    let stalls = || script(vec![Fault::StallAfter { tokens: 3 }; 2]);

    let gw = start(stalls(), "", "accepts_prefill = true").await;
    let started = Instant::now();
    let r = gw.ask(true).await;
    let next = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.text, ANSWER, "the whole answer, no word twice");
    assert!(r.done, "complete: {}", r.raw);
    assert_eq!(
        gw.calls(Route::OpenAi),
        1,
        "the stalled target not asked again"
    );
    assert_eq!(gw.calls(Route::Anthropic), 1, "the next one continued");

    let gw = start(
        stalls(),
        r#"continue_on = "same""#,
        "accepts_prefill = true",
    )
    .await;
    let started = Instant::now();
    let r = gw.ask(true).await;
    let same = started.elapsed();
    assert_eq!(r.text, ANSWER);
    assert!(r.done, "{}", r.raw);
    assert_eq!(
        gw.calls(Route::OpenAi),
        3,
        "asked again after each stall, stalled again, then continued"
    );

    println!("stall mid-stream: continued after {next:?} (\"next\"), {same:?} (\"same\")");
    assert!(
        next >= Duration::from_secs(30) && next < Duration::from_secs(31),
        "one idle timeout: {next:?}"
    );
    assert!(
        same >= Duration::from_secs(60),
        "two idle timeouts: {same:?}"
    );
}

/// How long after it recovers a primary that was down for the first
/// 60 s, asked once a second, answers again: (when it recovered, when it
/// answered, calls to it while it was down). `target` is extra lines for
/// the targets (a breaker setting).
async fn flapping(target: &str) -> (Duration, Duration, u64) {
    let mut down = Scenario::default();
    down.openai.random = vec![RandomFault {
        probability: 1.0,
        fault: Fault::ServerError,
    }];
    let gw = start(down, "", target).await;
    let started = Instant::now();
    let mut healthy_at = None;
    let mut calls_while_down = 0;
    for _ in 0..300 {
        let now = started.elapsed();
        if healthy_at.is_none() && now >= Duration::from_secs(60) {
            calls_while_down = gw.calls(Route::OpenAi);
            gw.mock.set_scenario(Scenario::default());
            healthy_at = Some(now);
        }
        let r = gw.ask(false).await;
        assert_eq!(r.status, 200, "{}", r.raw);
        assert_eq!(r.text, ANSWER);
        if r.target == "openai/gpt-4o" {
            let healthy_at = healthy_at.expect("the primary answered while down");
            return (healthy_at, started.elapsed(), calls_while_down);
        }
        assert_eq!(r.target, "anthropic/claude-sonnet-4-5");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("the primary never answered again");
}

/// A primary down for 60 s, then healthy, asked once a second behind the
/// default breaker (opens after 5 failed requests; breaks of 5 s doubling
/// up to 15 s, up to a fifth off at random): while it is down the fallback
/// answers and each break costs one probe, a single call, never a retry
/// loop; once it is back, the first probe after the break in force finds
/// it, at most one 15 s break later (the 30 s breaks and retried probes
/// before never used it within the issue's 16 s window).
#[tokio::test(start_paused = true)]
async fn a_flapping_primary_is_probed_once_per_break_and_used_again_after_it_recovers() {
    for _ in 0..3 {
        let (healthy_at, back, calls) = flapping("").await;
        let after = back - healthy_at;
        println!(
            "flapping primary, default breaker: healthy at {healthy_at:?}, answering again \
             at {back:?} ({after:?} later); {calls} calls to it while down"
        );
        assert!(
            (5 * 3 + 3..=5 * 3 + 6).contains(&calls),
            "5 requests of 3 attempts open the circuit, then one call per probe \
             (breaks of about 5, 10, 15, 15... s): {calls}"
        );
        assert!(
            after <= Duration::from_secs(16),
            "one break of at most 15 s is the longest wait: {after:?}"
        );
    }
}

/// The same flapping primary behind a breaker whose breaks stop growing at
/// 10 s (`max_break_secs = 10`): used again within about 10 s of its
/// recovery, however long it was down.
#[tokio::test(start_paused = true)]
async fn a_capped_break_uses_a_flapping_primary_again_within_the_cap() {
    for _ in 0..3 {
        let (healthy_at, back, calls) = flapping("breaker = { max_break_secs = 10 }").await;
        let after = back - healthy_at;
        println!(
            "flapping primary, max_break_secs = 10: healthy at {healthy_at:?}, answering \
             again at {back:?} ({after:?} later); {calls} calls to it while down"
        );
        assert!(after <= Duration::from_secs(11), "{after:?}");
        assert!(calls <= 5 * 3 + 7, "one call per break: {calls}");
    }
}
