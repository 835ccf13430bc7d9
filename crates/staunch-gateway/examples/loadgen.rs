//! A load generator for OpenAI-compatible gateways on loopback.
//!
//! ```text
//! cargo run --release -p staunch-gateway --example loadgen -- \
//!     --target http://127.0.0.1:8080 --direct http://127.0.0.1:PORT \
//!     [--rate R[,R2,...] | --saturate] [--concurrency C] [--duration S] \
//!     [--pid PID] [--stream] [--json]
//! ```
//!
//! It sends OpenAI-shaped `POST {url}/v1/chat/completions` requests (a small
//! prompt, `max_tokens: 16`, a distinct prompt per request so that no cache
//! answers them) over keep-alive connections (a pool for the open loop, one
//! connection per worker for the closed loop), first to the
//! mock itself (`--direct`), then through the gateway (`--target`), and
//! reports for each path the throughput and the p50/p90/p99 latency, and the
//! latency the gateway adds (gateway percentile minus direct percentile).
//!
//! - `--rate R` is open-loop: requests are started on a fixed schedule
//!   whatever the server does, and each latency is measured from the request's
//!   *scheduled* start, so a server that falls behind shows it (no
//!   coordinated omission). Several rates: `--rate 500,1000,2000`.
//! - `--saturate` is closed-loop: `--concurrency` workers (64 by default)
//!   each send the next request as soon as the last one is answered.
//! - `--stream` asks for `stream: true` and reads each SSE body to
//!   `data: [DONE]` (time to first byte is reported too).
//! - `--pid PID` samples that process (and its descendants, for servers that
//!   fork workers) around the gateway phase: CPU time (utime + stime from
//!   `/proc/PID/stat`) per answered request and peak RSS (`VmHWM` from
//!   `/proc/PID/status`; it is reset through `/proc/PID/clear_refs` before
//!   each phase where that is allowed, so it is the peak of that phase).
//!
//! Bounded: phases last at most 600 s, at most 10,000,000 requests are
//! recorded per phase, at most `--max-in-flight` (10,000) open-loop requests
//! are outstanding (more are counted as skipped), each request times out
//! after `--timeout` (30 s). Only loopback URLs are accepted.
//!
//! Other flags: `--model M` (gpt-4o-mini), `--warmup S` (1; a closed-loop
//! warm-up before each phase, not recorded), `--threads N` (1; the load
//! generator's own tokio workers, to leave the other core to the servers),
//! `--max-p99-ms MS` (100; the p99 under which an open-loop rate counts as
//! sustained), `--label NAME` (carried into the output), `--only target`
//! or `--only direct` (one path), `--rounds N` (3: each phase is cut into N
//! slices and the direct and gateway slices alternate, so that a burst of
//! CPU from a neighbour on a shared machine lands on both paths alike),
//! `--api-key KEY` (sent as `Authorization: Bearer KEY` on both paths; a
//! dummy by default), `--stop-when-unsustained` (skip the rates above the
//! first one the gateway (or, alone, the direct path) did not sustain; give
//! the rates in increasing order).

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const MAX_DURATION_S: f64 = 600.0;
const MAX_RECORDED: usize = 10_000_000;
const MAX_RATE: f64 = 200_000.0;
const MAX_CONCURRENCY: usize = 20_000;

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("loadgen: {message}");
    std::process::exit(2);
}

/// A load generator for OpenAI-compatible gateways on loopback: the
/// gateway's latency and CPU against the upstream's own.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "loadgen", args_override_self = true)]
struct Args {
    /// The gateway's base URL (http:// on loopback).
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// The upstream's base URL, measured directly (http:// on loopback).
    #[arg(long, value_name = "URL")]
    direct: Option<String>,
    /// Open-loop rates, requests per second, comma-separated (repeatable).
    #[arg(long = "rate", value_name = "R[,R...]", value_parser = rates)]
    rate: Vec<Rates>,
    /// Every rate of every `--rate`, in order.
    #[arg(skip)]
    rates: Vec<f64>,
    /// Closed loop: `--concurrency` workers send back to back (the default
    /// without `--rate`).
    #[arg(long)]
    saturate: bool,
    /// Closed-loop workers.
    #[arg(long, value_name = "C", default_value = "64", value_parser = concurrency)]
    concurrency: usize,
    /// Seconds per phase.
    #[arg(long, value_name = "S", default_value = "10", value_parser = seconds)]
    duration: Duration,
    /// A process to sample CPU time and peak RSS of.
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// Ask for `stream: true` and read each SSE body to its end.
    #[arg(long)]
    stream: bool,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// The model asked for.
    #[arg(long, value_name = "M", default_value = "gpt-4o-mini")]
    model: String,
    /// Seconds of closed-loop warm-up before each phase, not recorded.
    #[arg(long, value_name = "S", default_value = "1", value_parser = seconds)]
    warmup: Duration,
    /// The load generator's own tokio workers (1 to 64).
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
    /// Seconds before a request times out.
    #[arg(long, value_name = "S", default_value = "30", value_parser = seconds)]
    timeout: Duration,
    /// Open-loop requests outstanding at most (1 to 100,000).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_in_flight: usize,
    /// The p99 under which an open-loop rate counts as sustained.
    #[arg(long, value_name = "MS", default_value_t = 100.0)]
    max_p99_ms: f64,
    /// A name carried into the output.
    #[arg(long, value_name = "NAME")]
    label: Option<String>,
    /// Only one path: `target` or `direct`.
    #[arg(long, value_name = "target|direct", value_parser = ["target", "direct"])]
    only: Option<String>,
    /// Slices per phase, alternating between the paths (1 to 100).
    #[arg(long, value_name = "N", default_value_t = 3)]
    rounds: u32,
    /// Sent as `Authorization: Bearer KEY` on both paths.
    #[arg(long, value_name = "KEY", default_value = "sk-loadgen-dummy")]
    api_key: String,
    /// Skip the rates above the first one not sustained (give the rates in
    /// increasing order).
    #[arg(long)]
    stop_when_unsustained: bool,
}

/// The rates of one `--rate`.
#[derive(Clone, Debug)]
struct Rates(Vec<f64>);

fn rates(text: &str) -> Result<Rates, String> {
    text.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| match part.trim().parse::<f64>() {
            Ok(rate) if rate > 0.0 && rate <= MAX_RATE => Ok(rate),
            Ok(_) => Err(format!("must be within (0, {MAX_RATE}]")),
            Err(_) => Err(format!("not a number: {part:?}")),
        })
        .collect::<Result<_, _>>()
        .map(Rates)
}

fn concurrency(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
        Ok(_) => Err(format!("must be within 1..={MAX_CONCURRENCY}")),
        Err(_) => Err(format!("not a number: {text:?}")),
    }
}

fn seconds(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.0..=MAX_DURATION_S).contains(&s) => Ok(Duration::from_secs_f64(s)),
        Ok(_) => Err(format!("must be within 0..={MAX_DURATION_S} s")),
        Err(_) => Err(format!("not a number: {text:?}")),
    }
}

fn parse_args() -> Args {
    let mut args: Args = clap::Parser::parse();
    args.rates = args.rate.iter().flat_map(|r| r.0.iter().copied()).collect();
    args.threads = args.threads.clamp(1, 64);
    args.max_in_flight = args.max_in_flight.clamp(1, 100_000);
    args.rounds = args.rounds.clamp(1, 100);
    match args.only.as_deref() {
        Some("target") => args.direct = None,
        Some("direct") => args.target = None,
        _ => {}
    }
    if args.target.is_none() && args.direct.is_none() {
        <Args as clap::CommandFactory>::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "give --target, --direct or both",
            )
            .exit();
    }
    if args.rates.is_empty() && !args.saturate {
        args.saturate = true;
    }
    if args.duration.is_zero() {
        fail("--duration must be positive");
    }
    for url in [&args.target, &args.direct].into_iter().flatten() {
        check_loopback(url).unwrap_or_else(|e| fail(e));
    }
    args
}

/// Refuses anything but `http://` on a loopback address.
fn check_loopback(url: &str) -> Result<(), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{url:?}: only http:// URLs on loopback are allowed"
        ));
    }
    let host = uri.host().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "{url:?} is not a loopback address; this tool only loads 127.0.0.0/8, ::1 or localhost"
        ))
    }
}

/// `{base}/v1/chat/completions`, whether or not `base` already ends in `/v1`.
fn endpoint(base: &str) -> Uri {
    let base = base.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    format!("{base}/v1/chat/completions")
        .parse()
        .unwrap_or_else(|e| fail(format!("bad URL {base:?}: {e}")))
}

// ---------------------------------------------------------------------------
// One request.

/// A dedicated HTTP/1.1 connection of one closed-loop worker.
type Conn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

struct Shot {
    client: HttpClient,
    /// The closed loop's connections, one per worker, kept between the
    /// warm-up and the slices (see [`closed_loop`]).
    conns: Mutex<Vec<Conn>>,
    uri: Uri,
    model: String,
    stream: bool,
    timeout: Duration,
    counter: Arc<AtomicU64>,
    authorization: http::HeaderValue,
}

enum Outcome {
    /// Answered in full: time to the first body byte, from the send.
    Ok {
        ttfb: Duration,
        /// SSE `data:` lines read (streams only: the tokens and the
        /// frames around them, `[DONE]` included).
        events: u32,
    },
    Err(String),
}

impl Shot {
    fn body(&self) -> Bytes {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": "You are a terse assistant."},
                {"role": "user", "content": format!("Say hello to request {n}.")}
            ],
            "max_tokens": 16,
        });
        if self.stream {
            body["stream"] = Value::Bool(true);
        }
        Bytes::from(serde_json::to_vec(&body).expect("a JSON value serializes"))
    }

    /// One request through the shared pool (the open loop).
    async fn fire(&self) -> Outcome {
        match tokio::time::timeout(self.timeout, self.fire_inner(None)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Err("timeout".to_owned()),
        }
    }

    /// One request on a worker's own connection (the closed loop), opened
    /// first if the worker has none or it was closed. A connection whose
    /// request failed or timed out is dropped.
    async fn fire_on(&self, conn: &mut Option<Conn>) -> Outcome {
        let outcome = tokio::time::timeout(self.timeout, self.fire_inner(Some(&mut *conn))).await;
        match outcome {
            Ok(outcome @ Outcome::Ok { .. }) => outcome,
            Ok(outcome) => {
                *conn = None;
                outcome
            }
            Err(_) => {
                *conn = None;
                Outcome::Err("timeout".to_owned())
            }
        }
    }

    /// Opens a connection to the target's host, without a pool.
    async fn connect(&self) -> Result<Conn, Outcome> {
        let authority = self.uri.authority().expect("the URL has a host");
        let port = authority.port_u16().unwrap_or(80);
        let stream = tokio::net::TcpStream::connect((authority.host(), port))
            .await
            .map_err(|_| Outcome::Err("connect".to_owned()))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|_| Outcome::Err("connect".to_owned()))?;
        tokio::spawn(connection);
        Ok(sender)
    }

    async fn fire_inner(&self, conn: Option<&mut Option<Conn>>) -> Outcome {
        let sent;
        let response = match conn {
            None => {
                let request = Request::post(self.uri.clone())
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::AUTHORIZATION, self.authorization.clone())
                    .body(Full::new(self.body()))
                    .expect("a valid request");
                sent = Instant::now();
                match self.client.request(request).await {
                    Ok(response) => response,
                    Err(e) if e.is_connect() => return Outcome::Err("connect".to_owned()),
                    Err(_) => return Outcome::Err("transport".to_owned()),
                }
            }
            Some(conn) => {
                if conn.as_ref().is_none_or(|c| c.is_closed()) {
                    *conn = Some(match self.connect().await {
                        Ok(sender) => sender,
                        Err(outcome) => return outcome,
                    });
                }
                let Some(sender) = conn.as_mut() else {
                    return Outcome::Err("connect".to_owned());
                };
                // Origin form and a Host header, as a pooled client sends.
                let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
                let host = self.uri.authority().map_or("", |a| a.as_str());
                let request = Request::post(path)
                    .header(header::HOST, host)
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::AUTHORIZATION, self.authorization.clone())
                    .body(Full::new(self.body()))
                    .expect("a valid request");
                sent = Instant::now();
                if sender.ready().await.is_err() {
                    return Outcome::Err("transport".to_owned());
                }
                match sender.send_request(request).await {
                    Ok(response) => response,
                    Err(_) => return Outcome::Err("transport".to_owned()),
                }
            }
        };
        let status = response.status();
        let mut body = response.into_body();
        let mut ttfb = None;
        // Only the tail is kept, to find `[DONE]` across frame boundaries.
        let mut tail: Vec<u8> = Vec::new();
        let mut done = false;
        let mut total = 0usize;
        let mut events = 0u32;
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(_) => return Outcome::Err("body".to_owned()),
            };
            if let Some(data) = frame.data_ref() {
                if ttfb.is_none() && !data.is_empty() {
                    ttfb = Some(sent.elapsed());
                }
                total += data.len();
                if self.stream && !done {
                    // The tail's bytes were searched already: count only
                    // the `data:` lines that end in the new bytes.
                    let searched = tail.len().saturating_sub(5);
                    tail.extend_from_slice(data);
                    events += tail[searched..]
                        .windows(6)
                        .filter(|w| *w == b"data: ")
                        .count() as u32;
                    if tail.windows(12).any(|w| w == b"data: [DONE]") {
                        done = true;
                    }
                    let keep = tail.len().saturating_sub(16);
                    tail.drain(..keep);
                }
            }
        }
        if status != StatusCode::OK {
            return Outcome::Err(status.as_u16().to_string());
        }
        if self.stream && !done {
            return Outcome::Err("stream-incomplete".to_owned());
        }
        if total == 0 {
            return Outcome::Err("empty-body".to_owned());
        }
        Outcome::Ok {
            ttfb: ttfb.unwrap_or_else(|| sent.elapsed()),
            events,
        }
    }
}

// ---------------------------------------------------------------------------
// Recording.

#[derive(Default)]
struct Record {
    /// Latencies of answered requests, in microseconds.
    latencies: Vec<u32>,
    ttfb: Vec<u32>,
    errors: BTreeMap<String, u64>,
    last_done: Option<Instant>,
    /// SSE events of the recorded streams.
    events: u64,
}

impl Record {
    fn add(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Ok { ttfb, events } if self.latencies.len() < MAX_RECORDED => {
                self.latencies.push(micros(latency));
                self.ttfb.push(micros(ttfb));
                self.events += u64::from(events);
            }
            Outcome::Ok { .. } => *self.errors.entry("not-recorded".to_owned()).or_default() += 1,
            Outcome::Err(kind) => *self.errors.entry(kind).or_default() += 1,
        }
        self.last_done = Some(Instant::now());
    }

    fn merge(&mut self, other: Record) {
        self.latencies.extend(other.latencies);
        self.ttfb.extend(other.ttfb);
        self.events += other.events;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.last_done = self.last_done.max(other.last_done);
    }
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

#[derive(Clone, Debug)]
struct PathStats {
    sent: u64,
    ok: u64,
    skipped: u64,
    errors: BTreeMap<String, u64>,
    elapsed_s: f64,
    throughput: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    ttfb_p50_ms: f64,
    /// SSE events per answered stream (0 without `--stream`).
    events_per_request: f64,
    process: Option<ProcessStats>,
    loadgen_cpu_cores: f64,
}

impl PathStats {
    fn from_record(mut record: Record, elapsed: f64, sent: u64, skipped: u64) -> PathStats {
        record.latencies.sort_unstable();
        record.ttfb.sort_unstable();
        let ok = record.latencies.len() as u64;
        PathStats {
            sent,
            ok,
            skipped,
            errors: record.errors,
            elapsed_s: elapsed,
            throughput: if elapsed > 0.0 {
                ok as f64 / elapsed
            } else {
                0.0
            },
            p50_ms: percentile(&record.latencies, 0.50),
            p90_ms: percentile(&record.latencies, 0.90),
            p99_ms: percentile(&record.latencies, 0.99),
            max_ms: record
                .latencies
                .last()
                .map_or(f64::NAN, |&v| v as f64 / 1000.0),
            ttfb_p50_ms: percentile(&record.ttfb, 0.50),
            events_per_request: if ok > 0 {
                record.events as f64 / ok as f64
            } else {
                0.0
            },
            process: None,
            loadgen_cpu_cores: 0.0,
        }
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn to_json(&self) -> Value {
        json!({
            "sent": self.sent,
            "ok": self.ok,
            "skipped": self.skipped,
            "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 3),
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p90_ms": round(self.p90_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "ttfb_p50_ms": round(self.ttfb_p50_ms, 3),
            "events_per_request": round(self.events_per_request, 2),
            "loadgen_cpu_cores": round(self.loadgen_cpu_cores, 2),
            "process": self.process.as_ref().map(ProcessStats::to_json),
        })
    }
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

fn round(x: f64, digits: i32) -> Value {
    if x.is_finite() {
        let f = 10f64.powi(digits);
        json!((x * f).round() / f)
    } else {
        Value::Null
    }
}

// ---------------------------------------------------------------------------
// Process sampling (/proc).

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// The process and its descendants, via `/proc/PID/task/*/children`.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() && all.len() < 1024 {
        let p = all[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for task in tasks.flatten() {
                let path = task.path().join("children");
                if let Ok(text) = std::fs::read_to_string(path) {
                    for child in text.split_whitespace().filter_map(|c| c.parse().ok()) {
                        if !all.contains(&child) {
                            all.push(child);
                        }
                    }
                }
            }
        }
        i += 1;
    }
    all
}

/// utime + stime of one process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` field of `/proc/PID/status`, in bytes.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

struct ProcessSample {
    pids: Vec<u32>,
    ticks: u64,
    at: Instant,
    peak_reset: bool,
}

#[derive(Clone, Debug)]
struct ProcessStats {
    pid: u32,
    processes: usize,
    cpu_s: f64,
    wall_s: f64,
    cpu_cores: f64,
    cpu_us_per_request: f64,
    /// CPU per SSE event relayed (streams only).
    cpu_us_per_event: f64,
    peak_rss_mb: f64,
    rss_mb: f64,
    peak_reset: bool,
}

impl ProcessStats {
    fn to_json(&self) -> Value {
        json!({
            "pid": self.pid,
            "processes": self.processes,
            "cpu_s": round(self.cpu_s, 3),
            "cpu_cores": round(self.cpu_cores, 2),
            "cpu_us_per_request": round(self.cpu_us_per_request, 1),
            "cpu_us_per_event": round(self.cpu_us_per_event, 2),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "rss_mb": round(self.rss_mb, 1),
            "peak_is_of_this_phase": self.peak_reset,
        })
    }
}

fn sample_before(pid: u32) -> ProcessSample {
    let pids = process_tree(pid);
    // "5" resets VmHWM to the current RSS (Linux >= 4.0); root or the owner only.
    let peak_reset = pids
        .iter()
        .all(|p| std::fs::write(format!("/proc/{p}/clear_refs"), "5").is_ok());
    ProcessSample {
        ticks: pids.iter().filter_map(|&p| cpu_ticks(p)).sum(),
        pids,
        at: Instant::now(),
        peak_reset,
    }
}

fn sample_after(pid: u32, before: &ProcessSample, tck: f64) -> ProcessStats {
    let mut pids = process_tree(pid);
    for p in &before.pids {
        if !pids.contains(p) {
            pids.push(*p);
        }
    }
    let ticks: u64 = pids.iter().filter_map(|&p| cpu_ticks(p)).sum();
    let cpu_s = ticks.saturating_sub(before.ticks) as f64 / tck;
    let wall = before.at.elapsed().as_secs_f64();
    let peak: u64 = pids.iter().filter_map(|&p| status_kb(p, "VmHWM")).sum();
    let rss: u64 = pids.iter().filter_map(|&p| status_kb(p, "VmRSS")).sum();
    ProcessStats {
        pid,
        processes: pids.len(),
        cpu_s,
        wall_s: wall,
        cpu_cores: if wall > 0.0 { cpu_s / wall } else { 0.0 },
        cpu_us_per_request: f64::NAN,
        cpu_us_per_event: f64::NAN,
        peak_rss_mb: peak as f64 / (1024.0 * 1024.0),
        rss_mb: rss as f64 / (1024.0 * 1024.0),
        peak_reset: before.peak_reset,
    }
}

impl ProcessStats {
    /// Adds a later slice of the same phase: CPU adds up, the peak is the
    /// highest, the current RSS the latest.
    fn add(self, later: ProcessStats) -> ProcessStats {
        let cpu_s = self.cpu_s + later.cpu_s;
        let wall_s = self.wall_s + later.wall_s;
        ProcessStats {
            pid: self.pid,
            processes: self.processes.max(later.processes),
            cpu_s,
            wall_s,
            cpu_cores: if wall_s > 0.0 { cpu_s / wall_s } else { 0.0 },
            cpu_us_per_request: f64::NAN,
            cpu_us_per_event: f64::NAN,
            peak_rss_mb: self.peak_rss_mb.max(later.peak_rss_mb),
            rss_mb: later.rss_mb,
            peak_reset: self.peak_reset && later.peak_reset,
        }
    }
}

fn self_ticks() -> u64 {
    cpu_ticks(std::process::id()).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Load.

#[derive(Clone, Copy, Debug)]
enum Mode {
    Saturate { concurrency: usize },
    Rate { rate: f64 },
}

impl Mode {
    fn name(&self) -> String {
        match self {
            Mode::Saturate { concurrency } => format!("saturate c={concurrency}"),
            Mode::Rate { rate } => format!("rate {rate}/s"),
        }
    }
}

/// Closed loop: `concurrency` workers until `until`, each on a connection
/// of its own, so that the server holds exactly `concurrency` connections.
/// (Through a pool, a worker that sends its next request before its last
/// connection is back in the pool opens another one: with 1,000 workers
/// the server then held about 1,400 connections, a third of them idle,
/// and their memory was counted as that of requests.) The connections are
/// kept for the next slice of the same path.
async fn closed_loop(shot: Arc<Shot>, concurrency: usize, duration: Duration) -> (Record, u64) {
    let started = Instant::now();
    let until = started + duration;
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let shot = shot.clone();
        workers.push(tokio::spawn(async move {
            let mut record = Record::default();
            let mut sent = 0u64;
            let mut conn = shot.conns.lock().expect("not poisoned").pop();
            while Instant::now() < until && (sent as usize) < MAX_RECORDED {
                let t0 = Instant::now();
                let outcome = shot.fire_on(&mut conn).await;
                record.add(outcome, t0.elapsed());
                sent += 1;
            }
            if let Some(conn) = conn {
                shot.conns.lock().expect("not poisoned").push(conn);
            }
            (record, sent)
        }));
    }
    let mut record = Record::default();
    let mut sent = 0;
    for worker in workers {
        if let Ok((r, s)) = worker.await {
            record.merge(r);
            sent += s;
        }
    }
    (record, sent)
}

/// Open loop: request `i` is due at `start + i / rate`, and its latency is
/// measured from that instant. The schedule is kept by a dedicated thread
/// (`std::thread::sleep` is precise to tens of microseconds, tokio's timer
/// to a millisecond), which spawns each request onto the runtime.
async fn open_loop(
    shot: Arc<Shot>,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
) -> (Record, u64, u64, Instant) {
    let record = Arc::new(Mutex::new(Record::default()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let total = ((rate * duration.as_secs_f64()).round() as u64).clamp(1, MAX_RECORDED as u64);
    let period = Duration::from_secs_f64(1.0 / rate);
    let handle = tokio::runtime::Handle::current();
    let (rec, flight) = (record.clone(), in_flight.clone());
    let scheduled = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut skipped = 0u64;
        for i in 0..total {
            let due = started + period.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if flight.load(Ordering::Relaxed) >= max_in_flight {
                skipped += 1;
                continue;
            }
            flight.fetch_add(1, Ordering::Relaxed);
            let (shot, record, flight) = (shot.clone(), rec.clone(), flight.clone());
            handle.spawn(async move {
                let outcome = shot.fire().await;
                let latency = due.elapsed();
                record.lock().expect("not poisoned").add(outcome, latency);
                flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        (started, skipped)
    })
    .await;
    let (started, skipped) = scheduled.unwrap_or_else(|e| fail(format!("scheduler: {e}")));
    // Every request ends within its timeout; wait for the stragglers.
    while in_flight.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let record = std::mem::take(&mut *record.lock().expect("not poisoned"));
    (record, total - skipped, skipped, started)
}

fn client(pool: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(pool)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// One path of one mode: its client, and what its slices recorded so far.
struct PathRun {
    shot: Arc<Shot>,
    record: Record,
    sent: u64,
    skipped: u64,
    elapsed_s: f64,
    wall_s: f64,
    self_cpu_s: f64,
    process: Option<ProcessStats>,
}

impl PathRun {
    async fn new(args: &Args, url: &str, mode: Mode) -> PathRun {
        let pool = match mode {
            Mode::Saturate { concurrency } => concurrency,
            Mode::Rate { .. } => 1024,
        };
        let shot = Arc::new(Shot {
            client: client(pool),
            conns: Mutex::new(Vec::new()),
            uri: endpoint(url),
            model: args.model.clone(),
            stream: args.stream,
            timeout: args.timeout,
            counter: Arc::new(AtomicU64::new(0)),
            authorization: http::HeaderValue::try_from(format!("Bearer {}", args.api_key))
                .unwrap_or_else(|_| fail("--api-key is not a valid header value")),
        });
        if !args.warmup.is_zero() {
            // Opens the connections and wakes the server up; not recorded.
            let warm = match mode {
                Mode::Saturate { concurrency } => concurrency,
                Mode::Rate { rate } => ((rate / 200.0).ceil() as usize).clamp(2, 256),
            };
            let _ = closed_loop(shot.clone(), warm, args.warmup).await;
        }
        PathRun {
            shot,
            record: Record::default(),
            sent: 0,
            skipped: 0,
            elapsed_s: 0.0,
            wall_s: 0.0,
            self_cpu_s: 0.0,
            process: None,
        }
    }

    /// Runs one slice of `duration`, sampling `pid` around it.
    async fn slice(
        &mut self,
        args: &Args,
        mode: Mode,
        duration: Duration,
        pid: Option<u32>,
        tck: f64,
    ) {
        let before = pid.map(sample_before);
        let self_before = self_ticks();
        let wall = Instant::now();
        let (mut record, sent, skipped, started) = match mode {
            Mode::Saturate { concurrency } => {
                let started = Instant::now();
                let (record, sent) = closed_loop(self.shot.clone(), concurrency, duration).await;
                (record, sent, 0, started)
            }
            Mode::Rate { rate } => {
                open_loop(self.shot.clone(), rate, duration, args.max_in_flight).await
            }
        };
        let wall = wall.elapsed().as_secs_f64();
        self.wall_s += wall;
        self.self_cpu_s += self_ticks().saturating_sub(self_before) as f64 / tck;
        if let (Some(pid), Some(before)) = (pid, before) {
            let slice = sample_after(pid, &before, tck);
            self.process = Some(match self.process.take() {
                Some(so_far) => so_far.add(slice),
                None => slice,
            });
        }
        self.elapsed_s += record
            .last_done
            .take()
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(started))
            .as_secs_f64();
        self.sent += sent;
        self.skipped += skipped;
        self.record.merge(record);
    }

    fn finish(self) -> PathStats {
        let mut stats =
            PathStats::from_record(self.record, self.elapsed_s, self.sent, self.skipped);
        stats.loadgen_cpu_cores = self.self_cpu_s / self.wall_s.max(1e-9);
        stats.process = self.process.map(|mut p| {
            if stats.ok > 0 {
                p.cpu_us_per_request = p.cpu_s * 1e6 / stats.ok as f64;
            }
            if stats.events_per_request > 0.0 {
                p.cpu_us_per_event = p.cpu_us_per_request / stats.events_per_request;
            }
            p
        });
        stats
    }
}

struct RunResult {
    mode: Mode,
    direct: Option<PathStats>,
    target: Option<PathStats>,
}

impl RunResult {
    fn added(&self, pick: impl Fn(&PathStats) -> f64) -> f64 {
        match (&self.direct, &self.target) {
            (Some(d), Some(t)) => pick(t) - pick(d),
            _ => f64::NAN,
        }
    }

    /// Error-free, nothing skipped, at least 95% of the offered rate, p99
    /// under the bound (open loop only).
    fn sustained(stats: &PathStats, mode: Mode, max_p99_ms: f64) -> bool {
        match mode {
            Mode::Saturate { .. } => stats.error_count() == 0,
            Mode::Rate { rate } => {
                stats.error_count() == 0
                    && stats.skipped == 0
                    && stats.throughput >= 0.95 * rate
                    && stats.p99_ms <= max_p99_ms
            }
        }
    }

    fn to_json(&self, args: &Args) -> Value {
        let (kind, concurrency, rate) = match self.mode {
            Mode::Saturate { concurrency } => ("saturate", Some(concurrency), None),
            Mode::Rate { rate } => ("rate", None, Some(rate)),
        };
        json!({
            "mode": kind,
            "concurrency": concurrency,
            "rate": rate,
            "direct": self.direct.as_ref().map(PathStats::to_json),
            "target": self.target.as_ref().map(PathStats::to_json),
            "added_p50_ms": round(self.added(|s| s.p50_ms), 3),
            "added_p90_ms": round(self.added(|s| s.p90_ms), 3),
            "added_p99_ms": round(self.added(|s| s.p99_ms), 3),
            "direct_sustained": self.direct.as_ref().map(|s| Self::sustained(s, self.mode, args.max_p99_ms)),
            "target_sustained": self.target.as_ref().map(|s| Self::sustained(s, self.mode, args.max_p99_ms)),
        })
    }
}

fn fmt_ms(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "-".to_owned()
    }
}

fn print_header(args: &Args) {
    println!(
        "loadgen{}: direct {} / target {}; {}; model {}; {:.0} s per path in {} alternating slice(s) after {:.1} s warm-up; {} loadgen thread(s)",
        args.label
            .as_deref()
            .map(|l| format!(" [{l}]"))
            .unwrap_or_default(),
        args.direct.as_deref().unwrap_or("-"),
        args.target.as_deref().unwrap_or("-"),
        if args.stream {
            "streaming (SSE to [DONE])"
        } else {
            "non-streaming"
        },
        args.model,
        args.duration.as_secs_f64(),
        args.rounds,
        args.warmup.as_secs_f64(),
        args.threads,
    );
    println!(
        "{:<18} {:<7} {:>9} {:>9} {:>7} {:>10} {:>8} {:>8} {:>8} {:>9}  errors",
        "mode", "path", "sent", "ok", "skipped", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
}

fn print_run(run: &RunResult, args: &Args) {
    for (name, stats) in [("direct", &run.direct), ("target", &run.target)] {
        let Some(s) = stats else { continue };
        let errors = if s.errors.is_empty() {
            "0".to_owned()
        } else {
            s.errors
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "{:<18} {:<7} {:>9} {:>9} {:>7} {:>10.0} {:>8} {:>8} {:>8} {:>9}  {}{}",
            run.mode.name(),
            name,
            s.sent,
            s.ok,
            s.skipped,
            s.throughput,
            fmt_ms(s.p50_ms),
            fmt_ms(s.p90_ms),
            fmt_ms(s.p99_ms),
            fmt_ms(s.max_ms),
            errors,
            if RunResult::sustained(s, run.mode, args.max_p99_ms) {
                ""
            } else {
                "  (not sustained)"
            },
        );
        if args.stream {
            println!(
                "{:<18} {:<7} time to first byte p50 {} ms",
                "",
                "",
                fmt_ms(s.ttfb_p50_ms)
            );
        }
    }
    let mut notes = Vec::new();
    if run.direct.is_some() && run.target.is_some() {
        notes.push(format!(
            "added latency p50 {:+.3} ms, p99 {:+.3} ms",
            run.added(|s| s.p50_ms),
            run.added(|s| s.p99_ms)
        ));
    }
    if let Some(p) = run.target.as_ref().and_then(|t| t.process.as_ref()) {
        notes.push(format!(
            "pid {} ({} process{}): {:.1} µs CPU/request, {:.2} cores, peak RSS {:.1} MB{}",
            p.pid,
            p.processes,
            if p.processes == 1 { "" } else { "es" },
            p.cpu_us_per_request,
            p.cpu_cores,
            p.peak_rss_mb,
            if p.peak_reset { "" } else { " (since start)" },
        ));
    }
    let lg: Vec<String> = [("direct", &run.direct), ("target", &run.target)]
        .iter()
        .filter_map(|(n, s)| {
            s.as_ref()
                .map(|s| format!("{n} {:.2}", s.loadgen_cpu_cores))
        })
        .collect();
    notes.push(format!("loadgen CPU cores: {}", lg.join(", ")));
    println!("{:<18} {}", "", notes.join("; "));
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(format!("no tokio runtime: {e}")));
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let tck = clock_ticks();
    if let Some(pid) = args.pid
        && cpu_ticks(pid).is_none()
    {
        fail(format!(
            "--pid {pid}: no such process (or /proc is not readable)"
        ));
    }
    let mut modes = Vec::new();
    if args.saturate {
        modes.push(Mode::Saturate {
            concurrency: args.concurrency,
        });
    }
    modes.extend(args.rates.iter().map(|&rate| Mode::Rate { rate }));
    if !args.json {
        print_header(&args);
    }
    let mut runs = Vec::new();
    let mut skipped_rates: Vec<f64> = Vec::new();
    for mode in modes {
        if let Mode::Rate { rate } = mode
            && args.stop_when_unsustained
            && runs.iter().any(|r: &RunResult| {
                matches!(r.mode, Mode::Rate { .. })
                    && r.target
                        .as_ref()
                        .or(r.direct.as_ref())
                        .is_some_and(|s| !RunResult::sustained(s, r.mode, args.max_p99_ms))
            })
        {
            if !args.json {
                println!(
                    "{:<18} skipped: a lower rate was not sustained",
                    mode.name()
                );
            }
            skipped_rates.push(rate);
            continue;
        }
        // Direct and gateway slices alternate, so that a neighbour's burst
        // of CPU on this shared machine lands on both paths alike.
        let mut direct = match &args.direct {
            Some(url) => Some(PathRun::new(&args, url, mode).await),
            None => None,
        };
        let mut target = match &args.target {
            Some(url) => Some(PathRun::new(&args, url, mode).await),
            None => None,
        };
        let slice = args.duration / args.rounds;
        for _ in 0..args.rounds {
            if let Some(d) = direct.as_mut() {
                d.slice(&args, mode, slice, None, tck).await;
            }
            if let Some(t) = target.as_mut() {
                t.slice(&args, mode, slice, args.pid, tck).await;
            }
        }
        let run = RunResult {
            mode,
            direct: direct.map(PathRun::finish),
            target: target.map(PathRun::finish),
        };
        if !args.json {
            print_run(&run, &args);
        }
        runs.push(run);
    }
    if args.json {
        let out = json!({
            "label": args.label,
            "target": args.target,
            "direct": args.direct,
            "stream": args.stream,
            "model": args.model,
            "duration_s": args.duration.as_secs_f64(),
            "warmup_s": args.warmup.as_secs_f64(),
            "loadgen_threads": args.threads,
            "rounds": args.rounds,
            "max_p99_ms": args.max_p99_ms,
            "pid": args.pid,
            "runs": runs.iter().map(|r| r.to_json(&args)).collect::<Vec<_>>(),
            "skipped_rates": skipped_rates,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("JSON serializes")
        );
    }
}
