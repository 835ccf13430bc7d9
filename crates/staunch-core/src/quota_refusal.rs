//! The mark of a request a staunch quota refused before the provider saw it.

use crate::LlmError;
use std::error::Error as StdError;
use std::fmt;

/// The source of an error by which a staunch quota (local or shared)
/// refused a request before calling the provider (see
/// [`LlmError::is_quota_refusal`]): the provider never saw the request, so
/// the refusal says nothing about the provider's health.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaRefusal;

impl fmt::Display for QuotaRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("refused by a staunch quota before reaching the provider")
    }
}

impl StdError for QuotaRefusal {}

impl LlmError {
    /// True when a staunch quota refused this request before it reached
    /// the provider: its source is a [`QuotaRefusal`]. A provider's own
    /// 429 is not one, so a circuit breaker ignores the first and counts
    /// the second.
    ///
    /// ```
    /// use std::time::Duration;
    /// use staunch_core::{ErrorKind, LlmError, QuotaRefusal};
    /// let ours = LlmError::new(ErrorKind::RateLimited, "quota used up")
    ///     .with_retry_after(Duration::from_millis(300))
    ///     .with_source(QuotaRefusal);
    /// assert!(ours.is_quota_refusal());
    /// let theirs = LlmError::new(ErrorKind::RateLimited, "Rate limit reached").with_status(429);
    /// assert!(!theirs.is_quota_refusal());
    /// ```
    pub fn is_quota_refusal(&self) -> bool {
        StdError::source(self).is_some_and(|s| s.is::<QuotaRefusal>())
    }
}
