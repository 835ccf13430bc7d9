//! What the Gemini and Responses tests share: posting over real HTTP/1.1
//! on loopback with hyper's client, and reading a body event by event.
#![allow(dead_code)]

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use staunch_mock::MockServer;
use std::time::Duration;
use tokio::time::{Instant, timeout};

/// A bound on any wait for the server (virtual time in paused tests).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Sse {
    /// Its `event:` name, if any.
    pub name: Option<String>,
    /// Its `data:` text.
    pub data: String,
    /// When it arrived.
    pub at: Instant,
}

impl Sse {
    /// The data as JSON, `None` if it is not JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// How a stream ended.
#[derive(Debug, PartialEq)]
pub enum End {
    /// The body ended cleanly.
    Clean,
    /// The body failed (the connection closed mid-body).
    Broken,
    /// Nothing more came within the wait.
    Stalled,
}

/// A response, its body read whole or event by event.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    body: Incoming,
    buffer: String,
    pub sent: Instant,
}

impl Answer {
    /// The next event, or how the stream ended.
    pub async fn next(&mut self, wait: Duration) -> Result<Sse, End> {
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
    pub async fn events(&mut self, wait: Duration) -> (Vec<Sse>, End) {
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

    /// The whole body as JSON (`null` if it is not).
    pub async fn json(self) -> Value {
        let bytes = self.body.collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// Posts `body` to `path` (with its query) and `headers` on a fresh
/// connection.
pub async fn post_with(
    server: &MockServer,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Answer {
    let send = async {
        let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut request = Request::post(path)
            .header("host", server.addr().to_string())
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let sent = Instant::now();
        let response = sender.send_request(request).await.expect("an answer");
        let (parts, body) = response.into_parts();
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            buffer: String::new(),
            sent,
        }
    };
    timeout(PATIENCE, send).await.expect("an answer in time")
}

pub async fn post(server: &MockServer, path: &str, body: &Value) -> Answer {
    post_with(server, path, &[], body).await
}

/// A 200 event stream.
pub async fn stream(server: &MockServer, path: &str, body: &Value) -> Answer {
    let answer = post(server, path, body).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), "text/event-stream");
    answer
}

/// `body` with the fields of `extra` set.
pub fn with(mut body: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// The weather tool's JSON Schema.
pub fn weather_schema() -> Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "the city"},
            "days": {"type": "integer", "minimum": 2, "maximum": 7},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
        },
        "required": ["city", "days"]
    })
}

/// Whether `value` is valid weather-tool arguments.
pub fn is_weather(value: &Value) -> bool {
    value["city"].is_string() && value["days"].as_i64().is_some_and(|d| (2..=7).contains(&d))
}
