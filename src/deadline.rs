//! Cutting a call in flight when its [`Deadline`] comes.
//!
//! Every layer that holds a request's future (retry, for each attempt;
//! fallback, for each target's call; degrade, for the whole request) wraps it
//! in [`Bounded`], so the deadline bounds the call that is already running,
//! not only the waits between calls.

use crate::into_llm::to_llm;
use pin_project_lite::pin_project;
use staunch_core::{BoxError, LlmError};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::Sleep;

pub use staunch_core::{Deadline, DeadlineExceeded, DeadlineScope};

pin_project! {
    /// A call that ends with its deadline's [`exceeded`](Deadline::exceeded)
    /// error if it has not finished by then. Without a deadline it is the
    /// call alone (no timer is registered).
    pub(crate) struct Bounded<F> {
        // `None` when the deadline had passed before the call started: the
        // inner service was never called.
        #[pin]
        inner: Option<F>,
        // Boxed: a `Sleep` is larger than the rest of every layer's future,
        // and only a call with a deadline needs one.
        timer: Option<Pin<Box<Sleep>>>,
        deadline: Option<Deadline>,
    }
}

impl<F> Bounded<F> {
    /// Bounds `inner` by `deadline`.
    #[inline]
    pub(crate) fn new(inner: F, deadline: Option<Deadline>) -> Self {
        Bounded {
            inner: Some(inner),
            timer: deadline.map(|d| Box::pin(tokio::time::sleep_until(d.instant()))),
            deadline,
        }
    }

    /// A call that was not started because `deadline` had already passed.
    pub(crate) fn expired(deadline: Deadline) -> Self {
        Bounded {
            inner: None,
            timer: None,
            deadline: Some(deadline),
        }
    }
}

/// Calls `call` only when `deadline` (if any) has not passed, and bounds the
/// call by it.
#[inline]
pub(crate) fn start<F>(deadline: Option<Deadline>, call: impl FnOnce() -> F) -> Bounded<F> {
    match deadline {
        Some(d) if d.is_expired() => Bounded::expired(d),
        _ => Bounded::new(call(), deadline),
    }
}

impl<F, T, E> Future for Bounded<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, LlmError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The call first: an answer that is ready when the deadline comes
        // is kept.
        if let Some(inner) = this.inner.as_pin_mut() {
            if let Poll::Ready(result) = inner.poll(cx) {
                return Poll::Ready(result.map_err(to_llm));
            }
        } else if let Some(deadline) = this.deadline {
            return Poll::Ready(Err(deadline.exceeded()));
        }
        match (this.timer, this.deadline) {
            (Some(timer), Some(deadline)) => match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(deadline.exceeded())),
                Poll::Pending => Poll::Pending,
            },
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn a_hung_call_is_cut_at_the_deadline() {
        let started = Instant::now();
        let deadline = Deadline::after(Duration::from_secs(2));
        let hung = std::future::pending::<Result<(), LlmError>>();
        let error = Bounded::new(hung, Some(deadline)).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(error.kind, staunch_core::ErrorKind::Timeout);
        assert_eq!(
            error.deadline_exceeded_scope(),
            Some(DeadlineScope::Request)
        );
        assert!(error.to_string().contains("deadline"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_finishes_in_time_is_untouched() {
        let deadline = Deadline::after(Duration::from_secs(2));
        let quick = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, LlmError>(7)
        };
        assert_eq!(Bounded::new(quick, Some(deadline)).await.unwrap(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn no_deadline_means_no_bound() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, LlmError>(())
        };
        Bounded::new(slow, None).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_passed_deadline_never_starts_the_call() {
        let deadline = Deadline::after(Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        let mut called = false;
        let bounded = start(Some(deadline), || {
            called = true;
            async { Ok::<_, LlmError>(()) }
        });
        let error = bounded.await.unwrap_err();
        assert!(!called);
        assert!(error.is_deadline_exceeded());
    }
}
