//! The `[server]` table: where and how the gateway listens.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::durations::secs;

/// The `[server]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// The address to listen on (`listen`, default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// The largest request body accepted, in bytes (`max_body_bytes`,
    /// default 2 MiB).
    pub max_body_bytes: usize,
    /// How many requests may be in flight at once (`max_concurrency`,
    /// default 256). More wait, unread, until one finishes.
    ///
    /// Each request in flight holds an upstream connection over HTTP/1.1
    /// (about 30 KiB with its buffers), so this also bounds memory
    /// (`docs/gateway-benchmarks.md` has measurements). And it bounds
    /// throughput to `max_concurrency` divided by the upstream's latency:
    /// 256 requests per second when answers take 1 s. Raise it for many
    /// long model calls.
    pub max_concurrency: usize,
    /// How long requests in flight may finish after a shutdown signal
    /// (`shutdown_grace_secs`, default 30).
    #[serde(rename = "shutdown_grace_secs", with = "secs")]
    pub shutdown_grace: Duration,
    /// How many client connections may be open at once
    /// (`max_connections`; default: half the process's open-file limit as
    /// read at start-up, at most 16,384).
    ///
    /// At the cap, a new connection takes the place of the connection that
    /// has waited longest for its request head (idle or still sending it);
    /// when every connection is serving a request, new ones wait in the
    /// listen backlog until one closes. The rest of the file descriptors
    /// stay free for upstream connections, Redis and the logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// How long a client may take to send a whole request head, from the
    /// connection's start or from its first byte on a kept-alive
    /// connection (`header_timeout_secs`, default 5). Slower connections
    /// are closed.
    #[serde(rename = "header_timeout_secs", with = "secs")]
    pub header_timeout: Duration,
    /// How long a kept-alive connection may sit idle between requests
    /// (`idle_timeout_secs`, default 60). A connection serving a request,
    /// a long stream included, is never idle.
    #[serde(rename = "idle_timeout_secs", with = "secs")]
    pub idle_timeout: Duration,
    /// The longest pause allowed while a request body arrives, and the grace
    /// before [`min_body_rate`](Self::min_body_rate) applies
    /// (`body_timeout_secs`, default 10).
    #[serde(rename = "body_timeout_secs", with = "secs")]
    pub body_timeout: Duration,
    /// The slowest average pace a request body may arrive at, in bytes per
    /// second, once [`body_timeout`](Self::body_timeout) has passed
    /// (`min_body_bytes_per_sec`, default 1024). A body slower than this, or
    /// one that pauses longer than `body_timeout`, is answered 408 and its
    /// connection closed.
    #[serde(rename = "min_body_bytes_per_sec")]
    pub min_body_rate: u64,
    /// The log format (`log_format`, `"json"` (default) or `"text"`).
    pub log_format: LogFormat,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 2 * 1024 * 1024,
            max_concurrency: 256,
            shutdown_grace: Duration::from_secs(30),
            max_connections: None,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(10),
            min_body_rate: 1024,
            log_format: LogFormat::Json,
        }
    }
}

/// How the gateway writes its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (`"json"`, the default).
    #[default]
    Json,
    /// Human-readable lines (`"text"`).
    Text,
}
