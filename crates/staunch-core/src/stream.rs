//! Streamed answers: neutral events, the stream a [`ChatResponse`] carries
//! after its commit point, and the collector that turns a stream into the
//! complete answer.

use crate::{ChatResponse, ErrorKind, FinishReason, LlmError, ToolCall, Usage};
use futures_core::Stream;
use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// One event of a streamed answer, in any provider's dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// Text to append to the answer.
    TextDelta(String),
    /// A piece of a tool call. The first piece of call `index` carries its
    /// id and name; every piece may carry a fragment of its arguments' JSON
    /// text, to append in order.
    ToolCallDelta {
        /// The call's position in the answer.
        index: u32,
        /// The call's id, on its first piece.
        id: Option<String>,
        /// The tool's name, on its first piece.
        name: Option<String>,
        /// A fragment of the arguments' JSON text.
        arguments: String,
    },
    /// Tokens billed so far (the provider's final count when it sends one
    /// at the end).
    Usage(Usage),
    /// Why generation stopped: the last content event of a complete stream.
    Finish(FinishReason),
    /// The stream broke after content and continues from another request
    /// (the text so far sent as an assistant prefill) to this target; the
    /// text events after it go on from where the stream stopped.
    Continued {
        /// The target that continues the answer.
        target: String,
    },
}

impl StreamEvent {
    /// True for the events that carry content to the caller (text and tool
    /// calls): the first of them is the commit point.
    pub fn is_content(&self) -> bool {
        matches!(
            self,
            StreamEvent::TextDelta(_) | StreamEvent::ToolCallDelta { .. }
        )
    }
}

/// A stream of events, ending with `Err` when the stream broke after the
/// commit point (a stall, a cut, a mid-stream error event, a missing
/// terminator). A stream never ends cleanly unless it is complete.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, LlmError>> + Send>>;

/// The event stream a streamed [`ChatResponse`] carries. Clones share it;
/// the first to [`take`](Self::take) it reads it.
#[derive(Clone)]
pub struct ResponseStream(Arc<Mutex<Option<EventStream>>>);

impl ResponseStream {
    /// Wraps `stream`.
    pub fn new(stream: EventStream) -> Self {
        ResponseStream(Arc::new(Mutex::new(Some(stream))))
    }

    /// Takes the stream; `None` once taken.
    pub fn take(&self) -> Option<EventStream> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl PartialEq for ResponseStream {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseStream")
    }
}

/// Builds the complete answer from events, as they come. The layers use it
/// to know what went out (usage so far, text so far, whether tool calls
/// were sent); [`ChatResponse::collect`] uses it to assemble a stream.
#[derive(Clone, Debug, Default)]
pub struct StreamAccumulator {
    text: String,
    calls: Vec<ToolCall>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    continuations: Vec<String>,
    events: u64,
}

impl StreamAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one event.
    pub fn push(&mut self, event: &StreamEvent) {
        self.events += 1;
        match event {
            StreamEvent::TextDelta(text) => self.text.push_str(text),
            StreamEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                let index = *index as usize;
                while self.calls.len() <= index {
                    self.calls.push(ToolCall::new("", "", ""));
                }
                let call = &mut self.calls[index];
                if let Some(id) = id {
                    call.id.clone_from(id);
                }
                if let Some(name) = name {
                    call.name.clone_from(name);
                }
                call.arguments.push_str(arguments);
            }
            StreamEvent::Usage(usage) => self.usage = Some(*usage),
            StreamEvent::Finish(reason) => self.finish = Some(reason.clone()),
            StreamEvent::Continued { target } => self.continuations.push(target.clone()),
        }
    }

    /// The text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The tool calls so far.
    pub fn calls(&self) -> &[ToolCall] {
        &self.calls
    }

    /// True once a tool-call piece went out.
    pub fn has_tool_calls(&self) -> bool {
        !self.calls.is_empty()
    }

    /// Events seen.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The finish reason, once seen.
    pub fn finish(&self) -> Option<&FinishReason> {
        self.finish.as_ref()
    }

    /// The provider's usage if it sent one, else an estimate: `input`
    /// tokens as the caller estimated them, and about four bytes of output
    /// text (and tool-call text) per token.
    pub fn usage_or_estimate(&self, input: u64) -> Usage {
        self.usage.unwrap_or_else(|| {
            let bytes = self.text.len()
                + self
                    .calls
                    .iter()
                    .map(|c| c.name.len() + c.arguments.len())
                    .sum::<usize>();
            Usage::new(input, (bytes as u64).div_ceil(4))
        })
    }

    /// The provider's usage, if it sent one.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Writes what was gathered into `response`: text, tool calls, usage
    /// (if sent) and finish reason.
    pub fn fill(self, response: &mut ChatResponse) {
        response.message.content = self.text.into();
        response.message.tool_calls = self.calls;
        if let Some(usage) = self.usage {
            response.usage = usage;
        }
        if let Some(finish) = self.finish {
            response.finish_reason = finish;
        }
        response.meta.continuations.extend(self.continuations);
    }
}

impl ChatResponse {
    /// A streamed answer whose events are `stream` (the commit point has
    /// passed: the stream's first event is content).
    pub fn streaming(model: impl Into<String>, stream: EventStream) -> Self {
        let mut response = ChatResponse::new(model, String::new());
        response.stream = Some(ResponseStream::new(stream));
        response
    }

    /// True when this answer's body is a stream still to be read.
    pub fn is_streaming(&self) -> bool {
        self.stream.is_some()
    }

    /// Takes the event stream of a streamed answer.
    pub fn take_stream(&mut self) -> Option<EventStream> {
        self.stream.take().and_then(|s| s.take())
    }

    /// Reads a streamed answer to its end and returns the complete answer
    /// (text, tool calls, usage, finish reason; the meta as it is). An
    /// answer that is not streamed comes back as it is. A stream that
    /// breaks gives its error, with the usage so far in `spent`.
    ///
    /// ```
    /// use staunch_core::{ChatResponse, FinishReason, StreamEvent};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let events = [StreamEvent::TextDelta("Hel".into()), StreamEvent::TextDelta("lo".into()),
    ///               StreamEvent::Finish(FinishReason::Stop)];
    /// let stream = Box::pin(futures_lite_stream(events));
    /// let answer = ChatResponse::streaming("gpt-4o", stream).collect().await.unwrap();
    /// assert_eq!(answer.text(), "Hello");
    /// # }
    /// # fn futures_lite_stream(events: [StreamEvent; 3]) -> impl futures_core::Stream<Item = Result<StreamEvent, staunch_core::LlmError>> + Send {
    /// #     struct Iter(std::vec::IntoIter<StreamEvent>);
    /// #     impl futures_core::Stream for Iter {
    /// #         type Item = Result<StreamEvent, staunch_core::LlmError>;
    /// #         fn poll_next(mut self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
    /// #             std::task::Poll::Ready(self.0.next().map(Ok))
    /// #         }
    /// #     }
    /// #     Iter(events.to_vec().into_iter())
    /// # }
    /// ```
    pub async fn collect(mut self) -> Result<ChatResponse, LlmError> {
        let Some(mut stream) = self.take_stream() else {
            return Ok(self);
        };
        let mut acc = StreamAccumulator::new();
        while let Some(item) = poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
            match item {
                Ok(event) => acc.push(&event),
                Err(mut error) => {
                    if error.spent.is_zero() {
                        error.spent = acc.usage_or_estimate(0);
                    }
                    return Err(error);
                }
            }
        }
        if acc.finish().is_none() {
            return Err(LlmError::new(
                ErrorKind::TruncatedResponse,
                "the stream ended without a finish reason",
            ));
        }
        acc.fill(&mut self);
        Ok(self)
    }
}
