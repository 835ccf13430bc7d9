//! staunch inside a tonic service (feature `tonic`): the call's
//! `grpc-timeout` becomes the request's [`Deadline`], so every retry and
//! fallback fits in what the gRPC client allows, and staunch's errors
//! become the gRPC statuses a gRPC client acts on.
//!
//! | staunch error | gRPC code | why |
//! |---|---|---|
//! | `RateLimited`, `BudgetExhausted`, `QuotaExhausted` | `RESOURCE_EXHAUSTED` | a limit; the wait, when known, is in the status details and the `retry-after-ms` trailer |
//! | `Overloaded`, `Server`, `Network`, `Connect`, `CircuitOpen`, `TruncatedResponse`, `MalformedResponse` | `UNAVAILABLE` | the upstream failed: the call may be retried (after the wait in the details, when sent) |
//! | `Timeout`, a passed deadline | `DEADLINE_EXCEEDED` | |
//! | `InvalidRequest`, `ContextLengthExceeded`, `RequestTooLarge`, `FeatureUnsupported`, `ValidationFailed` | `INVALID_ARGUMENT` | the request is wrong as it is |
//! | `ContentFiltered` | `FAILED_PRECONDITION` | a refusal: asking again will not help, the content must change |
//! | `Authentication`, `PermissionDenied`, `ModelNotFound` | `INTERNAL` | the service's own upstream setup is wrong, not the caller's |
//! | `Cancelled` | `CANCELLED` | |
//! | anything else | `UNKNOWN` | |
//!
//! The message is the error's description with any credential masked.
//!
//! When staunch knows how long to wait (a provider's `Retry-After`, a
//! quota's next slot, a circuit's break), the status carries it twice:
//! as a `google.rpc.RetryInfo` in the status details
//! (`grpc-status-details-bin`, a `google.rpc.Status` whose `details` hold
//! it, as Google's APIs send it and gRPC clients with retry support read
//! it, e.g. through `tonic-types`), and as milliseconds in a
//! `retry-after-ms` trailer for clients that read no protobuf details.
//! The details are encoded here, by hand: no protobuf crate, no `protoc`.
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

/// The gRPC status for `error` (see the table in the module docs), with
/// the wait in its details and `retry-after-ms` when the error has one.
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
    let Some(wait) = error.retry_after else {
        return tonic::Status::new(code, message);
    };
    let details = retry_info_status(code, &message, wait);
    let mut status = tonic::Status::with_details(code, message, bytes::Bytes::from(details));
    if let Ok(value) = wait.as_millis().to_string().parse() {
        status.metadata_mut().insert("retry-after-ms", value);
    }
    status
}

/// The type URL of a `google.rpc.RetryInfo` packed in a `google.protobuf.Any`.
const RETRY_INFO: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// `google.rpc.Status { code, message, details: [Any(RetryInfo { retry_delay: wait })] }`
/// in protobuf's wire format: what `grpc-status-details-bin` carries.
fn retry_info_status(code: Code, message: &str, wait: Duration) -> Vec<u8> {
    // google.protobuf.Duration { int64 seconds = 1; int32 nanos = 2; }
    let mut delay = Vec::with_capacity(16);
    let seconds = wait.as_secs().min(i64::MAX as u64);
    if seconds > 0 {
        varint_field(&mut delay, 1, seconds);
    }
    if wait.subsec_nanos() > 0 {
        varint_field(&mut delay, 2, u64::from(wait.subsec_nanos()));
    }
    // google.rpc.RetryInfo { google.protobuf.Duration retry_delay = 1; }
    let mut retry_info = Vec::with_capacity(delay.len() + 2);
    bytes_field(&mut retry_info, 1, &delay);
    // google.protobuf.Any { string type_url = 1; bytes value = 2; }
    let mut any = Vec::with_capacity(RETRY_INFO.len() + retry_info.len() + 4);
    bytes_field(&mut any, 1, RETRY_INFO.as_bytes());
    bytes_field(&mut any, 2, &retry_info);
    // google.rpc.Status { int32 code = 1; string message = 2; repeated Any details = 3; }
    let mut status = Vec::with_capacity(message.len() + any.len() + 8);
    let code = i32::from(code);
    if code != 0 {
        // A negative int32 is sign-extended to ten bytes; gRPC codes are not.
        varint_field(&mut status, 1, i64::from(code) as u64);
    }
    if !message.is_empty() {
        bytes_field(&mut status, 2, message.as_bytes());
    }
    bytes_field(&mut status, 3, &any);
    status
}

/// A varint-typed field (wire type 0).
fn varint_field(out: &mut Vec<u8>, field: u64, value: u64) {
    varint(out, field << 3);
    varint(out, value);
}

/// A length-delimited field (wire type 2).
fn bytes_field(out: &mut Vec<u8>, field: u64, value: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// Protobuf's base-128 varint.
fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonic_grpc_timeouts_parse_in_every_unit_and_nonsense_is_none() {
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
    fn tonic_every_class_of_error_has_the_code_a_grpc_client_acts_on() {
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

    #[test]
    fn tonic_the_wait_is_a_retry_info_in_the_status_details() {
        let error = LlmError::new(ErrorKind::RateLimited, "slow down")
            .with_retry_after(Duration::from_millis(1_500));
        let status = status(&error);
        let message = status.message().as_bytes();
        let mut expected = vec![0x08, 0x08, 0x12, message.len() as u8];
        expected.extend_from_slice(message);
        // details: Any { type_url, value: RetryInfo { Duration { 1 s, 500,000,000 ns } } }
        let duration = [0x08, 0x01, 0x10, 0x80, 0xca, 0xb5, 0xee, 0x01];
        let retry_info = [&[0x0a, duration.len() as u8][..], &duration].concat();
        let any = [
            &[0x0a, RETRY_INFO.len() as u8][..],
            RETRY_INFO.as_bytes(),
            &[0x12, retry_info.len() as u8],
            &retry_info,
        ]
        .concat();
        expected.extend_from_slice(&[0x1a, any.len() as u8]);
        expected.extend_from_slice(&any);
        assert_eq!(status.details(), &expected[..]);
        let no_wait = super::status(&LlmError::new(ErrorKind::Server, "x"));
        assert!(no_wait.details().is_empty(), "no wait, no details");
    }
}
