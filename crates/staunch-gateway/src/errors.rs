//! Errors in each ingress's own shape, with the upstream status passed
//! through where it means something to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use staunch_core::{ErrorClass, ErrorKind, LlmError};
use staunch_providers::ingress::ErrorShape;

/// Which API the client speaks: how its errors are worded.
pub(crate) type Shape<'a> = &'a dyn ErrorShape;

/// An error of the gateway itself (a bad body, a missing key, no route).
pub(crate) fn reply(shape: Shape<'_>, status: StatusCode, kind: &str, message: &str) -> Response {
    let body = shape.error_body(status.as_u16(), kind, message, false);
    (status, Json(body)).into_response()
}

/// The status a client should see for a failure of the stack: what the
/// request did wrong stays a 4xx (400 stays 400), a rate limit is a 429 with
/// `Retry-After`, an overloaded upstream a 529 (Anthropic) or 503 (OpenAI),
/// a timeout a 504, and whatever the upstream did wrong a 502.
pub(crate) fn status_of(shape: Shape<'_>, error: &LlmError) -> StatusCode {
    let code = match error.kind {
        ErrorKind::RateLimited | ErrorKind::BudgetExhausted | ErrorKind::RequestTooLarge => 429,
        ErrorKind::ContextLengthExceeded
        | ErrorKind::ContentFiltered
        | ErrorKind::FeatureUnsupported
        | ErrorKind::InvalidRequest => 400,
        ErrorKind::ModelNotFound => 404,
        ErrorKind::Overloaded | ErrorKind::CircuitOpen => shape.overloaded_status(),
        ErrorKind::Timeout => 504,
        ErrorKind::Cancelled => 499,
        _ if error.class() == ErrorClass::Fatal => 400,
        _ => 502,
    };
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY)
}

/// Whether the client gets the provider's own code and message for this
/// failure: a request the provider refused as it is (a content-policy
/// refusal, a prompt too long, any other bad request), which the client
/// must change before it asks again. Everything else is staunch's own
/// account (its kind and its description of every target it tried).
fn passes_through(error: &LlmError) -> bool {
    matches!(
        error.kind,
        ErrorKind::ContentFiltered | ErrorKind::ContextLengthExceeded | ErrorKind::InvalidRequest
    )
}

/// The code a client sees for a failure that
/// [passes through](passes_through): the provider's own
/// ([`LlmError::code`], e.g. OpenAI's `content_policy_violation`).
///
/// Where the provider gave none that says more than the error's type (no
/// error body, or Anthropic's `invalid_request_error` for an OpenAI client,
/// which has that in `type` already), the code OpenAI uses for the kind:
/// `content_filter` (Azure's code for a filtered prompt, and the finish
/// reason) or `context_length_exceeded`. A refusal that came as a success
/// (OpenAI's `finish_reason: content_filter`, Anthropic's `stop_reason:
/// refusal`) is named in the client's own API's word for it:
/// `content_filter` for an OpenAI client, `refusal` for an Anthropic one
/// ([`ErrorShape::refusal_code`]).
fn provider_code<'e>(shape: Shape<'_>, error: &'e LlmError) -> &'e str {
    let code = error.code.as_deref();
    let refused_as_success = error.kind == ErrorKind::ContentFiltered
        && error.status.is_none_or(|s| (200..300).contains(&s))
        && matches!(code, None | Some("content_filter" | "refusal"));
    if refused_as_success {
        return shape.refusal_code();
    }
    match code {
        Some(code) if !shape.is_generic_code(code) => code,
        _ => match error.kind {
            ErrorKind::ContentFiltered => "content_filter",
            ErrorKind::ContextLengthExceeded => "context_length_exceeded",
            kind => code.unwrap_or(kind.as_str()),
        },
    }
}

/// A failure of the stack, in the client's shape, with staunch's own kind
/// in `x-staunch-error-kind` (and, when known, the target that failed last
/// in `x-staunch-target` and the calls made in `x-staunch-attempts`).
///
/// A request the provider refused as it is (a content-policy refusal, a
/// context overflow, another bad request) carries the provider's code and
/// message: OpenAI shape `{"error": {"message", "type":
/// "invalid_request_error", "param": null, "code": <provider code>}}`,
/// Anthropic shape `{"type": "error", "error": {"type":
/// "invalid_request_error", "message", "details": {"error_code": <provider
/// code>}}}` (the SDK types `error.type`, so it stays Anthropic's own; the
/// code sits where Anthropic puts its own finer codes). Any other failure
/// carries staunch's kind as the code and its full description.
pub(crate) fn failure(shape: Shape<'_>, error: &LlmError) -> Response {
    let status = status_of(shape, error);
    let mut response = if passes_through(error) {
        let message = error.redacted_message();
        let message = if message.trim().is_empty() {
            std::borrow::Cow::Owned(error.to_string())
        } else {
            message
        };
        let code = provider_code(shape, error);
        let body = shape.error_body(status.as_u16(), code, &message, true);
        (status, Json(body)).into_response()
    } else {
        reply(shape, status, error.kind.as_str(), &error.to_string())
    };
    let headers = response.headers_mut();
    if let Some(wait) = error.retry_after {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            headers.insert("retry-after", value);
        }
    }
    headers.insert(
        "x-staunch-error-kind",
        HeaderValue::from_static(error.kind.as_str()),
    );
    if let Some(value) = error
        .target
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        headers.insert("x-staunch-target", value);
    }
    headers.insert("x-staunch-attempts", HeaderValue::from(error.attempts));
    response
}
