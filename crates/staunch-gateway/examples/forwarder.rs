//! A bare HTTP/1.1 forwarder on hyper: the baseline the gateway's CPU per
//! request is compared with (`docs/gateway-benchmarks.md`).
//!
//! ```text
//! cargo run --release -p staunch-gateway --example forwarder -- \
//!     --listen 127.0.0.1:8090 --upstream http://127.0.0.1:PORT [--http2] [--parse]
//! ```
//!
//! Every request goes to the upstream as it came (method, path, headers,
//! body streamed through), and the upstream's answer comes back as it is.
//! Nothing is parsed, checked or retried: it does what any proxy must do and
//! nothing more, with the same runtime, accept loop settings (`TCP_NODELAY`)
//! and client (hyper-util's pooled client) as the gateway. A streamed answer
//! is relayed frame by frame as it arrives. `--http2` speaks HTTP/2 to the
//! upstream (prior knowledge), as the gateway does with
//! `http2_prior_knowledge = true` or with a provider that negotiates
//! HTTP/2 over TLS. hyper-util's client keeps one multiplexed connection
//! per upstream, so past the server's streams per connection the streams
//! queue; `--connections N` spreads the client connections over `N`
//! clients, each with a pool of its own (the gateway opens another
//! connection every 100 streams instead). Loopback only.
//!
//! `--parse` makes it the forwarder issue 33 measures against: "parse,
//! re-serialise, one fallback". Each request body is read whole, parsed
//! into a `serde_json::Value` and written again; a request that fails
//! (a transport error, a 429 or a 5xx) is sent once more; an answer that
//! is not streamed is read whole, parsed and written again, and a streamed
//! one is relayed as it comes.

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;

type Upstream = Client<HttpConnector, Incoming>;
type ParsingUpstream = Client<HttpConnector, Full<Bytes>>;

/// A bare HTTP/1.1 forwarder on loopback: every request goes to the
/// upstream as it came, and the answer comes back as it is.
#[derive(clap::Parser)]
#[command(name = "forwarder", args_override_self = true)]
struct Args {
    /// The loopback address to listen on.
    #[arg(long, value_name = "127.0.0.1:PORT", value_parser = loopback_listen)]
    listen: SocketAddr,
    /// The upstream's URL, on loopback.
    #[arg(long, value_name = "http://127.0.0.1:PORT", value_parser = loopback_upstream)]
    upstream: Authority,
    /// Speak HTTP/2 to the upstream (prior knowledge) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// Parse and re-serialise each JSON body, and send a failed request
    /// once more.
    #[arg(long)]
    parse: bool,
    /// Clients to spread the client connections over, in turn, each with
    /// a pool (and so an HTTP/2 connection) of its own.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    connections: u16,
}

/// A socket address on loopback.
fn loopback_listen(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.parse().map_err(|e| format!("{e}"))?;
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err("not a loopback address".to_owned())
    }
}

/// The authority of a URL whose host is a loopback IP address.
fn loopback_upstream(text: &str) -> Result<Authority, String> {
    let uri: http::Uri = text.parse().map_err(|e| format!("{e}"))?;
    let authority = uri.authority().cloned().ok_or("no host")?;
    match authority.host().parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_loopback() => Ok(authority),
        _ => Err("not a loopback IP address".to_owned()),
    }
}

async fn forward(
    client: Upstream,
    upstream: Authority,
    request: http::Request<Incoming>,
) -> Result<http::Response<Incoming>, hyper_util::client::legacy::Error> {
    let (mut parts, body) = request.into_parts();
    parts.uri = upstream_uri(std::mem::take(&mut parts.uri), upstream);
    client.request(http::Request::from_parts(parts, body)).await
}

/// `uri` with the upstream's scheme and authority.
fn upstream_uri(uri: http::Uri, upstream: Authority) -> http::Uri {
    let mut uri = uri.into_parts();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(upstream);
    // The parts of a URI taken from a valid one stay valid.
    http::Uri::from_parts(uri).unwrap_or_default()
}

/// A whole JSON body parsed and written again; other bytes as they came.
fn reserialise(body: &Bytes) -> Bytes {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => serde_json::to_vec(&value).map_or_else(|_| body.clone(), Bytes::from),
        Err(_) => body.clone(),
    }
}

type Answer = http::Response<Either<Incoming, Full<Bytes>>>;

/// `--parse`: parse, re-serialise, one fallback.
async fn forward_parsed(
    client: ParsingUpstream,
    upstream: Authority,
    request: http::Request<Incoming>,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    let (mut parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let value = serde_json::from_slice::<serde_json::Value>(&body).ok();
    let stream = value
        .as_ref()
        .and_then(|v| v.get("stream"))
        .and_then(serde_json::Value::as_bool)
        == Some(true);
    let body = match value {
        Some(value) => Bytes::from(serde_json::to_vec(&value)?),
        None => body,
    };
    parts.uri = upstream_uri(std::mem::take(&mut parts.uri), upstream);
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let send = |parts: &http::request::Parts| {
        let mut request = http::Request::new(Full::new(body.clone()));
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.headers_mut() = parts.headers.clone();
        client.request(request)
    };
    let failed = |r: &Result<http::Response<Incoming>, _>| {
        r.as_ref().map_or(true, |a| {
            a.status() == http::StatusCode::TOO_MANY_REQUESTS || a.status().is_server_error()
        })
    };
    let mut answer = send(&parts).await;
    if failed(&answer) {
        answer = send(&parts).await;
    }
    let answer = answer?;
    if stream {
        return Ok(answer.map(Either::Left));
    }
    let (mut parts, body) = answer.into_parts();
    let body = reserialise(&body.collect().await?.to_bytes());
    parts.headers.remove(http::header::CONTENT_LENGTH);
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    Ok(http::Response::from_parts(
        parts,
        Either::Right(Full::new(body)),
    ))
}

/// `count` clients, each with a pool of its own (no connection is opened
/// before its first request).
fn pooled_clients<B>(count: u16, http2: bool) -> Vec<Client<HttpConnector, B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    (0..count)
        .map(|_| {
            Client::builder(TokioExecutor::new())
                .http2_only(http2)
                .build_http()
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let Args {
        listen,
        upstream,
        http2,
        parse,
        connections,
    } = clap::Parser::parse();
    let clients: Vec<Upstream> = pooled_clients(connections, http2);
    let parsing_clients: Vec<ParsingUpstream> = pooled_clients(connections, http2);
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("could not listen on {listen}: {e}");
            std::process::exit(1)
        }
    };
    let version = if http2 { "HTTP/2" } else { "HTTP/1.1" };
    let spread = if connections > 1 {
        format!(", {connections} clients")
    } else {
        String::new()
    };
    let mode = if parse { ", parsing" } else { "" };
    println!(
        "forwarder listening on http://{listen}, upstream http://{upstream} over {version}{spread}{mode}"
    );
    let http = hyper::server::conn::http1::Builder::new();
    let mut accepted = 0usize;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        // Each client connection to the next client, in turn.
        let turn = accepted % clients.len();
        accepted = accepted.wrapping_add(1);
        if parse {
            let (client, upstream) = (parsing_clients[turn].clone(), upstream.clone());
            let service = hyper::service::service_fn(move |request| {
                forward_parsed(client.clone(), upstream.clone(), request)
            });
            let connection = http.serve_connection(io, service);
            tokio::spawn(async move {
                let _ = connection.await;
            });
        } else {
            let (client, upstream) = (clients[turn].clone(), upstream.clone());
            let service = hyper::service::service_fn(move |request| {
                forward(client.clone(), upstream.clone(), request)
            });
            let connection = http.serve_connection(io, service);
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
    }
}
