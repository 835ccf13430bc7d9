//! Streamed answers as server-sent events, in each client's shape. After
//! the commit point a failure goes out in-band (OpenAI `data: {"error"}`,
//! Anthropic `event: error`) and the stream ends without its terminator, so
//! no client takes a broken stream for a complete one.

use super::answer_headers;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_core::Stream;
use staunch_core::{ChatResponse, EventStream};
use staunch_providers::{anthropic, openai};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

fn respond(answer: &ChatResponse, body: Body) -> Response {
    let mut headers = answer_headers(answer);
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    (StatusCode::OK, headers, body).into_response()
}

/// The model and id every event of the stream repeats: the model that
/// answered (the response's own `model` where its meta names none) and the
/// answer's id (a fresh one with `prefix` where the provider gave none).
fn model_and_id(answer: &ChatResponse, prefix: &str) -> (String, String) {
    let model = answer.answered_model().to_owned();
    let id = if answer.id.is_empty() {
        format!("{prefix}{}", unique())
    } else {
        answer.id.clone()
    };
    (model, id)
}

/// OpenAI chunks.
pub(crate) fn openai(mut answer: ChatResponse, include_usage: bool) -> Response {
    let Some(events) = answer.take_stream() else {
        return respond(&answer, Body::empty());
    };
    let (model, id) = model_and_id(&answer, "chatcmpl-");
    let created = super::unix_now();
    let mut first = true;
    let body = Encoded {
        events,
        ended: false,
        encode: Box::new(move |event| {
            let chunk =
                openai::wire::encode_chunk(event, &id, &model, created, first, include_usage);
            if chunk.is_some() {
                first = false;
            }
            chunk
        }),
        finish: Box::new(|| openai::wire::STREAM_DONE.to_vec()),
        fail: Box::new(openai::wire::encode_stream_error),
    };
    respond(&answer, Body::from_stream(body))
}

/// Anthropic events.
pub(crate) fn anthropic(mut answer: ChatResponse) -> Response {
    let Some(events) = answer.take_stream() else {
        return respond(&answer, Body::empty());
    };
    let (model, id) = model_and_id(&answer, "msg_");
    // One encoder for the three callbacks; its lock is never contended (the
    // body is polled by one task) and holds plain values.
    let encoder = std::sync::Arc::new(std::sync::Mutex::new(anthropic::wire::StreamEncoder::new(
        id, model,
    )));
    let (a, b, c) = (encoder.clone(), encoder.clone(), encoder);
    let body = Encoded {
        events,
        ended: false,
        encode: Box::new(move |event| {
            let bytes = a.lock().unwrap_or_else(|p| p.into_inner()).encode(event);
            (!bytes.is_empty()).then_some(bytes)
        }),
        finish: Box::new(move || b.lock().unwrap_or_else(|p| p.into_inner()).finish()),
        fail: Box::new(move |e| c.lock().unwrap_or_else(|p| p.into_inner()).error(e)),
    };
    respond(&answer, Body::from_stream(body))
}

type EncodeFn = Box<dyn FnMut(&staunch_core::StreamEvent) -> Option<Vec<u8>> + Send>;
type FailFn = Box<dyn FnMut(&staunch_core::LlmError) -> Vec<u8> + Send>;

struct Encoded {
    events: EventStream,
    ended: bool,
    encode: EncodeFn,
    finish: Box<dyn FnMut() -> Vec<u8> + Send>,
    fail: FailFn,
}

impl Stream for Encoded {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            let bytes = match this.events.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(event))) => match (this.encode)(&event) {
                    Some(bytes) => bytes,
                    None => continue,
                },
                Poll::Ready(Some(Err(error))) => {
                    this.ended = true;
                    tracing::warn!(target: "staunch_gateway", kind = error.kind.as_str(), "a stream broke after its commit point");
                    (this.fail)(&error)
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    (this.finish)()
                }
            };
            return Poll::Ready(Some(Ok(Bytes::from(bytes))));
        }
    }
}

/// A stream id unique in this process.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{nanos:x}{:06x}", NEXT.fetch_add(1, Ordering::Relaxed))
}
