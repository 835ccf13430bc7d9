//! The error type of every staunch layer and provider client.

mod classify;
mod convert;
mod kind;
#[cfg(test)]
mod tests;

pub use classify::{Classify, DefaultClassify};
pub use kind::{ErrorClass, ErrorKind};

use crate::{Usage, redact_secrets};
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// A type-erased error, as tower's middleware passes them (`tower::BoxError`).
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A failed LLM call: what kind of failure, who said so, and what it cost.
///
/// Its fields ([`ErrorDetails`]) are read and written through it:
/// `error.kind`, `error.retry_after`; the attempt count changes through
/// [`set_attempts`](Self::set_attempts) and
/// [`add_attempts`](Self::add_attempts), so that one rule counts calls.
///
/// `LlmError` implements [`std::error::Error`], so it travels through
/// tower's [`BoxError`]; [`LlmError::from_box`] gets it back, and turns
/// tower's own timeout and load-shed errors and I/O errors into the right
/// kind.
///
/// Its `Display` and `Debug` output pass the provider's message through
/// [`redact_secrets`]: a key echoed in an authentication error is never
/// printed.
///
/// ```
/// use std::time::Duration;
/// use staunch_core::{ErrorClass, ErrorKind, LlmError};
///
/// let err = LlmError::new(ErrorKind::RateLimited, "Rate limit reached for gpt-4o")
///     .with_status(429)
///     .with_retry_after(Duration::from_secs(2))
///     .with_provider("openai")
///     .with_model("gpt-4o");
/// assert_eq!(err.class(), ErrorClass::Transient);
/// assert_eq!(
///     err.to_string(),
///     "rate_limited (HTTP 429) from openai/gpt-4o: Rate limit reached for gpt-4o; retry after 2s"
/// );
/// ```
pub struct LlmError {
    details: Box<ErrorDetails>,
}

/// The fields of an [`LlmError`], reached through it by `Deref`
/// (`error.kind`, `error.status = Some(503)`).
///
/// They live behind one allocation so that an `LlmError` is a single
/// pointer: `Result<ChatResponse, LlmError>` stays as small as the response,
/// and the error path's allocation is nothing next to a network round trip.
#[non_exhaustive]
pub struct ErrorDetails {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The HTTP status, when the provider answered.
    pub status: Option<u16>,
    /// How long the provider asked us to wait (`Retry-After`, `retry-after-ms`).
    pub retry_after: Option<Duration>,
    /// The provider's `x-should-retry` instruction, which overrides the
    /// class-based retry decision.
    pub should_retry: Option<bool>,
    /// The provider that failed.
    pub provider: Option<String>,
    /// The model that was asked.
    pub model: Option<String>,
    /// The fallback target that failed, when a fallback chain was involved.
    pub target: Option<String>,
    /// The provider's (or staunch's) description.
    pub message: String,
    /// The provider's own error code or type, e.g. OpenAI's `error.code`
    /// `content_policy_violation`, Anthropic's `error.type`
    /// `invalid_request_error`, or the wire's stop reason for a refusal
    /// that came as a success (`content_filter`, `refusal`).
    ///
    /// Set it through [`LlmError::with_code`], which keeps it a short code:
    /// at most [`LlmError::MAX_CODE_LEN`] characters of `[A-Za-z0-9_.-]`,
    /// and nothing that looks like a key. A gateway passes it to its
    /// clients, so it must never carry a secret.
    pub code: Option<String>,
    /// The provider's request id, for support tickets.
    pub request_id: Option<String>,
    /// Calls made before giving up (set by the retry and fallback layers,
    /// through [`LlmError::set_attempts`] and [`LlmError::add_attempts`]).
    pub attempts: u32,
    /// Tokens billed by the failed calls.
    pub spent: Usage,
    /// The errors of earlier fallback targets, in the order they were tried;
    /// this error is the last target's.
    pub earlier: Vec<LlmError>,
    /// The provider's rate-limit headers on the failed answer (see
    /// [`ResponseMeta::rate_limit_headers`](crate::ResponseMeta::rate_limit_headers)).
    pub rate_limit_headers: Option<http::HeaderMap>,
    source: Option<BoxError>,
}

impl std::ops::Deref for LlmError {
    type Target = ErrorDetails;
    fn deref(&self) -> &ErrorDetails {
        &self.details
    }
}

impl std::ops::DerefMut for LlmError {
    fn deref_mut(&mut self) -> &mut ErrorDetails {
        &mut self.details
    }
}

impl LlmError {
    /// An error of `kind` with a description.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        LlmError {
            details: Box::new(ErrorDetails {
                kind,
                status: None,
                retry_after: None,
                should_retry: None,
                provider: None,
                model: None,
                target: None,
                message: message.into(),
                code: None,
                request_id: None,
                attempts: 1,
                spent: Usage::default(),
                earlier: Vec::new(),
                rate_limit_headers: None,
                source: None,
            }),
        }
    }

    /// The class of the error: the kind's ([`ErrorKind::class`]), unless
    /// the server said otherwise. A server's `x-should-retry: false` makes a
    /// transient error [`Unavailable`](ErrorClass::Unavailable) (this
    /// target, not now: fall back), and `x-should-retry: true` on an HTTP
    /// answer makes it [`Transient`](ErrorClass::Transient), so that the
    /// class agrees with what the retry layer does.
    ///
    /// ```
    /// use staunch_core::{ErrorClass, ErrorKind, LlmError};
    /// let e = LlmError::new(ErrorKind::Server, "").with_status(500).with_should_retry(false);
    /// assert_eq!(e.class(), ErrorClass::Unavailable);
    /// ```
    pub fn class(&self) -> ErrorClass {
        let class = self.kind.class();
        match (self.should_retry, class) {
            (Some(false), ErrorClass::Transient) => ErrorClass::Unavailable,
            (Some(true), _) if self.status.is_some() => ErrorClass::Transient,
            _ => class,
        }
    }

    /// A [`Timeout`](ErrorKind::Timeout) caused by a [`Deadline`](crate::Deadline)
    /// of `scope`: its message names the deadline and its source is a
    /// [`DeadlineExceeded`](crate::DeadlineExceeded).
    pub fn deadline_exceeded(scope: crate::DeadlineScope) -> Self {
        let cause = crate::DeadlineExceeded { scope };
        LlmError::new(ErrorKind::Timeout, cause.to_string()).with_source(cause)
    }

    /// The deadline that cut this call, when a [`Deadline`](crate::Deadline)
    /// (rather than a per-attempt timeout or the network) ended it.
    pub fn deadline_exceeded_scope(&self) -> Option<crate::DeadlineScope> {
        self.details
            .source
            .as_deref()
            .and_then(|s| s.downcast_ref::<crate::DeadlineExceeded>())
            .map(|d| d.scope)
    }

    /// True when a [`Deadline`](crate::Deadline) ended this call.
    pub fn is_deadline_exceeded(&self) -> bool {
        self.deadline_exceeded_scope().is_some()
    }

    /// Sets the HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets the server-requested wait.
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Sets the server's `x-should-retry` instruction.
    pub fn with_should_retry(mut self, retry: bool) -> Self {
        self.should_retry = Some(retry);
        self
    }

    /// Sets the provider name.
    pub fn with_provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Sets the model name.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sets the fallback target's name.
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// The longest provider error code [`with_code`](Self::with_code) keeps.
    pub const MAX_CODE_LEN: usize = 64;

    /// Sets the provider's own error code ([`ErrorDetails::code`]), bounded
    /// so that it is safe to show a client: characters other than
    /// `[A-Za-z0-9_.-]` are dropped, the rest is cut to
    /// [`MAX_CODE_LEN`](Self::MAX_CODE_LEN) characters, and a code that is
    /// empty then, or looks like a key (what [`redact_secrets`] masks, or a
    /// run of 16 or more letters and digits mixed, as tokens are), is not
    /// kept at all.
    ///
    /// ```
    /// use staunch_core::{ErrorKind, LlmError};
    /// let e = LlmError::new(ErrorKind::ContentFiltered, "flagged")
    ///     .with_code("content_policy_violation");
    /// assert_eq!(e.code.as_deref(), Some("content_policy_violation"));
    /// let e = LlmError::new(ErrorKind::InvalidRequest, "").with_code("sk-proj-AbCdEf0123456789");
    /// assert_eq!(e.code, None);
    /// let e = LlmError::new(ErrorKind::InvalidRequest, "").with_code("<b>bad code</b>");
    /// assert_eq!(e.code.as_deref(), Some("bbadcodeb"));
    /// ```
    pub fn with_code(mut self, code: impl AsRef<str>) -> Self {
        self.code = safe_code(code.as_ref());
        self
    }

    /// Sets the provider's request id.
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// Sets the tokens billed by the failed call.
    pub fn with_spent(mut self, spent: Usage) -> Self {
        self.spent = spent;
        self
    }

    /// Sets the number of calls made ([`set_attempts`](Self::set_attempts)),
    /// as a builder: `with_attempts(0)` for an error raised before any call.
    ///
    /// ```
    /// use staunch_core::{ErrorKind, LlmError};
    /// let e = LlmError::new(ErrorKind::CircuitOpen, "open").with_attempts(0);
    /// assert_eq!(e.attempts, 0);
    /// ```
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.set_attempts(attempts);
        self
    }

    /// Sets the number of calls made before giving up: `0` when the error
    /// was raised before any call (an open circuit, a request refused
    /// before the wire, a skipped target), or the count a layer that made
    /// several calls kept.
    ///
    /// ```
    /// use staunch_core::{ErrorKind, LlmError};
    /// let mut e = LlmError::new(ErrorKind::Server, "boom");
    /// e.set_attempts(4);
    /// assert_eq!(e.attempts, 4);
    /// ```
    pub fn set_attempts(&mut self, attempts: u32) {
        self.details.attempts = attempts;
    }

    /// Counts `calls` more calls made before this error (saturating): the
    /// calls of earlier fallback targets, or of answers a layer rejected.
    ///
    /// ```
    /// use staunch_core::{ErrorKind, LlmError};
    /// let mut e = LlmError::new(ErrorKind::Server, "boom");
    /// e.add_attempts(2);
    /// assert_eq!(e.attempts, 3);
    /// e.add_attempts(u32::MAX);
    /// assert_eq!(e.attempts, u32::MAX);
    /// ```
    pub fn add_attempts(&mut self, calls: u32) {
        self.details.attempts = self.details.attempts.saturating_add(calls);
    }

    /// A copy of the error for another caller of the same failed call (one
    /// upstream call shared by identical requests): every field, the
    /// earlier targets' errors included; the underlying cause, which is not
    /// clonable, is kept as text in the copy's source.
    ///
    /// ```
    /// use staunch_core::{ErrorKind, LlmError};
    /// let e = LlmError::new(ErrorKind::RateLimited, "slow down").with_status(429).with_attempts(3);
    /// let copy = e.duplicate();
    /// assert_eq!((copy.kind, copy.status, copy.attempts), (e.kind, e.status, 3));
    /// assert_eq!(copy.to_string(), e.to_string());
    /// ```
    pub fn duplicate(&self) -> LlmError {
        let d = &self.details;
        let mut copy = LlmError::new(d.kind, d.message.clone());
        {
            let c = &mut copy.details;
            c.status = d.status;
            c.retry_after = d.retry_after;
            c.should_retry = d.should_retry;
            c.provider.clone_from(&d.provider);
            c.model.clone_from(&d.model);
            c.target.clone_from(&d.target);
            c.code.clone_from(&d.code);
            c.request_id.clone_from(&d.request_id);
            c.attempts = d.attempts;
            c.spent = d.spent;
            c.earlier = d.earlier.iter().map(LlmError::duplicate).collect();
            c.rate_limit_headers.clone_from(&d.rate_limit_headers);
            c.source = d.source.as_ref().map(|s| BoxError::from(s.to_string()));
        }
        if self.is_quota_refusal() {
            // The marker the breaker reads survives the copy.
            copy = copy.with_source(crate::QuotaRefusal);
        }
        copy
    }

    /// Sets the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.details.source = Some(source.into());
        self
    }

    /// The provider's message with any credential masked.
    pub fn redacted_message(&self) -> std::borrow::Cow<'_, str> {
        redact_secrets(&self.message)
    }

    /// Tokens billed by this failure and by every earlier fallback target's.
    pub fn total_spent(&self) -> Usage {
        self.earlier
            .iter()
            .fold(self.spent, |acc, e| acc + e.total_spent())
    }
}

/// `code` as a short, secret-free error code, or `None` (see
/// [`LlmError::with_code`]).
fn safe_code(code: &str) -> Option<String> {
    let kept: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .take(LlmError::MAX_CODE_LEN)
        .collect();
    let token_like = kept.split(['_', '.', '-']).any(|run| {
        run.len() >= 16
            && run.bytes().any(|b| b.is_ascii_digit())
            && run.bytes().any(|b| b.is_ascii_alphabetic())
    });
    let masked = matches!(redact_secrets(&kept), std::borrow::Cow::Owned(_));
    (!kept.is_empty() && !token_like && !masked).then_some(kept)
}

impl fmt::Display for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        match (&self.provider, &self.model) {
            (Some(p), Some(m)) => write!(f, " from {p}/{m}")?,
            (Some(p), None) => write!(f, " from {p}")?,
            (None, Some(m)) => write!(f, " from {m}")?,
            (None, None) => {}
        }
        if let Some(t) = &self.target {
            write!(f, " at target {t}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.redacted_message())?;
        }
        if let Some(wait) = self.retry_after {
            write!(f, "; retry after {wait:?}")?;
        }
        if self.attempts > 1 {
            write!(f, "; after {} attempts", self.attempts)?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request {id}]")?;
        }
        for (i, e) in self.earlier.iter().enumerate() {
            write!(f, "; earlier target {}: {e}", i + 1)?;
        }
        Ok(())
    }
}

impl fmt::Debug for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("LlmError");
        d.field("kind", &self.kind);
        if let Some(s) = self.status {
            d.field("status", &s);
        }
        if let Some(w) = self.retry_after {
            d.field("retry_after", &w);
        }
        if let Some(r) = self.should_retry {
            d.field("should_retry", &r);
        }
        if let Some(p) = &self.provider {
            d.field("provider", p);
        }
        if let Some(m) = &self.model {
            d.field("model", m);
        }
        if let Some(t) = &self.target {
            d.field("target", t);
        }
        d.field("message", &self.redacted_message());
        if let Some(code) = &self.code {
            d.field("code", code);
        }
        if let Some(id) = &self.request_id {
            d.field("request_id", id);
        }
        d.field("attempts", &self.attempts);
        if !self.spent.is_zero() {
            d.field("spent", &self.spent);
        }
        if !self.earlier.is_empty() {
            d.field("earlier", &self.earlier);
        }
        if let Some(s) = &self.source {
            d.field("source", &redact_secrets(&s.to_string()));
        }
        d.finish()
    }
}

impl StdError for LlmError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.details
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}
