//! A request id on every request, and its access log line.
//!
//! [`RequestIdLayer`] takes the client's `x-request-id` (a short printable
//! one) or makes one, serves the request within a `request` span that
//! carries it, logs the `served` line when the answer is ready, and echoes
//! the id in the answer. A tower middleware rather than an axum `from_fn`
//! one: applied once around the router, not around each route, its future
//! is a plain state machine where `from_fn`'s clones the router and boxes
//! the request's whole future.

use crate::ingress::{X_STAUNCH_MODEL, X_STAUNCH_TIER};
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::instrument::Instrumented;

/// The header that carries the request id, both ways. A constant: a
/// header name given as a `&str` is copied onto the heap at each insert.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Applies [`RequestId`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> RequestId<S> {
        RequestId { inner }
    }
}

/// Gives each request an id, a span and an access log line (the module's
/// docs).
#[derive(Clone, Debug)]
pub(crate) struct RequestId<S> {
    inner: S,
}

impl<S> Service<Request> for RequestId<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let value = id_of(&request);
        request.headers_mut().insert(X_REQUEST_ID, value.clone());
        let span = tracing::info_span!(
            target: "staunch_gateway",
            "request",
            // Printable ASCII, checked by `id_of`. Given as `&str`, not
            // through `%` (Display): the same field value, recorded without
            // a trip through the formatting machinery.
            request_id = value.to_str().unwrap_or("invalid"),
            method = request.method().as_str(),
            path = request.uri().path(),
        );
        let started = Instant::now();
        // The inner call within the span too, as an `async` block's would be.
        let inner = span.in_scope(|| self.inner.call(request));
        ResponseFuture {
            inner: inner.instrument(span),
            value: Some(value),
            started,
        }
    }
}

pin_project! {
    /// The future of [`RequestId`]: the inner answer, logged and given the
    /// id.
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        // Taken when the answer is ready.
        value: Option<HeaderValue>,
        started: Instant,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut response = ready!(this.inner.as_mut().poll(cx))?;
        // The span is read back from the future that holds it (no second
        // handle to it, taken and released for every request).
        this.inner.span().in_scope(|| {
            tracing::info!(
                target: "staunch_gateway",
                // The message as a string field, first as a format string's
                // would be: the same key, value and place, written without
                // the formatting machinery.
                message = "served",
                status = response.status().as_u16(),
                model = response.headers().get(&X_STAUNCH_MODEL).and_then(|v| v.to_str().ok()).unwrap_or(""),
                tier = response.headers().get(&X_STAUNCH_TIER).and_then(|v| v.to_str().ok()).unwrap_or(""),
                ms = this.started.elapsed().as_secs_f64() * 1e3,
            );
        });
        if let Some(value) = this.value.take() {
            response.headers_mut().insert(X_REQUEST_ID, value);
        }
        Poll::Ready(Ok(response))
    }
}

/// The request's id: the client's `x-request-id` when it is a short
/// printable one, else a new one. A copy either way: the client's value is
/// a slice of the connection's read buffer, which must not be held for the
/// whole request.
fn id_of(request: &Request) -> HeaderValue {
    let made;
    let id = match request
        .headers()
        .get(&X_REQUEST_ID)
        .map(HeaderValue::as_bytes)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.iter().all(|b| b.is_ascii_graphic()))
    {
        Some(given) => given,
        None => {
            made = new_request_id();
            &made
        }
    };
    HeaderValue::from_bytes(id).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// A request id that is unique in this process and hard to guess across
/// restarts: `req_`, the start-up clock's nanoseconds in 16 hex digits, then
/// a counter in 8, written on the stack.
fn new_request_id() -> [u8; 28] {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut id = *b"req_000000000000000000000000";
    hex_into(&mut id[4..20], nanos);
    hex_into(&mut id[20..], n);
    id
}

/// Writes the low digits of `n` in lowercase hex, filling `out`.
fn hex_into(out: &mut [u8], mut n: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn made_request_ids_are_hex_after_a_prefix_and_differ() {
        let (a, b) = (super::new_request_id(), super::new_request_id());
        assert_ne!(a, b);
        for id in [a, b] {
            let id = std::str::from_utf8(&id).unwrap();
            let hex = id.strip_prefix("req_").unwrap();
            assert_eq!(hex.len(), 24);
            assert!(
                hex.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
        }
        let mut out = [0; 8];
        super::hex_into(&mut out, 0xdead_beef);
        assert_eq!(&out, b"deadbeef");
    }
}
