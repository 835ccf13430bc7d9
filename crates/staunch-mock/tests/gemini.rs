//! The Gemini dialect over real HTTP on loopback: `generateContent` and
//! `streamGenerateContent?alt=sse` answers (text, function calls, JSON,
//! prefills), Google's error bodies, and each stream fault in its frames.

mod support;

use serde_json::{Value, json};
use staunch_mock::{Fault, MockServer, Route, RouteScenario, Scenario, StreamErrorKind};
use std::time::Duration;
use support::{End, PATIENCE, Sse, is_weather, post, post_with, stream, weather_schema, with};

const MODEL: &str = "gemini-2.5-flash";
const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
const STREAM: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";

fn ask(extra: Value) -> Value {
    with(
        json!({
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [{"role": "user", "parts": [{"text": "What is the weather like in Paris today, please?"}]}]
        }),
        extra,
    )
}

/// The weather tool as Gemini declares it: an OpenAPI-subset schema.
fn tools() -> Value {
    json!({"tools": [{"functionDeclarations": [{
        "name": "get_weather",
        "description": "The weather forecast",
        "parameters": {
            "type": "OBJECT",
            "properties": {
                "city": {"type": "STRING"},
                "days": {"type": "INTEGER", "minimum": 2, "maximum": 7},
                "unit": {"type": "STRING", "enum": ["celsius", "fahrenheit"], "nullable": true}
            },
            "required": ["city", "days"]
        }
    }]}]})
}

async fn server(script: Vec<Fault>) -> MockServer {
    MockServer::start(Scenario {
        stream_token_ms: 0,
        gemini: RouteScenario {
            script,
            ..RouteScenario::default()
        },
        ..Scenario::default()
    })
    .await
    .unwrap()
}

/// A stream's chunks: no event names, every frame JSON (the malformed
/// ones aside, returned apart), no `[DONE]`.
fn frames(events: &[Sse]) -> (Vec<Value>, Vec<String>) {
    let mut chunks = Vec::new();
    let mut malformed = Vec::new();
    for event in events {
        assert!(event.name.is_none(), "Gemini frames have no names");
        assert_ne!(event.data, "[DONE]");
        match event.json() {
            Some(chunk) => chunks.push(chunk),
            None => malformed.push(event.data.clone()),
        }
    }
    (chunks, malformed)
}

fn text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect()
}

/// The chunks carrying content (text or a call).
fn content(chunks: &[Value]) -> usize {
    chunks
        .iter()
        .filter(|c| {
            let part = &c["candidates"][0]["content"]["parts"][0];
            part["text"].as_str().is_some_and(|t| !t.is_empty())
                || part.get("functionCall").is_some()
        })
        .count()
}

fn finish(chunks: &[Value]) -> Option<&str> {
    chunks
        .iter()
        .find_map(|c| c["candidates"][0]["finishReason"].as_str())
}

#[tokio::test]
async fn a_plain_answer_names_the_paths_model() {
    let server = server(vec![]).await;
    let path = format!("{GENERATE}?key=AIza-secret");
    let answer = post_with(
        &server,
        &path,
        &[("x-goog-api-key", "AIza-secret")],
        &ask(json!({})),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("retry-after"), "");
    let body = answer.json().await;
    let candidate = &body["candidates"][0];
    assert_eq!(candidate["content"]["role"], "model", "{body}");
    assert_eq!(
        candidate["content"]["parts"],
        json!([{"text": "mock answer to: What is the weather like in Paris today, please?"}])
    );
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(body["modelVersion"], MODEL);
    assert_eq!(body["responseId"], "mock_1");
    let usage = &body["usageMetadata"];
    let (prompt, answer) = (
        usage["promptTokenCount"].as_u64().unwrap(),
        usage["candidatesTokenCount"].as_u64().unwrap(),
    );
    assert!(prompt > 8 && answer > 5, "{usage}");
    assert_eq!(usage["totalTokenCount"], prompt + answer);

    let stats = server.stats();
    assert_eq!(stats.requests_to(Route::Gemini), 1);
    assert_eq!(Route::Gemini.provider(), "gemini");
    let recorded = &stats.recent[0];
    assert_eq!(recorded.route, Route::Gemini);
    assert_eq!(recorded.headers["x-goog-api-key"], "[present]");
    assert_eq!(recorded.body["contents"][0]["role"], "user");
    assert_eq!(server.gemini_base_url(), server.url());

    // A trailing model turn is a prefill: only the rest of the answer.
    let prefilled = json!({"contents": [
        {"role": "user", "parts": [{"text": "What is the weather like in Paris today, please?"}]},
        {"role": "model", "parts": [{"text": "mock answer to: What is"}]}
    ]});
    let body = post(&server, GENERATE, &prefilled).await.json().await;
    assert_eq!(
        body["candidates"][0]["content"]["parts"][0]["text"],
        " the weather like in Paris today, please?"
    );

    // maxOutputTokens cuts the text: MAX_TOKENS.
    let short = ask(json!({"generationConfig": {"maxOutputTokens": 3}}));
    let body = post(&server, GENERATE, &short).await.json().await;
    assert_eq!(
        body["candidates"][0]["content"]["parts"][0]["text"],
        "mock answer to:"
    );
    assert_eq!(body["candidates"][0]["finishReason"], "MAX_TOKENS");
}

#[tokio::test]
async fn a_function_call_then_its_response() {
    let server = server(vec![]).await;
    let body = post(&server, GENERATE, &ask(tools())).await.json().await;
    let candidate = &body["candidates"][0];
    assert_eq!(candidate["finishReason"], "STOP", "{body}");
    let parts = candidate["content"]["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 1);
    let call = &parts[0]["functionCall"];
    assert_eq!(call["name"], "get_weather");
    assert!(
        is_weather(&call["args"]),
        "valid for the OpenAPI schema: {call}"
    );

    // The function's response comes back as a user turn.
    let round = with(
        tools(),
        json!({"contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [{"functionCall": call.clone()}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "21C and sunny"}}}]}
        ]}),
    );
    let body = post(&server, GENERATE, &round).await.json().await;
    assert_eq!(
        body["candidates"][0]["content"]["parts"][0]["text"],
        "Tool result: 21C and sunny"
    );

    // NONE never calls; ANY with a name calls that one, or is a 400 when
    // no declaration has it.
    let none = with(
        ask(tools()),
        json!({"toolConfig": {"functionCallingConfig": {"mode": "NONE"}}}),
    );
    let body = post(&server, GENERATE, &none).await.json().await;
    assert!(body["candidates"][0]["content"]["parts"][0]["text"].is_string());
    let unknown = with(
        ask(tools()),
        json!({"toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}}}),
    );
    let answer = post(&server, GENERATE, &unknown).await;
    assert_eq!(answer.status, 400);
    let error = answer.json().await;
    assert_eq!(error["error"]["status"], "INVALID_ARGUMENT", "{error}");
    assert_eq!(error["error"]["code"], 400);
}

#[tokio::test]
async fn a_json_schema_answer() {
    let server = server(vec![]).await;
    for config in [
        json!({"responseMimeType": "application/json", "responseJsonSchema": weather_schema()}),
        json!({"responseMimeType": "application/json", "responseSchema": tools()["tools"][0]["functionDeclarations"][0]["parameters"]}),
    ] {
        let body = post(&server, GENERATE, &ask(json!({"generationConfig": config})))
            .await
            .json()
            .await;
        let text = body["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .unwrap();
        let answer: Value = serde_json::from_str(text).unwrap();
        assert!(is_weather(&answer), "{answer}");
    }
}

#[tokio::test]
async fn a_stream_is_the_answer_in_chunks_and_ends_with_the_finish() {
    let server = server(vec![]).await;
    let whole = post(&server, GENERATE, &ask(json!({}))).await.json().await;
    let mut answer = stream(&server, STREAM, &ask(json!({}))).await;
    let (events, end) = answer.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let (chunks, malformed) = frames(&events);
    assert!(malformed.is_empty());
    assert!(content(&chunks) > 5, "token-sized pieces");
    assert_eq!(
        text(&chunks),
        whole["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .unwrap()
    );
    let (last, rest) = chunks.split_last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP", "{last}");
    assert_eq!(last["usageMetadata"], whole["usageMetadata"]);
    for chunk in rest {
        assert!(
            chunk["candidates"][0].get("finishReason").is_none(),
            "{chunk}"
        );
        assert_eq!(chunk["modelVersion"], MODEL);
        assert_eq!(chunk["responseId"], "mock_2");
    }

    // A function call comes whole in one chunk, then the finish.
    let mut answer = stream(&server, STREAM, &ask(tools())).await;
    let (chunks, _) = frames(&answer.events(PATIENCE).await.0);
    assert_eq!(chunks.len(), 2);
    let call = &chunks[0]["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(call["name"], "get_weather");
    assert!(is_weather(&call["args"]));
    assert_eq!(finish(&chunks), Some("STOP"));
}

#[tokio::test]
async fn errors_speak_googles_format() {
    let server = server(vec![
        Fault::RateLimit { retry_after: 2.0 },
        Fault::Quota,
        Fault::Overloaded {
            retry_after: Some(1.5),
        },
        Fault::ServerError,
        Fault::Unauthorized,
        Fault::ContextOverflow,
    ])
    .await;
    let answer = post(&server, GENERATE, &ask(json!({}))).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("retry-after"), "", "the delay is in the body");
    let error = answer.json().await["error"].clone();
    assert_eq!(error["code"], 429);
    assert_eq!(error["status"], "RESOURCE_EXHAUSTED");
    let details = error["details"].as_array().unwrap();
    let detail = |kind: &str| {
        details
            .iter()
            .find(|d| d["@type"] == format!("type.googleapis.com/google.rpc.{kind}"))
            .cloned()
    };
    assert_eq!(detail("RetryInfo").unwrap()["retryDelay"], "2s");
    let quota = detail("QuotaFailure").unwrap();
    assert!(
        quota["violations"][0]["quotaId"]
            .as_str()
            .unwrap()
            .contains("PerMinute")
    );
    assert_eq!(quota["violations"][0]["quotaDimensions"]["model"], MODEL);

    let error = post(&server, GENERATE, &ask(json!({}))).await.json().await["error"].clone();
    assert_eq!(
        (error["code"].as_u64(), error["status"].as_str()),
        (Some(429), Some("RESOURCE_EXHAUSTED"))
    );
    let details = error["details"].as_array().unwrap();
    assert!(
        details
            .iter()
            .all(|d| d["@type"] != "type.googleapis.com/google.rpc.RetryInfo")
    );
    assert!(
        details[0]["violations"][0]["quotaId"]
            .as_str()
            .unwrap()
            .contains("PerDay")
    );

    let expected = [
        (503, "UNAVAILABLE"),
        (500, "INTERNAL"),
        (401, "UNAUTHENTICATED"),
        (400, "INVALID_ARGUMENT"),
    ];
    let mut last = Value::Null;
    for (status, name) in expected {
        let answer = post(&server, GENERATE, &ask(json!({}))).await;
        assert_eq!(answer.status, status);
        last = answer.json().await;
        assert_eq!(last["error"]["code"], status, "{last}");
        assert_eq!(last["error"]["status"], name, "{last}");
        if status == 503 {
            assert_eq!(last["error"]["details"][0]["retryDelay"], "1.5s");
        }
    }
    let message = last["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("The input token count (")
            && message.ends_with("exceeds the maximum number of tokens allowed (1048576)."),
        "{message}"
    );

    // A prompt past the model's window gets the overflow with the window.
    let mut scenario = Scenario::default();
    scenario.context_windows.insert(MODEL.to_owned(), 5);
    server.set_scenario(scenario);
    let answer = post(&server, GENERATE, &ask(json!({}))).await;
    assert_eq!(answer.status, 400);
    let message = answer.json().await["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.ends_with("the maximum number of tokens allowed (5)."),
        "{message}"
    );
}

#[tokio::test]
async fn stream_faults_in_gemini_frames() {
    let server = server(vec![
        Fault::CutAfter { tokens: 2 },
        Fault::ErrorEventAt {
            n: 2,
            kind: StreamErrorKind::Overloaded,
        },
        Fault::NoTerminator,
        Fault::MalformedEventAt { n: 1 },
        Fault::ContentFilter,
        Fault::ErrorFirstFrame,
    ])
    .await;
    let body = ask(json!({}));

    let mut answer = stream(&server, STREAM, &body).await;
    let (events, end) = answer.events(PATIENCE).await;
    assert_eq!(end, End::Broken);
    let (chunks, _) = frames(&events);
    assert_eq!(content(&chunks), 2);
    assert_eq!(finish(&chunks), None);

    let mut answer = stream(&server, STREAM, &body).await;
    let (events, end) = answer.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let (chunks, _) = frames(&events);
    assert_eq!(content(&chunks), 2);
    let error = &chunks.last().unwrap()["error"];
    assert_eq!(error["code"], 503, "{error}");
    assert_eq!(error["status"], "UNAVAILABLE");
    assert_eq!(finish(&chunks), None);

    let mut answer = stream(&server, STREAM, &body).await;
    let (events, end) = answer.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let (chunks, _) = frames(&events);
    assert!(content(&chunks) > 5);
    assert_eq!(finish(&chunks), None, "the finish chunk is left out");
    assert!(chunks.iter().all(|c| c.get("usageMetadata").is_none()));

    let mut answer = stream(&server, STREAM, &body).await;
    let (events, end) = answer.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let (chunks, malformed) = frames(&events);
    assert_eq!(malformed.len(), 1);
    assert!(malformed[0].starts_with("{\"candidates\""));
    assert_eq!(events.iter().position(|e| e.json().is_none()), Some(1));
    assert!(text(&chunks).starts_with("mock answer to: What is"));
    assert_eq!(finish(&chunks), Some("STOP"));

    let mut answer = stream(&server, STREAM, &body).await;
    let (chunks, _) = frames(&answer.events(PATIENCE).await.0);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0]["candidates"][0]["finishReason"], "SAFETY");
    assert!(chunks[0]["candidates"][0].get("content").is_none());

    let mut answer = stream(&server, STREAM, &body).await;
    let (chunks, _) = frames(&answer.events(PATIENCE).await.0);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0]["error"]["status"], "UNAVAILABLE");

    // Not streamed, the stream faults leave the answer alone; the content
    // filter is a SAFETY stop.
    let server = self::server(vec![Fault::CutAfter { tokens: 1 }, Fault::ContentFilter]).await;
    let body = post(&server, GENERATE, &ask(json!({}))).await.json().await;
    assert_eq!(body["candidates"][0]["finishReason"], "STOP");
    let body = post(&server, GENERATE, &ask(json!({}))).await.json().await;
    assert_eq!(body["candidates"][0]["finishReason"], "SAFETY");
    assert!(body["candidates"][0].get("content").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_stall_keeps_the_stream_open() {
    let server = server(vec![
        Fault::StallAfter { tokens: 3 },
        Fault::SlowFirstToken { ms: 2_000 },
    ])
    .await;
    let mut answer = stream(&server, STREAM, &ask(json!({}))).await;
    let (events, end) = answer.events(Duration::from_secs(30)).await;
    assert_eq!(end, End::Stalled);
    let (chunks, _) = frames(&events);
    assert_eq!(content(&chunks), 3);
    assert_eq!(finish(&chunks), None);

    let mut answer = stream(&server, STREAM, &ask(json!({}))).await;
    assert_eq!(answer.sent.elapsed(), Duration::ZERO, "headers at once");
    let first = answer.next(PATIENCE).await.unwrap();
    assert_eq!(first.at - answer.sent, Duration::from_millis(2_000));
    let (_, end) = answer.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    assert_eq!(server.stats().served("stall_after"), 1);
}

const EMBED_MODEL: &str = "gemini-embedding-001";
const BATCH: &str = "/v1beta/models/gemini-embedding-001:batchEmbedContents";
const SINGLE: &str = "/v1beta/models/gemini-embedding-001:embedContent";

/// One `EmbedContentRequest` for `text`, with `extra` fields.
fn embed_one(text: &str, extra: Value) -> Value {
    with(
        json!({"model": format!("models/{EMBED_MODEL}"), "content": {"parts": [{"text": text}]}}),
        extra,
    )
}

fn values(embedding: &Value) -> Vec<f64> {
    embedding["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect()
}

async fn embeddings_server(script: Vec<Fault>) -> MockServer {
    MockServer::start(Scenario {
        gemini_embeddings: RouteScenario {
            script,
            ..RouteScenario::default()
        },
        ..Scenario::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn embeddings_come_in_order_as_unit_vectors_of_the_asked_size() {
    let server = embeddings_server(Vec::new()).await;
    let texts = ["first passage", "second", "third one"];
    let batch = json!({"requests": texts.iter().map(|t| embed_one(t, json!({"taskType": "RETRIEVAL_DOCUMENT"}))).collect::<Vec<_>>()});
    let answer = post(&server, BATCH, &batch).await;
    assert_eq!(answer.status, 200);
    let body = answer.json().await;
    let embeddings = body["embeddings"].as_array().expect("embeddings");
    assert_eq!(embeddings.len(), 3);
    assert!(body.get("usageMetadata").is_none(), "Gemini counts none");
    let vectors: Vec<Vec<f64>> = embeddings.iter().map(values).collect();
    for v in &vectors {
        assert_eq!(v.len(), 16, "the scenario's length by default");
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    assert_ne!(vectors[0], vectors[1]);

    // One input alone, on either method, gets the same vector.
    let single = post(&server, SINGLE, &embed_one(texts[1], json!({}))).await;
    assert_eq!(single.status, 200);
    assert_eq!(values(&single.json().await["embedding"]), vectors[1]);
    let again = post(
        &server,
        BATCH,
        &json!({"requests": [embed_one(texts[1], json!({}))]}),
    )
    .await;
    assert_eq!(values(&again.json().await["embeddings"][0]), vectors[1]);

    // outputDimensionality shortens each vector.
    let short = json!({"requests": [
        embed_one("a", json!({"outputDimensionality": 4})),
        embed_one("b", json!({"output_dimensionality": 4}))
    ]});
    let body = post(&server, BATCH, &short).await.json().await;
    assert!(
        body["embeddings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| values(e).len() == 4)
    );

    let stats = server.stats();
    assert_eq!(stats.requests_to(Route::GeminiEmbeddings), 4);
    assert_eq!(stats.requests_to(Route::Gemini), 0);
    assert_eq!(stats.recent[0].route, Route::GeminiEmbeddings);
    assert_eq!(
        serde_json::to_value(&stats.recent[0]).unwrap()["route"],
        "gemini_embeddings"
    );
}

#[tokio::test]
async fn embeddings_faults_and_refusals_are_googles() {
    let server = embeddings_server(vec![
        Fault::RateLimit { retry_after: 2.0 },
        Fault::Overloaded { retry_after: None },
        Fault::ContentFilter,
    ])
    .await;
    let one = json!({"requests": [embed_one("a", json!({}))]});
    let limited = post(&server, BATCH, &one).await;
    assert_eq!(limited.status, 429);
    assert_eq!(
        limited.header("retry-after"),
        "",
        "the delay is in the body"
    );
    let error = limited.json().await["error"].clone();
    assert_eq!(error["status"], "RESOURCE_EXHAUSTED");
    let retry = error["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.RetryInfo")
        .cloned()
        .expect("a RetryInfo");
    assert_eq!(retry["retryDelay"], "2s");
    let overloaded = post(&server, BATCH, &one).await;
    assert_eq!(overloaded.status, 503);
    assert_eq!(overloaded.json().await["error"]["status"], "UNAVAILABLE");
    // A fault about an answer's content leaves vectors alone.
    assert_eq!(post(&server, BATCH, &one).await.status, 200);

    // Gemini's batch limit is 100 requests.
    let many = json!({"requests": vec![embed_one("a", json!({})); 101]});
    let refused = post(&server, BATCH, &many).await;
    assert_eq!(refused.status, 400);
    let error = refused.json().await["error"].clone();
    assert_eq!(error["status"], "INVALID_ARGUMENT");
    assert!(
        error["message"].as_str().unwrap().contains("at most 100"),
        "{error}"
    );
    let hundred = json!({"requests": vec![embed_one("a", json!({})); 100]});
    assert_eq!(post(&server, BATCH, &hundred).await.status, 200);

    for bad in [
        json!({"requests": []}),
        json!({"requests": [{"content": {"parts": []}}]}),
        json!({"requests": [embed_one("a", json!({"model": "models/other"}))]}),
        json!({"requests": [embed_one("a", json!({"outputDimensionality": 0}))]}),
    ] {
        let answer = post(&server, BATCH, &bad).await;
        assert_eq!(answer.status, 400, "{bad}");
        assert_eq!(answer.json().await["error"]["code"], 400, "{bad}");
    }
}
