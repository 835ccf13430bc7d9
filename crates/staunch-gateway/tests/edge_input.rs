//! Bad input at the edge (issue 27), against the `staunch-gateway` binary
//! over raw loopback TCP, in both the OpenAI and the Anthropic shape:
//!
//! - 10,000 messages: answered. The gateway does not count messages; the
//!   body limit (`max_body_bytes`, 2 MiB by default) bounds what a request
//!   may hold, and the decoders read it in linear time.
//! - 100,000 levels of nesting: a 400 (serde_json's recursion limit of
//!   128, or a type error met first), no stack overflow.
//! - Invalid UTF-8 anywhere in the body: a 400.
//! - A 100 MB body, with a `content-length` and chunked: a 413 after the
//!   limit, without reading the rest into memory (the process's peak RSS
//!   grows by far less than 100 MB).
//! - Slowloris headers are `tests/slow_clients.rs`.
//!
//! After each, the gateway still answers a normal request.
#![cfg(target_os = "linux")]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_staunch-gateway");

/// Every wait in this file ends within this.
const BOUND: Duration = Duration::from_secs(20);

/// The gateway binary on its embedded mock with the default `[server]`
/// limits; killed on drop.
struct Gateway {
    child: Child,
    addr: String,
}

impl Gateway {
    fn start() -> Gateway {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("staunch-edge-input-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("scenario.toml"), "stream_token_ms = 0\n").unwrap();
        let path = dir.join("gateway.toml");
        std::fs::write(
            &path,
            r#"
[server]
listen = "127.0.0.1:0"
log_format = "json"

[providers.mock]
kind = "mock"
scenario = "scenario.toml"

[[routes]]
model = "*"
  [[routes.targets]]
  provider = "mock"
  model = "mock-model"
"#,
        )
        .unwrap();
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("gateway listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Gateway {
            child,
            addr: url.trim_start_matches("http://").to_owned(),
        }
    }

    /// A field of `/proc/PID/status`, in KiB (`VmRSS`, `VmHWM`).
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Still running (no panic took the process down).
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    OpenAi,
    Anthropic,
}

const SHAPES: [Shape; 2] = [Shape::OpenAi, Shape::Anthropic];

impl Shape {
    fn path(self) -> &'static str {
        match self {
            Shape::OpenAi => "/v1/chat/completions",
            Shape::Anthropic => "/v1/messages",
        }
    }

    /// A request with `messages`.
    fn request(self, messages: Value) -> Value {
        match self {
            Shape::OpenAi => json!({"model": "gpt-4o", "messages": messages}),
            Shape::Anthropic => {
                json!({"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": messages})
            }
        }
    }

    /// Asserts `body` is an error in this shape; its message.
    fn error_message(self, body: &str) -> String {
        let v: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{self:?}: an error that is not JSON ({e}): {body}"));
        let message = match self {
            Shape::OpenAi => &v["error"]["message"],
            Shape::Anthropic => {
                assert_eq!(v["type"], "error", "{body}");
                &v["error"]["message"]
            }
        };
        message
            .as_str()
            .unwrap_or_else(|| panic!("{self:?}: no message: {body}"))
            .to_owned()
    }
}

/// A request head for `path` with these extra header lines.
fn head(path: &str, headers: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n{headers}\r\n"
    )
}

/// Reads one HTTP/1.1 response with a `content-length`: status and body.
async fn read_response(stream: &mut (impl AsyncReadExt + Unpin)) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed before a whole response");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                return (status, body);
            }
        }
    }
}

/// POSTs `body` on a new connection; the status and the body of the answer.
async fn post(gateway: &Gateway, path: &str, body: &[u8]) -> (u16, String) {
    tokio::time::timeout(BOUND, async {
        let mut stream = TcpStream::connect(&gateway.addr).await.unwrap();
        let mut request = head(path, &format!("content-length: {}\r\n", body.len())).into_bytes();
        request.extend_from_slice(body);
        stream.write_all(&request).await.unwrap();
        read_response(&mut stream).await
    })
    .await
    .unwrap_or_else(|_| panic!("no answer within {BOUND:?}"))
}

/// A normal request in `shape` is answered.
async fn still_serving(gateway: &mut Gateway, shape: Shape) {
    assert!(gateway.alive(), "the gateway exited");
    let body = shape.request(json!([{"role": "user", "content": "hi"}]));
    let (status, text) = post(gateway, shape.path(), body.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{shape:?} after bad input: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_are_answered() {
    let mut gateway = Gateway::start();
    for shape in SHAPES {
        let messages: Vec<Value> = (0..10_000)
            .map(|i| {
                let role = if i % 2 == 0 { "user" } else { "assistant" };
                json!({"role": role, "content": format!("message {i}")})
            })
            .collect();
        let body = shape.request(Value::Array(messages)).to_string();
        let started = Instant::now();
        let (status, text) = post(&gateway, shape.path(), body.as_bytes()).await;
        let took = started.elapsed();
        assert_eq!(status, 200, "{shape:?}: {text}");
        println!(
            "{shape:?}: 10,000 messages ({} KiB) answered 200 in {took:?}",
            body.len() / 1024
        );
        still_serving(&mut gateway, shape).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_is_a_400_without_a_stack_overflow() {
    let mut gateway = Gateway::start();
    let n = 100_000;
    let arrays = format!("{}{}", "[".repeat(n), "]".repeat(n));
    let objects = format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
    for shape in SHAPES {
        let user = json!([{"role": "user", "content": "hi"}]);
        let with_extra = |deep: &str| {
            let text = shape.request(user.clone()).to_string();
            format!("{},\"extra\":{deep}}}", &text[..text.len() - 1])
        };
        let cases = [
            ("100,000 [ as the body", arrays.clone(), None),
            ("100,000 [ unclosed", "[".repeat(n), None),
            (
                "100,000 [ as messages",
                format!("{{\"model\":\"m\",\"max_tokens\":1,\"messages\":{arrays}}}"),
                None,
            ),
            (
                "100,000 [ in an extra field",
                with_extra(&arrays),
                Some("recursion limit exceeded"),
            ),
            (
                "100,000 objects in an extra field",
                with_extra(&objects),
                Some("recursion limit exceeded"),
            ),
        ];
        for (what, body, says) in cases {
            let (status, text) = post(&gateway, shape.path(), body.as_bytes()).await;
            assert_eq!(status, 400, "{shape:?} {what}: {text}");
            let message = shape.error_message(&text);
            if let Some(says) = says {
                assert!(message.contains(says), "{shape:?} {what}: {message}");
            }
            println!("{shape:?} {what}: 400 {message:?}");
        }
        still_serving(&mut gateway, shape).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_a_400() {
    let mut gateway = Gateway::start();
    for shape in SHAPES {
        let valid = shape
            .request(json!([{"role": "user", "content": "hi"}]))
            .to_string();
        // `valid` with the first `needle` replaced by raw bytes.
        let splice = |needle: &str, bytes: &[u8]| {
            let at = valid.find(needle).unwrap();
            let mut out = valid.as_bytes()[..at].to_vec();
            out.extend_from_slice(bytes);
            out.extend_from_slice(&valid.as_bytes()[at + needle.len()..]);
            out
        };
        let cases: [(&str, Vec<u8>); 4] = [
            // A lone 0xff in the content.
            ("in the content", splice("\"hi\"", b"\"h\xffi\"")),
            // A cut three-byte sequence in the model name.
            (
                "in the model",
                splice("\"model\":\"", b"\"model\":\"\xe2\x82"),
            ),
            // An encoded surrogate in a field no decoder reads.
            (
                "in an unknown field",
                splice(
                    "\"messages\"",
                    b"\"metadata\":{\"x\":\"\xed\xa0\x80\"},\"messages\"",
                ),
            ),
            // A stray lead byte outside any string.
            ("outside a string", splice("{", b"{\xc3")),
        ];
        for (what, body) in cases {
            assert!(std::str::from_utf8(&body).is_err(), "{what}");
            let (status, text) = post(&gateway, shape.path(), &body).await;
            assert_eq!(status, 400, "{shape:?} {what}: {text}");
            let message = shape.error_message(&text);
            println!("{shape:?} invalid UTF-8 {what}: 400 {message:?}");
        }
        still_serving(&mut gateway, shape).await;
    }
}

/// Sends a `total`-byte body in 64 KiB pieces while reading the answer;
/// stops writing when the answer (or the close) comes. The status, the
/// answer's body and the bytes written.
async fn send_huge(
    gateway: &Gateway,
    path: &str,
    total: usize,
    chunked: bool,
) -> (u16, String, usize) {
    let stream = TcpStream::connect(&gateway.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let framing = if chunked {
        "transfer-encoding: chunked\r\n".to_owned()
    } else {
        format!("content-length: {total}\r\n")
    };
    write
        .write_all(head(path, &framing).as_bytes())
        .await
        .unwrap();
    let answer = tokio::spawn(async move { read_response(&mut read).await });
    let piece = vec![b' '; 64 * 1024];
    let mut written = 0;
    while written < total && !answer.is_finished() {
        let n = piece.len().min(total - written);
        let sent = if chunked {
            let mut framed = format!("{n:x}\r\n").into_bytes();
            framed.extend_from_slice(&piece[..n]);
            framed.extend_from_slice(b"\r\n");
            write.write_all(&framed).await
        } else {
            write.write_all(&piece[..n]).await
        };
        if sent.is_err() {
            break; // the gateway closed the connection
        }
        written += n;
    }
    let (status, text) = tokio::time::timeout(BOUND, answer)
        .await
        .expect("an answer within the bound")
        .expect("the reader");
    (status, text, written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_body_is_a_413_without_reading_it_into_memory() {
    const TOTAL: usize = 100 * 1024 * 1024;
    let mut gateway = Gateway::start();
    still_serving(&mut gateway, Shape::OpenAi).await;
    let peak_before = gateway.status_kib("VmHWM");
    for shape in SHAPES {
        for chunked in [false, true] {
            let started = Instant::now();
            let (status, text, written) =
                tokio::time::timeout(BOUND, send_huge(&gateway, shape.path(), TOTAL, chunked))
                    .await
                    .expect("within the bound");
            assert_eq!(status, 413, "{shape:?} chunked={chunked}: {text}");
            let message = shape.error_message(&text);
            let peak = gateway.status_kib("VmHWM");
            println!(
                "{shape:?} chunked={chunked}: 413 after {} KiB of 100 MiB written in {:?}, peak RSS {} KiB (+{} KiB): {message:?}",
                written / 1024,
                started.elapsed(),
                peak,
                peak.saturating_sub(peak_before)
            );
            still_serving(&mut gateway, shape).await;
        }
    }
    let grown = gateway.status_kib("VmHWM").saturating_sub(peak_before);
    assert!(
        grown < 32 * 1024,
        "the peak RSS grew by {grown} KiB over four 100 MiB bodies"
    );
}
