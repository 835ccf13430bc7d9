//! Continuing a broken stream: when a text-only stream breaks after its
//! commit point, ask a target that accepts an assistant prefill for the
//! rest, and go on with the caller's stream from where it stopped.

use super::target::Target;
use futures_core::Stream;
use staunch_core::{
    ChatRequest, ChatResponse, ErrorClass, EventStream, LlmError, Message, StreamEvent,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::util::Oneshot;

type Reconnect = Pin<Box<dyn Future<Output = Result<ChatResponse, LlmError>> + Send>>;

enum State {
    Streaming(EventStream),
    Reconnecting {
        call: Reconnect,
        // The target asked.
        at: usize,
        // The break being repaired, given to the caller if nothing can.
        broke: LlmError,
    },
    Done,
}

/// A stream that continues itself on a prefill-capable target when it
/// breaks, never for a stream that carried tool calls, never twice from
/// scratch: only the text after what the caller already has is asked for.
pub(super) struct Continuing {
    state: State,
    targets: Arc<[Target]>,
    // The target that served the current stream.
    serving: usize,
    request: ChatRequest,
    text: String,
    tool_calls: bool,
}

impl Continuing {
    /// Wraps the stream of `response`, served by target `serving`, when a
    /// target from it on accepts a prefill.
    pub(super) fn wrap(
        response: &mut ChatResponse,
        targets: &Arc<[Target]>,
        serving: usize,
        request: &ChatRequest,
    ) {
        if !targets[serving..].iter().any(|t| t.accepts_prefill) {
            return;
        }
        let Some(stream) = response.take_stream() else {
            return;
        };
        let continuing = Continuing {
            state: State::Streaming(stream),
            targets: targets.clone(),
            serving,
            request: request.clone(),
            text: String::new(),
            tool_calls: false,
        };
        response.stream = Some(staunch_core::ResponseStream::new(Box::pin(continuing)));
    }

    /// The next target, from `from` on, that may continue: it accepts a
    /// prefill and its circuit is not open.
    fn next_target(&self, from: usize) -> Option<usize> {
        (from..self.targets.len()).find(|&i| {
            let t = &self.targets[i];
            t.accepts_prefill
                && t.health
                    .as_ref()
                    .is_none_or(|h| h.unavailable_for().is_none())
        })
    }

    /// Asks target `at` for the rest of the answer.
    fn reconnect(&self, at: usize) -> Reconnect {
        let target = &self.targets[at];
        let mut request = self.request.clone();
        let mut messages = request.messages.to_vec();
        messages.push(Message::assistant(self.text.clone()));
        request.messages = messages.into();
        if let Some(model) = &target.model {
            request.model = model.to_string();
        }
        request.stream = true;
        tracing::info!(
            target: "staunch::fallback",
            to = target.name.as_ref(),
            prefill_bytes = self.text.len(),
            "continuing a broken stream"
        );
        Box::pin(Oneshot::new(target.service.clone(), request))
    }

    /// Where to turn after a break (or a failed continuation at `after`).
    fn repair(&mut self, broke: LlmError, after: Option<usize>) -> Option<LlmError> {
        let repairable =
            !self.tool_calls && !self.text.is_empty() && broke.class() != ErrorClass::Fatal;
        let from = after.map_or(self.serving, |i| i + 1);
        match self.next_target(from).filter(|_| repairable) {
            Some(at) => {
                let call = self.reconnect(at);
                self.state = State::Reconnecting { call, at, broke };
                None
            }
            None => Some(broke),
        }
    }
}

impl Stream for Continuing {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Streaming(stream) => match stream.as_mut().poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => {
                        this.state = State::Done;
                        return Poll::Ready(None);
                    }
                    Poll::Ready(Some(Ok(event))) => {
                        match &event {
                            StreamEvent::TextDelta(text) => this.text.push_str(text),
                            StreamEvent::ToolCallDelta { .. } => this.tool_calls = true,
                            _ => {}
                        }
                        return Poll::Ready(Some(Ok(event)));
                    }
                    Poll::Ready(Some(Err(broke))) => {
                        if let Some(error) = this.repair(broke, None) {
                            this.state = State::Done;
                            return Poll::Ready(Some(Err(error)));
                        }
                    }
                },
                State::Reconnecting { call, at, .. } => {
                    let at = *at;
                    let result = match call.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(result) => result,
                    };
                    let State::Reconnecting { broke, .. } =
                        std::mem::replace(&mut this.state, State::Done)
                    else {
                        return Poll::Ready(None);
                    };
                    match result {
                        Ok(mut answer) => {
                            let name = this.targets[at].name.to_string();
                            this.serving = at;
                            this.state = match answer.take_stream() {
                                Some(stream) => State::Streaming(stream),
                                // A complete answer: replay what it says.
                                None => State::Streaming(Box::pin(Complete::of(answer))),
                            };
                            return Poll::Ready(Some(Ok(StreamEvent::Continued { target: name })));
                        }
                        Err(refused) => {
                            tracing::info!(
                                target: "staunch::fallback",
                                at = this.targets[at].name.as_ref(),
                                kind = refused.kind.as_str(),
                                "a continuation was refused"
                            );
                            if let Some(error) = this.repair(broke, Some(at)) {
                                return Poll::Ready(Some(Err(error)));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The events of a complete answer that continued a stream.
struct Complete(std::vec::IntoIter<StreamEvent>);

impl Complete {
    fn of(answer: ChatResponse) -> Self {
        let mut events = Vec::new();
        let text = answer.text();
        if !text.is_empty() {
            events.push(StreamEvent::TextDelta(text.into_owned()));
        }
        if !answer.usage.is_zero() {
            events.push(StreamEvent::Usage(answer.usage));
        }
        events.push(StreamEvent::Finish(answer.finish_reason));
        Complete(events.into_iter())
    }
}

impl Stream for Complete {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.next().map(Ok))
    }
}
