//! The OpenAI Responses dialect over real HTTP on loopback: Response
//! objects (text, function calls, JSON, content filters), the typed event
//! stream with its sequence numbers, OpenAI's errors, and each stream
//! fault.

mod support;

use serde_json::{Value, json};
use staunch_mock::{Fault, MockServer, Route, RouteScenario, Scenario, StreamErrorKind};
use std::time::Duration;
use support::{End, PATIENCE, Sse, is_weather, post, stream, weather_schema, with};

const RESPONSES: &str = "/v1/responses";

fn ask(extra: Value) -> Value {
    with(
        json!({
            "model": "gpt-4.1",
            "instructions": "Be brief.",
            "input": "What is the weather like in Paris today, please?"
        }),
        extra,
    )
}

fn tools() -> Value {
    json!({"tools": [{"type": "function", "name": "get_weather", "parameters": weather_schema(), "strict": false}]})
}

async fn server(script: Vec<Fault>) -> MockServer {
    MockServer::start(Scenario {
        stream_token_ms: 0,
        responses: RouteScenario {
            script,
            ..RouteScenario::default()
        },
        ..Scenario::default()
    })
    .await
    .unwrap()
}

/// A stream's events, checked: each named, its `type` its name, numbered
/// in order from 0 (the malformed ones aside).
fn typed(events: &[Sse]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for event in events {
        let name = event.name.clone().expect("Responses events are named");
        let Some(data) = event.json() else { continue };
        assert_eq!(data["type"], name.as_str(), "{data}");
        assert_eq!(data["sequence_number"], out.len(), "{data}");
        out.push((name, data));
    }
    out
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

fn deltas(events: &[(String, Value)], kind: &str) -> String {
    events
        .iter()
        .filter(|(n, _)| n == kind)
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect()
}

fn count(events: &[(String, Value)], kind: &str) -> usize {
    events.iter().filter(|(n, _)| n == kind).count()
}

#[tokio::test]
async fn a_plain_answer_is_a_complete_response_object() {
    let server = server(vec![]).await;
    let answer = post(&server, RESPONSES, &ask(json!({"metadata": {"run": "7"}}))).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-request-id"), "req_mock_1");
    let body = answer.json().await;
    assert_eq!(body["id"], "resp_mock_1");
    assert_eq!(body["object"], "response");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["model"], "gpt-4.1");
    assert!(body["created_at"].is_u64());
    // What the SDK's `Response` requires, echoed from the request or its
    // defaults.
    assert_eq!(body["instructions"], "Be brief.");
    assert_eq!(body["metadata"], json!({"run": "7"}));
    assert_eq!(body["parallel_tool_calls"], true);
    assert_eq!(body["tool_choice"], "auto");
    assert_eq!(body["tools"], json!([]));
    assert_eq!(body["text"], json!({"format": {"type": "text"}}));
    assert!(body["error"].is_null() && body["incomplete_details"].is_null());
    assert!(body["temperature"].is_number() && body["top_p"].is_number());
    let output = body["output"].as_array().unwrap();
    assert_eq!(output.len(), 1);
    let message = &output[0];
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["status"], "completed");
    assert_eq!(message["id"], "msg_mock_1");
    assert_eq!(message["content"][0]["type"], "output_text");
    assert_eq!(message["content"][0]["annotations"], json!([]));
    assert_eq!(
        message["content"][0]["text"],
        "mock answer to: What is the weather like in Paris today, please?"
    );
    let usage = &body["usage"];
    let (input, output) = (
        usage["input_tokens"].as_u64().unwrap(),
        usage["output_tokens"].as_u64().unwrap(),
    );
    assert!(input > 8 && output > 5, "{usage}");
    assert_eq!(usage["total_tokens"], input + output);
    assert_eq!(usage["input_tokens_details"], json!({"cached_tokens": 0}));
    assert_eq!(
        usage["output_tokens_details"],
        json!({"reasoning_tokens": 0})
    );

    // Input items: the last user message's text.
    let items = ask(json!({"input": [
        {"role": "user", "content": "Hi"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Rome?"}]}
    ]}));
    let body = post(&server, RESPONSES, &items).await.json().await;
    assert_eq!(
        body["output"][0]["content"][0]["text"],
        "mock answer to: Weather in Rome?"
    );
    let stats = server.stats();
    assert_eq!(stats.requests_to(Route::Responses), 2);
    assert_eq!(Route::Responses.provider(), "openai");
}

#[tokio::test]
async fn a_function_call_then_its_output() {
    let server = server(vec![]).await;
    let body = post(&server, RESPONSES, &ask(tools())).await.json().await;
    let output = body["output"].as_array().unwrap();
    assert_eq!(output.len(), 1, "{body}");
    let call = &output[0];
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["call_id"], "call_mock_1");
    assert_eq!(call["id"], "fc_mock_1");
    assert_eq!(call["status"], "completed");
    let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert!(is_weather(&arguments), "{arguments}");
    assert_eq!(body["tools"], tools()["tools"]);

    let round = with(
        ask(tools()),
        json!({"input": [
            {"role": "user", "content": "Weather in Paris?"},
            call.clone(),
            {"type": "function_call_output", "call_id": "call_mock_1", "output": "21C and sunny"}
        ]}),
    );
    let body = post(&server, RESPONSES, &round).await.json().await;
    assert_eq!(body["output"][0]["type"], "message", "{body}");
    assert_eq!(
        body["output"][0]["content"][0]["text"],
        "Tool result: 21C and sunny"
    );

    let none = with(ask(tools()), json!({"tool_choice": "none"}));
    let body = post(&server, RESPONSES, &none).await.json().await;
    assert_eq!(body["output"][0]["type"], "message");
    assert_eq!(body["tool_choice"], "none");
    let unknown = with(
        ask(tools()),
        json!({"tool_choice": {"type": "function", "name": "get_time"}}),
    );
    let answer = post(&server, RESPONSES, &unknown).await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.json().await["error"]["type"],
        "invalid_request_error"
    );
}

#[tokio::test]
async fn a_json_schema_answer() {
    let server = server(vec![]).await;
    let format = json!({"text": {"format": {"type": "json_schema", "name": "weather", "schema": weather_schema(), "strict": true}}});
    let body = post(&server, RESPONSES, &ask(format.clone()))
        .await
        .json()
        .await;
    let text = body["output"][0]["content"][0]["text"].as_str().unwrap();
    assert!(is_weather(&serde_json::from_str(text).unwrap()), "{text}");
    assert_eq!(body["text"], format["text"]);
}

#[tokio::test]
async fn a_stream_is_the_typed_events_of_the_answer() {
    let server = server(vec![]).await;
    let whole = post(&server, RESPONSES, &ask(json!({}))).await.json().await;
    let mut answer = stream(&server, RESPONSES, &ask(json!({"stream": true}))).await;
    let (events, end) = answer.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let events = typed(&events);
    let pieces = count(&events, "response.output_text.delta");
    assert!(pieces > 5, "token-sized pieces: {pieces}");
    let mut order = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    order.extend(std::iter::repeat_n("response.output_text.delta", pieces));
    order.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names(&events), order);
    let text = whole["output"][0]["content"][0]["text"].as_str().unwrap();
    assert_eq!(deltas(&events, "response.output_text.delta"), text);
    assert_eq!(events[0].1["response"]["status"], "in_progress");
    assert_eq!(events[0].1["response"]["output"], json!([]));
    assert_eq!(events[4].1["item_id"], "msg_mock_2");
    let done = &events[order.len() - 4].1;
    assert_eq!(done["text"], text);
    let completed = &events.last().unwrap().1["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["id"], "resp_mock_2");
    assert_eq!(completed["usage"], whole["usage"]);
    assert_eq!(
        completed["output"][0]["content"],
        whole["output"][0]["content"]
    );

    // A function call: its item, its arguments in pieces, their done.
    let mut answer = stream(
        &server,
        RESPONSES,
        &with(ask(tools()), json!({"stream": true})),
    )
    .await;
    let events = typed(&answer.events(PATIENCE).await.0);
    let pieces = count(&events, "response.function_call_arguments.delta");
    assert!(pieces > 1);
    let mut order = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
    ];
    order.extend(std::iter::repeat_n(
        "response.function_call_arguments.delta",
        pieces,
    ));
    order.extend([
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names(&events), order);
    let added = &events[2].1["item"];
    assert_eq!(
        (added["type"].as_str(), added["arguments"].as_str()),
        (Some("function_call"), Some(""))
    );
    let arguments = deltas(&events, "response.function_call_arguments.delta");
    assert!(is_weather(&serde_json::from_str(&arguments).unwrap()));
    let done = &events[events.len() - 3].1;
    assert_eq!(done["arguments"], arguments.as_str());
    assert_eq!(done["name"], "get_weather");
    let item = &events.last().unwrap().1["response"]["output"][0];
    assert_eq!(item["arguments"], arguments.as_str());
    assert_eq!(item["call_id"], "call_mock_3");
}

#[tokio::test]
async fn errors_and_content_filters() {
    let server = server(vec![
        Fault::RateLimit { retry_after: 2.0 },
        Fault::ContentFilter,
        Fault::ContentFilter,
    ])
    .await;
    let answer = post(&server, RESPONSES, &ask(json!({}))).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("retry-after"), "2");
    assert_eq!(answer.header("retry-after-ms"), "2000");
    let error = answer.json().await;
    assert_eq!(error["error"]["code"], "rate_limit_exceeded", "{error}");

    let body = post(&server, RESPONSES, &ask(json!({}))).await.json().await;
    assert_eq!(body["status"], "incomplete");
    assert_eq!(
        body["incomplete_details"],
        json!({"reason": "content_filter"})
    );
    assert_eq!(body["output"], json!([]));

    let mut answer = stream(&server, RESPONSES, &ask(json!({"stream": true}))).await;
    let events = typed(&answer.events(PATIENCE).await.0);
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.incomplete"
        ]
    );
    assert_eq!(
        events[2].1["response"]["incomplete_details"]["reason"],
        "content_filter"
    );
}

#[tokio::test]
async fn stream_faults_in_typed_events() {
    let server = server(vec![
        Fault::CutAfter { tokens: 2 },
        Fault::ErrorEventAt {
            n: 3,
            kind: StreamErrorKind::RateLimit,
        },
        Fault::NoTerminator,
        Fault::MalformedEventAt { n: 1 },
        Fault::ErrorFirstFrame,
    ])
    .await;
    let body = ask(json!({"stream": true}));

    let mut answer = stream(&server, RESPONSES, &body).await;
    let (events, end) = answer.events(PATIENCE).await;
    assert_eq!(end, End::Broken);
    let events = typed(&events);
    assert_eq!(count(&events, "response.output_text.delta"), 2);
    assert_eq!(count(&events, "response.completed"), 0);

    let mut answer = stream(&server, RESPONSES, &body).await;
    let (events, end) = answer.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let events = typed(&events);
    assert_eq!(count(&events, "response.output_text.delta"), 3);
    let (name, error) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(error["code"], "rate_limit_exceeded", "{error}");
    assert!(error["message"].is_string());
    assert_eq!(error["sequence_number"], events.len() - 1);

    let mut answer = stream(&server, RESPONSES, &body).await;
    let (events, end) = answer.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let events = typed(&events);
    assert_eq!(events.last().unwrap().0, "response.output_item.done");
    assert_eq!(count(&events, "response.completed"), 0);

    let mut answer = stream(&server, RESPONSES, &body).await;
    let (raw, end) = answer.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let bad: Vec<&Sse> = raw.iter().filter(|e| e.json().is_none()).collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].name.as_deref(), Some("response.output_text.delta"));
    let events = typed(&raw);
    assert_eq!(events.last().unwrap().0, "response.completed");
    assert_eq!(
        deltas(&events, "response.output_text.delta"),
        "mock answer to: What is the weather like in Paris today, please?"
    );

    let mut answer = stream(&server, RESPONSES, &body).await;
    let events = typed(&answer.events(PATIENCE).await.0);
    assert_eq!(names(&events), ["error"]);
    assert_eq!(events[0].1["code"], "server_error");
}

#[tokio::test(start_paused = true)]
async fn a_stall_keeps_the_stream_open() {
    let server = server(vec![Fault::StallAfter { tokens: 2 }]).await;
    let mut answer = stream(&server, RESPONSES, &ask(json!({"stream": true}))).await;
    let (events, end) = answer.events(Duration::from_secs(30)).await;
    assert_eq!(end, End::Stalled);
    let events = typed(&events);
    assert_eq!(count(&events, "response.output_text.delta"), 2);
    assert_eq!(count(&events, "response.output_text.done"), 0);
    assert_eq!(server.stats().served("stall_after"), 1);
}
