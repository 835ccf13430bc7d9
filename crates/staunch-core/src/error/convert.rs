//! Recovering an [`LlmError`] from the errors tower and the network produce.

use super::{BoxError, ErrorKind, LlmError};
use std::error::Error as StdError;
use std::io;

impl LlmError {
    /// Recovers the `LlmError` inside a [`BoxError`], or classifies the
    /// error that is there instead:
    ///
    /// - an `LlmError` comes back as it was;
    /// - with the `tower` feature (which the staunch crate turns on), tower's
    ///   `timeout::error::Elapsed` becomes [`ErrorKind::Timeout`] and its
    ///   `load_shed::error::Overloaded` [`ErrorKind::Overloaded`];
    /// - an [`io::Error`] anywhere in the source chain (hyper and
    ///   hyper-util wrap them) becomes [`ErrorKind::Connect`] for refused or
    ///   unreachable connections, [`ErrorKind::Timeout`] for timeouts and
    ///   [`ErrorKind::Network`] otherwise;
    /// - anything else becomes [`ErrorKind::Other`].
    ///
    /// The original error is kept as the [`source`](StdError::source).
    ///
    /// ```
    /// use staunch_core::{BoxError, ErrorKind, LlmError};
    ///
    /// # #[cfg(feature = "tower")] {
    /// let boxed: BoxError = Box::new(tower::timeout::error::Elapsed::new());
    /// assert_eq!(LlmError::from_box(boxed).kind, ErrorKind::Timeout);
    /// # }
    ///
    /// let boxed: BoxError = LlmError::new(ErrorKind::Overloaded, "529").into();
    /// assert_eq!(LlmError::from_box(boxed).message, "529");
    /// ```
    pub fn from_box(error: BoxError) -> LlmError {
        let error = match error.downcast::<LlmError>() {
            Ok(llm) => return *llm,
            Err(other) => other,
        };
        let (kind, message) = classify_foreign(&*error);
        LlmError::new(kind, message).with_source(error)
    }
}

fn classify_foreign(error: &(dyn StdError + 'static)) -> (ErrorKind, String) {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        #[cfg(feature = "tower")]
        if e.is::<tower::timeout::error::Elapsed>() {
            return (ErrorKind::Timeout, "attempt timed out".to_owned());
        }
        #[cfg(feature = "tower")]
        if e.is::<tower::load_shed::error::Overloaded>() {
            return (
                ErrorKind::Overloaded,
                "load shed: the inner service was not ready".to_owned(),
            );
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return (io_kind(io), error.to_string());
        }
        current = e.source();
    }
    (ErrorKind::Other, error.to_string())
}

fn io_kind(error: &io::Error) -> ErrorKind {
    use io::ErrorKind as K;
    match error.kind() {
        K::ConnectionRefused
        | K::AddrNotAvailable
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NotConnected => ErrorKind::Connect,
        K::TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Network,
    }
}

impl From<io::Error> for LlmError {
    fn from(error: io::Error) -> Self {
        let kind = io_kind(&error);
        let message = error.to_string();
        LlmError::new(kind, message).with_source(error)
    }
}

impl From<BoxError> for LlmError {
    fn from(error: BoxError) -> Self {
        LlmError::from_box(error)
    }
}
