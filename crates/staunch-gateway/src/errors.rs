//! Errors in each ingress's own shape, with the upstream status passed
//! through where it means something to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use staunch_core::{ErrorClass, ErrorKind, LlmError};

/// Which API the client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    OpenAi,
    Anthropic,
}

/// An error of the gateway itself (a bad body, a missing key, no route).
pub(crate) fn reply(shape: Shape, status: StatusCode, kind: &str, message: &str) -> Response {
    let body = match shape {
        Shape::OpenAi => json!({"error": {
            "message": message, "type": openai_type(status), "param": null, "code": kind}}),
        Shape::Anthropic => json!({"type": "error", "error": {
            "type": anthropic_type(status), "message": message}}),
    };
    (status, Json(body)).into_response()
}

fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The status a client should see for a failure of the stack: what the
/// request did wrong stays a 4xx (400 stays 400), a rate limit is a 429 with
/// `Retry-After`, an overloaded upstream a 529 (Anthropic) or 503 (OpenAI),
/// a timeout a 504, and whatever the upstream did wrong a 502.
pub(crate) fn status_of(shape: Shape, error: &LlmError) -> StatusCode {
    let code = match error.kind {
        ErrorKind::RateLimited | ErrorKind::BudgetExhausted | ErrorKind::RequestTooLarge => 429,
        ErrorKind::ContextLengthExceeded
        | ErrorKind::ContentFiltered
        | ErrorKind::FeatureUnsupported
        | ErrorKind::InvalidRequest => 400,
        ErrorKind::ModelNotFound => 404,
        ErrorKind::Overloaded | ErrorKind::CircuitOpen if shape == Shape::Anthropic => 529,
        ErrorKind::Overloaded | ErrorKind::CircuitOpen => 503,
        ErrorKind::Timeout => 504,
        ErrorKind::Cancelled => 499,
        _ if error.class() == ErrorClass::Fatal => 400,
        _ => 502,
    };
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY)
}

/// A failure of the stack, in the client's shape.
pub(crate) fn failure(shape: Shape, error: &LlmError) -> Response {
    let status = status_of(shape, error);
    let mut response = reply(shape, status, error.kind.as_str(), &error.to_string());
    if let Some(wait) = error.retry_after {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert("retry-after", value);
        }
    }
    response
}
