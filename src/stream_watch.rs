//! Watching a streamed answer to its end: how the layers settle what they
//! hold (a breaker's verdict, a budget's reservation, the request metrics)
//! once the stream is complete, breaks, or is dropped by the caller.

use futures_core::Stream;
use staunch_core::{ChatResponse, EventStream, LlmError, ResponseStream, StreamEvent, Usage};
use std::pin::Pin;
use std::task::{Context, Poll};

/// How a watched stream ended.
pub(crate) enum StreamEnd<'a> {
    /// It ended after its finish reason.
    Complete,
    /// It broke with this error (its last item).
    Broke(&'a LlmError),
    /// The caller dropped it before its end.
    Dropped,
}

/// What went through a watched stream, without keeping its text.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tally {
    /// Events passed.
    pub(crate) events: u64,
    /// The last usage the provider sent.
    pub(crate) usage: Option<Usage>,
    /// Bytes of text and tool-call arguments passed.
    pub(crate) output_bytes: u64,
    /// Continuations of a broken stream.
    pub(crate) continuations: u64,
}

impl Tally {
    fn count(&mut self, event: &StreamEvent) {
        self.events += 1;
        match event {
            StreamEvent::TextDelta(text) => self.output_bytes += text.len() as u64,
            StreamEvent::ToolCallDelta { arguments, .. } => {
                self.output_bytes += arguments.len() as u64
            }
            StreamEvent::Usage(usage) => self.usage = Some(*usage),
            StreamEvent::Continued { .. } => self.continuations += 1,
            _ => {}
        }
    }

    /// The provider's usage, or `input` plus about four bytes of output per
    /// token.
    pub(crate) fn usage_or_estimate(&self, input: u64) -> Usage {
        self.usage
            .unwrap_or_else(|| Usage::new(input, self.output_bytes.div_ceil(4)))
    }
}

type OnEnd = Box<dyn FnOnce(StreamEnd<'_>, &Tally) + Send>;

struct Watched {
    inner: EventStream,
    tally: Tally,
    on_end: Option<OnEnd>,
}

impl Watched {
    fn end(&mut self, how: StreamEnd<'_>) {
        if let Some(on_end) = self.on_end.take() {
            on_end(how, &self.tally);
        }
    }
}

impl Stream for Watched {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        match &item {
            Some(Ok(event)) => this.tally.count(event),
            Some(Err(error)) => this.end(StreamEnd::Broke(error)),
            None => this.end(StreamEnd::Complete),
        }
        Poll::Ready(item)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.end(StreamEnd::Dropped);
    }
}

/// Wraps the stream of `response` (if it has one) so that `on_end` runs
/// once, when it ends. Returns false, without calling `on_end`, for an
/// answer that is not streamed.
pub(crate) fn watch<F>(response: &mut ChatResponse, on_end: F) -> bool
where
    F: FnOnce(StreamEnd<'_>, &Tally) + Send + 'static,
{
    let Some(inner) = response.take_stream() else {
        return false;
    };
    let watched = Watched {
        inner,
        tally: Tally::default(),
        on_end: Some(Box::new(on_end)),
    };
    response.stream = Some(ResponseStream::new(Box::pin(watched)));
    true
}

/// A one-event stream of a complete answer (a cached or static answer given
/// to a streamed request): its text, its usage and its finish reason.
pub(crate) fn replay(response: &mut ChatResponse) {
    let mut events = Vec::with_capacity(3);
    let text = response.text().into_owned();
    if !text.is_empty() {
        events.push(StreamEvent::TextDelta(text));
    }
    for (index, call) in response.message.tool_calls.iter().enumerate() {
        events.push(StreamEvent::ToolCallDelta {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            id: Some(call.id.clone()),
            name: Some(call.name.clone()),
            arguments: call.arguments.clone(),
        });
    }
    if !response.usage.is_zero() {
        events.push(StreamEvent::Usage(response.usage));
    }
    events.push(StreamEvent::Finish(response.finish_reason.clone()));
    response.stream = Some(ResponseStream::new(Box::pin(Replay(events.into_iter()))));
}

struct Replay(std::vec::IntoIter<StreamEvent>);

impl Stream for Replay {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.next().map(Ok))
    }
}
