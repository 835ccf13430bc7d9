//! The mock's `POST /v1/embeddings`: deterministic unit vectors in input
//! order, `dimensions` and `encoding_format` honoured, OpenAI's 400s for
//! what OpenAI refuses (a batch over the limit among them), and the same
//! fault scripts as chat, over loopback with hyper's client.

use base64::Engine as _;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use staunch_mock::{Fault, MockServer, Outage, Route, RouteScenario, Scenario};
use std::time::Duration;

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    bytes: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

/// POSTs `body` to `/v1/embeddings`; `Err` when the connection closes
/// without a whole answer.
async fn embed(server: &MockServer, body: &Value) -> Result<Answer, hyper::Error> {
    let addr = server.addr();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::post("/v1/embeddings")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test-TOPSECRET")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        headers,
        bytes,
    })
}

async fn server_with(script: Vec<Fault>) -> MockServer {
    let scenario = Scenario {
        embeddings: RouteScenario {
            script,
            ..RouteScenario::default()
        },
        ..Scenario::default()
    };
    MockServer::start(scenario).await.unwrap()
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .expect("an array of numbers")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[tokio::test]
async fn vectors_come_in_input_order_with_usage() {
    let server = server_with(vec![]).await;
    let body =
        json!({"model": "text-embedding-3-small", "input": ["alpha", "beta", "gamma delta"]});
    let answer = embed(&server, &body).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["x-request-id"], "req_mock_1");
    let json = answer.json();
    assert_eq!(json["object"], "list");
    assert_eq!(json["model"], "text-embedding-3-small");
    let data = json["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        let v = floats(&item["embedding"]);
        assert_eq!(v.len(), staunch_mock::DEFAULT_EMBEDDING_DIMENSIONS as usize);
        assert!((norm(&v) - 1.0).abs() < 1e-4);
    }
    // 5, 4 and 11 bytes: 2 + 1 + 3 tokens.
    assert_eq!(
        json["usage"],
        json!({"prompt_tokens": 6, "total_tokens": 6})
    );
    let stats = server.stats();
    assert_eq!(stats.requests_to(Route::Embeddings), 1);
    assert_eq!(stats.requests_to(Route::OpenAi), 0);
    assert_eq!(stats.recent[0].route, Route::Embeddings);
    assert_eq!(stats.recent[0].body["input"][2], "gamma delta");
}

#[tokio::test]
async fn the_same_input_gets_the_same_vector() {
    let server = server_with(vec![]).await;
    let one = embed(&server, &json!({"model": "m", "input": "same"}))
        .await
        .unwrap()
        .json();
    let batch = embed(&server, &json!({"model": "m", "input": ["other", "same"]}))
        .await
        .unwrap()
        .json();
    let other_model = embed(&server, &json!({"model": "n", "input": "same"}))
        .await
        .unwrap()
        .json();
    assert_eq!(one["data"][0]["embedding"], batch["data"][1]["embedding"]);
    assert_ne!(batch["data"][0]["embedding"], batch["data"][1]["embedding"]);
    assert_ne!(
        one["data"][0]["embedding"],
        other_model["data"][0]["embedding"]
    );
}

#[tokio::test]
async fn dimensions_and_base64_are_honoured() {
    let server = server_with(vec![]).await;
    let float = embed(
        &server,
        &json!({"model": "m", "input": ["x"], "dimensions": 64, "encoding_format": "float"}),
    )
    .await
    .unwrap()
    .json();
    let full = floats(&float["data"][0]["embedding"]);
    assert_eq!(full.len(), 64);

    let b64 = embed(
        &server,
        &json!({"model": "m", "input": ["x"], "dimensions": 64, "encoding_format": "base64"}),
    )
    .await
    .unwrap()
    .json();
    let text = b64["data"][0]["embedding"]
        .as_str()
        .expect("a base64 string");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded.len(), 64);
    for (a, b) in decoded.iter().zip(&full) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }

    // A shortened vector is the start of the full one, at unit length.
    let short = embed(
        &server,
        &json!({"model": "m", "input": "x", "dimensions": 8}),
    )
    .await
    .unwrap()
    .json();
    let short = floats(&short["data"][0]["embedding"]);
    let scale = norm(&full[..8]);
    for (s, f) in short.iter().zip(&full[..8]) {
        assert!((s - f / scale).abs() < 1e-5);
    }
}

#[tokio::test]
async fn token_arrays_are_inputs_too() {
    let server = server_with(vec![]).await;
    let json = embed(&server, &json!({"model": "m", "input": [[1, 2, 3], [4]]}))
        .await
        .unwrap()
        .json();
    assert_eq!(json["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["usage"]["prompt_tokens"], 4);
    let single = embed(&server, &json!({"model": "m", "input": [1, 2, 3]}))
        .await
        .unwrap()
        .json();
    assert_eq!(single["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(single["data"][0]["embedding"], json["data"][0]["embedding"]);
}

#[tokio::test]
async fn a_batch_over_the_limit_is_openais_400() {
    let scenario = Scenario {
        embedding_max_inputs: 3,
        ..Scenario::default()
    };
    let server = MockServer::start(scenario).await.unwrap();
    let ok = embed(&server, &json!({"model": "m", "input": ["a", "b", "c"]}))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let too_many = embed(
        &server,
        &json!({"model": "m", "input": ["a", "b", "c", "d"]}),
    )
    .await
    .unwrap();
    assert_eq!(too_many.status, 400);
    let error = &too_many.json()["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("Too many inputs. The max number of inputs is 3."),
        "{error}"
    );
}

#[tokio::test]
async fn bad_requests_get_a_clear_400_and_are_counted() {
    let server = server_with(vec![]).await;
    for body in [
        json!({"model": "m"}),
        json!({"model": "m", "input": []}),
        json!({"model": "m", "input": [1, "a"]}),
        json!({"model": "m", "input": "a", "dimensions": 0}),
        json!({"model": "m", "input": "a", "encoding_format": "int8"}),
    ] {
        let answer = embed(&server, &body).await.unwrap();
        assert_eq!(answer.status, 400, "{body}");
        let json = answer.json();
        assert_eq!(json["error"]["type"], "invalid_request_error", "{body}");
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // A body that is not JSON at all.
    let tcp_body = Value::String("not an object".into());
    assert_eq!(embed(&server, &tcp_body).await.unwrap().status, 400);
    assert_eq!(server.stats().requests_to(Route::Embeddings), 6);
}

#[tokio::test]
async fn status_faults_speak_openais_errors() {
    let server = server_with(vec![
        Fault::RateLimit { retry_after: 2.0 },
        Fault::Overloaded { retry_after: None },
        Fault::ServerError,
        Fault::Quota,
        Fault::Unauthorized,
        Fault::ContextOverflow,
        Fault::BadGateway,
        Fault::Status {
            status: 418,
            body: "{\"error\": {\"message\": \"teapot\"}}".into(),
            headers: [("x-custom".to_owned(), "1".to_owned())].into(),
        },
        Fault::Ok,
    ])
    .await;
    let body = json!({"model": "text-embedding-3-small", "input": ["a"]});
    let rate = embed(&server, &body).await.unwrap();
    assert_eq!(rate.status, 429);
    assert_eq!(rate.headers["retry-after"], "2");
    assert_eq!(rate.headers["retry-after-ms"], "2000");
    assert_eq!(rate.json()["error"]["code"], "rate_limit_exceeded");
    assert_eq!(embed(&server, &body).await.unwrap().status, 503);
    assert_eq!(embed(&server, &body).await.unwrap().status, 500);
    let quota = embed(&server, &body).await.unwrap();
    assert_eq!(
        (quota.status, quota.json()["error"]["code"].clone()),
        (429, json!("insufficient_quota"))
    );
    assert_eq!(embed(&server, &body).await.unwrap().status, 401);
    let overflow = embed(&server, &body).await.unwrap();
    assert_eq!(overflow.status, 400);
    assert_eq!(overflow.json()["error"]["code"], "context_length_exceeded");
    let gateway = embed(&server, &body).await.unwrap();
    assert_eq!(gateway.status, 502);
    let custom = embed(&server, &body).await.unwrap();
    assert_eq!(
        (custom.status, &custom.headers["x-custom"]),
        (418, &"1".parse().unwrap())
    );
    assert_eq!(embed(&server, &body).await.unwrap().status, 200);
    assert_eq!(server.stats().served("rate_limit"), 1);
}

#[tokio::test]
async fn body_faults_break_the_answer() {
    let server = server_with(vec![Fault::Malformed, Fault::CutJson, Fault::Truncated]).await;
    let body = json!({"model": "m", "input": ["a", "b"]});
    let malformed = embed(&server, &body).await.unwrap();
    assert_eq!(malformed.status, 200);
    assert!(serde_json::from_slice::<Value>(&malformed.bytes).is_err());
    let cut = embed(&server, &body).await.unwrap();
    assert_eq!(cut.status, 200);
    let err = serde_json::from_slice::<Value>(&cut.bytes).unwrap_err();
    assert!(err.is_eof(), "{err}");
    assert!(embed(&server, &body).await.is_err(), "the body was cut");
}

#[tokio::test]
async fn hang_reset_and_latency() {
    let server = server_with(vec![
        Fault::Reset,
        Fault::Hang,
        Fault::Latency { ms: 50 },
        Fault::CutAfter { tokens: 1 },
        Fault::ContentFilter,
    ])
    .await;
    let body = json!({"model": "m", "input": "a"});
    assert!(embed(&server, &body).await.is_err());
    let hung = tokio::time::timeout(Duration::from_millis(200), embed(&server, &body)).await;
    assert!(hung.is_err(), "a hang never answers");
    let started = std::time::Instant::now();
    assert_eq!(embed(&server, &body).await.unwrap().status, 200);
    assert!(started.elapsed() >= Duration::from_millis(50));
    // Stream and content faults do not apply: the normal answer.
    for _ in 0..2 {
        let answer = embed(
            &server,
            &json!({"model": "m", "input": "a", "stream": true}),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["data"][0]["index"], 0);
    }
}

#[tokio::test]
async fn context_windows_and_outages_apply() {
    let mut scenario = Scenario::default();
    scenario.context_windows.insert("small".into(), 4);
    scenario.outage = Some(Outage {
        start_ms: 0,
        end_ms: 60_000,
        routes: vec!["openai".into()],
    });
    let server = MockServer::start(scenario.clone()).await.unwrap();
    let down = embed(&server, &json!({"model": "m", "input": "a"}))
        .await
        .unwrap();
    assert_eq!(down.status, 503, "an openai outage covers its embeddings");

    scenario.outage = None;
    server.set_scenario(scenario);
    // Each input is checked on its own: 16 bytes is 4 tokens, 17 is 5.
    let fits = embed(
        &server,
        &json!({"model": "small", "input": ["x".repeat(16), "y".repeat(16)]}),
    )
    .await
    .unwrap();
    assert_eq!(fits.status, 200);
    let over = embed(
        &server,
        &json!({"model": "small", "input": ["x", "y".repeat(17)]}),
    )
    .await
    .unwrap();
    assert_eq!(over.status, 400);
    assert_eq!(over.json()["error"]["code"], "context_length_exceeded");
}

#[test]
fn scenarios_read_and_check_the_embedding_settings() {
    let scenario: Scenario = toml::from_str(
        r#"
        embedding_dimensions = 32
        embedding_max_inputs = 10
        [embeddings]
        script = [{ type = "rate_limit", retry_after = 1 }]
        "#,
    )
    .unwrap();
    assert_eq!(scenario.embedding_dimensions, 32);
    assert_eq!(scenario.embeddings.script.len(), 1);
    assert!(scenario.validate().is_ok());
    for bad in [
        Scenario {
            embedding_dimensions: 0,
            ..Scenario::default()
        },
        Scenario {
            embedding_max_inputs: 0,
            ..Scenario::default()
        },
    ] {
        assert!(bad.validate().is_err());
    }
}
