//! The overall deadline of a logical request.

use staunch_core::ChatRequest;
use std::time::Duration;
use tokio::time::Instant;

/// The moment by which a logical request must be finished, carried in
/// [`ChatRequest::extensions`].
///
/// It bounds every retry and fallback below it (Envoy's route timeout): no
/// staunch layer sleeps past it or starts an attempt it could not finish
/// before it. It uses tokio's clock, so tests can pause and advance time.
///
/// ```
/// use std::time::Duration;
/// use staunch::Deadline;
/// use staunch::core::{ChatRequest, Message};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let request = ChatRequest::new("gpt-4o", vec![Message::user("hi")])
///     .with_extension(Deadline::after(Duration::from_secs(30)));
/// let deadline = Deadline::of(&request).expect("set above");
/// assert!(deadline.remaining() <= Duration::from_secs(30));
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Deadline(instant)
    }

    /// A deadline `timeout` from now. A timeout too large to represent is
    /// capped at about thirty years.
    pub fn after(timeout: Duration) -> Self {
        let now = Instant::now();
        Deadline(
            now.checked_add(timeout)
                .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30)),
        )
    }

    /// The deadline carried by `request`, if any.
    pub fn of(request: &ChatRequest) -> Option<Deadline> {
        request.extensions.get::<Deadline>().copied()
    }

    /// The instant of the deadline.
    pub fn instant(&self) -> Instant {
        self.0
    }

    /// The time left, zero once passed.
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// True once the deadline has passed.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.0
    }

    /// True when waiting `wait` from now would reach or pass the deadline.
    pub fn would_pass(&self, wait: Duration) -> bool {
        Instant::now().checked_add(wait).is_none_or(|t| t >= self.0)
    }
}
