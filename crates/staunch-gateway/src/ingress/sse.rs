//! Streamed answers as server-sent events, in each client's dialect. After
//! the commit point a failure goes out in-band (the dialect's
//! [`StreamEncode::fail`]) and the stream ends without its terminator, so
//! no client takes a broken stream for a complete one.

use super::answer_headers;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_core::Stream;
use staunch_core::{ChatResponse, EventStream};
use staunch_providers::ingress::{ChatIngress, StreamEncode};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// `answer`'s events, written by `ingress`'s stream encoder.
pub(crate) fn stream<I: ChatIngress>(
    ingress: &I,
    mut answer: ChatResponse,
    options: &I::Options,
) -> Response {
    let mut headers = answer_headers(&answer);
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(ingress.stream_content_type()),
    );
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    let body = match answer.take_stream() {
        Some(events) => Body::from_stream(Encoded {
            events,
            ended: false,
            encoder: ingress.stream(&answer, options),
        }),
        None => Body::empty(),
    };
    (StatusCode::OK, headers, body).into_response()
}

struct Encoded {
    events: EventStream,
    ended: bool,
    encoder: Box<dyn StreamEncode>,
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
                Poll::Ready(Some(Ok(event))) => match this.encoder.event(&event) {
                    Some(bytes) => bytes,
                    None => continue,
                },
                Poll::Ready(Some(Err(error))) => {
                    this.ended = true;
                    tracing::warn!(target: "staunch_gateway", kind = error.kind.as_str(), "a stream broke after its commit point");
                    this.encoder.fail(&error)
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    this.encoder.finish()
                }
            };
            return Poll::Ready(Some(Ok(Bytes::from(bytes))));
        }
    }
}
