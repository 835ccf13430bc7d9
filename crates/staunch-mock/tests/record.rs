//! The request record is bounded: many large requests never make it hold
//! more than its byte budget, and it keeps the newest.

use staunch_mock::{MockServer, RecordLimits, Route, Scenario};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// Posts `body` over a fresh HTTP/1.1 connection (blocking: the server runs
/// on the runtime's other worker) and returns the status.
fn post(addr: SocketAddr, path: &str, body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\nauthorization: Bearer sk-secret\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let head = String::from_utf8_lossy(&reply[..reply.len().min(12)]).into_owned();
    head[9..12].parse().unwrap()
}

/// A chat request of about `size` bytes whose content starts with `tag`.
fn request(tag: &str, size: usize) -> Vec<u8> {
    let filler = "x".repeat(size.saturating_sub(100));
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": format!("{tag} {filler}")}],
    }))
    .unwrap()
}

fn tag_of(content: &serde_json::Value) -> String {
    content
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_large_requests_never_exceed_the_byte_budget_and_the_newest_are_kept() {
    let server = MockServer::start(Scenario::default()).await.unwrap();
    assert_eq!(server.record_limits(), RecordLimits::default());
    let cap = 1024 * 1024;
    server.set_record_limits(RecordLimits::default().max_bytes(cap));
    let addr = server.addr();
    for i in 0..40 {
        let body = request(&format!("req-{i}"), 100 * 1024);
        assert_eq!(post(addr, "/v1/chat/completions", &body), 200);
        let stats = server.stats();
        let held: usize = stats.recent.iter().map(|r| r.recorded_bytes()).sum();
        assert_eq!(held, stats.recorded_bytes, "the running total is exact");
        assert!(
            stats.recorded_bytes <= cap,
            "after request {i}: {} bytes recorded, cap {cap}",
            stats.recorded_bytes
        );
    }
    let stats = server.stats();
    assert_eq!(
        stats.requests_to(Route::OpenAi),
        40,
        "counts are kept whole"
    );
    let kept: Vec<String> = stats
        .recent
        .iter()
        .map(|r| tag_of(&r.body["messages"][0]["content"]))
        .collect();
    let n = kept.len();
    assert!((5..40).contains(&n), "kept {n} of 40");
    let newest: Vec<String> = (40 - n..40).map(|i| format!("req-{i}")).collect();
    assert_eq!(kept, newest, "the newest requests, oldest first");
    let last = stats.recent.back().unwrap();
    assert!(!last.body_truncated && !last.body.is_truncated());
    assert_eq!(last.body_bytes, last.body.bytes().len());
    assert_eq!(last.headers["authorization"], "[present]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_larger_than_the_budget_is_kept_as_a_truncated_prefix() {
    let server = MockServer::start(Scenario::default()).await.unwrap();
    let cap = 256 * 1024;
    server.set_record_limits(RecordLimits::default().max_bytes(cap));
    let addr = server.addr();
    assert_eq!(post(addr, "/v1/messages", &request("small", 1024)), 200);
    let big = request("big", 2 * 1024 * 1024);
    assert_eq!(post(addr, "/v1/messages", &big), 200, "it is still served");
    let stats = server.stats();
    assert!(stats.recorded_bytes <= cap, "{}", stats.recorded_bytes);
    assert_eq!(stats.recent.len(), 1, "the big one evicted the rest");
    let r = &stats.recent[0];
    assert_eq!(r.route, Route::Anthropic);
    assert!(r.body_truncated && r.body.is_truncated());
    assert_eq!(r.body_bytes, big.len());
    assert!(r.body.bytes().len() < cap);
    assert!(big.starts_with(r.body.bytes()), "a prefix of what was sent");
    assert!(r.body.json().is_null(), "a prefix is not read as JSON");

    // The stats endpoint says so too.
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["recent"][0]["body_truncated"], true);
    assert_eq!(json["recent"][0]["body"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_count_is_bounded_and_shrinking_the_limits_evicts_at_once() {
    let server = MockServer::start(Scenario::default()).await.unwrap();
    server.set_record_limits(RecordLimits::default().max_requests(5));
    let addr = server.addr();
    for i in 0..12 {
        let body = request(&format!("req-{i}"), 200);
        assert_eq!(post(addr, "/v1/chat/completions", &body), 200);
    }
    let tags = |server: &MockServer| -> Vec<String> {
        server
            .stats()
            .recent
            .iter()
            .map(|r| tag_of(&r.body["messages"][0]["content"]))
            .collect()
    };
    assert_eq!(
        tags(&server),
        ["req-7", "req-8", "req-9", "req-10", "req-11"]
    );
    server.set_record_limits(RecordLimits::default().max_requests(2));
    assert_eq!(tags(&server), ["req-10", "req-11"]);
    assert_eq!(post(addr, "/v1/chat/completions", b"not json"), 400);
    let stats = server.stats();
    let last = stats.recent.back().unwrap();
    assert_eq!(
        last.body.bytes(),
        b"not json",
        "raw bytes, even when not JSON"
    );
    assert!(last.body.json().is_null());
    server.set_record_limits(RecordLimits::default().max_requests(0));
    let stats = server.stats();
    assert_eq!((stats.recent.len(), stats.recorded_bytes), (0, 0));
}
