//! The overall deadline of a logical request.

use crate::LlmError;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// The moment by which a logical request must be finished, carried in
/// [`ChatRequest::extensions`](crate::ChatRequestParts::extensions).
///
/// It bounds every retry and fallback below it (Envoy's route timeout): no
/// staunch layer sleeps past it, an attempt in flight is cut when it comes
/// (each attempt runs for at most `min(its own timeout, time left)`), the
/// provider clients cap their own request timeout by it, and the degrade
/// layer answers from cache or its static answer by it. A call cut by a
/// deadline fails with a [`Timeout`](crate::ErrorKind::Timeout) error that
/// [`is_deadline_exceeded`](crate::LlmError::is_deadline_exceeded).
///
/// It uses tokio's clock, so tests can pause and advance time.
///
/// ```
/// use std::time::Duration;
/// use staunch_core::{ChatRequest, Deadline, Message};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let request = ChatRequest::new("gpt-4o", vec![Message::user("hi")])
///     .with_extension(Deadline::after(Duration::from_secs(30)));
/// let deadline = Deadline::of(&request).expect("set above");
/// assert!(deadline.remaining() <= Duration::from_secs(30));
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Deadline {
    at: Instant,
    scope: DeadlineScope,
}

impl Deadline {
    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Deadline {
            at: instant,
            scope: DeadlineScope::Request,
        }
    }

    /// A deadline `timeout` from now. A timeout too large to represent is
    /// capped at about thirty years.
    pub fn after(timeout: Duration) -> Self {
        let now = Instant::now();
        Deadline::at(
            now.checked_add(timeout)
                .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30)),
        )
    }

    /// The same deadline, saying it bounds `scope` (a fallback chain marks
    /// the share it gives one target as [`DeadlineScope::TargetShare`]).
    pub fn with_scope(mut self, scope: DeadlineScope) -> Self {
        self.scope = scope;
        self
    }

    /// The deadline carried by `request`, if any.
    pub fn of(request: &impl crate::Call) -> Option<Deadline> {
        request.extensions().get::<Deadline>().copied()
    }

    /// The instant of the deadline.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// What the deadline bounds.
    pub fn scope(&self) -> DeadlineScope {
        self.scope
    }

    /// The time left, zero once passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// True once the deadline has passed.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.at
    }

    /// True when waiting `wait` from now would reach or pass the deadline.
    pub fn would_pass(&self, wait: Duration) -> bool {
        Instant::now()
            .checked_add(wait)
            .is_none_or(|t| t >= self.at)
    }

    /// The error of a call this deadline cut (or did not let start): a
    /// [`Timeout`](crate::ErrorKind::Timeout) whose message names the
    /// deadline and whose source is a [`DeadlineExceeded`].
    pub fn exceeded(&self) -> LlmError {
        LlmError::deadline_exceeded(self.scope)
    }
}

/// The source of an error produced because a [`Deadline`] came while a call
/// was in flight or before it could start; see
/// [`LlmError::deadline_exceeded`](crate::LlmError::deadline_exceeded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadlineExceeded {
    /// What the deadline bounded: the whole request, or one fallback
    /// target's share of it.
    pub scope: DeadlineScope,
}

/// What a cut [`Deadline`] bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadlineScope {
    /// The logical request's own deadline.
    Request,
    /// The share of the request's deadline a fallback chain gave one target
    /// so that the targets after it are still called in time.
    TargetShare,
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope {
            DeadlineScope::Request => f.write_str("the request's deadline passed"),
            DeadlineScope::TargetShare => {
                f.write_str("the target's share of the request's deadline passed")
            }
        }
    }
}

impl std::error::Error for DeadlineExceeded {}
