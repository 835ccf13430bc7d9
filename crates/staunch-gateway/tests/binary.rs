//! The `staunch-gateway` binary as operators run it: `check`, SIGHUP reload
//! (a bad file is refused and the old configuration kept), and SIGTERM
//! draining a stream in flight before exiting.
#![cfg(unix)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_staunch-gateway");

fn config(dir: &std::path::Path, model: &str, token_ms: u64) -> std::path::PathBuf {
    let scenario = dir.join("scenario.toml");
    std::fs::write(&scenario, format!("stream_token_ms = {token_ms}\n")).unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = 10
log_format = "json"

[providers.mock]
kind = "mock"
scenario = "scenario.toml"

[[routes]]
model = "{model}"
  [[routes.targets]]
  provider = "mock"
  model = "mock-model"
"#
        ),
    )
    .unwrap();
    path
}

/// Starts the binary and reads the address it prints.
fn start(config: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("gateway listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    (child, url)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

async fn status_of(url: &str, model: &str) -> u16 {
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body =
        format!(r#"{{"model": "{model}", "messages": [{{"role": "user", "content": "hi"}}]}}"#);
    let request = http::Request::post(format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    http.request(request).await.unwrap().status().as_u16()
}

#[test]
fn check_reports_every_error_with_its_line() {
    let dir = tempdir();
    let good = config(&dir, "gpt-4o", 0);
    let out = Command::new(BIN).arg("check").arg(&good).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisen = \"x\"\n\n[[routes]]\nmodel = \"m\"\n",
    )
    .unwrap();
    let out = Command::new(BIN).arg("check").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(errors.contains("bad.toml:2"), "{errors}");
    assert!(errors.contains("lisen"), "{errors}");
}

/// The binary's allocator is jemalloc with the options it exports, and
/// `_RJEM_MALLOC_CONF` overrides them: jemalloc prints its options at exit
/// when asked to in that variable.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[test]
fn the_binary_allocates_with_one_jemalloc_arena_unless_overridden() {
    let dir = tempdir();
    let good = config(&dir, "gpt-4o", 0);
    let options = |conf: &str| {
        let out = Command::new(BIN)
            .arg("check")
            .arg(&good)
            .env("_RJEM_MALLOC_CONF", conf)
            .output()
            .unwrap();
        let stats = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stats}");
        stats
    };
    let stats = options("stats_print:true");
    for option in [
        "opt.narenas: 1\n",
        "opt.dirty_decay_ms: 250 ",
        "opt.muzzy_decay_ms: 0 ",
    ] {
        assert!(stats.contains(option), "no {option:?} in:\n{stats}");
    }
    let stats = options("stats_print:true,narenas:3,dirty_decay_ms:900");
    for option in ["opt.narenas: 3\n", "opt.dirty_decay_ms: 900 "] {
        assert!(stats.contains(option), "no {option:?} in:\n{stats}");
    }
}

#[tokio::test]
async fn sighup_reloads_and_a_bad_file_is_refused() {
    let dir = tempdir();
    let path = config(&dir, "gpt-4o", 0);
    let (mut child, url) = start(&path);
    assert_eq!(status_of(&url, "gpt-4o").await, 200);
    assert_eq!(status_of(&url, "gpt-5").await, 404);

    config(&dir, "gpt-5", 0);
    signal(&child, "HUP");
    let mut reloaded = false;
    for _ in 0..100 {
        if status_of(&url, "gpt-5").await == 200 {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reloaded, "the new route is served after SIGHUP");

    std::fs::write(&path, "this is not toml [").unwrap();
    signal(&child, "HUP");
    // The reload is refused: the last good configuration keeps serving.
    for _ in 0..10 {
        assert_eq!(status_of(&url, "gpt-5").await, 200);
    }
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn sigterm_drains_a_stream_in_flight() {
    let dir = tempdir();
    // 100 ms a token: the stream takes about half a second.
    let path = config(&dir, "gpt-4o", 100);
    let (mut child, url) = start(&path);
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body =
        r#"{"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#;
    let request = http::Request::post(format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = http.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    // The stream has begun; now the operator stops the gateway.
    signal(&child, "TERM");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "the stream finished: {text}"
    );
    assert!(
        child.wait().unwrap().success(),
        "a clean exit after draining"
    );
}

fn tempdir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("staunch-gateway-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `--version` names the version and the commit the binary was built from
/// (`staunch-gateway 0.1.0 (1a2b3c4d5e6f 2025-01-31)`, or `unknown` when it
/// was built outside a git checkout); `--help` follows clap's conventions.
#[test]
fn version_names_the_commit_and_help_lists_the_flags() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let version = String::from_utf8(out.stdout).unwrap();
    let prefix = concat!("staunch-gateway ", env!("CARGO_PKG_VERSION"), " (");
    let commit = version
        .trim_end()
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not `{prefix}<commit>)`: {version:?}"));
    let short = Command::new(BIN).arg("-V").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&short.stdout), version);

    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(manifest_dir)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success() && !out.stdout.is_empty())
    };
    let tracked = git(&["ls-files", "build.rs"]).is_some();
    if commit == "unknown" {
        // Only outside a checkout that tracks this crate (a crate or sdist
        // tarball); inside one it would be a stale stamp.
        assert!(
            !tracked,
            "built in a git checkout, yet the commit is unknown"
        );
    } else if let Some((hash, date)) = commit.split_once(' ')
        && hash.len() >= 12
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
    {
        // From git: a commit of this checkout, and its date.
        assert!(
            date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
            "{commit:?}"
        );
        if tracked {
            assert!(
                git(&["cat-file", "-t", &format!("{hash}^{{commit}}")]).is_some(),
                "{hash} is not a commit of this checkout"
            );
        }
    } else {
        // A packager's stamp (STAUNCH_GATEWAY_COMMIT at build time).
        assert!(!commit.is_empty() && !commit.contains(')'), "{commit:?}");
    }

    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for wanted in [
        "Usage: staunch-gateway",
        "--config <FILE>",
        "--listen <ADDR>",
        "check",
        "-V, --version",
        "-h, --help",
    ] {
        assert!(help.contains(wanted), "no {wanted:?} in:\n{help}");
    }
    let out = Command::new(BIN).arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "clap's usage error status");
}

/// The binary makes no `llm.request` span when it exports no spans and
/// `RUST_LOG` does not show staunch's debug lines: an event logged during
/// a call (here the chain falling back from a target out of quota) is
/// nested in the request's own span alone, which names the request. With
/// `staunch=debug` the call's span is around it again.
#[tokio::test]
async fn a_call_s_span_is_in_the_log_only_when_staunch_debug_is_shown() {
    let dir = tempdir();
    std::fs::write(
        dir.join("scenario.toml"),
        "[openai]\nscript = [{ type = \"quota\" }]\n",
    )
    .unwrap();
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
model = "gpt-4o"
  [[routes.targets]]
  provider = "mock"
  model = "first"
  [[routes.targets]]
  provider = "mock"
  model = "second"
"#,
    )
    .unwrap();
    for (rust_log, want) in [
        (None, vec!["request"]),
        (Some("info,staunch=debug"), vec!["request", "llm.request"]),
    ] {
        let mut command = Command::new(BIN);
        command
            .arg("--config")
            .arg(&path)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(rust_log) = rust_log {
            command.env("RUST_LOG", rust_log);
        }
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().trim_start_matches("gateway listening on ");
        assert_eq!(status_of(url, "gpt-4o").await, 200, "RUST_LOG={rust_log:?}");
        signal(&child, "TERM");
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        let fell_back: serde_json::Value = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["fields"]["message"] == "falling back")
            .unwrap_or_else(|| panic!("RUST_LOG={rust_log:?}: no fallback line in {log}"));
        let spans: Vec<&str> = fell_back["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(spans, want, "RUST_LOG={rust_log:?}: {fell_back}");
        assert!(
            fell_back["spans"][0]["request_id"].is_string(),
            "{fell_back}"
        );
    }
}
