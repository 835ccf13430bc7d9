//! A scripted fake LLM provider for testing and benchmarking staunch
//! stacks, the way `tower-test` serves tower's own layers.
//!
//! [`FakeProvider`] is a [`Service<ChatRequest>`](tower_service::Service)
//! that plays a script of [`Step`]s (an answer, an error of any kind and
//! status, a content-filter stop, a slow answer, a hang, a streamed answer
//! that completes, breaks or stalls, an answer billed its own usage),
//! overflows like a
//! real model when the prompt is larger than its context window, and
//! records every call (when, and which model was asked). Its time is
//! tokio's, so a test on paused time (`#[tokio::test(start_paused = true)]`)
//! moves it too. It is cheap to clone: clones share one script and one
//! record, as clones of a real client share one connection pool.
//!
//! ```
//! use staunch_core::{ChatRequest, ErrorKind, Message};
//! use staunch_test::{FakeProvider, Step, fail};
//! use tower_service::Service;
//!
//! # tokio_test_block_on(async {
//! let mut provider = FakeProvider::new("openai");
//! provider.script([fail(ErrorKind::RateLimited)], Step::Answer);
//! let ask = || ChatRequest::new("gpt-4o", vec![Message::user("hi")]);
//!
//! let first = provider.call(ask()).await.unwrap_err();
//! assert_eq!(first.kind, ErrorKind::RateLimited);
//! let second = provider.call(ask()).await.unwrap();
//! assert_eq!(second.text(), "openai answers");
//! assert_eq!(provider.calls(), 2);
//! assert_eq!(provider.models(), ["gpt-4o", "gpt-4o"]);
//! # });
//! # fn tokio_test_block_on(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
//! # }
//! ```
//!
//! Beside the fake, the helpers the workspace's tests share: a
//! [`CountingAllocator`](alloc::CountingAllocator), and behind features, a
//! `redis-server` killed on drop (`redis-server`), an HTTP send helper
//! (`http`) and a metrics capture (`metrics`).
#![deny(missing_docs)]

pub mod alloc;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "redis-server")]
pub mod redis;
mod stream;

pub use stream::{FakeStream, Streamed, stream};

use staunch_core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Usage};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How long [`Step::Hang`] hangs: longer than any test waits.
pub const HANG: Duration = Duration::from_secs(3_600);

/// One scripted outcome of a call.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// A complete answer at once.
    Answer,
    /// An error, at once.
    Fail {
        /// Its kind.
        kind: ErrorKind,
        /// The HTTP status the provider answered, if any.
        status: Option<u16>,
        /// The provider's `Retry-After`.
        retry_after: Option<Duration>,
        /// The provider's `x-should-retry`.
        should_retry: Option<bool>,
        /// Tokens the failed call was billed.
        spent: Usage,
    },
    /// A 200 whose answer the content filter stopped: a
    /// [`ContentFiltered`](ErrorKind::ContentFiltered) error billed the
    /// prompt and 3 output tokens.
    Filtered,
    /// A complete answer after this long.
    Slow(Duration),
    /// No answer for an hour ([`HANG`]), then a 504
    /// [`Timeout`](ErrorKind::Timeout).
    Hang,
    /// This very answer, at once (a tool call, a JSON body, a refusal).
    Reply(Box<ChatResponse>),
    /// A complete answer at once, billed this usage instead of the
    /// provider's bill: a call that costs what a budget or cost test needs.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// use staunch_core::{ChatRequest, Message, Usage};
    /// use staunch_test::{FakeProvider, Step};
    /// use tower_service::Service;
    /// let mut provider = FakeProvider::scripted([
    ///     Step::Billed(Usage::new(1_000, 200)),
    ///     Step::Answer,
    /// ]);
    /// let ask = || ChatRequest::new("gpt-4o", vec![Message::user("hi")]);
    /// assert_eq!(provider.call(ask()).await.unwrap().usage, Usage::new(1_000, 200));
    /// assert_eq!(provider.call(ask()).await.unwrap().usage, Usage::new(10, 5));
    /// # });
    /// ```
    Billed(Usage),
    /// A streamed answer: its call resolves at the commit point with a
    /// stream of neutral events (see [`Streamed`]).
    Stream(Streamed),
}

impl From<Streamed> for Step {
    fn from(streamed: Streamed) -> Self {
        Step::Stream(streamed)
    }
}

/// A step answering exactly `response`.
pub fn reply(response: ChatResponse) -> Step {
    Step::Reply(Box::new(response))
}

/// A failure of `kind` with no status.
pub fn fail(kind: ErrorKind) -> Step {
    Step::Fail {
        kind,
        status: None,
        retry_after: None,
        should_retry: None,
        spent: Usage::default(),
    }
}

/// A failure of `kind` answered with HTTP `status`.
pub fn fail_status(kind: ErrorKind, status: u16) -> Step {
    Step::Fail {
        kind,
        status: Some(status),
        retry_after: None,
        should_retry: None,
        spent: Usage::default(),
    }
}

/// A failure of `kind` answered with HTTP `status` and a `Retry-After`.
pub fn fail_after(kind: ErrorKind, status: u16, retry_after: Duration) -> Step {
    Step::Fail {
        kind,
        status: Some(status),
        retry_after: Some(retry_after),
        should_retry: None,
        spent: Usage::default(),
    }
}

/// A failure of `kind` answered with HTTP `status`, billed `spent` tokens
/// (a truncated answer, a filtered one: what a budget counts).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use staunch_core::{ChatRequest, ErrorKind, Message, Usage};
/// use staunch_test::{FakeProvider, fail_spent};
/// use tower_service::Service;
/// let mut provider = FakeProvider::scripted([
///     fail_spent(ErrorKind::TruncatedResponse, 200, Usage::new(150, 50)),
/// ]);
/// let ask = ChatRequest::new("gpt-4o", vec![Message::user("hi")]);
/// let error = provider.call(ask).await.unwrap_err();
/// assert_eq!(error.spent, Usage::new(150, 50));
/// # });
/// ```
pub fn fail_spent(kind: ErrorKind, status: u16, spent: Usage) -> Step {
    Step::Fail {
        kind,
        status: Some(status),
        retry_after: None,
        should_retry: None,
        spent,
    }
}

/// What the fake bills for an answer.
#[derive(Clone, Copy, Debug)]
enum Bill {
    Fixed(Usage),
    /// The prompt's estimate in, this many tokens out.
    Prompt(u64),
}

struct Script {
    next: VecDeque<Step>,
    then: Step,
}

struct Shared {
    name: String,
    window: Option<u64>,
    bill: Bill,
    /// A ready answer every call clones (see [`FakeProvider::answering`]).
    answer: Option<ChatResponse>,
    /// Whether calls are recorded.
    record: bool,
    /// Whether anything but an answer was ever scripted; until then a call
    /// takes no lock.
    scripted: AtomicBool,
    script: Mutex<Script>,
    calls: Mutex<Vec<(Instant, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked mid-call must not hide the record from the
    // assertion that follows.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A scripted fake provider; see the [crate docs](crate).
/// Its errors are [`LlmError`]s, as a provider client's are.
#[derive(Clone)]
pub struct FakeProvider {
    shared: Arc<Shared>,
}

impl fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeProvider")
            .field("name", &self.shared.name)
            .field("window", &self.shared.window)
            .finish_non_exhaustive()
    }
}

impl FakeProvider {
    /// A provider called `name` that answers every call
    /// (`"{name} answers"`, billed 10 tokens in and 5 out) and records it.
    pub fn new(name: impl Into<String>) -> Self {
        FakeProvider {
            shared: Arc::new(Shared {
                name: name.into(),
                window: None,
                bill: Bill::Fixed(Usage::new(10, 5)),
                answer: None,
                record: true,
                scripted: AtomicBool::new(false),
                script: Mutex::new(Script {
                    next: VecDeque::new(),
                    then: Step::Answer,
                }),
                calls: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A provider called `fake` that plays `steps` in order, the last one
    /// for every call after (an empty script answers every call).
    /// Steps are [`Step`]s or anything that makes one (a [`Streamed`]).
    pub fn scripted<S: Into<Step>>(steps: impl IntoIterator<Item = S>) -> Self {
        let provider = FakeProvider::new("fake");
        let mut steps: VecDeque<Step> = steps.into_iter().map(Into::into).collect();
        let then = steps.pop_back().unwrap_or(Step::Answer);
        provider.script(steps, then);
        provider
    }

    /// A provider that answers every call at once with a clone of `answer`
    /// and records nothing: the cheapest service there is, as the baseline
    /// of a benchmark. A script still overrides it.
    pub fn answering(answer: ChatResponse) -> Self {
        FakeProvider::new("fake").configure(|s| {
            s.answer = Some(answer);
            s.record = false;
        })
    }

    fn configure(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => f(shared),
            // Configuration is for a fresh provider; a clone already handed
            // out keeps what it saw, so nothing changes under it.
            None => panic!("configure a FakeProvider before cloning it"),
        }
        self
    }

    /// Refuses, as a real model does, a prompt estimated larger than
    /// `tokens` ([`ContextLengthExceeded`](ErrorKind::ContextLengthExceeded),
    /// status 400), whatever the script says.
    pub fn window(self, tokens: u64) -> Self {
        self.configure(|s| s.window = Some(tokens))
    }

    /// Records no calls, so that a benchmark's millions of calls do not
    /// pile up ([`calls`](Self::calls) stays 0).
    pub fn unrecorded(self) -> Self {
        self.configure(|s| s.record = false)
    }

    /// Bills every answer `usage` (10 in and 5 out by default).
    pub fn bill(self, usage: Usage) -> Self {
        self.configure(|s| s.bill = Bill::Fixed(usage))
    }

    /// Bills every answer the prompt's estimate in and `output` tokens out.
    pub fn bill_prompt(self, output: u64) -> Self {
        self.configure(|s| s.bill = Bill::Prompt(output))
    }

    /// Plays `steps` for the next calls, then `then` for every call after.
    pub fn script(&self, steps: impl IntoIterator<Item = Step>, then: impl Into<Step>) {
        let mut script = lock(&self.shared.script);
        script.next = steps.into_iter().collect();
        script.then = then.into();
        self.shared.scripted.store(true, Ordering::Release);
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// How many calls it received.
    pub fn calls(&self) -> usize {
        lock(&self.shared.calls).len()
    }

    /// When each call arrived.
    pub fn call_times(&self) -> Vec<Instant> {
        lock(&self.shared.calls).iter().map(|c| c.0).collect()
    }

    /// The model asked in each call.
    pub fn models(&self) -> Vec<String> {
        lock(&self.shared.calls)
            .iter()
            .map(|c| c.1.clone())
            .collect()
    }

    fn next_step(&self, prompt: u64) -> Step {
        if self.shared.window.is_some_and(|w| prompt > w) {
            return fail_status(ErrorKind::ContextLengthExceeded, 400);
        }
        if !self.shared.scripted.load(Ordering::Acquire) {
            return Step::Answer;
        }
        let mut script = lock(&self.shared.script);
        match script.next.pop_front() {
            Some(step) => step,
            None => script.then.clone(),
        }
    }

    /// What the provider bills a call whose prompt is `prompt` tokens.
    fn bill_of(&self, prompt: u64) -> Usage {
        match self.shared.bill {
            Bill::Fixed(usage) => usage,
            Bill::Prompt(output) => Usage::new(prompt, output),
        }
    }

    fn answer(&self, request: &ChatRequest, prompt: u64) -> ChatResponse {
        if let Some(answer) = &self.shared.answer {
            return answer.clone();
        }
        self.answer_billed(request, self.bill_of(prompt))
    }

    fn answer_billed(&self, request: &ChatRequest, usage: Usage) -> ChatResponse {
        let mut answer = ChatResponse::new(
            request.model.clone(),
            format!("{} answers", self.shared.name),
        )
        .with_usage(usage);
        answer
            .meta
            .answered_by(self.shared.name.clone(), request.model.clone());
        answer
    }

    fn error(&self, request: &ChatRequest, kind: ErrorKind, status: Option<u16>) -> LlmError {
        let message = match status {
            Some(status) => format!("{} says {status}", self.shared.name),
            None => "scripted".to_owned(),
        };
        let mut error = LlmError::new(kind, message)
            .with_provider(self.shared.name.clone())
            .with_model(request.model.clone());
        error.status = status;
        error
    }
}

impl tower_service::Service<ChatRequest> for FakeProvider {
    type Response = ChatResponse;
    type Error = LlmError;
    type Future = FakeFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: ChatRequest) -> Self::Future {
        // Like a provider client, it times the answer from the request's
        // start (a layer above may have started it).
        let started = request.start_clock();
        if self.shared.record {
            lock(&self.shared.calls).push((Instant::now(), request.model.clone()));
        }
        // The estimate walks the prompt: only what needs it pays for it.
        let needs_prompt = self.shared.window.is_some()
            || matches!(self.shared.bill, Bill::Prompt(_))
            || self.shared.scripted.load(Ordering::Acquire);
        let prompt = if needs_prompt {
            request.estimated_input_tokens()
        } else {
            0
        };
        let (outcome, after) = match self.next_step(prompt) {
            Step::Answer => (Ok(self.answer(&request, prompt)), None),
            Step::Slow(after) => (Ok(self.answer(&request, prompt)), Some(after)),
            Step::Reply(response) => (Ok(*response), None),
            Step::Billed(usage) => (Ok(self.answer_billed(&request, usage)), None),
            Step::Stream(streamed) => {
                let bill = self.bill_of(prompt);
                let (after, opening) = streamed.opening();
                let outcome = match opening {
                    stream::Opening::Commit => {
                        let events = streamed.play(bill, &self.shared.name, &request.model);
                        let mut answer =
                            ChatResponse::streaming(request.model.clone(), Box::pin(events));
                        answer
                            .meta
                            .answered_by(self.shared.name.clone(), request.model.clone());
                        Ok(answer)
                    }
                    stream::Opening::Fail(kind) => Err(self
                        .error(&request, kind, None)
                        .with_spent(streamed.spent(bill))),
                };
                (outcome, Some(after).filter(|d| !d.is_zero()))
            }
            Step::Fail {
                kind,
                status,
                retry_after,
                should_retry,
                spent,
            } => {
                let mut error = self.error(&request, kind, status).with_spent(spent);
                error.retry_after = retry_after;
                error.should_retry = should_retry;
                (Err(error), None)
            }
            Step::Filtered => {
                let error = self
                    .error(&request, ErrorKind::ContentFiltered, Some(200))
                    .with_spent(Usage::new(prompt, 3));
                (Err(error), None)
            }
            Step::Hang => (
                Err(self.error(&request, ErrorKind::Timeout, Some(504))),
                Some(HANG),
            ),
        };
        FakeFuture(Box::new(Pending {
            sleep: after.map(|d| Box::pin(tokio::time::sleep(d))),
            outcome: Some(outcome),
            started,
        }))
    }
}

/// The answer of a [`FakeProvider`]: ready at once, or after a sleep on
/// tokio's clock.
///
/// Like the provider clients' futures it is one pointer to the heap (theirs
/// are boxed `dyn Future`s), so a layer above it moves what it would move
/// over a real client, not a whole answer held inline.
pub struct FakeFuture(Box<Pending>);

struct Pending {
    sleep: Option<Pin<Box<Sleep>>>,
    outcome: Option<Result<ChatResponse, LlmError>>,
    started: Instant,
}

impl fmt::Debug for FakeFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeFuture")
            .field("sleeping", &self.0.sleep.is_some())
            .finish_non_exhaustive()
    }
}

impl Future for FakeFuture {
    type Output = Result<ChatResponse, LlmError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self.0;
        if let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        match this.outcome.take() {
            Some(Ok(mut response)) => {
                response.meta.record_latency(this.started);
                Poll::Ready(Ok(response))
            }
            Some(error) => Poll::Ready(error),
            // Polled again after it answered (a contract the caller
            // broke): it stays pending rather than panicking.
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use staunch_core::Message;
    use tower_service::Service;

    fn ask(text: &str) -> ChatRequest {
        ChatRequest::new("gpt-4o", vec![Message::user(text)])
    }

    #[tokio::test(start_paused = true)]
    async fn plays_the_script_then_repeats_its_last_step() {
        let mut p = FakeProvider::scripted([
            fail_after(ErrorKind::RateLimited, 429, Duration::from_secs(2)),
            Step::Slow(Duration::from_secs(1)),
            Step::Answer,
        ]);
        let e = p.call(ask("a")).await.unwrap_err();
        assert_eq!((e.kind, e.status), (ErrorKind::RateLimited, Some(429)));
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
        assert_eq!(e.provider.as_deref(), Some("fake"));
        let started = Instant::now();
        let slow = p.call(ask("b")).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert_eq!(slow.usage, Usage::new(10, 5));
        for _ in 0..3 {
            assert_eq!(p.call(ask("c")).await.unwrap().text(), "fake answers");
        }
        assert_eq!(p.calls(), 5);
        let times = p.call_times();
        assert_eq!(times[2] - times[1], Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn overflows_its_window_and_bills_the_prompt() {
        let mut p = FakeProvider::new("small").window(50).bill_prompt(20);
        let long = "word ".repeat(200);
        let e = p.call(ask(&long)).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::ContextLengthExceeded);
        let ok = p.call(ask("short")).await.unwrap();
        let prompt = ask("short").estimated_input_tokens();
        assert_eq!(ok.usage, Usage::new(prompt, 20));
        assert_eq!(ok.meta.provider.as_deref(), Some("small"));
        p.script([Step::Filtered], Step::Hang);
        let filtered = p.call(ask("short")).await.unwrap_err();
        assert_eq!(filtered.kind, ErrorKind::ContentFiltered);
        assert_eq!(filtered.spent, Usage::new(prompt, 3));
        let hung = tokio::time::timeout(Duration::from_secs(60), p.call(ask("x"))).await;
        assert!(hung.is_err(), "a hang answers nothing within a minute");
    }

    #[tokio::test(start_paused = true)]
    async fn times_its_answer_from_the_requests_start() {
        let mut p = FakeProvider::scripted([Step::Slow(Duration::from_secs(1))]);
        let mut request = ask("a");
        request.start_clock();
        tokio::time::advance(Duration::from_secs(2)).await;
        let answer = p.call(request).await.unwrap();
        assert_eq!(answer.meta.latency, Duration::from_secs(3));
        let fresh = p.call(ask("b")).await.unwrap();
        assert_eq!(fresh.meta.latency, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_commits_at_its_first_chunk_and_fails_before_it() {
        let gap = Duration::from_millis(10);
        let mut p = FakeProvider::scripted([
            stream(["a", "b"])
                .gap(gap)
                .usage(Usage::new(100, 40))
                .into(),
            stream(Vec::<String>::new())
                .breaks(ErrorKind::Overloaded)
                .into(),
            Step::Billed(Usage::new(7, 3)),
        ]);
        let started = Instant::now();
        let answer = p.call(ask("a").with_stream(true)).await.unwrap();
        assert_eq!(
            started.elapsed(),
            gap,
            "resolved when the first chunk was due"
        );
        assert_eq!(answer.meta.latency, gap);
        let whole = answer.collect().await.unwrap();
        assert_eq!(
            (whole.text().as_ref(), whole.usage),
            ("ab", Usage::new(100, 40))
        );
        assert_eq!(started.elapsed(), gap * 2);
        let before = p.call(ask("b").with_stream(true)).await.unwrap_err();
        assert_eq!(before.kind, ErrorKind::Overloaded);
        assert_eq!(before.spent, Usage::new(10, 5));
        assert_eq!(p.call(ask("c")).await.unwrap().usage, Usage::new(7, 3));
    }

    // Paused, so that its answer's latency is zero, as in `answer`.
    #[tokio::test(start_paused = true)]
    async fn answering_clones_its_answer_and_records_nothing() {
        let answer = ChatResponse::new("gpt-4o-2024-08-06", "hi").with_usage(Usage::new(12, 1));
        let mut p = FakeProvider::answering(answer.clone());
        assert_eq!(p.call(ask("a")).await.unwrap(), answer);
        assert_eq!(p.calls(), 0);
    }
}
