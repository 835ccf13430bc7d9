//! A request body that must keep arriving at a minimum pace.

use super::connection::Shared;
use super::limits::Limits;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The error a request body ends with when it arrives too slowly: it
/// paused longer than `body_timeout_secs`, or its average pace fell below
/// `min_body_bytes_per_sec` once `body_timeout_secs` had passed. The
/// gateway answers it with `408 Request Timeout` and closes the
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the request body arrived too slowly (a pause over {pause:?}, or slower than {min_rate} bytes/s on average)"
)]
pub struct BodyTooSlow {
    /// The longest pause allowed.
    pub pause: Duration,
    /// The slowest average pace allowed, in bytes per second.
    pub min_rate: u64,
}

impl BodyTooSlow {
    /// Whether `error`, or an error in its chain of sources, is a
    /// [`BodyTooSlow`].
    pub fn in_chain(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut next = Some(error);
        while let Some(error) = next {
            if error.is::<BodyTooSlow>() {
                return true;
            }
            next = error.source();
        }
        false
    }
}

pin_project! {
    /// `B`, with a deadline for its next piece that moves as it arrives.
    pub(super) struct Paced<B> {
        #[pin]
        inner: B,
        #[pin]
        deadline: Sleep,
        started: Instant,
        received: u64,
        pause: Duration,
        min_rate: u64,
        connection: Arc<Shared>,
        failed: bool,
    }
}

impl<B> Paced<B> {
    pub(super) fn new(inner: B, limits: &Limits, connection: Arc<Shared>) -> Paced<B> {
        let started = Instant::now();
        Paced {
            inner,
            deadline: tokio::time::sleep_until(started + limits.body_timeout),
            started,
            received: 0,
            pause: limits.body_timeout,
            min_rate: limits.min_body_rate,
            connection,
            failed: false,
        }
    }
}

impl<B> Body for Paced<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.received = this.received.saturating_add(data.len() as u64);
                    // The next piece is due within a pause from now, and
                    // while the average pace since the start holds.
                    let paced =
                        Duration::try_from_secs_f64(*this.received as f64 / *this.min_rate as f64)
                            .unwrap_or(Duration::MAX);
                    let by_pause = Instant::now().checked_add(*this.pause);
                    let by_pace = this.started.checked_add(this.pause.saturating_add(paced));
                    let due = match (by_pause, by_pace) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    if let Some(due) = due {
                        this.deadline.as_mut().reset(due);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.deadline.poll(cx));
                *this.failed = true;
                this.connection.body_too_slow();
                Poll::Ready(Some(Err(Box::new(BodyTooSlow {
                    pause: *this.pause,
                    min_rate: *this.min_rate,
                }))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
