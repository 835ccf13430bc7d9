//! Streamed answers of the fake: [`Streamed`] says what a stream carries and
//! how it ends; [`FakeStream`] plays it on tokio's clock.

use staunch_core::{ErrorKind, FinishReason, LlmError, StreamEvent, Usage};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

use crate::HANG;

/// How a scripted stream ends after its text chunks.
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    /// A usage event and a `stop` finish.
    Complete,
    /// A mid-stream error of this kind, one gap after the last chunk.
    Break(ErrorKind),
    /// Nothing for an hour ([`HANG`]), then a [`Timeout`](ErrorKind::Timeout)
    /// error, as an idle timeout would end it.
    Stall,
}

/// A streamed answer for [`Step::Stream`](crate::Step::Stream): text chunks
/// one `gap` apart, then a complete finish (usage, then `stop`), a break
/// with an error, or a stall.
///
/// Like a provider client, the fake's call resolves at the commit point:
/// when the first chunk is due (after one `gap`), with that chunk first on
/// the stream. What goes wrong before it is an ordinary error of the call:
/// a stream that breaks with no chunk fails the call with that error, and
/// one that stalls with no chunk hangs the call, as [`Step::Hang`](crate::Step::Hang)
/// does. A stream of no chunks that completes commits at its finish (an
/// empty answer).
///
/// The usage it reports (the usage event of a complete stream, the tokens
/// a broken one was billed) is the provider's bill unless set with
/// [`usage`](Streamed::usage).
///
/// ```
/// use futures_core::Stream;
/// use staunch_core::{ChatRequest, ErrorKind, EventStream, LlmError, Message, StreamEvent, Usage};
/// use staunch_test::{FakeProvider, stream};
/// use std::time::Duration;
/// use tower_service::Service;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let mut provider = FakeProvider::scripted([
///     stream(["Once ", "upon"]).usage(Usage::new(100, 40)),
///     stream(["Once "]).gap(Duration::from_millis(10)).breaks(ErrorKind::Network),
/// ]);
/// let ask = || ChatRequest::new("gpt-4o", vec![Message::user("A story")]).with_stream(true);
///
/// let complete = provider.call(ask()).await.unwrap().collect().await.unwrap();
/// assert_eq!(complete.text(), "Once upon");
/// assert_eq!(complete.usage, Usage::new(100, 40));
///
/// let mut answer = provider.call(ask()).await.unwrap();
/// let mut events = answer.take_stream().unwrap();
/// assert_eq!(next(&mut events).await.unwrap().unwrap(), StreamEvent::TextDelta("Once ".into()));
/// let broken = next(&mut events).await.unwrap().unwrap_err();
/// assert_eq!(broken.kind, ErrorKind::Network);
/// assert_eq!(broken.spent, Usage::new(10, 5), "the provider's bill");
/// assert!(next(&mut events).await.is_none());
/// # });
///
/// async fn next(events: &mut EventStream) -> Option<Result<StreamEvent, LlmError>> {
///     std::future::poll_fn(|cx| events.as_mut().poll_next(cx)).await
/// }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Streamed {
    chunks: Arc<[String]>,
    gap: Duration,
    end: End,
    usage: Option<Usage>,
}

/// A complete stream of these text chunks, at once (see [`Streamed`]).
pub fn stream<I>(chunks: I) -> Streamed
where
    I: IntoIterator,
    I::Item: Into<String>,
{
    Streamed {
        chunks: chunks.into_iter().map(Into::into).collect(),
        gap: Duration::ZERO,
        end: End::Complete,
        usage: None,
    }
}

impl Streamed {
    /// A complete stream of `n` text chunks (`" lorem"` and `" ipsum"` in
    /// turn), at once.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// use staunch_core::{ChatRequest, Message};
    /// use staunch_test::{FakeProvider, Streamed};
    /// use tower_service::Service;
    /// let mut provider = FakeProvider::scripted([Streamed::chunks(3)]);
    /// let ask = ChatRequest::new("gpt-4o", vec![Message::user("hi")]).with_stream(true);
    /// let answer = provider.call(ask).await.unwrap().collect().await.unwrap();
    /// assert_eq!(answer.text(), " lorem ipsum lorem");
    /// # });
    /// ```
    pub fn chunks(n: usize) -> Streamed {
        stream((0..n).map(|i| if i % 2 == 0 { " lorem" } else { " ipsum" }))
    }

    /// Each chunk comes `gap` after the one before; the first `gap` after
    /// the call (its time to first token).
    pub fn gap(mut self, gap: Duration) -> Self {
        self.gap = gap;
        self
    }

    /// The tokens it reports: the usage event of a complete stream, or the
    /// tokens a broken or stalled one was billed.
    pub fn usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// After its chunks (one gap after the last), it breaks with an error
    /// of `kind`, its last item; with no chunk, the call fails with it.
    pub fn breaks(mut self, kind: ErrorKind) -> Self {
        self.end = End::Break(kind);
        self
    }

    /// After its chunks it stalls: no event for an hour ([`HANG`]), then a
    /// [`Timeout`](ErrorKind::Timeout) error; with no chunk, the call hangs.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// use staunch_core::{ChatRequest, Message};
    /// use staunch_test::{FakeProvider, stream};
    /// use std::time::Duration;
    /// use tower_service::Service;
    /// let mut provider = FakeProvider::scripted([stream(["Hel"]).stalls()]);
    /// let ask = ChatRequest::new("gpt-4o", vec![Message::user("hi")]).with_stream(true);
    /// let answer = provider.call(ask).await.unwrap();
    /// let read = tokio::time::timeout(Duration::from_secs(60), answer.collect()).await;
    /// assert!(read.is_err(), "nothing after the first chunk within a minute");
    /// # });
    /// ```
    pub fn stalls(mut self) -> Self {
        self.end = End::Stall;
        self
    }

    /// How long the call waits before it resolves, and whether it resolves
    /// with a stream (the commit point) or the error of `fail`.
    pub(crate) fn opening(&self) -> (Duration, Opening) {
        match (self.chunks.is_empty(), self.end) {
            (false, _) => (self.gap, Opening::Commit),
            (true, End::Complete) => (Duration::ZERO, Opening::Commit),
            (true, End::Break(kind)) => (self.gap, Opening::Fail(kind)),
            (true, End::Stall) => (HANG, Opening::Fail(ErrorKind::Timeout)),
        }
    }

    /// The stream a committed call carries, billed `bill` unless the
    /// stream says otherwise; its errors name `provider` and `model`.
    pub(crate) fn play(&self, bill: Usage, provider: &str, model: &str) -> FakeStream {
        FakeStream {
            chunks: self.chunks.clone(),
            gap: self.gap,
            end: self.end,
            usage: self.usage.unwrap_or(bill),
            next: 0,
            sleep: None,
            provider: provider.to_owned(),
            model: model.to_owned(),
        }
    }

    /// The tokens a call that fails before the commit point was billed.
    pub(crate) fn spent(&self, bill: Usage) -> Usage {
        self.usage.unwrap_or(bill)
    }
}

/// What a streamed step does at its commit point.
pub(crate) enum Opening {
    Commit,
    Fail(ErrorKind),
}

/// The event stream of a [`Streamed`] step, as a
/// [`ChatResponse`](staunch_core::ChatResponse) of the fake carries it:
/// the same neutral events a provider client's stream yields.
pub struct FakeStream {
    chunks: Arc<[String]>,
    gap: Duration,
    end: End,
    usage: Usage,
    /// The next item: a chunk's index, then the ending's items.
    next: usize,
    sleep: Option<Pin<Box<Sleep>>>,
    provider: String,
    model: String,
}

impl fmt::Debug for FakeStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeStream")
            .field("chunks", &self.chunks.len())
            .field("next", &self.next)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl FakeStream {
    /// How long before item `next` is due (the first chunk was waited for
    /// by the call).
    fn delay(&self) -> Duration {
        let n = self.chunks.len();
        match (self.next, self.end) {
            (0, _) => Duration::ZERO,
            (i, _) if i < n => self.gap,
            (_, End::Complete) => Duration::ZERO,
            (i, End::Break(_)) if i == n => self.gap,
            (i, End::Stall) if i == n => HANG,
            _ => Duration::ZERO,
        }
    }

    /// Item `next`, or `None` past the end.
    fn item(&self) -> Option<Result<StreamEvent, LlmError>> {
        let n = self.chunks.len();
        if let Some(chunk) = self.chunks.get(self.next) {
            return Some(Ok(StreamEvent::TextDelta(chunk.clone())));
        }
        let broke = |kind, message: String| {
            LlmError::new(kind, message)
                .with_provider(self.provider.clone())
                .with_model(self.model.clone())
                .with_spent(self.usage)
        };
        match (self.next - n, self.end) {
            (0, End::Complete) => Some(Ok(StreamEvent::Usage(self.usage))),
            (1, End::Complete) => Some(Ok(StreamEvent::Finish(FinishReason::Stop))),
            (0, End::Break(kind)) => Some(Err(broke(
                kind,
                format!("the stream broke after {n} chunks"),
            ))),
            (0, End::Stall) => Some(Err(broke(
                ErrorKind::Timeout,
                format!("the stream stalled after {n} chunks"),
            ))),
            _ => None,
        }
    }
}

impl futures_core::Stream for FakeStream {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let delay = this.delay();
        if !delay.is_zero() {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        let item = this.item();
        if item.is_some() {
            this.next += 1;
        }
        Poll::Ready(item)
    }
}
