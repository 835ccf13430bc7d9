//! Reload and drain under load, against the `staunch-gateway` binary on
//! loopback: with 200 streams in flight, SIGHUP with a changed configuration
//! cuts none of them and serves the new routes at once (a bad file is
//! refused and the last good one kept), and SIGTERM lets every stream
//! finish, accepts no new connection and exits 0.
//!
//! The streams run on real time (the mock sends a token every 100 ms, so
//! each lasts about a second); every wait is bounded.
#![cfg(unix)]

mod common;

use bytes::Bytes;
use common::{BIN, spawn_listening};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::timeout;

const STREAMS: usize = 200;

type Http = Client<HttpConnector, Full<Bytes>>;

/// A configuration on the embedded mock (a token every 100 ms) that routes
/// `models`.
fn write_config(dir: &Path, models: &[&str]) {
    std::fs::write(dir.join("scenario.toml"), "stream_token_ms = 100\n").unwrap();
    let routes: String = models
        .iter()
        .map(|m| {
            format!(
                "[[routes]]\nmodel = \"{m}\"\n  [[routes.targets]]\n  provider = \"mock\"\n  model = \"mock-model\"\n\n"
            )
        })
        .collect();
    std::fs::write(
        dir.join("gateway.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = 20\n\n\
             [providers.mock]\nkind = \"mock\"\nscenario = \"scenario.toml\"\n\n{routes}"
        ),
    )
    .unwrap();
}

/// The gateway process, killed if the test ends (or fails) before it exits.
struct Process(Option<Child>);

impl Process {
    fn child(&self) -> &Child {
        self.0.as_ref().expect("the process is running")
    }

    /// Waits for the process to exit, and says how.
    fn wait(mut self) -> std::process::ExitStatus {
        let mut child = self.0.take().expect("the process is running");
        child.wait().expect("the process's exit")
    }

    /// How the process exited, if it has.
    fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.0.as_mut().expect("the process is running");
        let status = child.try_wait().expect("the process's state")?;
        self.0 = None;
        Some(status)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start(dir: &Path) -> (Process, String) {
    let mut command = Command::new(BIN);
    command
        .arg("--config")
        .arg(dir.join("gateway.toml"))
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null());
    let (child, url) = spawn_listening(&mut command);
    (Process(Some(child)), url)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn client() -> Http {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(STREAMS)
        .build_http()
}

fn chat(url: &str, model: &str, stream: bool) -> http::Request<Full<Bytes>> {
    let body = format!(
        r#"{{"model": "{model}", "stream": {stream}, "messages": [{{"role": "user", "content": "hi"}}]}}"#
    );
    http::Request::post(format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn status_of(http: &Http, url: &str, model: &str) -> u16 {
    match timeout(
        Duration::from_secs(10),
        http.request(chat(url, model, false)),
    )
    .await
    {
        Ok(Ok(response)) => {
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            status
        }
        _ => 0,
    }
}

/// Opens `STREAMS` streams and waits until every one has its headers and
/// first bytes under way; returns their bodies, still streaming.
async fn open_streams(http: &Http, url: &str, model: &str) -> Vec<hyper::body::Incoming> {
    let opening: Vec<_> = (0..STREAMS)
        .map(|_| {
            let http = http.clone();
            let request = chat(url, model, true);
            tokio::spawn(async move {
                let response = timeout(Duration::from_secs(20), http.request(request))
                    .await
                    .expect("headers in time")
                    .expect("a response");
                assert_eq!(response.status(), 200);
                response.into_body()
            })
        })
        .collect();
    let mut bodies = Vec::with_capacity(STREAMS);
    for task in opening {
        bodies.push(task.await.unwrap());
    }
    bodies
}

/// Reads every stream to its end: how many finished with `[DONE]` and no
/// in-band error.
async fn finished(bodies: Vec<hyper::body::Incoming>) -> usize {
    let reading: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            tokio::spawn(async move {
                let bytes = timeout(Duration::from_secs(30), body.collect())
                    .await
                    .ok()?
                    .ok()?
                    .to_bytes();
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let ok = text.trim_end().ends_with("data: [DONE]") && !text.contains("\"error\"");
                if !ok {
                    // Shown when the test fails: how the stream ended.
                    let tail = text.char_indices().rev().nth(300).map_or(0, |(i, _)| i);
                    eprintln!("a stream did not finish: ...{}", &text[tail..]);
                }
                ok.then_some(())
            })
        })
        .collect();
    let mut complete = 0;
    for task in reading {
        if task.await.unwrap().is_some() {
            complete += 1;
        }
    }
    complete
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_under_load_cuts_no_stream_and_serves_the_new_routes() {
    let dir = common::tempdir();
    write_config(&dir, &["gpt-4o"]);
    let (process, url) = start(&dir);
    let http = client();
    assert_eq!(status_of(&http, &url, "gpt-5").await, 404);

    let streams = open_streams(&http, &url, "gpt-4o").await;
    write_config(&dir, &["gpt-4o", "gpt-5"]);
    signal(process.child(), "HUP");
    let mut reloaded = false;
    for _ in 0..100 {
        if status_of(&http, &url, "gpt-5").await == 200 {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reloaded, "the new route is served after SIGHUP");
    assert_eq!(
        finished(streams).await,
        STREAMS,
        "every stream in flight at the reload finished"
    );

    // A bad file: refused, the last good configuration keeps serving.
    let streams = open_streams(&http, &url, "gpt-5").await;
    std::fs::write(dir.join("gateway.toml"), "[[routes]\nnot toml").unwrap();
    signal(process.child(), "HUP");
    for _ in 0..5 {
        assert_eq!(status_of(&http, &url, "gpt-5").await, 200);
    }
    assert_eq!(finished(streams).await, STREAMS);

    signal(process.child(), "TERM");
    assert!(process.wait().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_every_stream_and_accepts_nothing_new() {
    let dir = common::tempdir();
    write_config(&dir, &["*"]);
    let (mut process, url) = start(&dir);
    let http = client();
    let streams = open_streams(&http, &url, "gpt-4o").await;

    signal(process.child(), "TERM");
    // The listener closes at once: a new connection is refused.
    let addr = url.trim_start_matches("http://").to_owned();
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "no new connection after SIGTERM");

    assert_eq!(
        finished(streams).await,
        STREAMS,
        "every stream in flight at SIGTERM finished"
    );
    // With every stream done, the client's kept-alive connections are idle:
    // they close at once, so the process exits long before its 20 s grace.
    let drained = std::time::Instant::now();
    let exited = loop {
        if let Some(status) = process.try_wait() {
            break status;
        }
        assert!(
            drained.elapsed() < Duration::from_secs(10),
            "still running 10 s after its streams finished: idle connections waited for the grace"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exited.success(), "exit 0 after draining: {exited:?}");
}
