//! One client connection: hyper's HTTP/1 connection, watched for a slow
//! head, idleness and eviction.

use super::CONNECTIONS_CLOSED;
use super::body::Paced;
use super::limits::Limits;
use super::slots::{Slot, Waiting};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::ServiceExt;

/// What a connection's task, its request service, its socket and its
/// bodies tell each other. Everything but eviction happens on the
/// connection's own task, while hyper polls the connection.
#[derive(Default)]
pub(crate) struct Shared {
    /// Requests whose response has not been written yet.
    in_flight: AtomicUsize,
    /// Bytes arrived while no request was in flight: a head has begun.
    head_started: AtomicBool,
    /// The accept loop wants this connection's slot.
    evicted: AtomicBool,
    /// A request body arrived too slowly: the connection closes after its
    /// answer.
    body_too_slow: AtomicBool,
    /// Wakes the connection's watch when any of the above changes.
    changed: Notify,
}

impl Shared {
    /// Asks the connection to close if it is still waiting for a request.
    pub(super) fn evict(&self) {
        self.evicted.store(true, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// Notes that a request body broke its pace.
    pub(super) fn body_too_slow(&self) {
        if !self.body_too_slow.swap(true, Ordering::Relaxed) {
            metrics::counter!(CONNECTIONS_CLOSED, "reason" => "body_timeout").increment(1);
        }
    }
}

/// Why the watch closed a connection.
#[derive(Clone, Copy)]
enum Closed {
    HeaderTimeout,
    IdleTimeout,
    Evicted,
}

impl Closed {
    fn as_str(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::Evicted => "evicted",
        }
    }
}

/// An accepted connection, before it is served.
pub(super) struct Connection {
    stream: TcpStream,
    slot: Slot,
    waiting: Waiting,
    limits: Arc<Limits>,
    shared: Arc<Shared>,
}

impl Connection {
    /// The connection, listed at once among those waiting for a request,
    /// so that the accept loop can make room by closing it even before its
    /// task first runs.
    pub(super) fn new(stream: TcpStream, slot: Slot, limits: Arc<Limits>) -> Connection {
        let shared = Arc::new(Shared::default());
        let waiting = slot.waiting(&shared);
        Connection {
            stream,
            slot,
            waiting,
            limits,
            shared,
        }
    }

    /// Serves `app` on the connection until it closes, the watch closes
    /// it, or `stop` resolves (then the request being served finishes).
    pub(super) fn run<S>(
        self,
        http: &hyper::server::conn::http1::Builder,
        app: S,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        S: tower::Service<
                axum::extract::Request,
                Response = axum::response::Response,
                Error = Infallible,
            > + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let Connection {
            stream,
            slot,
            waiting,
            limits,
            shared,
        } = self;
        let service = {
            let shared = shared.clone();
            let limits = limits.clone();
            hyper::service::service_fn(move |request: http::Request<Incoming>| {
                let in_flight = InFlight::start(&shared);
                let request = request
                    .map(|body| axum::body::Body::new(Paced::new(body, &limits, shared.clone())));
                let answer = app.clone().oneshot(request);
                let shared = shared.clone();
                async move {
                    let mut response = answer.await?;
                    if shared.body_too_slow.load(Ordering::Relaxed) {
                        response.headers_mut().insert(
                            http::header::CONNECTION,
                            http::HeaderValue::from_static("close"),
                        );
                    }
                    Ok::<_, Infallible>(response.map(|body| Tracked {
                        body,
                        _in_flight: in_flight,
                    }))
                }
            })
        };
        let io = hyper_util::rt::TokioIo::new(Watched {
            stream,
            shared: shared.clone(),
        });
        let connection = http.serve_connection(io, service);
        watch(connection, shared, slot, waiting, limits, stop)
    }
}

/// Runs hyper's connection, and closes it when it breaks a bound while no
/// request is in flight: a head slower than `header_timeout` (timed from
/// the connection's start, or from the first byte of a later head), an
/// idle spell longer than `idle_timeout`, or the accept loop's eviction.
async fn watch<C>(
    connection: C,
    shared: Arc<Shared>,
    slot: Slot,
    waiting: Waiting,
    limits: Arc<Limits>,
    stop: impl Future<Output = ()>,
) where
    C: Future<Output = hyper::Result<()>> + GracefulShutdown,
{
    let mut connection = std::pin::pin!(connection);
    let mut stop = std::pin::pin!(stop);
    let start = Instant::now();
    // A new connection owes its first head from the start.
    let mut head_since = Some(start);
    let mut idle_since = start;
    let mut waiting = Some(waiting);
    loop {
        let busy = shared.in_flight.load(Ordering::Relaxed) > 0;
        if busy {
            waiting = None;
            head_since = None;
        } else {
            if waiting.is_none() {
                waiting = Some(slot.waiting(&shared));
                idle_since = Instant::now();
            }
            if head_since.is_none() && shared.head_started.load(Ordering::Relaxed) {
                head_since = Some(Instant::now());
            }
        }
        let deadline = match (busy, head_since) {
            (true, _) => None,
            (false, Some(since)) => Some((since + limits.header_timeout, Closed::HeaderTimeout)),
            (false, None) => Some((idle_since + limits.idle_timeout, Closed::IdleTimeout)),
        };
        let due = deadline.map(|(at, _)| at);
        tokio::select! {
            biased;
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
                break;
            }
            () = shared.changed.notified() => {
                if shared.evicted.swap(false, Ordering::Relaxed)
                    && shared.in_flight.load(Ordering::Relaxed) == 0
                {
                    close(Closed::Evicted);
                    break;
                }
            }
            () = sleep_until(due), if due.is_some() => {
                if let Some((_, why)) = deadline
                    && shared.in_flight.load(Ordering::Relaxed) == 0
                {
                    close(why);
                    break;
                }
            }
            () = &mut stop => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
                break;
            }
        }
    }
    drop(waiting);
    drop(slot);
}

fn close(why: Closed) {
    metrics::counter!(CONNECTIONS_CLOSED, "reason" => why.as_str()).increment(1);
    tracing::debug!(reason = why.as_str(), "closing a client connection");
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// hyper's `graceful_shutdown`, as a trait so the watch can name it.
trait GracefulShutdown {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S> GracefulShutdown for hyper::server::conn::http1::Connection<I, S>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: 'static,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::Connection::graceful_shutdown(self);
    }
}

/// Counts one request in flight from its head until its response's body
/// is written (or dropped).
struct InFlight {
    shared: Arc<Shared>,
}

impl InFlight {
    fn start(shared: &Arc<Shared>) -> InFlight {
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        shared.changed.notify_one();
        InFlight {
            shared: shared.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.shared.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            // Idle again: the next bytes begin a new head.
            self.shared.head_started.store(false, Ordering::Relaxed);
        }
        self.shared.changed.notify_one();
    }
}

pin_project! {
    /// A response body that keeps its request counted in flight.
    struct Tracked<B> {
        #[pin]
        body: B,
        _in_flight: InFlight,
    }
}

impl<B: Body<Data = Bytes>> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, noting when bytes arrive while no request is in flight.
struct Watched {
    stream: TcpStream,
    shared: Arc<Shared>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before
            && self.shared.in_flight.load(Ordering::Relaxed) == 0
            && !self.shared.head_started.swap(true, Ordering::Relaxed)
        {
            self.shared.changed.notify_one();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
