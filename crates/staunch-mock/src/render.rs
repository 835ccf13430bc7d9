//! Answers and faults in each provider's wire format.

use crate::scenario::Fault;
use crate::state::{Route, estimate_tokens};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A response body: whole, or one that stops halfway with an error (hyper
/// then closes the connection mid-body).
pub(crate) enum MockBody {
    Whole(Option<Bytes>),
    /// Sends its data, pauses so the headers and data reach the client,
    /// then fails.
    Truncated {
        data: Option<Bytes>,
        pause: Pin<Box<tokio::time::Sleep>>,
    },
}

impl MockBody {
    pub(crate) fn truncated(data: Bytes) -> Self {
        MockBody::Truncated {
            data: Some(data),
            pause: Box::pin(tokio::time::sleep(std::time::Duration::from_millis(20))),
        }
    }
}

/// The error a truncated body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the mock cut this body short on purpose")]
pub(crate) struct CutShort;

impl Body for MockBody {
    type Data = Bytes;
    type Error = CutShort;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, CutShort>>> {
        match self.get_mut() {
            MockBody::Whole(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            MockBody::Truncated { data, pause } => match data.take() {
                Some(d) => Poll::Ready(Some(Ok(Frame::data(d)))),
                None => pause.as_mut().poll(cx).map(|()| Some(Err(CutShort))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, MockBody::Whole(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Whole(Some(d)) => SizeHint::with_exact(d.len() as u64),
            _ => SizeHint::default(),
        }
    }
}

pub(crate) fn json_response(
    status: u16,
    body: &Value,
    headers: &[(&str, String)],
) -> Response<MockBody> {
    raw_response(
        status,
        Bytes::from(body.to_string()),
        "application/json",
        headers,
    )
}

pub(crate) fn raw_response(
    status: u16,
    body: Bytes,
    content_type: &'static str,
    headers: &[(&str, String)],
) -> Response<MockBody> {
    let mut response = Response::new(MockBody::Whole(Some(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::try_from(*name),
            HeaderValue::try_from(value.as_str()),
        ) {
            h.insert(name, value);
        }
    }
    response
}

fn last_user_text(body: &Value) -> String {
    body.get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .and_then(|m| m.get("content").and_then(Value::as_str))
        .unwrap_or_default()
        .chars()
        .take(48)
        .collect()
}

/// The normal answer to `body`, as a JSON value, and its finish reason's
/// place for faults that change it.
fn answer(route: Route, body: &Value, n: u64, filtered: bool) -> Value {
    let model = body.get("model").and_then(Value::as_str).unwrap_or("mock");
    let text = format!("mock answer to: {}", last_user_text(body));
    let prompt = estimate_tokens(body);
    let completion = text.split_whitespace().count() as u64;
    match route {
        Route::OpenAi => json!({
            "id": format!("chatcmpl-mock-{n}"),
            "object": "chat.completion",
            "created": 1_700_000_000u64,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": if filtered { Value::Null } else { json!(text) }},
                "finish_reason": if filtered { "content_filter" } else { "stop" }
            }],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        }),
        Route::Anthropic => json!({
            "id": format!("msg_mock_{n}"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": if filtered { json!([]) } else { json!([{"type": "text", "text": text}]) },
            "stop_reason": if filtered { "refusal" } else { "end_turn" },
            "stop_sequence": null,
            "usage": {"input_tokens": prompt, "output_tokens": completion}
        }),
    }
}

fn openai_error(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

fn anthropic_error(kind: &str, message: &str, n: u64) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": format!("req_mock_{n}")})
}

fn seconds(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s}")
    }
}

/// The response for `fault` on `route`; `None` for faults that have no
/// response (hang, reset, handled by the caller).
pub(crate) fn render(
    route: Route,
    fault: &Fault,
    body: &Value,
    n: u64,
) -> Option<Response<MockBody>> {
    let id = format!("req_mock_{n}");
    let id_header = match route {
        Route::OpenAi => ("x-request-id", id.clone()),
        Route::Anthropic => ("request-id", id.clone()),
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
        .to_owned();
    let error = |status: u16, openai: Value, anthropic: Value, extra: &[(&str, String)]| {
        let mut headers = vec![id_header.clone()];
        headers.extend(extra.iter().cloned());
        let body = match route {
            Route::OpenAi => openai,
            Route::Anthropic => anthropic,
        };
        Some(json_response(status, &body, &headers))
    };
    match fault {
        Fault::Ok | Fault::Latency { .. } => Some(json_response(
            200,
            &answer(route, body, n, false),
            &[id_header],
        )),
        Fault::ContentFilter => Some(json_response(
            200,
            &answer(route, body, n, true),
            &[id_header],
        )),
        Fault::RateLimit { retry_after } => {
            let msg = format!(
                "Rate limit reached for {model} on requests per min (RPM): Limit 60, Used 60, Requested 1. Please try again in {}s.",
                seconds(*retry_after)
            );
            let mut headers = vec![("retry-after", seconds(*retry_after))];
            if route == Route::OpenAi {
                headers.push((
                    "retry-after-ms",
                    format!("{}", (retry_after * 1000.0).round() as u64),
                ));
            }
            error(
                429,
                openai_error(&msg, "requests", Some("rate_limit_exceeded")),
                anthropic_error("rate_limit_error", &msg, n),
                &headers,
            )
        }
        Fault::Overloaded { retry_after } => {
            let headers: Vec<(&str, String)> = retry_after
                .iter()
                .map(|s| ("retry-after", seconds(*s)))
                .collect();
            let status = if route == Route::OpenAi { 503 } else { 529 };
            error(
                status,
                openai_error(
                    "The engine is currently overloaded, please try again later",
                    "server_error",
                    None,
                ),
                anthropic_error("overloaded_error", "Overloaded", n),
                &headers,
            )
        }
        Fault::ServerError => error(
            500,
            openai_error(
                "The server had an error while processing your request.",
                "server_error",
                None,
            ),
            anthropic_error("api_error", "Internal server error", n),
            &[],
        ),
        Fault::BadGateway => Some(raw_response(
            502,
            Bytes::from_static(b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
            "text/html",
            &[],
        )),
        Fault::Quota => {
            let anthropic = json!({"type": "error", "error": {"type": "rate_limit_error", "message": "You have reached your specified API usage limits.", "details": {"error_code": "enforced_spend_limit_reached"}}, "request_id": id});
            error(
                429,
                openai_error(
                    "You exceeded your current quota, please check your plan and billing details.",
                    "insufficient_quota",
                    Some("insufficient_quota"),
                ),
                anthropic,
                &[],
            )
        }
        Fault::Unauthorized => error(
            401,
            openai_error(
                "Incorrect API key provided: sk-mo***ck. You can find your API key in your account settings.",
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
            anthropic_error("authentication_error", "invalid x-api-key", n),
            &[],
        ),
        Fault::ContextOverflow => {
            let tokens = estimate_tokens(body);
            error(
                400,
                openai_error(
                    &format!(
                        "This model's maximum context length is exceeded: your messages resulted in {tokens} tokens. Please reduce the length of the messages."
                    ),
                    "invalid_request_error",
                    Some("context_length_exceeded"),
                ),
                anthropic_error(
                    "invalid_request_error",
                    &format!("prompt is too long: {tokens} tokens > maximum"),
                    n,
                ),
                &[],
            )
        }
        Fault::Malformed => Some(raw_response(
            200,
            Bytes::from_static(b"<html>upstream returned something that is not JSON</html>"),
            "text/html",
            &[id_header],
        )),
        Fault::CutJson => {
            let whole = answer(route, body, n, false).to_string();
            let half = Bytes::from(whole[..whole.len() / 2].to_owned());
            Some(raw_response(200, half, "application/json", &[id_header]))
        }
        Fault::Truncated => {
            let whole = answer(route, body, n, false).to_string();
            let mut response = Response::new(MockBody::truncated(Bytes::from(
                whole[..whole.len() / 2].to_owned(),
            )));
            let h = response.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Ok(v) = HeaderValue::try_from(whole.len().to_string()) {
                h.insert(http::header::CONTENT_LENGTH, v);
            }
            Some(response)
        }
        Fault::Status {
            status,
            body,
            headers,
        } => {
            let extra: Vec<(&str, String)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            Some(raw_response(
                *status,
                Bytes::from(body.clone()),
                "application/json",
                &extra,
            ))
        }
        Fault::Hang | Fault::Reset => None,
    }
}

/// The error the service returns to make hyper drop the connection.
#[derive(Debug, thiserror::Error)]
#[error("the mock reset this connection on purpose")]
pub(crate) struct ResetOnPurpose;
