//! staunch inside a tonic service (feature `tonic`): the call's
//! `grpc-timeout` becomes the request's [`Deadline`], so every retry and
//! fallback fits in what the gRPC client allows, and staunch's errors
//! become the gRPC statuses a gRPC client acts on.
//!
//! | staunch error | gRPC code | why |
//! |---|---|---|
//! | `RateLimited`, `BudgetExhausted`, `QuotaExhausted` | `RESOURCE_EXHAUSTED` | a limit; the wait, when known, is in the `retry-after-ms` trailer |
//! | `Overloaded`, `Server`, `Network`, `Connect`, `CircuitOpen`, `TruncatedResponse`, `MalformedResponse` | `UNAVAILABLE` | the upstream failed: the call may be retried (after `retry-after-ms` when sent) |
//! | `Timeout`, a passed deadline | `DEADLINE_EXCEEDED` | |
//! | `InvalidRequest`, `ContextLengthExceeded`, `RequestTooLarge`, `FeatureUnsupported`, `ValidationFailed` | `INVALID_ARGUMENT` | the request is wrong as it is |
//! | `ContentFiltered` | `FAILED_PRECONDITION` | a refusal: asking again will not help, the content must change |
//! | `Authentication`, `PermissionDenied`, `ModelNotFound` | `INTERNAL` | the service's own upstream setup is wrong, not the caller's |
//! | `Cancelled` | `CANCELLED` | |
//! | anything else | `UNKNOWN` | |
//!
//! The message is the error's description with any credential masked.
//!
//! ```
//! use std::time::Duration;
//! use staunch::core::{ErrorKind, LlmError};
//! use staunch::grpc;
//!
//! let mut request = tonic::Request::new(());
//! request.set_timeout(Duration::from_millis(1500));
//! let deadline = grpc::deadline(&request).expect("the client set a timeout");
//! assert!(deadline.remaining() <= Duration::from_millis(1500));
//!
//! let error = LlmError::new(ErrorKind::RateLimited, "slow down")
//!     .with_retry_after(Duration::from_secs(2));
//! let status = grpc::status(&error);
//! assert_eq!(status.code(), tonic::Code::ResourceExhausted);
//! assert_eq!(status.metadata().get("retry-after-ms").unwrap(), "2000");
//! ```

use crate::Deadline;
use staunch_core::{ErrorKind, LlmError};
use std::time::Duration;
use tonic::Code;

/// The deadline a gRPC call carries in its `grpc-timeout` header, from
/// now, less a margin of 5 % (at most 100 ms) for the answer to travel: so
/// staunch gives up first and the client gets a `DEADLINE_EXCEEDED` that
/// says what was tried, rather than the server's own cut. `None` when the
/// call carries no timeout (or an unreadable one).
pub fn deadline<T>(request: &tonic::Request<T>) -> Option<Deadline> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let timeout = parse_timeout(value)?.min(LONGEST);
    let margin = (timeout / 20).min(Duration::from_millis(100));
    Some(Deadline::after(timeout - margin))
}

/// The longest deadline taken from a call: eight digits of hours (11,000
/// years) is no bound a clock should be asked to add.
const LONGEST: Duration = Duration::from_secs(30 * 86_400);

/// A `grpc-timeout` value: at most eight digits and a unit (`H`, `M`,
/// `S`, `m`, `u`, `n`).
fn parse_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(amount.checked_mul(3600)?),
        'M' => Duration::from_secs(amount.checked_mul(60)?),
        'S' => Duration::from_secs(amount),
        'm' => Duration::from_millis(amount),
        'u' => Duration::from_micros(amount),
        'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The gRPC status for `error` (see the table in the module docs).
pub fn status(error: &LlmError) -> tonic::Status {
    let code = if error.is_deadline_exceeded() {
        Code::DeadlineExceeded
    } else {
        match error.kind {
            ErrorKind::RateLimited | ErrorKind::BudgetExhausted | ErrorKind::QuotaExhausted => {
                Code::ResourceExhausted
            }
            ErrorKind::Overloaded
            | ErrorKind::Server
            | ErrorKind::Network
            | ErrorKind::Connect
            | ErrorKind::CircuitOpen
            | ErrorKind::TruncatedResponse
            | ErrorKind::MalformedResponse => Code::Unavailable,
            ErrorKind::Timeout => Code::DeadlineExceeded,
            ErrorKind::InvalidRequest
            | ErrorKind::ContextLengthExceeded
            | ErrorKind::RequestTooLarge
            | ErrorKind::FeatureUnsupported
            | ErrorKind::ValidationFailed => Code::InvalidArgument,
            ErrorKind::ContentFiltered => Code::FailedPrecondition,
            ErrorKind::Authentication | ErrorKind::PermissionDenied | ErrorKind::ModelNotFound => {
                Code::Internal
            }
            ErrorKind::Cancelled => Code::Cancelled,
            _ => Code::Unknown,
        }
    };
    let message = staunch_core::redact_secrets(&error.to_string()).into_owned();
    let mut status = tonic::Status::new(code, message);
    if let Some(wait) = error.retry_after
        && let Ok(value) = wait.as_millis().to_string().parse()
    {
        status.metadata_mut().insert("retry-after-ms", value);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit_and_nonsense_is_none() {
        assert_eq!(parse_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_timeout("15S"), Some(Duration::from_secs(15)));
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_timeout("9n"), Some(Duration::from_nanos(9)));
        assert_eq!(
            parse_timeout("99999999H"),
            Some(Duration::from_secs(359_999_996_400))
        );
        for bad in ["", "S", "12", "123456789S", "-1S", "1.5S", "10x", "1é"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_class_of_error_has_the_code_a_grpc_client_acts_on() {
        let code = |kind| status(&LlmError::new(kind, "x")).code();
        assert_eq!(code(ErrorKind::RateLimited), Code::ResourceExhausted);
        assert_eq!(code(ErrorKind::Overloaded), Code::Unavailable);
        assert_eq!(code(ErrorKind::CircuitOpen), Code::Unavailable);
        assert_eq!(code(ErrorKind::Timeout), Code::DeadlineExceeded);
        assert_eq!(code(ErrorKind::InvalidRequest), Code::InvalidArgument);
        assert_eq!(
            code(ErrorKind::ContextLengthExceeded),
            Code::InvalidArgument
        );
        assert_eq!(code(ErrorKind::ContentFiltered), Code::FailedPrecondition);
        assert_eq!(code(ErrorKind::Authentication), Code::Internal);
        assert_eq!(code(ErrorKind::Cancelled), Code::Cancelled);
        let leaky = LlmError::new(
            ErrorKind::Authentication,
            "bad key sk-proj-abcdefghijklmnop1234",
        );
        assert!(!status(&leaky).message().contains("abcdefghijklmnop1234"));
    }
}
