//! One slow client must not starve the gateway: the bounds of the
//! `[server]` table, tried against the `staunch-gateway` binary as an
//! attacker would, over loopback.
//!
//! - More slowloris connections than the connection cap (each sends a
//!   partial request head, then a byte every 200 ms): every one is closed
//!   within the head timeout, legitimate requests on new connections sent
//!   meanwhile all succeed quickly, the gateway's memory stays bounded, and
//!   `/metrics` counts the closed connections.
//! - An idle kept-alive connection is closed after its idle time; one
//!   serving a stream longer than that is not.
//! - A head begun on a kept-alive connection must finish within the head
//!   timeout, not the idle time.
//! - A request body that stops arriving is answered 408 and its
//!   connection closed.
//!
//! These run a real process on real sockets, so they take real time (about
//! three seconds in all); every wait is bounded.
#![cfg(target_os = "linux")]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::BIN;

/// The gateway binary on the embedded mock, with `server` as the rest of
/// its `[server]` table; killed on drop.
struct Gateway {
    child: Child,
    url: String,
    addr: String,
}

impl Gateway {
    fn start(server: &str, token_ms: u64) -> Gateway {
        Gateway::start_with(server, token_ms, None)
    }

    /// As [`start`](Self::start), with at most `open_files` file
    /// descriptors when given (soft and hard limit, so it cannot raise it).
    fn start_with(server: &str, token_ms: u64, open_files: Option<u32>) -> Gateway {
        let path = common::mock_config(server, token_ms);
        let mut command = match open_files {
            None => Command::new(BIN),
            Some(limit) => {
                let mut shell = Command::new("sh");
                shell
                    .arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(BIN);
                shell
            }
        };
        command
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null());
        let (child, url) = common::spawn_listening(&mut command);
        let addr = url.trim_start_matches("http://").to_owned();
        Gateway { child, url, addr }
    }

    /// The process's resident memory, in KiB.
    fn rss_kib(&self) -> u64 {
        common::status_kib(self.child.id(), "VmRSS")
    }

    /// CPU time the process has used, user and system, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // The fields after the command name, which is in parentheses.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are the 14th and 15th fields of the whole line.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// `staunch_gateway_connections_closed_total{reason="…"}` from `/metrics`.
    async fn closed(&self, reason: &str) -> u64 {
        let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let response = http
            .get(format!("{}/metrics", self.url).parse().unwrap())
            .await
            .unwrap();
        let text = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&text);
        let wanted = format!("staunch_gateway_connections_closed_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&wanted))
            .map_or(0, |n| n.trim().parse().unwrap())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CHAT: &str = r#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}"#;

fn post(body: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads one HTTP/1.1 response with a `content-length` from `stream`:
/// its status and body.
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed before a whole response");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                return (status, text[end + 4..end + 4 + length].to_owned());
            }
        }
    }
}

/// How long until the peer closes `stream` (reads end or fail), at most
/// `limit`; `None` if it is still open then.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(start + limit),
            stream.read(&mut chunk),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// One slowloris connection: a partial head, then a byte every 200 ms.
/// Returns how long the gateway took to close it after it connected, or
/// `None` if it was still open after `limit`.
async fn slowloris(
    addr: String,
    limit: Duration,
    started: Arc<tokio::sync::Semaphore>,
    closed: Arc<tokio::sync::Semaphore>,
) -> Option<Duration> {
    let at_close = closed.clone();
    let closed_after = |elapsed: Duration| {
        at_close.add_permits(1);
        Some(elapsed)
    };
    let start = Instant::now();
    let stream = TcpStream::connect(&addr).await;
    started.add_permits(1);
    let mut stream = stream.ok()?;
    let _ = stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nx-slow: ")
        .await;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut chunk = [0u8; 256];
    loop {
        if start.elapsed() > limit {
            return None;
        }
        tokio::select! {
            read = stream.read(&mut chunk) => match read {
                Ok(0) | Err(_) => return closed_after(start.elapsed()),
                Ok(_) => {}
            },
            _ = tick.tick() => {
                if stream.write_all(b"a").await.is_err() {
                    return closed_after(start.elapsed());
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_beyond_the_cap_is_closed_and_legitimate_requests_are_served() {
    const CAP: usize = 100;
    const SLOW: usize = 300;
    const HEAD_TIMEOUT: Duration = Duration::from_secs(1);
    let gateway = Gateway::start(
        &format!("max_connections = {CAP}\nheader_timeout_secs = 1\nidle_timeout_secs = 30"),
        0,
    );
    let rss_before = gateway.rss_kib();

    // Three times the cap in slow connections, opened at once.
    let connected = Arc::new(tokio::sync::Semaphore::new(0));
    let closed = Arc::new(tokio::sync::Semaphore::new(0));
    let attack: Vec<_> = (0..SLOW)
        .map(|_| {
            tokio::spawn(slowloris(
                gateway.addr.clone(),
                Duration::from_secs(5),
                connected.clone(),
                closed.clone(),
            ))
        })
        .collect();
    // Legitimate requests while the slow connections hold the gateway at
    // its cap, each on a new connection: from when all of them have
    // connected and the gateway has made room for the last ones (the
    // burst of 300 new connections itself costs the first request after
    // it some 40-60 ms of a debug build's CPU on 2 cores).
    let settled = async {
        connected.acquire_many(SLOW as u32).await.unwrap().forget();
        closed
            .acquire_many((SLOW - CAP) as u32)
            .await
            .unwrap()
            .forget();
    };
    tokio::time::timeout(Duration::from_secs(5), settled)
        .await
        .expect("the slow connections connect, and all but the cap's are pushed out");
    let http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http::<Full<Bytes>>();
    let mut latencies = Vec::new();
    let mut peak_rss = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let request = http::Request::post(format!("{}/v1/chat/completions", gateway.url))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(CHAT)))
            .unwrap();
        let sent = Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(5), http.request(request))
            .await
            .expect("a legitimate request is answered")
            .expect("a legitimate request is answered");
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
        latencies.push(sent.elapsed());

        peak_rss = peak_rss.max(gateway.rss_kib());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut closed = Vec::new();
    for task in attack {
        closed.push(task.await.unwrap());
    }
    let never = closed.iter().filter(|c| c.is_none()).count();
    assert_eq!(never, 0, "{never} slow connections were never closed");
    let slowest = closed.iter().flatten().max().copied().unwrap();
    // The head timeout, plus the time to open 300 connections on a busy
    // 2-core machine.
    assert!(
        slowest < HEAD_TIMEOUT + Duration::from_millis(500),
        "the slowest slow connection was closed after {slowest:?}"
    );

    latencies.sort();
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    assert!(latencies.len() >= 20, "only {} requests", latencies.len());
    assert!(
        p99 < Duration::from_millis(50),
        "legitimate p99 {p99:?} over {} requests",
        latencies.len()
    );

    let header_timeouts = gateway.closed("header_timeout").await;
    let evicted = gateway.closed("evicted").await;
    assert!(
        header_timeouts + evicted >= SLOW as u64,
        "{header_timeouts} closed at the head timeout and {evicted} evicted, of {SLOW}"
    );
    assert!(header_timeouts >= 1 && evicted >= 1);

    let grown = peak_rss.saturating_sub(rss_before);
    eprintln!(
        "slowloris: {SLOW} slow connections against a cap of {CAP}: slowest closed after {slowest:?}; \
         {header_timeouts} at the head timeout, {evicted} evicted; {} legitimate requests, p50 {:?}, p99 {p99:?}; \
         RSS {rss_before} KiB before, {peak_rss} KiB at peak; slowest three {:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        &latencies[latencies.len() - 3..],
    );
    assert!(
        peak_rss < 64 * 1024 && grown < 16 * 1024,
        "RSS {rss_before} KiB before, {peak_rss} KiB at peak"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_and_a_busy_one_is_not() {
    // 200 ms a token: the stream takes about a second, over three idle
    // timeouts.
    let gateway = Gateway::start("idle_timeout_secs = 0.3\nheader_timeout_secs = 5", 200);

    // Idle: one request, then nothing.
    let mut idle = TcpStream::connect(&gateway.addr).await.unwrap();
    idle.write_all(post(CHAT).as_bytes()).await.unwrap();
    let (status, _) = read_response(&mut idle).await;
    assert_eq!(status, 200);
    let after = closed_within(&mut idle, Duration::from_secs(3))
        .await
        .expect("the idle connection is closed");
    assert!(
        after >= Duration::from_millis(250) && after < Duration::from_millis(1500),
        "closed {after:?} after its response"
    );

    // Busy: a stream three times longer than the idle time.
    let mut busy = TcpStream::connect(&gateway.addr).await.unwrap();
    let stream =
        r#"{"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#;
    busy.write_all(post(stream).as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("data: [DONE]") {
        let n = tokio::time::timeout(Duration::from_secs(5), busy.read(&mut chunk))
            .await
            .expect("the stream goes on")
            .unwrap();
        assert!(n > 0, "the busy connection was closed mid-stream");
        seen.extend_from_slice(&chunk[..n]);
    }
    assert!(
        started.elapsed() > Duration::from_millis(600),
        "the stream outlasted the idle timeout ({:?})",
        started.elapsed()
    );
    assert!(gateway.closed("idle_timeout").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_begun_on_a_kept_alive_connection_must_finish_in_time() {
    let gateway = Gateway::start("idle_timeout_secs = 30\nheader_timeout_secs = 0.5", 0);
    let mut stream = TcpStream::connect(&gateway.addr).await.unwrap();
    stream.write_all(post(CHAT).as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    // Idle for longer than the head timeout: allowed.
    tokio::time::sleep(Duration::from_millis(800)).await;
    stream.write_all(post(CHAT).as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    // A head begun and never finished: closed at the head timeout.
    stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\n")
        .await
        .unwrap();
    let after = closed_within(&mut stream, Duration::from_secs(3))
        .await
        .expect("the unfinished head is cut off");
    assert!(
        after < Duration::from_millis(1200),
        "closed after {after:?}"
    );
    assert!(gateway.closed("header_timeout").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_answered_408_and_its_connection_closed() {
    let gateway = Gateway::start("body_timeout_secs = 0.5\nmin_body_bytes_per_sec = 100", 0);
    let mut stream = TcpStream::connect(&gateway.addr).await.unwrap();
    // A head promising 1,000 bytes, then ten of them, then nothing.
    stream
        .write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"model\":",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let (status, body) = tokio::time::timeout(Duration::from_secs(3), read_response(&mut stream))
        .await
        .expect("an answer within the body timeout");
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("request_timeout"), "{body}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    closed_within(&mut stream, Duration::from_secs(2))
        .await
        .expect("the connection is closed after the 408");
    assert_eq!(gateway.closed("body_timeout").await, 1);

    // A body that trickles, each pause short but the pace too slow: 8
    // bytes every 300 ms is under 100 bytes/s once the 0.5 s grace is over.
    let mut stream = TcpStream::connect(&gateway.addr).await.unwrap();
    stream
        .write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let answer = async {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if stream.write_all(b"        ").await.is_err() {
                break;
            }
            let mut peek = [0u8; 1];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), stream.peek(&mut peek)).await
                && n > 0
            {
                break;
            }
        }
        read_response(&mut stream).await
    };
    let (status, _) = tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("the slow body is cut off");
    assert_eq!(status, 408);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(gateway.closed("body_timeout").await, 2);
}

/// What an open connection that has sent nothing costs the gateway: its
/// task, socket and hyper's connection state. `docs/reliability.md` and
/// the `server` module quote the figure this prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_costs_a_bounded_amount_of_memory() {
    const OPEN: usize = 1_000;
    let gateway = Gateway::start(
        "max_connections = 2000\nheader_timeout_secs = 60\nidle_timeout_secs = 60",
        0,
    );
    // One request first, so that what every request allocates once is
    // already there.
    let mut first = TcpStream::connect(&gateway.addr).await.unwrap();
    first.write_all(post(CHAT).as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut first).await.0, 200);
    let before = gateway.rss_kib();
    let mut open = Vec::with_capacity(OPEN);
    for _ in 0..OPEN {
        open.push(TcpStream::connect(&gateway.addr).await.unwrap());
    }
    // Every one is accepted and its task has run when a request on a new
    // connection, accepted after them all, is answered.
    let mut last = TcpStream::connect(&gateway.addr).await.unwrap();
    last.write_all(post(CHAT).as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut last).await.0, 200);
    let after = gateway.rss_kib();
    let per_connection = after.saturating_sub(before) * 1024 / OPEN as u64;
    eprintln!(
        "idle connections: {OPEN} open, RSS {before} -> {after} KiB, {per_connection} bytes each"
    );
    assert!(
        per_connection < 16 * 1024,
        "{per_connection} bytes per idle connection"
    );
}

/// Out of file descriptors (a cap set above the file limit), the accept
/// loop waits instead of spinning, and accepts again once connections
/// close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_accept_loop_waits_and_resumes() {
    let gateway = Gateway::start_with(
        "max_connections = 1000\nheader_timeout_secs = 60\nidle_timeout_secs = 60",
        0,
        Some(64),
    );
    // More connections than the process can hold: the rest stay in the
    // listen backlog while `accept` fails with EMFILE.
    let mut open = Vec::new();
    for _ in 0..100 {
        open.push(TcpStream::connect(&gateway.addr).await.unwrap());
    }
    let answered = |gateway: &Gateway| {
        let url = gateway.url.clone();
        async move {
            let http = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build_http::<Full<Bytes>>();
            let request = http::Request::post(format!("{url}/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(CHAT)))
                .unwrap();
            http.request(request).await.map(|r| r.status().as_u16())
        }
    };
    // A request now waits behind the backlog.
    let waiting = tokio::spawn(answered(&gateway));
    let ticks = gateway.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = gateway.cpu_ticks() - ticks;
    // A spinning accept loop burns a whole core: 100 ticks a second.
    assert!(
        spent < 20,
        "{spent} ticks of CPU in a second out of descriptors"
    );
    assert!(!waiting.is_finished(), "no descriptor was free for it");

    // Descriptors free up: accepting resumes, and the request is served.
    drop(open);
    let status = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("accepting resumes once connections close")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}
