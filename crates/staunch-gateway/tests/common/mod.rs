//! What the tests that run the `staunch-gateway` binary share: a
//! configuration on the embedded mock, starting the process, and reading
//! its memory from /proc.
#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_staunch-gateway");

/// A fresh directory under the system's temporary one.
pub fn tempdir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("staunch-gateway-bin-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a configuration that routes every model to the embedded mock
/// (streaming a token every `token_ms`), with `server` as the rest of its
/// `[server]` table, and returns its path.
pub fn mock_config(server: &str, token_ms: u64) -> PathBuf {
    let dir = tempdir();
    std::fs::write(
        dir.join("scenario.toml"),
        format!("stream_token_ms = {token_ms}\n"),
    )
    .unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
log_format = "json"
{server}

[providers.mock]
kind = "mock"
scenario = "scenario.toml"

[[routes]]
model = "*"
  [[routes.targets]]
  provider = "mock"
  model = "mock-model"
"#
        ),
    )
    .unwrap();
    path
}

/// Spawns `command` (the binary and its arguments; stderr as the caller
/// set it) with stdout piped, and waits for the address line. Returns the
/// process and its base URL.
pub fn spawn_listening(command: &mut Command) -> (Child, String) {
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("gateway listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    (child, url)
}

/// A memory figure of process `pid` from `/proc/PID/status`, in KiB:
/// `VmRSS` (now) or `VmHWM` (the peak).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Serves `gateway`'s router on a free loopback port from this runtime
/// (for tests that drive the gateway in-process), and returns its base URL.
pub async fn serve_in_process(gateway: &staunch_gateway::Gateway) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(axum::serve(listener, staunch_gateway::router(gateway.clone())).into_future());
    format!("http://{addr}")
}
