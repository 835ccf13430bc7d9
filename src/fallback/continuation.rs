//! Continuing a broken stream: when a text-only stream breaks after its
//! commit point, ask a target that accepts an assistant prefill for the
//! rest, and go on with the caller's stream from where it stopped.

use super::target::Target;
use futures_core::Stream;
use staunch_core::{
    ChatRequest, ChatResponse, ErrorClass, ErrorKind, EventStream, LlmError, Message, StreamEvent,
    Usage,
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

/// Where a chain continues a stream that broke after its commit point
/// (see [`Fallback::continuation_order`](super::Fallback::continuation_order)).
/// Only targets that [accept a prefill](Target::accepts_prefill) and whose
/// circuit is not open are asked, and targets before the one that served
/// the stream never are: they already failed this request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContinuationOrder {
    /// The targets after the one that broke, in chain order; the one that
    /// broke itself only after a cut (a reset, a truncated body, an error
    /// event), and only when none of those could continue. A target that
    /// stalled or never sent its first token is never asked again for the
    /// same answer: it would likely stall again, costing one more idle
    /// timeout. The default.
    #[default]
    NextFirst,
    /// The target that broke first (after a stall too), then the ones after
    /// it: for a chain whose first target is much better than the rest and
    /// whose breaks are rare and short.
    SameFirst,
}

impl ContinuationOrder {
    /// The targets to ask, in order, after `broke` ended the stream that
    /// target `serving` of `count` served.
    fn candidates(self, serving: usize, count: usize, broke: &LlmError) -> Vec<usize> {
        let after = serving + 1..count;
        match self {
            ContinuationOrder::SameFirst => std::iter::once(serving).chain(after).collect(),
            ContinuationOrder::NextFirst => {
                let stalled = broke.kind == ErrorKind::Timeout;
                let same = (!stalled).then_some(serving);
                after.chain(same).collect()
            }
        }
    }
}

/// A stream that continues itself on a prefill-capable target when it
/// breaks, never for a stream that carried tool calls, never twice from
/// scratch: only the text after what the caller already has is asked for.
///
/// Every segment's billing adds up: the usage the caller sees counts the
/// tokens of the segments that broke and of each continuation (its prompt,
/// the prefill included), not only the last segment's.
pub(super) struct Continuing {
    state: State,
    targets: Arc<[Target]>,
    order: ContinuationOrder,
    // The target that served the current stream.
    serving: usize,
    // The targets left to ask after the current break, in order.
    candidates: std::vec::IntoIter<usize>,
    request: ChatRequest,
    text: String,
    tool_calls: bool,
    // Tokens billed by the segments before the current one.
    earlier: Usage,
}

impl Continuing {
    /// Wraps the stream of `response`, served by target `serving`, when a
    /// target from it on accepts a prefill.
    pub(super) fn wrap(
        response: &mut ChatResponse,
        targets: &Arc<[Target]>,
        order: ContinuationOrder,
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
            order,
            serving,
            candidates: Vec::new().into_iter(),
            request: request.clone(),
            text: String::new(),
            tool_calls: false,
            earlier: Usage::default(),
        };
        response.stream = Some(staunch_core::ResponseStream::new(Box::pin(continuing)));
    }

    /// The next candidate that may continue: it accepts a prefill and its
    /// circuit is not open.
    fn next_target(&mut self) -> Option<usize> {
        let targets = &self.targets;
        self.candidates.find(|&i| {
            let t = &targets[i];
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

    /// Where to turn after a break of the serving stream (`fresh`) or a
    /// failed continuation: the next candidate, or the break itself, for
    /// the caller, when none is left.
    fn repair(&mut self, mut broke: LlmError, fresh: bool) -> Option<LlmError> {
        let repairable =
            !self.tool_calls && !self.text.is_empty() && broke.class() != ErrorClass::Fatal;
        if fresh {
            // The broken segment's tokens were billed all the same.
            self.earlier += broke.spent;
            self.candidates = self
                .order
                .candidates(self.serving, self.targets.len(), &broke)
                .into_iter();
        }
        match self.next_target().filter(|_| repairable) {
            Some(at) => {
                let call = self.reconnect(at);
                self.state = State::Reconnecting { call, at, broke };
                None
            }
            None => {
                // The caller is told what the whole answer cost.
                broke.spent = self.earlier;
                Some(broke)
            }
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
                    Poll::Ready(Some(Ok(mut event))) => {
                        match &mut event {
                            StreamEvent::TextDelta(text) => this.text.push_str(text),
                            StreamEvent::ToolCallDelta { .. } => this.tool_calls = true,
                            StreamEvent::Usage(usage) => *usage += this.earlier,
                            _ => {}
                        }
                        return Poll::Ready(Some(Ok(event)));
                    }
                    Poll::Ready(Some(Err(broke))) => {
                        if let Some(error) = this.repair(broke, true) {
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
                            this.earlier += refused.total_spent();
                            if let Some(error) = this.repair(broke, false) {
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
        events.push(StreamEvent::Finish(answer.into_parts().finish_reason));
        Complete(events.into_iter())
    }
}

impl Stream for Complete {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.next().map(Ok))
    }
}
