//! The gateway's HTTP/1.1 server, with bounds on what one client can hold.
//!
//! [`max_concurrency`](crate::config::Server::max_concurrency) bounds the
//! requests in flight, but a client that opens connections and sends its
//! request heads one byte at a time holds no request at all: it holds
//! file descriptors and memory. [`serve`] bounds that too, as Envoy and
//! nginx do by default:
//!
//! | bound | setting (`[server]`) | default | what happens past it |
//! |---|---|---|---|
//! | time to send a request head | `header_timeout_secs` | 5 s | the connection is closed |
//! | pause in a request body, and the grace before the pace below applies | `body_timeout_secs` | 10 s | `408`, then the connection is closed |
//! | average pace of a request body | `min_body_bytes_per_sec` | 1024 | `408`, then the connection is closed |
//! | idle time of a kept-alive connection | `idle_timeout_secs` | 60 s | the connection is closed |
//! | open connections | `max_connections` | half the open-file limit, at most 16,384 | the connection that has waited longest for its request head makes room; with none waiting, new connections wait in the listen backlog |
//!
//! A connection serving a request (a long stream included) is never
//! closed by these timeouts. Each closing is counted in
//! [`CONNECTIONS_CLOSED`] by reason, and [`CONNECTIONS_OPEN`] gauges the
//! open connections.
//!
//! An idle connection costs its task, its socket and hyper's connection
//! state with an 8 KiB read buffer (`docs/reliability.md` has the measured
//! figure), so `max_connections` bounds that memory too.
//!
//! ```no_run
//! use staunch_gateway::server::{Limits, serve};
//! use staunch_gateway::{Gateway, config::Config, router};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::mock();
//! let limits = Limits::new(&config.server, staunch_gateway::server::open_file_limit());
//! let gateway = Gateway::build(config).await?;
//! let listener = staunch_gateway::server::bind("127.0.0.1:8080".parse()?)?;
//! let (_stop, stopped) = tokio::sync::watch::channel(false);
//! serve(listener, router(gateway), limits, stopped).await;
//! # Ok(()) }
//! ```

mod body;
mod connection;
mod limits;
mod slots;

pub use body::BodyTooSlow;
pub use limits::{Limits, open_file_limit, raise_open_file_limit};

use connection::Connection;
use slots::Slots;
use std::sync::Arc;
use tokio::sync::watch;

/// The gauge of open client connections.
pub const CONNECTIONS_OPEN: &str = "staunch_gateway_connections_open";
/// Client connections the gateway closed for breaking a bound, by `reason`:
/// `header_timeout`, `body_timeout`, `idle_timeout` or `evicted` (closed
/// at the connection cap to make room for a new one).
pub const CONNECTIONS_CLOSED: &str = "staunch_gateway_connections_closed_total";

/// Serves `app` over HTTP/1.1 on every connection `listener` accepts,
/// within `limits`, until `stop` turns true; then it stops accepting, lets
/// each connection finish the request it is serving (an idle keep-alive
/// connection closes at once), and returns when every connection has
/// closed.
///
/// This is `axum::serve` written out, for what it costs per connection and
/// for the bounds above: one hyper HTTP/1 connection with its 8 KiB read
/// and write buffers, and the router shared rather than rebuilt.
/// (`axum::serve` goes through hyper-util's HTTP/1-or-2 detection, whose
/// read-ahead makes hyper grow its read buffer to 16 KiB, and it rebuilds
/// the router's route table for each connection: about 11 KiB more per
/// open connection.) Sockets are set `TCP_NODELAY`, so a stream's small
/// event writes are not held back by Nagle's algorithm.
///
/// A failed `accept` never makes the loop spin: a connection reset before
/// it was accepted is skipped, and when the process runs out of file
/// descriptors the loop waits until a connection closes (or a second).
///
/// `app` is any tower service of requests with axum's body, such as an
/// [`axum::Router`] or [`crate::service`] (which the binary serves).
pub async fn serve<S>(
    listener: tokio::net::TcpListener,
    app: S,
    limits: Limits,
    stop: watch::Receiver<bool>,
) where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let limits = Arc::new(limits);
    let slots = Slots::new(limits.max_connections);
    let mut http = hyper::server::conn::http1::Builder::new();
    // Our own watch on each connection times heads and idleness; hyper's
    // timer would end idle keep-alive connections at the head timeout.
    http.header_read_timeout(None);
    // Every connection task holds a receiver; the loop waits until none is left.
    let (open_tx, open_rx) = watch::channel(());
    let mut stopping = std::pin::pin!(stopped(stop.clone()));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_error(e, &slots).await;
                    continue;
                }
            },
            () = &mut stopping => break,
        };
        let slot = match slots.take() {
            Some(slot) => slot,
            None => tokio::select! {
                slot = slots.make_room() => match slot {
                    Some(slot) => slot,
                    None => break,
                },
                () = &mut stopping => break,
            },
        };
        // Best effort: a socket that refuses it still works.
        let _ = stream.set_nodelay(true);
        let connection = Connection::new(stream, slot, limits.clone());
        let task = connection.run(&http, app.clone(), stop.clone());
        let open = open_rx.clone();
        tokio::spawn(async move {
            task.await;
            drop(open);
        });
    }
    drop(open_rx);
    drop(listener);
    open_tx.closed().await;
}

/// How many connections the kernel may queue for [`serve`] to accept.
pub const LISTEN_BACKLOG: u32 = 1024;

/// A listener on `addr` with a backlog of [`LISTEN_BACKLOG`] connections
/// (and `SO_REUSEADDR`, as the standard library sets it).
///
/// `TcpListener::bind` asks for a backlog of 128: a burst of more new
/// connections than that, while the server is at its connection cap,
/// makes the kernel drop their handshakes, and their clients try again
/// only a second later.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Resolves once `stop` is true (or its sender is gone).
pub(super) async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// What to do when `accept` fails: a connection that was reset before it
/// was accepted is skipped; anything else (such as running out of file
/// descriptors) is logged, and accepting resumes when a connection closes,
/// or after a second.
async fn accept_error(e: std::io::Error, slots: &Slots) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(
        error = %e,
        open_connections = slots.open(),
        "accept failed; accepting again when a connection closes, or in 1 s"
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), slots.closed()).await;
}
