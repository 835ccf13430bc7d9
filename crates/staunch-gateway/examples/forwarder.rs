//! A bare HTTP/1.1 forwarder on hyper: the baseline the gateway's CPU per
//! request is compared with (`docs/gateway-benchmarks.md`).
//!
//! ```text
//! cargo run --release -p staunch-gateway --example forwarder -- \
//!     --listen 127.0.0.1:8090 --upstream http://127.0.0.1:PORT [--http2]
//! ```
//!
//! Every request goes to the upstream as it came (method, path, headers,
//! body streamed through), and the upstream's answer comes back as it is.
//! Nothing is parsed, checked or retried: it does what any proxy must do and
//! nothing more, with the same runtime, accept loop settings (`TCP_NODELAY`)
//! and client (hyper-util's pooled client) as the gateway. A streamed answer
//! is relayed frame by frame as it arrives. `--http2` speaks HTTP/2 to the
//! upstream (prior knowledge, one multiplexed connection), as the gateway
//! does with `http2_prior_knowledge = true` or with a provider that
//! negotiates HTTP/2 over TLS. Loopback only.

use http::uri::{Authority, Scheme};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;

type Upstream = Client<HttpConnector, Incoming>;

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
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(upstream);
    // The parts of a URI taken from a valid one stay valid.
    parts.uri = http::Uri::from_parts(uri).unwrap_or_default();
    client.request(http::Request::from_parts(parts, body)).await
}

#[tokio::main]
async fn main() {
    let Args {
        listen,
        upstream,
        http2,
    } = clap::Parser::parse();
    let client: Upstream = Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build_http();
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("could not listen on {listen}: {e}");
            std::process::exit(1)
        }
    };
    let version = if http2 { "HTTP/2" } else { "HTTP/1.1" };
    println!("forwarder listening on http://{listen}, upstream http://{upstream} over {version}");
    let http = hyper::server::conn::http1::Builder::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (client, upstream) = (client.clone(), upstream.clone());
        let service = hyper::service::service_fn(move |request| {
            forward(client.clone(), upstream.clone(), request)
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
