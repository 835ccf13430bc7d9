//! A stderr nobody reads must cost the gateway log lines, never requests
//! or memory: the binary runs with its access log on (the default `info`,
//! JSON) and stderr connected to a pipe this test never reads, which fills
//! after 64 KiB. 20,000 requests over loopback must all be answered within
//! a bounded time, the process's memory must stay flat once the log
//! writer's buffer is full, and `/metrics` must count the dropped lines.
//!
//! Before the log writer (src/log_writer.rs) a worker wrote each line to
//! stderr itself: once the pipe was full every worker blocked in `write`
//! and the gateway stopped answering.
#![cfg(target_os = "linux")]

mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const REQUESTS: usize = 20_000;
const CONNECTIONS: usize = 32;
const CHAT: &str = r#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stderr_stalls_no_request_and_grows_no_memory() {
    let config = common::mock_config("", 0);
    let mut command = Command::new(common::BIN);
    command
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped());
    let (mut child, url) = common::spawn_listening(&mut command);
    // Held open and never read: once 64 KiB are in the pipe, every write
    // to the gateway's stderr would block.
    let _stderr = child.stderr.take().unwrap();
    let pid = child.id();
    let killer = KillOnDrop(child);

    let http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONNECTIONS)
        .build_http::<Full<Bytes>>();
    let chat = format!("{url}/v1/chat/completions");
    let send = |n: usize| {
        let (http, chat) = (http.clone(), chat.clone());
        async move {
            let body = CHAT.replace("hi", &format!("hi {n}"));
            let request = http::Request::post(chat)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let response = tokio::time::timeout(Duration::from_secs(10), http.request(request))
                .await
                .unwrap_or_else(|_| panic!("request {n} not answered within 10 s"))
                .unwrap();
            assert_eq!(response.status(), 200, "request {n}");
            response.into_body().collect().await.unwrap();
        }
    };

    // Enough to fill the pipe (64 KiB) and the log writer's buffer (1 MiB
    // of lines of a few hundred bytes each) several times over; the memory
    // after it is the baseline.
    let started = Instant::now();
    run(&send, 0, 5_000).await;
    let baseline = common::status_kib(pid, "VmRSS");
    let mut peak = baseline;
    for chunk in (5_000..REQUESTS).step_by(1_000) {
        run(&send, chunk, chunk + 1_000).await;
        peak = peak.max(common::status_kib(pid, "VmRSS"));
    }
    let elapsed = started.elapsed();
    let dropped = dropped_lines(&http, &url).await;
    eprintln!(
        "stalled stderr: {REQUESTS} requests in {elapsed:.1?}, RSS {baseline} KiB after 5,000, \
         peak {peak} KiB after, {dropped} log lines dropped"
    );
    assert!(
        elapsed < Duration::from_secs(120),
        "{REQUESTS} requests took {elapsed:?}"
    );
    // Each request's access log line is a few hundred bytes: kept, 15,000
    // of them would add several MB.
    assert!(
        peak < baseline + 3 * 1024,
        "RSS grew from {baseline} KiB to {peak} KiB"
    );
    assert!(dropped > 0, "no dropped log line counted");
    drop(killer);
}

/// Sends requests `from..to` over `CONNECTIONS` concurrent loops.
async fn run<F, Fut>(send: &F, from: usize, to: usize)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut loops = Vec::new();
    for lane in 0..CONNECTIONS {
        loops.push(async move {
            let mut n = from + lane;
            while n < to {
                send(n).await;
                n += CONNECTIONS;
            }
        });
    }
    futures_join_all(loops).await;
}

/// Polls every future to completion on this task.
async fn futures_join_all<Fut: std::future::Future<Output = ()>>(futures: Vec<Fut>) {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in &mut futures {
            if let Some(future) = slot {
                if future.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    pending = true;
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
}

/// `staunch_gateway_log_lines_dropped_total` from `/metrics`.
async fn dropped_lines(
    http: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &str,
) -> u64 {
    let response = http
        .get(format!("{url}/metrics").parse().unwrap())
        .await
        .unwrap();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .find_map(|line| line.strip_prefix("staunch_gateway_log_lines_dropped_total "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
