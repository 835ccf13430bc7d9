//! A streamed answer on the wire: the commit point, and the guarantees
//! after it.
//!
//! Before the first content event, everything that goes wrong (an error
//! event in the first frame, no first token in time, a cut) is an ordinary
//! error of the call, so retry, breaker and fallback handle it. After it,
//! the stream ends in exactly one of two ways: complete (a finish reason was
//! seen, with or without the terminator), or with a classified error as its
//! last item: a stall (no event within the idle timeout), a cut, a
//! mid-stream error event, too many malformed events, or the deadline.

use crate::dialect::EventParser;
use crate::sse::{SseDecoder, Step};
use futures_core::Stream;
use http_body::Body;
use staunch_core::metrics::STREAM_MALFORMED_EVENTS;
use staunch_core::{Deadline, ErrorKind, LlmError, StreamAccumulator, StreamEvent, redact_secrets};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Malformed events in a row that end a stream.
const MALFORMED_IN_A_ROW: u32 = 3;

/// Where the stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before the first content event: the limit is the first-token one.
    Opening,
    /// After it: the limit is the idle one between events.
    Committed,
    /// Ended (complete or with an error already given).
    Ended,
}

/// The events of one streamed response, read from its body.
pub(crate) struct LiveStream {
    body: crate::transport::WireBody,
    decoder: SseDecoder,
    parser: Box<dyn EventParser>,
    pending: VecDeque<StreamEvent>,
    acc: StreamAccumulator,
    phase: Phase,
    malformed: u32,
    timer: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    deadline: Option<Deadline>,
    input_estimate: u64,
    retry_first_token: bool,
    provider: String,
    model: String,
}

/// What the opening of a stream gave: committed (the events up to and
/// including the first content event, or the finish of an empty answer,
/// stay queued for the caller), or an ordinary error.
pub(crate) enum Opened {
    Committed,
    Failed(LlmError),
}

impl LiveStream {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        body: crate::transport::WireBody,
        parser: Box<dyn EventParser>,
        max_event_bytes: usize,
        first_token_by: Instant,
        idle_timeout: Duration,
        deadline: Option<Deadline>,
        input_estimate: u64,
        retry_first_token: bool,
        provider: String,
        model: String,
    ) -> Self {
        LiveStream {
            body,
            decoder: SseDecoder::new(max_event_bytes),
            parser,
            pending: VecDeque::new(),
            acc: StreamAccumulator::new(),
            phase: Phase::Opening,
            malformed: 0,
            timer: Box::pin(tokio::time::sleep_until(first_token_by)),
            idle_timeout,
            deadline,
            input_estimate,
            retry_first_token,
            provider,
            model,
        }
    }

    /// Reads until the commit point: the first content event, or the finish
    /// of an answer without content. The events read so far are returned
    /// and stay queued, so the caller's stream starts with them.
    pub(crate) async fn open(&mut self) -> Opened {
        let mut head = Vec::new();
        loop {
            let next = std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await;
            match next {
                Some(Ok(event)) => {
                    let commit = event.is_content() || matches!(event, StreamEvent::Finish(_));
                    head.push(event);
                    if commit {
                        self.phase = Phase::Committed;
                        self.reset_idle();
                        for event in head.into_iter().rev() {
                            self.pending.push_front(event);
                        }
                        return Opened::Committed;
                    }
                }
                Some(Err(error)) => return Opened::Failed(error),
                None => {
                    return Opened::Failed(self.tag(LlmError::new(
                        ErrorKind::TruncatedResponse,
                        "the stream ended before any content",
                    )));
                }
            }
        }
    }

    fn reset_idle(&mut self) {
        let at = Instant::now() + self.idle_timeout;
        self.timer.as_mut().reset(at);
    }

    /// The earlier of the phase's limit and the deadline.
    fn limit_passed(&mut self, cx: &mut Context<'_>) -> Option<LlmError> {
        if let Some(d) = self.deadline
            && d.is_expired()
        {
            return Some(d.exceeded());
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            // Wake for the deadline too, if it comes first.
            if let Some(d) = self.deadline
                && d.instant() < self.timer.deadline()
            {
                self.timer.as_mut().reset(d.instant());
            }
            return None;
        }
        if let Some(d) = self.deadline
            && d.is_expired()
        {
            return Some(d.exceeded());
        }
        Some(match self.phase {
            Phase::Opening => LlmError::new(
                ErrorKind::Timeout,
                "no first token within the first-token timeout",
            ),
            _ => LlmError::new(
                ErrorKind::Timeout,
                format!(
                    "the stream stalled: no event for {:?} after {} event(s)",
                    self.idle_timeout,
                    self.acc.events()
                ),
            ),
        })
    }

    /// Tags an error with the provider, the model and the tokens so far,
    /// and ends the stream.
    fn tag(&mut self, mut error: LlmError) -> LlmError {
        self.phase = Phase::Ended;
        error.provider.get_or_insert_with(|| self.provider.clone());
        error.model.get_or_insert_with(|| self.model.clone());
        if error.spent.is_zero() {
            error.spent = self.acc.usage_or_estimate(self.input_estimate);
        }
        error.message = redact_secrets(&error.message).into_owned();
        error
    }

    /// The end of the body: complete if a finish reason was seen.
    fn at_end(&mut self, why: &str) -> Option<Result<StreamEvent, LlmError>> {
        if self.acc.finish().is_some() {
            self.phase = Phase::Ended;
            return None;
        }
        Some(Err(
            self.tag(LlmError::new(ErrorKind::TruncatedResponse, why))
        ))
    }
}

impl Stream for LiveStream {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(event) = this.pending.pop_front() {
                if this.phase == Phase::Committed {
                    this.reset_idle();
                }
                return Poll::Ready(Some(Ok(event)));
            }
            if this.phase == Phase::Ended {
                return Poll::Ready(None);
            }
            if let Some(frame) = this.decoder.next_frame() {
                match this.parser.parse(&frame) {
                    Step::Events(events) => {
                        this.malformed = 0;
                        for event in &events {
                            this.acc.push(event);
                        }
                        this.pending.extend(events);
                    }
                    Step::Ignore => {}
                    Step::Done => {
                        return Poll::Ready(
                            this.at_end("the stream ended without a finish reason"),
                        );
                    }
                    Step::Error(error) => {
                        return Poll::Ready(Some(Err(this.tag(error))));
                    }
                    Step::Malformed(why) => {
                        this.malformed += 1;
                        metrics::counter!(STREAM_MALFORMED_EVENTS, "provider" => this.provider.clone())
                            .increment(1);
                        tracing::debug!(
                            target: "staunch::providers",
                            provider = %this.provider,
                            in_a_row = this.malformed,
                            "skipped a malformed stream event"
                        );
                        if this.malformed >= MALFORMED_IN_A_ROW {
                            let error = LlmError::new(
                                ErrorKind::MalformedResponse,
                                format!(
                                    "{} malformed stream events in a row: {why}",
                                    this.malformed
                                ),
                            );
                            return Poll::Ready(Some(Err(this.tag(error))));
                        }
                    }
                }
                continue;
            }
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data()
                        && let Err(e) = this.decoder.push(&data)
                    {
                        let error = LlmError::new(ErrorKind::MalformedResponse, e.to_string());
                        return Poll::Ready(Some(Err(this.tag(error))));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let error = LlmError::new(
                        ErrorKind::TruncatedResponse,
                        "the connection broke in the middle of the stream",
                    )
                    .with_source(MaskedCause(e.to_string()));
                    return Poll::Ready(Some(Err(this.tag(error))));
                }
                Poll::Ready(None) => {
                    let why = if this.decoder.has_partial() {
                        "the connection closed in the middle of an event"
                    } else {
                        "the connection closed before the stream was complete"
                    };
                    return Poll::Ready(this.at_end(why));
                }
                Poll::Pending => {
                    if let Some(mut error) = this.limit_passed(cx) {
                        if this.phase == Phase::Opening && error.kind == ErrorKind::Timeout {
                            error.should_retry = Some(this.retry_first_token);
                        }
                        return Poll::Ready(Some(Err(this.tag(error))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// The cause of a broken stream, as text (no secrets: bodies of a stream
/// carry none of ours, and the text is masked anyway).
#[derive(Debug)]
struct MaskedCause(String);

impl std::fmt::Display for MaskedCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_secrets(&self.0))
    }
}

impl std::error::Error for MaskedCause {}
