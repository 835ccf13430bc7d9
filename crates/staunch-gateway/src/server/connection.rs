//! One client connection: hyper's HTTP/1 connection, watched for a slow
//! head, idleness and eviction.

use super::CONNECTIONS_CLOSED;
use super::body::Paced;
use super::limits::Limits;
use super::slots::{Slot, Waiting};
use atomic_waker::AtomicWaker;
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
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// What a connection's task, its request service, its socket and its
/// bodies tell each other. Everything but eviction happens on the
/// connection's own task, while hyper polls the connection: the watch reads
/// it again after each poll, so those changes need no wake-up (a wake-up of
/// the task from within its own poll would poll the whole connection, and
/// each request's stack, once more for nothing).
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
    /// Wakes the connection's watch for an eviction, the one change made
    /// from another task.
    waker: AtomicWaker,
}

impl Shared {
    /// Asks the connection to close if it is still waiting for a request.
    pub(super) fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.waker.wake();
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
    /// it, or `stop` turns true (then the request being served finishes).
    pub(super) fn run<S>(
        self,
        http: &hyper::server::conn::http1::Builder,
        app: S,
        stop: watch::Receiver<bool>,
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
fn watch<C>(
    connection: C,
    shared: Arc<Shared>,
    slot: Slot,
    waiting: Waiting,
    limits: Arc<Limits>,
    stop: watch::Receiver<bool>,
) -> Watch<C, impl Future<Output = ()>>
where
    C: Future<Output = hyper::Result<()>> + GracefulShutdown,
{
    let start = Instant::now();
    // A new connection owes its first head from the start.
    let first_head = start + limits.header_timeout;
    Watch {
        connection,
        stop: super::stopped(stop),
        timer: tokio::time::sleep_until(first_head),
        armed: true,
        stopping: false,
        shared,
        slot,
        waiting: Some(waiting),
        limits,
        head_since: Some(start),
        idle_since: start,
    }
}

pin_project! {
    /// [`watch`]'s future: hyper's connection, and the bounds above checked
    /// after each of its polls.
    ///
    /// One timer serves every bound, and it is moved only to an earlier
    /// deadline: a later one (the idle deadline after each request of a
    /// kept-alive connection) waits until the timer fires, which then
    /// looks at the deadline of the moment and is set again if it is not
    /// due. So a busy connection sets its timer about once per bound's
    /// length, not once per request.
    struct Watch<C, St> {
        #[pin]
        connection: C,
        #[pin]
        stop: St,
        #[pin]
        timer: Sleep,
        // The timer is set and has not been seen to fire.
        armed: bool,
        // `stop` resolved: the connection is finishing its request.
        stopping: bool,
        shared: Arc<Shared>,
        slot: Slot,
        // Listed among the connections waiting for a request (while idle).
        waiting: Option<Waiting>,
        limits: Arc<Limits>,
        // When the head being waited for began (the connection's start, or
        // the first byte of a later head).
        head_since: Option<Instant>,
        // When the connection last fell idle.
        idle_since: Instant,
    }
}

impl<C, St> Future for Watch<C, St>
where
    C: Future<Output = hyper::Result<()>> + GracefulShutdown,
    St: Future<Output = ()>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        if !*this.stopping && this.stop.as_mut().poll(cx).is_ready() {
            // Let the request being served finish; an idle connection
            // closes at once.
            *this.stopping = true;
            this.connection.as_mut().graceful_shutdown();
        }
        if let Poll::Ready(result) = this.connection.as_mut().poll(cx) {
            if let Err(e) = result {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
            return Poll::Ready(());
        }
        if *this.stopping {
            return Poll::Pending;
        }
        // Registered before the flag is read, so that an eviction after
        // the read wakes this task.
        let shared = &**this.shared;
        shared.waker.register(cx.waker());
        let busy = shared.in_flight.load(Ordering::Relaxed) > 0;
        if busy {
            *this.waiting = None;
            *this.head_since = None;
        } else {
            if this.waiting.is_none() {
                *this.waiting = Some(this.slot.waiting(this.shared));
                *this.idle_since = Instant::now();
            }
            if this.head_since.is_none() && shared.head_started.load(Ordering::Relaxed) {
                *this.head_since = Some(Instant::now());
            }
        }
        if shared.evicted.swap(false, Ordering::Acquire) && !busy {
            close(Closed::Evicted);
            return Poll::Ready(());
        }
        let (due, why) = match *this.head_since {
            _ if busy => return Poll::Pending,
            Some(since) => (since + this.limits.header_timeout, Closed::HeaderTimeout),
            None => (
                *this.idle_since + this.limits.idle_timeout,
                Closed::IdleTimeout,
            ),
        };
        loop {
            if !*this.armed || this.timer.deadline() > due {
                this.timer.as_mut().reset(due);
                *this.armed = true;
            }
            ready!(this.timer.as_mut().poll(cx));
            *this.armed = false;
            if this.timer.deadline() >= due {
                close(why);
                return Poll::Ready(());
            }
            // It fired for an earlier deadline than today's: set again.
        }
    }
}

fn close(why: Closed) {
    metrics::counter!(CONNECTIONS_CLOSED, "reason" => why.as_str()).increment(1);
    tracing::debug!(reason = why.as_str(), "closing a client connection");
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
        if buf.filled().len() > before && self.shared.in_flight.load(Ordering::Relaxed) == 0 {
            self.shared.head_started.store(true, Ordering::Relaxed);
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
