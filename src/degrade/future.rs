//! The degradation response future.

use super::config::StaticAnswer;
use super::layer::Shared;
use crate::deadline::{Bounded, Deadline};
use crate::metrics as names;
use pin_project_lite::pin_project;
use staunch_core::{
    Answer, BoxError, Call, ChatRequest, ChatResponse, ErrorClass, ErrorKind, LlmError,
    QualityTier, Usage,
};
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::time::Instant;

struct Degrading<C> {
    shared: Arc<Shared>,
    // The cache key; `None` without a cache.
    key: Option<u128>,
    for_static: Option<ForStatic<C>>,
    // The request asked for a stream: a degraded answer is replayed as one.
    stream: bool,
    // The request's start: a degraded answer's latency runs from it.
    started: Instant,
}

/// What a request in flight keeps to build the static answer.
pub(super) enum ForStatic<C> {
    /// The model a static text answers as.
    Model(ModelName),
    /// The request, for an answer built from it: a clone shares the
    /// request's fields.
    Request(C),
}

/// The model a static text answers as, inline when it is short (model
/// names mostly are): every degrading request keeps one, and only a
/// failed one reads it.
pub(super) enum ModelName {
    Inline { len: u8, bytes: [u8; 30] },
    Heap(Box<str>),
}

impl ModelName {
    pub(super) fn new(model: &str) -> Self {
        let mut bytes = [0; 30];
        match bytes.get_mut(..model.len()) {
            Some(head) => {
                head.copy_from_slice(model.as_bytes());
                ModelName::Inline {
                    len: model.len() as u8,
                    bytes,
                }
            }
            None => ModelName::Heap(model.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Copied whole from a `str`, so always UTF-8.
            ModelName::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            ModelName::Heap(name) => name,
        }
    }
}

/// The static answer `config` gives: a chat answer (static answers are
/// text), so only a chat call gets one.
fn static_answer<C: Call>(config: &StaticAnswer, for_static: &ForStatic<C>) -> Option<C::Answer> {
    let chat = match (config, for_static) {
        (StaticAnswer::Text(text), ForStatic::Model(model)) => {
            ChatResponse::new(model.as_str(), text.as_ref())
        }
        (StaticAnswer::Built(build), ForStatic::Request(request)) => {
            build((request as &dyn Any).downcast_ref::<ChatRequest>()?)
        }
        _ => return None,
    };
    let chat: Box<dyn Any> = Box::new(chat);
    chat.downcast::<C::Answer>().ok().map(|answer| *answer)
}

pin_project! {
    /// The response future of [`Degrade`](super::Degrade).
    pub struct ResponseFuture<F, C = ChatRequest> {
        // Cut at the request's deadline, so that a cached or static answer
        // goes out by it, not after.
        #[pin]
        inner: Bounded<F>,
        degrading: Option<Degrading<C>>,
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(super) fn pass_through(inner: F, deadline: Option<Deadline>) -> Self {
        ResponseFuture {
            inner: Bounded::new(inner, deadline),
            degrading: None,
        }
    }

    pub(super) fn degrading(
        inner: F,
        deadline: Option<Deadline>,
        shared: Arc<Shared>,
        key: Option<u128>,
        for_static: Option<ForStatic<C>>,
        stream: bool,
        started: Instant,
    ) -> Self {
        ResponseFuture {
            inner: Bounded::new(inner, deadline),
            degrading: Some(Degrading {
                shared,
                key,
                for_static,
                stream,
                started,
            }),
        }
    }
}

/// Marks `response` as a degraded answer to a request that failed with `error`.
fn degraded<A: Answer>(mut response: A, tier: QualityTier, error: &LlmError, warning: String) -> A {
    response.set_usage(Usage::default());
    response.meta_mut().mark_degraded(tier, error, warning);
    response
}

/// Replays a degraded answer as a stream when the caller asked for one.
fn replay_if<A: Answer>(stream: bool, response: &mut A) {
    if stream && let Some(chat) = response.as_chat_mut() {
        crate::stream_watch::replay(chat);
    }
}

impl<F, C, E> Future for ResponseFuture<F, C>
where
    C: Call,
    C::Answer: Clone + Sync,
    F: Future<Output = Result<C::Answer, E>>,
    E: Into<BoxError>,
{
    type Output = Result<C::Answer, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(state) = this.degrading.take() else {
            return Poll::Ready(result);
        };
        let shared = &state.shared;
        let error = match result {
            Ok(response) => {
                // A streamed answer is not cached: it is not complete yet.
                if let (Some(cache), Some(key)) = (&shared.cache, state.key)
                    && matches!(
                        response.meta().tier,
                        QualityTier::Full | QualityTier::Reduced
                    )
                    && !response.is_streaming()
                {
                    cache.insert(key, response.clone());
                }
                return Poll::Ready(Ok(response));
            }
            Err(error) => error,
        };
        if shared.config.classify.classify(&error) == ErrorClass::Fatal {
            return Poll::Ready(Err(error));
        }
        if let Some((cached, age)) = shared
            .cache
            .as_ref()
            .zip(state.key)
            .and_then(|(c, key)| c.get::<C::Answer>(key))
        {
            let warning = format!(
                "served a cached answer from {}s ago: the request failed ({})",
                age.as_secs(),
                error.kind
            );
            tracing::warn!(target: "staunch::degrade", tier = "cached", kind = error.kind.as_str(), "degraded");
            crate::metrics::counter!(names::DEGRADED, "tier" => "cached", "kind" => error.kind.as_str())
                .increment(1);
            let mut response = degraded(cached, QualityTier::Cached, &error, warning);
            response.meta_mut().record_latency(state.started);
            replay_if(state.stream, &mut response);
            return Poll::Ready(Ok(response));
        }
        // A prompt too long for every model, or one every provider filters,
        // will fail the same way later: a "try again" answer would mislead.
        let about_the_request = matches!(
            error.kind,
            ErrorKind::ContextLengthExceeded | ErrorKind::ContentFiltered
        );
        let built = match (&shared.config.static_answer, &state.for_static) {
            (_, _) if about_the_request => None,
            (Some(answer), Some(for_static)) => static_answer::<C>(answer, for_static),
            _ => None,
        };
        if let Some(answer) = built {
            let warning = format!(
                "served the static answer: the request failed ({}) and no answer was cached",
                error.kind
            );
            tracing::warn!(target: "staunch::degrade", tier = "static", kind = error.kind.as_str(), "degraded");
            crate::metrics::counter!(names::DEGRADED, "tier" => "static", "kind" => error.kind.as_str())
                .increment(1);
            let mut response = degraded(answer, QualityTier::Static, &error, warning);
            response.meta_mut().record_latency(state.started);
            replay_if(state.stream, &mut response);
            return Poll::Ready(Ok(response));
        }
        Poll::Ready(Err(error))
    }
}
