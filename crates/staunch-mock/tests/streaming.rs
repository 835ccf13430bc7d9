//! Streamed answers in both dialects over real HTTP on loopback, read frame
//! by frame with hyper's client: the events in their order and shapes, the
//! same answer as without `stream`, the token rate, each stream fault, and
//! assistant-prefill continuation.
//!
//! The server runs in the test's runtime, so the tests that watch time
//! (token rate, slow first token, stalls, hangs) run with tokio's clock
//! paused: waits are exact and a stall is observed with a bounded
//! `timeout` that costs no real time.

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use staunch_mock::{Fault, MockServer, RouteScenario, Scenario, StreamErrorKind};
use std::time::Duration;
use tokio::time::{Instant, timeout};

const OPENAI: &str = "/v1/chat/completions";
const ANTHROPIC: &str = "/v1/messages";

/// A bound on any wait for the server (virtual time in paused tests).
const PATIENCE: Duration = Duration::from_secs(10);

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    /// Its `event:` name, if any.
    name: Option<String>,
    /// Its `data:` text.
    data: String,
    /// When it arrived.
    at: Instant,
}

impl Sse {
    /// The data as JSON, `None` if it is not JSON.
    fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// How a stream ended.
#[derive(Debug, PartialEq)]
enum End {
    /// The body ended cleanly.
    Clean,
    /// The body failed (the connection closed mid-body).
    Broken,
    /// Nothing more came within the wait.
    Stalled,
}

/// A response whose body is read frame by frame, cut into events.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Incoming,
    buffer: String,
    sent: Instant,
}

impl Reply {
    /// The next event, or how the stream ended (a stall when nothing comes
    /// within `wait`).
    async fn next(&mut self, wait: Duration) -> Result<Sse, End> {
        loop {
            if let Some(at) = self.buffer.find("\n\n") {
                let raw: String = self.buffer.drain(..at + 2).collect();
                let mut event = Sse {
                    name: None,
                    data: String::new(),
                    at: Instant::now(),
                };
                for line in raw.lines() {
                    if let Some(name) = line.strip_prefix("event: ") {
                        event.name = Some(name.to_owned());
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data.push_str(data);
                    }
                }
                return Ok(event);
            }
            match timeout(wait, self.body.frame()).await {
                Err(_) => return Err(End::Stalled),
                Ok(None) => return Err(End::Clean),
                Ok(Some(Err(_))) => return Err(End::Broken),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
            }
        }
    }

    /// Every event until the stream ends (or stalls for `wait`).
    async fn events(&mut self, wait: Duration) -> (Vec<Sse>, End) {
        let mut events = Vec::new();
        loop {
            match self.next(wait).await {
                Ok(event) => events.push(event),
                Err(end) => {
                    assert!(self.buffer.is_empty(), "a partial event: {:?}", self.buffer);
                    return (events, end);
                }
            }
        }
    }

    /// The whole body as JSON.
    async fn json(self) -> Value {
        let bytes = self.body.collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// Posts `body` to `path` on a fresh HTTP/1.1 connection; `Err` when the
/// connection closes without an answer.
async fn try_post(server: &MockServer, path: &str, body: &Value) -> Result<Reply, hyper::Error> {
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::post(path)
        .header("host", server.addr().to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let sent = Instant::now();
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        buffer: String::new(),
        sent,
    })
}

async fn post(server: &MockServer, path: &str, body: &Value) -> Reply {
    timeout(PATIENCE, try_post(server, path, body))
        .await
        .expect("an answer in time")
        .expect("an answer")
}

/// A 200 event stream.
async fn stream(server: &MockServer, path: &str, body: &Value) -> Reply {
    let reply = post(server, path, body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "text/event-stream");
    reply
}

fn with(mut body: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn openai_ask(extra: Value) -> Value {
    with(
        json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is the weather like in Paris today, please?"}
            ]
        }),
        extra,
    )
}

fn anthropic_ask(extra: Value) -> Value {
    with(
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 256,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "What is the weather like in Paris today, please?"}]
        }),
        extra,
    )
}

fn weather_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "the city"},
            "days": {"type": "integer", "minimum": 2, "maximum": 7},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
        },
        "required": ["city", "days"]
    })
}

fn openai_tools() -> Value {
    json!({"tools": [{"type": "function", "function": {"name": "get_weather", "parameters": weather_schema()}}]})
}

fn anthropic_tools() -> Value {
    json!({"tools": [{"name": "get_weather", "input_schema": weather_schema()}]})
}

/// A scenario with these scripts and no delay between tokens.
fn scenario(openai: Vec<Fault>, anthropic: Vec<Fault>) -> Scenario {
    Scenario {
        stream_token_ms: 0,
        openai: RouteScenario {
            script: openai,
            ..RouteScenario::default()
        },
        anthropic: RouteScenario {
            script: anthropic,
            ..RouteScenario::default()
        },
        ..Scenario::default()
    }
}

async fn server(openai: Vec<Fault>, anthropic: Vec<Fault>) -> MockServer {
    MockServer::start(scenario(openai, anthropic))
        .await
        .unwrap()
}

/// An OpenAI stream read apart: the chunks (parsed), whether `[DONE]`
/// came, and the events that were not JSON.
struct OpenAiStream {
    chunks: Vec<Value>,
    done: bool,
    malformed: Vec<String>,
    /// Error events (`{"error": …}`).
    errors: Vec<Value>,
}

fn openai_read(events: &[Sse]) -> OpenAiStream {
    let mut read = OpenAiStream {
        chunks: Vec::new(),
        done: false,
        malformed: Vec::new(),
        errors: Vec::new(),
    };
    for event in events {
        assert!(event.name.is_none(), "OpenAI events have no names");
        assert!(!read.done, "nothing after [DONE]");
        if event.data == "[DONE]" {
            read.done = true;
        } else {
            match event.json() {
                Some(error) if error.get("error").is_some() => read.errors.push(error),
                Some(chunk) => read.chunks.push(chunk),
                None => read.malformed.push(event.data.clone()),
            }
        }
    }
    read
}

impl OpenAiStream {
    /// The deltas' text put together.
    fn text(&self) -> String {
        self.chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect()
    }

    /// The chunks carrying content (text or a tool call).
    fn content(&self) -> usize {
        self.chunks
            .iter()
            .filter(|c| {
                let delta = &c["choices"][0]["delta"];
                delta["content"].as_str().is_some_and(|t| !t.is_empty())
                    || delta.get("tool_calls").is_some()
            })
            .count()
    }

    fn finish(&self) -> Option<&str> {
        self.chunks
            .iter()
            .find_map(|c| c["choices"][0]["finish_reason"].as_str())
    }
}

/// An Anthropic stream read apart: each event's name and data, checked to
/// agree (`event: X` carries `"type": "X"`).
fn anthropic_read(events: &[Sse]) -> Vec<(String, Value)> {
    events
        .iter()
        .map(|event| {
            let name = event.name.clone().expect("Anthropic events are named");
            let data = event.json().unwrap_or(Value::Null);
            if !data.is_null() {
                assert_eq!(data["type"], name.as_str(), "{data}");
            }
            (name, data)
        })
        .collect()
}

fn anthropic_text(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "text_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap())
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

fn text_deltas(events: &[(String, Value)]) -> usize {
    events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .count()
}

#[tokio::test]
async fn an_openai_stream_is_the_non_streamed_answer_in_chunks() {
    let server = server(vec![], vec![]).await;
    let whole = post(&server, OPENAI, &openai_ask(json!({})))
        .await
        .json()
        .await;
    let expected = whole["choices"][0]["message"]["content"].as_str().unwrap();

    let body = openai_ask(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let mut reply = stream(&server, OPENAI, &body).await;
    assert_eq!(reply.header("x-request-id"), "req_mock_2");
    let (events, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let read = openai_read(&events);
    assert!(read.done && read.malformed.is_empty() && read.errors.is_empty());
    assert_eq!(read.text(), expected);
    assert!(read.content() > 5, "token-sized pieces: {}", read.content());

    let first = &read.chunks[0];
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant", "{first}");
    for chunk in &read.chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        assert_eq!(chunk["id"], "chatcmpl-mock-2", "{chunk}");
        assert_eq!(chunk["model"], "gpt-4o");
        assert!(chunk["created"].is_u64());
    }
    // Every piece is a word with the space before it.
    for chunk in &read.chunks[1..read.chunks.len() - 2] {
        let piece = chunk["choices"][0]["delta"]["content"].as_str().unwrap();
        assert!(piece.trim_start() == piece.trim(), "{piece:?}");
        assert!(chunk.get("usage").is_some_and(Value::is_null), "{chunk}");
        assert!(chunk["choices"][0]["finish_reason"].is_null());
    }
    let n = read.chunks.len();
    let finish = &read.chunks[n - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop", "{finish}");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    let usage = &read.chunks[n - 1];
    assert_eq!(usage["choices"], json!([]), "{usage}");
    assert_eq!(usage["usage"], whole["usage"], "the same usage");

    // Without include_usage: no usage chunk, no usage field.
    let mut reply = stream(&server, OPENAI, &openai_ask(json!({"stream": true}))).await;
    let (events, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let read = openai_read(&events);
    assert!(read.done);
    assert_eq!(read.text(), expected);
    assert!(read.chunks.iter().all(|c| c.get("usage").is_none()));
    let last = read.chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn an_anthropic_stream_is_the_non_streamed_answer_in_events() {
    let server = server(vec![], vec![]).await;
    let whole = post(&server, ANTHROPIC, &anthropic_ask(json!({})))
        .await
        .json()
        .await;
    let expected = whole["content"][0]["text"].as_str().unwrap();

    let mut reply = stream(&server, ANTHROPIC, &anthropic_ask(json!({"stream": true}))).await;
    assert_eq!(reply.header("request-id"), "req_mock_2");
    let (events, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let events = anthropic_read(&events);
    let deltas = text_deltas(&events);
    assert!(deltas > 5, "token-sized pieces: {deltas}");
    let mut order = vec!["message_start", "content_block_start", "ping"];
    order.extend(std::iter::repeat_n("content_block_delta", deltas));
    order.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names(&events), order);
    assert_eq!(anthropic_text(&events), expected);

    let start = &events[0].1["message"];
    assert_eq!(start["id"], "msg_mock_2");
    assert_eq!(start["role"], "assistant");
    assert_eq!(start["content"], json!([]));
    assert!(start["stop_reason"].is_null());
    assert_eq!(
        start["usage"]["input_tokens"],
        whole["usage"]["input_tokens"]
    );
    assert_eq!(
        events[1].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn", "{delta}");
    assert_eq!(
        delta["usage"]["output_tokens"],
        whole["usage"]["output_tokens"]
    );
}

#[tokio::test]
async fn an_openai_tool_call_streams_its_arguments_in_pieces() {
    let server = server(vec![], vec![]).await;
    let whole = post(&server, OPENAI, &openai_ask(openai_tools()))
        .await
        .json()
        .await;
    let call = &whole["choices"][0]["message"]["tool_calls"][0];

    let body = with(openai_ask(openai_tools()), json!({"stream": true}));
    let mut reply = stream(&server, OPENAI, &body).await;
    let (events, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let read = openai_read(&events);
    assert!(read.done);
    assert_eq!(read.finish(), Some("tool_calls"));
    assert_eq!(read.chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let calls: Vec<&Value> = read
        .chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    let opening = calls[0];
    assert_eq!(opening["index"], 0);
    assert_eq!(opening["id"], "call_mock_2");
    assert_eq!(opening["type"], "function");
    assert_eq!(opening["function"]["name"], "get_weather");
    assert_eq!(opening["function"]["arguments"], "");
    assert!(calls.len() > 2, "arguments in several pieces");
    let mut arguments = String::new();
    for fragment in &calls[1..] {
        assert_eq!(fragment["index"], 0);
        assert!(fragment.get("id").is_none());
        arguments.push_str(fragment["function"]["arguments"].as_str().unwrap());
    }
    assert_eq!(arguments, call["function"]["arguments"].as_str().unwrap());
    let parsed: Value = serde_json::from_str(&arguments).unwrap();
    assert!(parsed["city"].is_string(), "{parsed}");
}

#[tokio::test]
async fn an_anthropic_tool_use_streams_its_input_as_partial_json() {
    let server = server(vec![], vec![]).await;
    let whole = post(&server, ANTHROPIC, &anthropic_ask(anthropic_tools()))
        .await
        .json()
        .await;
    let body = with(anthropic_ask(anthropic_tools()), json!({"stream": true}));
    let mut reply = stream(&server, ANTHROPIC, &body).await;
    let (events, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let events = anthropic_read(&events);
    let deltas = text_deltas(&events);
    assert!(deltas > 1, "input in several pieces");
    let mut order = vec!["message_start", "ping", "content_block_start"];
    order.extend(std::iter::repeat_n("content_block_delta", deltas));
    order.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names(&events), order);
    let block = &events[2].1["content_block"];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["id"], "toolu_mock_2");
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({}));
    let partial: String = events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap())
        .collect();
    let input: Value = serde_json::from_str(&partial).unwrap();
    assert_eq!(input, whole["content"][0]["input"]);
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn json_answers_and_content_filters_stream_too() {
    let server = server(
        vec![Fault::Ok, Fault::Ok, Fault::ContentFilter],
        vec![Fault::ContentFilter],
    )
    .await;
    let format = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": weather_schema()}}});
    let whole = post(&server, OPENAI, &openai_ask(format.clone()))
        .await
        .json()
        .await;
    let body = with(openai_ask(format), json!({"stream": true}));
    let mut reply = stream(&server, OPENAI, &body).await;
    let read = openai_read(&reply.events(PATIENCE).await.0);
    assert_eq!(
        read.text(),
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );
    serde_json::from_str::<Value>(&read.text()).unwrap();

    let mut reply = stream(&server, OPENAI, &openai_ask(json!({"stream": true}))).await;
    let read = openai_read(&reply.events(PATIENCE).await.0);
    assert!(read.done);
    assert_eq!((read.text().as_str(), read.content()), ("", 0));
    assert_eq!(read.finish(), Some("content_filter"));

    let mut reply = stream(&server, ANTHROPIC, &anthropic_ask(json!({"stream": true}))).await;
    let events = anthropic_read(&reply.events(PATIENCE).await.0);
    assert_eq!(
        names(&events),
        ["message_start", "ping", "message_delta", "message_stop"]
    );
    assert_eq!(events[2].1["delta"]["stop_reason"], "refusal");
}

#[tokio::test(start_paused = true)]
async fn content_events_come_at_the_token_rate() {
    let mut scenario = scenario(vec![], vec![]);
    scenario.stream_token_ms = 40;
    scenario.anthropic.stream_token_ms = Some(0);
    let server = MockServer::start(scenario).await.unwrap();

    let mut reply = stream(&server, OPENAI, &openai_ask(json!({"stream": true}))).await;
    let (events, _) = reply.events(PATIENCE).await;
    let content: Vec<&Sse> = events
        .iter()
        .filter(|e| e.data.contains("\"content\":\"") && !e.data.contains("\"content\":\"\""))
        .collect();
    assert!(content.len() > 5);
    for pair in content.windows(2) {
        assert_eq!(pair[1].at - pair[0].at, Duration::from_millis(40));
    }
    assert_eq!(content[0].at - reply.sent, Duration::from_millis(40));

    // The route's own rate wins: 0 is as fast as possible.
    let mut reply = stream(&server, ANTHROPIC, &anthropic_ask(json!({"stream": true}))).await;
    let (events, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    assert!(events.iter().all(|e| e.at == reply.sent));
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_token_sends_the_headers_at_once() {
    let slow = Fault::SlowFirstToken { ms: 3_000 };
    let mut scenario = scenario(vec![slow.clone(), slow.clone()], vec![slow]);
    scenario.stream_token_ms = 10;
    let server = MockServer::start(scenario).await.unwrap();

    let mut reply = stream(&server, OPENAI, &openai_ask(json!({"stream": true}))).await;
    assert_eq!(reply.sent.elapsed(), Duration::ZERO, "headers at once");
    let role = reply.next(PATIENCE).await.unwrap();
    assert_eq!(role.at, reply.sent, "the role chunk at once");
    let first = reply.next(PATIENCE).await.unwrap();
    assert_eq!(first.at - reply.sent, Duration::from_millis(3_000));
    let second = reply.next(PATIENCE).await.unwrap();
    assert_eq!(second.at - first.at, Duration::from_millis(10));
    let (rest, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    assert!(openai_read(&rest).done);

    // A client with a shorter time-to-first-token gives up first.
    let mut reply = stream(&server, OPENAI, &openai_ask(json!({"stream": true}))).await;
    reply.next(PATIENCE).await.unwrap();
    assert_eq!(
        reply.next(Duration::from_secs(1)).await.unwrap_err(),
        End::Stalled
    );

    let mut reply = stream(&server, ANTHROPIC, &anthropic_ask(json!({"stream": true}))).await;
    let (events, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let read = anthropic_read(&events);
    assert_eq!(read[3].0, "content_block_delta");
    assert!(events[..3].iter().all(|e| e.at == reply.sent));
    assert_eq!(events[3].at - reply.sent, Duration::from_millis(3_000));
    assert_eq!(server.stats().served("slow_first_token"), 3);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_stream_sends_nothing_more_and_stays_open() {
    let stall = Fault::StallAfter { tokens: 3 };
    let server = server(vec![stall.clone()], vec![stall]).await;

    let mut reply = stream(&server, OPENAI, &openai_ask(json!({"stream": true}))).await;
    let (events, end) = reply.events(Duration::from_secs(30)).await;
    assert_eq!(end, End::Stalled, "still open after 30 s");
    let read = openai_read(&events);
    assert_eq!(read.content(), 3);
    assert!(!read.done);
    assert_eq!(read.finish(), None);

    let mut reply = stream(&server, ANTHROPIC, &anthropic_ask(json!({"stream": true}))).await;
    let (events, end) = reply.events(Duration::from_secs(30)).await;
    assert_eq!(end, End::Stalled);
    let events = anthropic_read(&events);
    assert_eq!(text_deltas(&events), 3);
    assert_eq!(names(&events).last(), Some(&"content_block_delta"));
    assert_eq!(server.stats().served("stall_after"), 2);
}

#[tokio::test]
async fn a_cut_stream_closes_the_connection_mid_body() {
    let cut = Fault::CutAfter { tokens: 2 };
    let server = server(vec![cut.clone()], vec![cut]).await;

    let mut reply = stream(&server, OPENAI, &openai_ask(json!({"stream": true}))).await;
    let (events, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Broken);
    let read = openai_read(&events);
    assert_eq!(read.content(), 2);
    assert!(!read.done && read.finish().is_none());

    let mut reply = stream(&server, ANTHROPIC, &anthropic_ask(json!({"stream": true}))).await;
    let (events, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Broken);
    let events = anthropic_read(&events);
    assert_eq!(text_deltas(&events), 2);
    assert!(!names(&events).contains(&"message_delta"));
    assert_eq!(server.stats().served("cut_after"), 2);
}

#[tokio::test]
async fn a_malformed_event_is_not_json_and_the_stream_goes_on() {
    let bad = Fault::MalformedEventAt { n: 2 };
    let server = server(vec![Fault::Ok, bad.clone()], vec![Fault::Ok, bad]).await;

    let expected = post(&server, OPENAI, &openai_ask(json!({})))
        .await
        .json()
        .await;
    let mut reply = stream(&server, OPENAI, &openai_ask(json!({"stream": true}))).await;
    let (events, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let read = openai_read(&events);
    assert_eq!(read.malformed.len(), 1, "{:?}", read.malformed);
    assert!(read.malformed[0].starts_with('{'));
    // It comes after two content events (the role chunk is first).
    let at = events.iter().position(|e| e.json().is_none()).unwrap();
    assert_eq!(at, 3);
    assert!(read.done);
    assert_eq!(
        read.text(),
        expected["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
    );

    let expected = post(&server, ANTHROPIC, &anthropic_ask(json!({})))
        .await
        .json()
        .await;
    let mut reply = stream(&server, ANTHROPIC, &anthropic_ask(json!({"stream": true}))).await;
    let (events, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let bad: Vec<&Sse> = events.iter().filter(|e| e.json().is_none()).collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].name.as_deref(), Some("content_block_delta"));
    let events = anthropic_read(&events);
    assert_eq!(events.last().unwrap().0, "message_stop");
    assert_eq!(
        anthropic_text(&events),
        expected["content"][0]["text"].as_str().unwrap()
    );
    assert_eq!(server.stats().served("malformed_event_at"), 2);
}

#[tokio::test]
async fn no_terminator_ends_a_complete_stream_without_done() {
    let server = server(vec![Fault::NoTerminator], vec![Fault::NoTerminator]).await;

    let body = openai_ask(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let mut reply = stream(&server, OPENAI, &body).await;
    let (events, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let read = openai_read(&events);
    assert!(!read.done);
    assert_eq!(read.finish(), Some("stop"));
    assert!(read.chunks.last().unwrap()["usage"].is_object());
    assert!(read.text().starts_with("mock answer to: "));

    let mut reply = stream(&server, ANTHROPIC, &anthropic_ask(json!({"stream": true}))).await;
    let (events, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let events = anthropic_read(&events);
    assert_eq!(events.last().unwrap().0, "message_delta");
    assert!(!names(&events).contains(&"message_stop"));
    assert_eq!(server.stats().served("no_terminator"), 2);
}

#[tokio::test]
async fn an_error_event_mid_stream_then_the_end() {
    let server = server(
        vec![
            Fault::ErrorEventAt {
                n: 2,
                kind: StreamErrorKind::Server,
            },
            Fault::ErrorEventAt {
                n: 1,
                kind: StreamErrorKind::RateLimit,
            },
        ],
        vec![
            Fault::ErrorEventAt {
                n: 2,
                kind: StreamErrorKind::Overloaded,
            },
            Fault::ErrorEventAt {
                n: 0,
                kind: StreamErrorKind::RateLimit,
            },
        ],
    )
    .await;

    let mut reply = stream(&server, OPENAI, &openai_ask(json!({"stream": true}))).await;
    let (events, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let read = openai_read(&events);
    assert_eq!(read.content(), 2);
    assert!(!read.done && read.finish().is_none());
    assert_eq!(read.errors.len(), 1);
    let error = &read.errors[0]["error"];
    assert_eq!(error["type"], "server_error", "{error}");
    assert!(error["message"].is_string());
    assert_eq!(events.last().unwrap().json().unwrap(), read.errors[0]);

    let mut reply = stream(&server, OPENAI, &openai_ask(json!({"stream": true}))).await;
    let read = openai_read(&reply.events(PATIENCE).await.0);
    assert_eq!(read.content(), 1);
    assert_eq!(read.errors[0]["error"]["code"], "rate_limit_exceeded");

    let mut reply = stream(&server, ANTHROPIC, &anthropic_ask(json!({"stream": true}))).await;
    let (events, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let events = anthropic_read(&events);
    assert_eq!(text_deltas(&events), 2);
    let (name, error) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(error["error"]["type"], "overloaded_error", "{error}");
    assert_eq!(error["error"]["message"], "Overloaded");

    let mut reply = stream(&server, ANTHROPIC, &anthropic_ask(json!({"stream": true}))).await;
    let events = anthropic_read(&reply.events(PATIENCE).await.0);
    assert_eq!(
        names(&events),
        ["message_start", "content_block_start", "ping", "error"]
    );
    assert_eq!(events[3].1["error"]["type"], "rate_limit_error");
    assert_eq!(server.stats().served("error_event_at"), 4);
}

#[tokio::test]
async fn an_error_in_the_first_frame_after_a_200() {
    let server = server(vec![Fault::ErrorFirstFrame], vec![Fault::ErrorFirstFrame]).await;

    let mut reply = stream(&server, OPENAI, &openai_ask(json!({"stream": true}))).await;
    let (events, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    assert_eq!(events.len(), 1);
    let error = events[0].json().unwrap();
    assert_eq!(error["error"]["type"], "server_error", "{error}");

    let mut reply = stream(&server, ANTHROPIC, &anthropic_ask(json!({"stream": true}))).await;
    let (events, end) = reply.events(PATIENCE).await;
    assert_eq!(end, End::Clean);
    let events = anthropic_read(&events);
    assert_eq!(names(&events), ["error"]);
    assert_eq!(
        events[0].1,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_mock_2"})
    );
    assert_eq!(server.stats().served("error_first_frame"), 2);
}

#[tokio::test(start_paused = true)]
async fn other_faults_keep_working_on_streamed_requests() {
    let server = server(
        vec![
            Fault::RateLimit { retry_after: 2.0 },
            Fault::Reset,
            Fault::Latency { ms: 500 },
            Fault::Hang,
        ],
        vec![Fault::Overloaded {
            retry_after: Some(1.0),
        }],
    )
    .await;
    let body = openai_ask(json!({"stream": true}));

    let reply = post(&server, OPENAI, &body).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), "2");
    assert_eq!(reply.header("content-type"), "application/json");
    let error = reply.json().await;
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");

    let reset = timeout(PATIENCE, try_post(&server, OPENAI, &body))
        .await
        .unwrap();
    assert!(reset.is_err(), "reset before any answer");

    let mut reply = stream(&server, OPENAI, &body).await;
    assert_eq!(reply.sent.elapsed(), Duration::from_millis(500));
    assert!(openai_read(&reply.events(PATIENCE).await.0).done);

    let hang = timeout(Duration::from_secs(60), try_post(&server, OPENAI, &body)).await;
    assert!(hang.is_err(), "no answer within 60 s");

    let reply = post(&server, ANTHROPIC, &anthropic_ask(json!({"stream": true}))).await;
    assert_eq!(reply.status, 529);
    assert_eq!(reply.json().await["error"]["type"], "overloaded_error");
}

#[tokio::test(start_paused = true)]
async fn stream_faults_leave_answers_that_are_not_streamed_normal() {
    let faults = vec![
        Fault::StallAfter { tokens: 0 },
        Fault::CutAfter { tokens: 0 },
        Fault::MalformedEventAt { n: 0 },
        Fault::NoTerminator,
        Fault::ErrorEventAt {
            n: 0,
            kind: StreamErrorKind::Server,
        },
        Fault::ErrorFirstFrame,
        Fault::SlowFirstToken { ms: 700 },
    ];
    let count = faults.len();
    let server = server(faults, vec![]).await;
    for i in 0..count {
        let reply = post(&server, OPENAI, &openai_ask(json!({"stream": false}))).await;
        assert_eq!(reply.status, 200);
        let elapsed = reply.sent.elapsed();
        let answer = reply.json().await;
        assert_eq!(answer["object"], "chat.completion", "{i}: {answer}");
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
        if i == count - 1 {
            assert_eq!(
                elapsed,
                Duration::from_millis(700),
                "a slow first token is latency"
            );
        }
    }
    let stats = server.stats();
    for name in [
        "stall_after",
        "cut_after",
        "malformed_event_at",
        "no_terminator",
    ] {
        assert_eq!(stats.served(name), 1, "{name}");
    }
}

#[tokio::test]
async fn an_assistant_prefill_gets_only_the_rest_of_the_answer() {
    let server = server(vec![], vec![]).await;
    let full = "mock answer to: What is the weather like in Paris today, please?";
    let prefill = "mock answer to: What is";
    let rest = &full[prefill.len()..];

    let messages = json!({"messages": [
        {"role": "user", "content": "What is the weather like in Paris today, please?"},
        {"role": "assistant", "content": prefill}
    ]});
    let answer = post(&server, OPENAI, &openai_ask(messages.clone()))
        .await
        .json()
        .await;
    assert_eq!(answer["choices"][0]["message"]["content"], rest);
    let body = with(openai_ask(messages.clone()), json!({"stream": true}));
    let mut reply = stream(&server, OPENAI, &body).await;
    let read = openai_read(&reply.events(PATIENCE).await.0);
    assert!(read.done);
    assert_eq!(read.text(), rest);
    assert_eq!(format!("{prefill}{}", read.text()), full);

    let messages = json!({"messages": [
        {"role": "user", "content": "What is the weather like in Paris today, please?"},
        {"role": "assistant", "content": [{"type": "text", "text": prefill}]}
    ]});
    let answer = post(&server, ANTHROPIC, &anthropic_ask(messages.clone()))
        .await
        .json()
        .await;
    assert_eq!(answer["content"][0]["text"], rest);
    let body = with(anthropic_ask(messages), json!({"stream": true}));
    let mut reply = stream(&server, ANTHROPIC, &body).await;
    let events = anthropic_read(&reply.events(PATIENCE).await.0);
    assert_eq!(anthropic_text(&events), rest);
    assert_eq!(events.last().unwrap().0, "message_stop");

    // A prefill that does not begin the answer gets the whole answer.
    let other = json!({"messages": [
        {"role": "user", "content": "What is the weather like in Paris today, please?"},
        {"role": "assistant", "content": "Sure:"}
    ]});
    let answer = post(&server, OPENAI, &openai_ask(other)).await.json().await;
    assert_eq!(answer["choices"][0]["message"]["content"], full);
}

#[tokio::test]
async fn a_route_that_rejects_prefill_answers_400() {
    let mut scenario = scenario(vec![], vec![]);
    scenario.openai.reject_prefill = true;
    scenario.anthropic.reject_prefill = true;
    let server = MockServer::start(scenario).await.unwrap();
    let prefilled = json!({"messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "mock"}
    ]});
    for stream in [false, true] {
        let body = with(openai_ask(prefilled.clone()), json!({"stream": stream}));
        let reply = post(&server, OPENAI, &body).await;
        assert_eq!(reply.status, 400);
        let error = reply.json().await;
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert_eq!(error["error"]["message"], "prefill is not supported");

        let body = with(anthropic_ask(prefilled.clone()), json!({"stream": stream}));
        let reply = post(&server, ANTHROPIC, &body).await;
        assert_eq!(reply.status, 400);
        let error = reply.json().await;
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert_eq!(error["error"]["message"], "prefill is not supported");
    }
    // A conversation that ends with the user is answered as usual.
    let reply = post(&server, OPENAI, &openai_ask(json!({}))).await;
    assert_eq!(reply.status, 200);
}

#[test]
fn stream_faults_and_settings_load_from_toml() {
    let scenario: Scenario = toml::from_str(
        r#"
        stream_token_ms = 20
        [openai]
        stream_token_ms = 0
        reject_prefill = true
        script = [
            { type = "slow_first_token", ms = 1500 },
            { type = "stall_after", tokens = 4 },
            { type = "cut_after", tokens = 2 },
            { type = "malformed_event_at", n = 3 },
            { type = "no_terminator" },
            { type = "error_event_at", n = 5, kind = "rate_limit" },
            { type = "error_event_at", n = 1 },
            { type = "error_first_frame" },
        ]
        "#,
    )
    .unwrap();
    assert_eq!(scenario.stream_token_ms, 20);
    assert_eq!(scenario.openai.stream_token_ms, Some(0));
    assert_eq!(scenario.anthropic.stream_token_ms, None);
    assert!(scenario.openai.reject_prefill && !scenario.anthropic.reject_prefill);
    assert_eq!(
        scenario.openai.script,
        [
            Fault::SlowFirstToken { ms: 1500 },
            Fault::StallAfter { tokens: 4 },
            Fault::CutAfter { tokens: 2 },
            Fault::MalformedEventAt { n: 3 },
            Fault::NoTerminator,
            Fault::ErrorEventAt {
                n: 5,
                kind: StreamErrorKind::RateLimit
            },
            Fault::ErrorEventAt {
                n: 1,
                kind: StreamErrorKind::Overloaded
            },
            Fault::ErrorFirstFrame,
        ]
    );
    let names: Vec<&str> = scenario.openai.script.iter().map(Fault::name).collect();
    assert_eq!(
        names,
        [
            "slow_first_token",
            "stall_after",
            "cut_after",
            "malformed_event_at",
            "no_terminator",
            "error_event_at",
            "error_event_at",
            "error_first_frame"
        ]
    );
    assert!(scenario.openai.script.iter().all(Fault::is_stream_fault));
    // And back through JSON, as the control endpoint takes it.
    let json = serde_json::to_string(&scenario).unwrap();
    assert_eq!(serde_json::from_str::<Scenario>(&json).unwrap(), scenario);
}
