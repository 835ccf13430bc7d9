//! `POST /v1/embeddings` through the gateway over loopback (issue 23): the
//! answer in OpenAI's shape (floats or base64, in input order, with
//! usage), a 429 retried, a primary down answered by a fallback of the same
//! vector space, a hung attempt left after the embeddings' own 10 s, the
//! degrade cache serving while every target is down, and the errors, each
//! in OpenAI's shape. The upstreams are the mock on 127.0.0.1.

mod common;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use staunch_core::EmbeddingRequest;
use staunch_gateway::Gateway;
use staunch_gateway::config::Config;
use staunch_mock::{Fault, MockServer, Route, Scenario};
use staunch_providers::openai::wire::parse_embeddings;
use tokio::time::Instant;

type Http = Client<HttpConnector, Full<Bytes>>;

const MODEL: &str = "text-embedding-3-small";
const TEXTS: [&str; 3] = ["The quick brown fox", "jumps over", "the lazy dog"];

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: Value,
    raw: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The vectors of an answer, in input order, read by staunch's own
    /// OpenAI client (floats and base64 alike, every index checked).
    fn vectors(&self) -> Vec<Vec<f32>> {
        let inputs = self.body["data"].as_array().map_or(0, Vec::len);
        let request = EmbeddingRequest::new("any", vec![""; inputs]);
        let answer = parse_embeddings(&request, 200, &http::HeaderMap::new(), &self.raw)
            .unwrap_or_else(|e| panic!("{e}: {}", self.body));
        answer.vectors().map(<[f32]>::to_vec).collect()
    }
}

struct Running {
    base: String,
    http: Http,
    mock: MockServer,
    _gateway: Gateway,
}

impl Running {
    async fn post(&self, body: impl Into<Bytes>) -> Reply {
        let request = http::Request::post(format!("{}/v1/embeddings", self.base))
            .header("content-type", "application/json")
            .body(Full::new(body.into()))
            .expect("a request");
        let response = self.http.request(request).await.expect("an answer");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        Reply {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            raw: bytes,
        }
    }

    async fn embed(&self, body: Value) -> Reply {
        self.post(body.to_string()).await
    }

    /// Serves `faults` to the next embeddings requests, in order (the
    /// mock's script counts from its first request).
    fn script(&self, faults: Vec<Fault>) {
        let mut scenario = self.mock.scenario();
        let served = usize::try_from(self.embeddings_calls()).expect("a count");
        scenario.embeddings.script = vec![Fault::Ok; served];
        scenario.embeddings.script.extend(faults);
        self.mock.set_scenario(scenario);
    }

    fn embeddings_calls(&self) -> u64 {
        self.mock.stats().requests_to(Route::Embeddings)
    }
}

/// Two providers at the mock's OpenAI side: `primary` and `second` serve
/// the same model (one vector space), so the route falls back between them;
/// `anthropic` has no embeddings; `gpt-*` is a chat route of two models.
fn config_text(mock: &MockServer, extra_route: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[providers.primary]
kind = "openai-compatible"
base_url = "{openai}"

[providers.second]
kind = "openai-compatible"
base_url = "{openai}"

[providers.anthropic]
kind = "anthropic"
base_url = "{anthropic}"

[defaults.target]
retry = {{ max_retries = 2, base_delay_ms = 10, max_delay_ms = 50 }}

{extra_route}

[[routes]]
model = "text-embedding-*"
targets = [
  {{ provider = "primary", model = "{MODEL}" }},
  {{ provider = "anthropic", model = "claude-sonnet-4-5" }},
  {{ provider = "second", model = "{MODEL}" }},
]
  [routes.degrade]
  cache_ttl_secs = 600

[[routes]]
model = "claude-*"
targets = [{{ provider = "anthropic", model = "claude-sonnet-4-5" }}]

[[routes]]
model = "gpt-*"
targets = [
  {{ provider = "primary", model = "gpt-4o" }},
  {{ provider = "second", model = "gpt-4o-mini" }},
]
"#,
        openai = mock.openai_base_url(),
        anthropic = mock.anthropic_base_url(),
    )
}

async fn start_with(extra_route: &str) -> Running {
    let mock = MockServer::start(Scenario::default())
        .await
        .expect("a mock");
    let config = Config::parse(&config_text(&mock, extra_route), "embeddings.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    serve(Gateway::build(config).await.expect("a gateway"), mock).await
}

async fn start() -> Running {
    start_with("").await
}

async fn serve(gateway: Gateway, mock: MockServer) -> Running {
    let base = common::serve_in_process(&gateway).await;
    Running {
        base,
        http: Client::builder(TokioExecutor::new()).build_http(),
        mock,
        _gateway: gateway,
    }
}

fn assert_unit_vectors(vectors: &[Vec<f32>], dimensions: usize) {
    for v in vectors {
        assert_eq!(v.len(), dimensions);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
}

#[tokio::test]
async fn a_batch_is_answered_in_order_with_usage_as_floats_or_base64() {
    let gw = start().await;
    let floats = gw
        .embed(json!({"model": MODEL, "input": TEXTS, "encoding_format": "float", "user": "u-1"}))
        .await;
    assert_eq!(floats.status, 200, "{}", floats.body);
    assert_eq!(floats.header("content-type"), "application/json");
    assert_eq!(
        floats.header("x-staunch-target"),
        "primary/text-embedding-3-small"
    );
    assert_eq!(floats.header("x-staunch-tier"), "full");
    assert_eq!(floats.header("x-staunch-attempts"), "1");
    assert_eq!(floats.header("x-staunch-model"), MODEL);
    let body = &floats.body;
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], MODEL);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        assert!(item["embedding"].is_array());
    }
    // 19, 10 and 12 bytes at four bytes a token, rounded up per input.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 11, "total_tokens": 11})
    );
    let vectors = floats.vectors();
    assert_unit_vectors(&vectors, 16);
    assert_ne!(vectors[0], vectors[1]);
    // The extras went to the provider as the client sent them.
    let stats = gw.mock.stats();
    let sent = &stats.recent.back().expect("a request").body;
    assert_eq!(sent["user"], "u-1");
    assert_eq!(sent["input"], json!(TEXTS));

    let base64 = gw
        .embed(json!({"model": MODEL, "input": TEXTS, "encoding_format": "base64"}))
        .await;
    assert_eq!(base64.status, 200, "{}", base64.body);
    assert!(base64.body["data"][0]["embedding"].is_string());
    assert_eq!(base64.vectors(), vectors, "the same vectors, bit for bit");

    // No encoding named: floats, as OpenAI answers.
    let plain = gw.embed(json!({"model": MODEL, "input": TEXTS})).await;
    assert!(plain.body["data"][0]["embedding"].is_array());
    assert_eq!(plain.vectors(), vectors);

    // One string, token arrays and dimensions.
    let one = gw.embed(json!({"model": MODEL, "input": TEXTS[1]})).await;
    assert_eq!(one.vectors(), [vectors[1].clone()]);
    let tokens = gw
        .embed(json!({"model": MODEL, "input": [[1, 2, 3], [4, 5]], "dimensions": 8}))
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    assert_unit_vectors(&tokens.vectors(), 8);
    assert_eq!(tokens.body["usage"]["prompt_tokens"], 5);
}

#[tokio::test]
async fn a_rate_limit_is_retried_on_the_same_target() {
    let gw = start().await;
    gw.script(vec![Fault::RateLimit { retry_after: 0.05 }]);
    let reply = gw.embed(json!({"model": MODEL, "input": TEXTS})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("x-staunch-attempts"), "2");
    assert_eq!(
        reply.header("x-staunch-target"),
        "primary/text-embedding-3-small"
    );
    assert_eq!(reply.header("x-staunch-tier"), "full");
    assert_eq!(reply.vectors().len(), 3);
    assert_eq!(gw.embeddings_calls(), 2);
}

#[tokio::test]
async fn a_primary_down_is_answered_by_the_fallback_of_the_same_space() {
    let gw = start().await;
    let fresh = gw.embed(json!({"model": MODEL, "input": TEXTS})).await;
    // Three failures: the primary's attempt and its two retries. The
    // Anthropic target in between serves no embeddings and is not asked.
    gw.script(vec![Fault::ServerError; 3]);
    let other = ["a batch", "not cached"];
    let reply = gw.embed(json!({"model": MODEL, "input": other})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.header("x-staunch-target"),
        "second/text-embedding-3-small"
    );
    assert_eq!(reply.header("x-staunch-tier"), "reduced");
    assert_eq!(reply.header("x-staunch-attempts"), "4");
    assert_eq!(gw.embeddings_calls(), 1 + 4);
    assert_eq!(gw.mock.stats().requests_to(Route::Anthropic), 0);
    // The same model at the fallback: the vectors compare with the
    // primary's.
    let again = gw.embed(json!({"model": MODEL, "input": TEXTS})).await;
    assert_eq!(
        again.header("x-staunch-target"),
        "primary/text-embedding-3-small"
    );
    assert_eq!(again.vectors(), fresh.vectors());
}

/// An embedding attempt times out after 10 s by default (not chat's 30 s):
/// a hung primary is left after one attempt and the fallback answers.
#[tokio::test(start_paused = true)]
async fn a_hung_attempt_is_left_after_the_embeddings_ten_seconds() {
    let gw = start().await;
    gw.script(vec![Fault::Hang]);
    let started = Instant::now();
    let reply = gw.embed(json!({"model": MODEL, "input": TEXTS})).await;
    let took = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.header("x-staunch-target"),
        "second/text-embedding-3-small"
    );
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(11),
        "{took:?}"
    );
}

/// A target's own `attempt_timeout_secs` applies to its embeddings too.
#[tokio::test(start_paused = true)]
async fn a_targets_attempt_timeout_applies_to_embeddings() {
    let gw = start_with(
        r#"[[routes]]
model = "quick-embed"
targets = [
  { provider = "primary", model = "quick-embed", attempt_timeout_secs = 2 },
  { provider = "second", model = "quick-embed" },
]"#,
    )
    .await;
    gw.script(vec![Fault::Hang]);
    let started = Instant::now();
    let reply = gw
        .embed(json!({"model": "quick-embed", "input": "x"}))
        .await;
    let took = started.elapsed();
    assert_eq!(reply.header("x-staunch-target"), "second/quick-embed");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

/// Embeddings are deterministic, so the route's degrade cache serves the
/// same batch while every target is down, and nothing for another batch.
#[tokio::test]
async fn the_cache_serves_the_same_batch_while_everything_is_down() {
    let gw = start().await;
    let fresh = gw
        .embed(json!({"model": MODEL, "input": TEXTS, "encoding_format": "base64"}))
        .await;
    assert_eq!(fresh.status, 200);
    gw.script(vec![Fault::ServerError; 100]);

    let cached = gw
        .embed(json!({"model": MODEL, "input": TEXTS, "encoding_format": "base64"}))
        .await;
    assert_eq!(cached.status, 200, "{}", cached.body);
    assert_eq!(cached.header("x-staunch-tier"), "cached");
    assert!(!cached.header("x-staunch-warning").is_empty());
    assert_eq!(cached.vectors(), fresh.vectors());
    assert_eq!(
        cached.body["usage"]["prompt_tokens"], 0,
        "a cached answer bills nothing"
    );

    let other = gw
        .embed(json!({"model": MODEL, "input": ["never", "seen"]}))
        .await;
    assert_eq!(other.status, 502, "{}", other.body);
    assert_eq!(other.header("x-staunch-error-kind"), "server");
    assert_eq!(other.body["error"]["code"], "server");
    assert_eq!(other.body["error"]["type"], "server_error");
}

#[tokio::test]
async fn errors_come_in_openais_shape() {
    let gw = start().await;
    let expect = |reply: &Reply, status: u16, code: &str, says: &str| {
        assert_eq!(reply.status, status, "{}", reply.body);
        let error = &reply.body["error"];
        assert_eq!(error["code"], code, "{}", reply.body);
        assert!(error["type"].is_string(), "{}", reply.body);
        assert!(error.get("param").is_some(), "{}", reply.body);
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{says}: {message}");
    };

    // What the client sent wrong, refused before any upstream is asked.
    expect(&gw.post("{").await, 400, "invalid_json", "not valid JSON");
    expect(
        &gw.embed(json!({"input": "a"})).await,
        400,
        "invalid_type",
        "model",
    );
    expect(
        &gw.embed(json!({"model": MODEL, "input": 7})).await,
        400,
        "invalid_type",
        "input must be",
    );
    expect(
        &gw.embed(json!({"model": MODEL, "input": []})).await,
        400,
        "invalid_value",
        "input: at least one input",
    );
    expect(
        &gw.embed(json!({"model": MODEL, "input": "a", "dimensions": 0}))
            .await,
        400,
        "invalid_value",
        "dimensions",
    );
    expect(
        &gw.embed(json!({"model": MODEL, "input": "a", "encoding_format": "int8"}))
            .await,
        400,
        "invalid_value",
        "encoding_format",
    );
    assert_eq!(gw.embeddings_calls(), 0);

    // Routes that serve no embeddings say why.
    let anthropic = gw.embed(json!({"model": "claude-3", "input": "a"})).await;
    expect(
        &anthropic,
        400,
        "embeddings_unsupported",
        "has an embeddings API",
    );
    let chat = gw.embed(json!({"model": "gpt-4o", "input": "a"})).await;
    expect(
        &chat,
        400,
        "embeddings_unsupported",
        "primary/gpt-4o and second/gpt-4o-mini name different models",
    );
    let nowhere = gw
        .embed(json!({"model": "nomic-embed", "input": "a"}))
        .await;
    expect(&nowhere, 404, "model_not_found", "nomic-embed");
    assert_eq!(gw.embeddings_calls(), 0);

    // A batch over the route's token budget is refused before any call.
    let gw = start_with(
        r#"[[routes]]
model = "small-embed"
targets = [{ provider = "primary", model = "small-embed" }]
budget = { per_request_tokens = 10 }"#,
    )
    .await;
    let big = gw
        .embed(json!({"model": "small-embed", "input": ["word ".repeat(100)]}))
        .await;
    expect(&big, 429, "budget_exhausted", "");
    assert_eq!(gw.embeddings_calls(), 0);

    // The provider's refusal of the request passes through, unretried.
    gw.script(vec![Fault::ContextOverflow]);
    let overflow = gw
        .embed(json!({"model": "small-embed", "input": "a"}))
        .await;
    expect(&overflow, 400, "context_length_exceeded", "");
    assert_eq!(
        overflow.header("x-staunch-error-kind"),
        "context_length_exceeded"
    );
    assert_eq!(gw.embeddings_calls(), 1);
}

/// The built-in configuration (no file) serves embeddings from the mock.
#[tokio::test]
async fn the_mock_configuration_serves_embeddings() {
    let gateway = Gateway::build(Config::mock()).await.expect("a gateway");
    let mock = MockServer::start(Scenario::default())
        .await
        .expect("a mock");
    let gw = serve(gateway, mock).await;
    let reply = gw.embed(json!({"model": MODEL, "input": TEXTS})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("x-staunch-target"), "mock/mock-embedding");
    assert_eq!(reply.body["model"], "mock-embedding");
    assert_unit_vectors(&reply.vectors(), 16);
    // Its chat route's two models are two vector spaces.
    let chat = gw
        .embed(json!({"model": "mock-primary", "input": "a"}))
        .await;
    assert_eq!(chat.status, 400, "{}", chat.body);
    assert_eq!(chat.body["error"]["code"], "embeddings_unsupported");
}

/// A batch larger than a target takes (`max_batch_inputs`; the mock, like
/// OpenAI, refuses more inputs than its limit with a 400) goes out in parts
/// that fit, and the client gets one answer in input order, the vectors
/// each input gets alone.
#[tokio::test]
async fn a_batch_over_a_targets_limit_is_split_and_joined_in_order() {
    let gw = start_with(
        r#"[[routes]]
model = "small-batches"
targets = [{ provider = "primary", model = "text-embedding-3-small", max_batch_inputs = 2 }]
"#,
    )
    .await;
    let mut scenario = gw.mock.scenario();
    scenario.embedding_max_inputs = 2;
    gw.mock.set_scenario(scenario);
    let inputs = ["one", "two", "three", "four", "five"];

    // The route without the limit is refused by the target.
    let refused = gw.embed(json!({"model": MODEL, "input": inputs})).await;
    assert_eq!(refused.status, 400, "{}", refused.body);

    let before = gw.embeddings_calls();
    let reply = gw
        .embed(json!({"model": "small-batches", "input": inputs}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(gw.embeddings_calls() - before, 3, "parts of 2, 2 and 1");
    let indices: Vec<u64> = reply.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["index"].as_u64().expect("an index"))
        .collect();
    assert_eq!(indices, [0, 1, 2, 3, 4]);
    let vectors = reply.vectors();
    for (i, input) in inputs.iter().enumerate() {
        let alone = gw
            .embed(json!({"model": "small-batches", "input": [input]}))
            .await;
        assert_eq!(vectors[i], alone.vectors()[0], "input {i}");
    }
}

const GEMINI_MODEL: &str = "gemini-embedding-001";

/// A gateway whose route `gemini-embedding-*` has one target on a `gemini`
/// provider at the mock's Gemini side, and `retries` retries.
async fn start_gemini(retries: u32, script: Vec<Fault>) -> Running {
    let scenario = Scenario {
        gemini_embeddings: staunch_mock::RouteScenario {
            script,
            ..Default::default()
        },
        ..Scenario::default()
    };
    let mock = MockServer::start(scenario).await.expect("a mock");
    let text = format!(
        r#"
[providers.gem]
kind = "gemini"
base_url = "{gemini}"

[[routes]]
model = "gemini-embedding-*"
targets = [
  {{ provider = "gem", model = "{GEMINI_MODEL}", max_batch_inputs = 100, retry = {{ max_retries = {retries}, base_delay_ms = 10, max_delay_ms = 50 }} }},
]
"#,
        gemini = mock.gemini_base_url(),
    );
    let config = Config::parse(&text, "gemini.toml").unwrap_or_else(|e| panic!("{e}"));
    serve(Gateway::build(config).await.expect("a gateway"), mock).await
}

/// An OpenAI client's embeddings answered by a Gemini provider: one
/// `batchEmbedContents` call, the vectors in input order at the asked
/// size (base64 written by the gateway from Gemini's floats), the usage
/// the gateway's estimate (Gemini counts none).
#[tokio::test]
async fn an_openai_client_is_answered_by_a_gemini_provider() {
    let gw = start_gemini(2, Vec::new()).await;
    let reply = gw
        .embed(json!({"model": GEMINI_MODEL, "input": TEXTS, "dimensions": 8}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("x-staunch-target"), "gem/gemini-embedding-001");
    assert_eq!(reply.body["object"], "list");
    assert_eq!(reply.body["model"], GEMINI_MODEL);
    // 19, 10 and 12 bytes at four bytes a token, rounded up per input.
    assert_eq!(
        reply.body["usage"],
        json!({"prompt_tokens": 11, "total_tokens": 11})
    );
    let vectors = reply.vectors();
    assert_eq!(vectors.len(), 3);
    assert_unit_vectors(&vectors, 8);

    // What Gemini was asked: one batch, each input its own request.
    let stats = gw.mock.stats();
    assert_eq!(stats.requests_to(Route::GeminiEmbeddings), 1);
    let sent = &stats.recent.back().expect("a request").body;
    let requests = sent["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), 3);
    for (request, text) in requests.iter().zip(TEXTS) {
        assert_eq!(request["model"], "models/gemini-embedding-001");
        assert_eq!(request["content"]["parts"][0]["text"], text);
        assert_eq!(request["outputDimensionality"], 8);
    }

    // In input order: each input alone gets the same vector.
    for (i, text) in TEXTS.iter().enumerate() {
        let alone = gw
            .embed(json!({"model": GEMINI_MODEL, "input": text, "dimensions": 8}))
            .await;
        assert_eq!(alone.vectors(), [vectors[i].clone()], "input {i}");
    }

    // Base64, as OpenAI would write it, of the same floats.
    let base64 = gw
        .embed(json!({"model": GEMINI_MODEL, "input": TEXTS, "dimensions": 8, "encoding_format": "base64"}))
        .await;
    assert_eq!(base64.status, 200, "{}", base64.body);
    assert!(base64.body["data"][0]["embedding"].is_string());
    assert_eq!(base64.vectors(), vectors);

    // Token inputs can't be said to Gemini: refused, nothing sent.
    let before = gw.mock.stats().requests_to(Route::GeminiEmbeddings);
    let tokens = gw
        .embed(json!({"model": GEMINI_MODEL, "input": [[1, 2, 3]]}))
        .await;
    assert!(tokens.status >= 400, "{}", tokens.body);
    let message = tokens.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("token ids"), "{}", tokens.body);
    assert_eq!(gw.mock.stats().requests_to(Route::GeminiEmbeddings), before);
}

/// Gemini's 429 `RESOURCE_EXHAUSTED` with a `RetryInfo` reaches the OpenAI
/// client as a 429 with `retry-after`; with retries, it is retried and
/// answered.
#[tokio::test]
async fn a_gemini_rate_limit_is_a_429_with_retry_after() {
    let gw = start_gemini(0, vec![Fault::RateLimit { retry_after: 7.0 }]).await;
    let reply = gw
        .embed(json!({"model": GEMINI_MODEL, "input": TEXTS}))
        .await;
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert_eq!(reply.header("retry-after"), "7");
    assert_eq!(reply.header("x-staunch-error-kind"), "rate_limited");
    assert!(reply.body["error"]["message"].is_string(), "{}", reply.body);

    let gw = start_gemini(2, vec![Fault::RateLimit { retry_after: 0.05 }]).await;
    let reply = gw
        .embed(json!({"model": GEMINI_MODEL, "input": TEXTS}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("x-staunch-attempts"), "2");
    assert_unit_vectors(&reply.vectors(), 16);
}
