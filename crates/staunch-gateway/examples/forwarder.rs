//! A bare HTTP/1.1 forwarder on hyper: the baseline the gateway's CPU per
//! request is compared with (`docs/gateway-benchmarks.md`).
//!
//! ```text
//! cargo run --release -p staunch-gateway --example forwarder -- \
//!     --listen 127.0.0.1:8090 --upstream http://127.0.0.1:PORT
//! ```
//!
//! Every request goes to the upstream as it came (method, path, headers,
//! body streamed through), and the upstream's answer comes back as it is.
//! Nothing is parsed, checked or retried: it does what any proxy must do and
//! nothing more, with the same runtime, accept loop settings (`TCP_NODELAY`)
//! and client (hyper-util's pooled client) as the gateway. Loopback only.

use http::uri::{Authority, Scheme};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;

type Upstream = Client<HttpConnector, Incoming>;

fn usage() -> ! {
    eprintln!("usage: forwarder --listen 127.0.0.1:PORT --upstream http://127.0.0.1:PORT");
    std::process::exit(2)
}

/// `--listen` and the upstream's authority, both on loopback.
fn arguments() -> (SocketAddr, Authority) {
    let mut listen = None;
    let mut upstream = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v.parse::<SocketAddr>().ok(),
            ("--upstream", Some(v)) => {
                upstream = v
                    .parse::<http::Uri>()
                    .ok()
                    .and_then(|u| u.authority().cloned());
            }
            _ => usage(),
        }
    }
    match (listen, upstream) {
        (Some(listen), Some(upstream))
            if listen.ip().is_loopback()
                && upstream
                    .host()
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback()) =>
        {
            (listen, upstream)
        }
        _ => usage(),
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
    let (listen, upstream) = arguments();
    let client: Upstream = Client::builder(TokioExecutor::new()).build_http();
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("could not listen on {listen}: {e}");
            std::process::exit(1)
        }
    };
    println!("forwarder listening on http://{listen}, upstream http://{upstream}");
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
