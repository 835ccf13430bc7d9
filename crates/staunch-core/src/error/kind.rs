//! Error kinds and their classes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What the caller should do about an error.
///
/// | class | meaning |
/// |---|---|
/// | `Transient` | the same target will likely succeed later: retry with backoff, then fall back |
/// | `Unavailable` | this target can't serve the request now or ever: don't retry it, go to the next target |
/// | `Fatal` | the request itself is wrong: fail fast everywhere, no retry, no fallback, no degradation |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Retry the same target with backoff, then fall back.
    Transient,
    /// Skip this target; another may serve the request.
    Unavailable,
    /// The request is wrong: no retry, no fallback, no degradation.
    Fatal,
}

impl ErrorClass {
    /// True for [`Transient`](Self::Transient).
    pub const fn is_retryable(&self) -> bool {
        matches!(self, ErrorClass::Transient)
    }

    /// True unless [`Fatal`](Self::Fatal): another target may answer.
    pub const fn allows_fallback(&self) -> bool {
        !matches!(self, ErrorClass::Fatal)
    }

    /// The lower-case name.
    pub const fn as_str(&self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Unavailable => "unavailable",
            ErrorClass::Fatal => "fatal",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong with an LLM call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    // --- Transient ---
    /// 429 rate limit (requests or tokens per minute).
    RateLimited,
    /// The provider is overloaded (Anthropic 529, 503).
    Overloaded,
    /// A server error (500, 502, 504, 409).
    Server,
    /// The attempt timed out.
    Timeout,
    /// The connection could not be established.
    Connect,
    /// The connection failed after it was established.
    Network,
    /// The response ended before it was complete.
    TruncatedResponse,
    /// An error staunch could not recognise. Treated as transient, so it is
    /// retried within `max_retries` and the retry budget; override with a
    /// [`Classify`](crate::Classify) if your service says otherwise.
    Other,

    // --- Unavailable ---
    /// 429 `insufficient_quota`, 402 billing: the account can't pay for this target.
    QuotaExhausted,
    /// 401: the key is wrong for this target.
    Authentication,
    /// 403: the key may not use this target.
    PermissionDenied,
    /// 404: the target does not serve this model.
    ModelNotFound,
    /// The prompt does not fit this model's context window.
    ContextLengthExceeded,
    /// The provider's content policy refused the request or the answer.
    ContentFiltered,
    /// The target's circuit breaker is open.
    CircuitOpen,
    /// The response could not be understood.
    MalformedResponse,
    /// The request exceeds a limit of this target that waiting can't lift
    /// (OpenAI's 429 "Request too large … tokens per min": larger than the
    /// whole per-minute allowance); another target may take it.
    RequestTooLarge,
    /// The request uses a feature this target's dialect cannot express (an
    /// image in a tool result, another dialect's content part, a JSON Schema
    /// answer together with tools): refused before the wire, so the chain
    /// moves on to a target that can.
    FeatureUnsupported,
    /// The answer failed a check of the [validate layer](https://docs.rs/staunch):
    /// tool-call arguments that are not JSON or break the tool's schema, a
    /// JSON answer that breaks its schema, or a check of your own.
    ValidationFailed,

    // --- Fatal ---
    /// 400/422: the request is malformed for any target.
    InvalidRequest,
    /// A token or cost budget would be exceeded.
    BudgetExhausted,
    /// The caller gave up on the request.
    Cancelled,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 22] = [
        ErrorKind::RateLimited,
        ErrorKind::Overloaded,
        ErrorKind::Server,
        ErrorKind::Timeout,
        ErrorKind::Connect,
        ErrorKind::Network,
        ErrorKind::TruncatedResponse,
        ErrorKind::Other,
        ErrorKind::QuotaExhausted,
        ErrorKind::Authentication,
        ErrorKind::PermissionDenied,
        ErrorKind::ModelNotFound,
        ErrorKind::ContextLengthExceeded,
        ErrorKind::ContentFiltered,
        ErrorKind::CircuitOpen,
        ErrorKind::MalformedResponse,
        ErrorKind::RequestTooLarge,
        ErrorKind::FeatureUnsupported,
        ErrorKind::ValidationFailed,
        ErrorKind::InvalidRequest,
        ErrorKind::BudgetExhausted,
        ErrorKind::Cancelled,
    ];

    /// The class of this kind (DESIGN.md's table).
    pub const fn class(&self) -> ErrorClass {
        use ErrorKind::*;
        match self {
            RateLimited | Overloaded | Server | Timeout | Connect | Network | TruncatedResponse
            | Other => ErrorClass::Transient,
            QuotaExhausted
            | Authentication
            | PermissionDenied
            | ModelNotFound
            | ContextLengthExceeded
            | ContentFiltered
            | CircuitOpen
            | MalformedResponse
            | RequestTooLarge
            | FeatureUnsupported
            | ValidationFailed => ErrorClass::Unavailable,
            InvalidRequest | BudgetExhausted | Cancelled => ErrorClass::Fatal,
        }
    }

    /// The kind an HTTP status means when the body says nothing more
    /// specific. Provider clients refine it from the error body (a 429 with
    /// `insufficient_quota` is [`QuotaExhausted`](Self::QuotaExhausted), a
    /// 400 about the context window is
    /// [`ContextLengthExceeded`](Self::ContextLengthExceeded)).
    ///
    /// ```
    /// use staunch_core::ErrorKind;
    /// assert_eq!(ErrorKind::from_status(529), ErrorKind::Overloaded);
    /// assert_eq!(ErrorKind::from_status(429), ErrorKind::RateLimited);
    /// assert_eq!(ErrorKind::from_status(418), ErrorKind::InvalidRequest);
    /// ```
    pub const fn from_status(status: u16) -> ErrorKind {
        match status {
            400 | 413 | 422 => ErrorKind::InvalidRequest,
            401 => ErrorKind::Authentication,
            402 => ErrorKind::QuotaExhausted,
            403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::ModelNotFound,
            408 => ErrorKind::Timeout,
            409 => ErrorKind::Server,
            429 => ErrorKind::RateLimited,
            499 => ErrorKind::Cancelled,
            503 | 529 => ErrorKind::Overloaded,
            500..=599 => ErrorKind::Server,
            _ => ErrorKind::InvalidRequest,
        }
    }

    /// The snake_case name, as used in logs and metric labels.
    pub const fn as_str(&self) -> &'static str {
        use ErrorKind::*;
        match self {
            RateLimited => "rate_limited",
            Overloaded => "overloaded",
            Server => "server",
            Timeout => "timeout",
            Connect => "connect",
            Network => "network",
            TruncatedResponse => "truncated_response",
            Other => "other",
            QuotaExhausted => "quota_exhausted",
            Authentication => "authentication",
            PermissionDenied => "permission_denied",
            ModelNotFound => "model_not_found",
            ContextLengthExceeded => "context_length_exceeded",
            ContentFiltered => "content_filtered",
            CircuitOpen => "circuit_open",
            MalformedResponse => "malformed_response",
            RequestTooLarge => "request_too_large",
            FeatureUnsupported => "feature_unsupported",
            ValidationFailed => "validation_failed",
            InvalidRequest => "invalid_request",
            BudgetExhausted => "budget_exhausted",
            Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
