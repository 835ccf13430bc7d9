//! The breaker against a small reference model, over random sequences of
//! calls (started and finished in any order), outcomes of every class, and
//! time advances.

use super::*;
use crate::test_support::request;
use proptest::prelude::*;
use staunch_core::{ChatRequest, ChatResponse, ErrorKind, LlmError};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::oneshot;
use tower::{Layer, Service};

const THRESHOLD: u32 = 3;
const PROBES: u32 = 2;
const SUCCESSES: u32 = 2;
const BREAK: Duration = Duration::from_secs(10);
const MAX_BREAK: Duration = Duration::from_secs(40);

#[derive(Clone, Copy, Debug)]
enum Verdict {
    Ok,
    Fail(ErrorKind),
    RateLimited(u64),
}

#[derive(Clone, Debug)]
enum Op {
    Start,
    Finish(usize, Verdict),
    Drop(usize),
    Advance(u64),
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        3 => Just(Verdict::Ok),
        3 => prop::sample::select(vec![
            ErrorKind::Server,
            ErrorKind::Overloaded,
            ErrorKind::Timeout,
            ErrorKind::Authentication,
            ErrorKind::InvalidRequest,
            ErrorKind::ContextLengthExceeded,
            ErrorKind::ContentFiltered,
            ErrorKind::Cancelled,
        ])
        .prop_map(Verdict::Fail),
        1 => (1u64..30).prop_map(Verdict::RateLimited),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Start),
        4 => (0usize..8, verdict()).prop_map(|(i, v)| Op::Finish(i, v)),
        1 => (0usize..8).prop_map(Op::Drop),
        2 => (0u64..25).prop_map(Op::Advance),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum MState {
    Closed,
    Open { until: Duration },
    HalfOpen { in_flight: u32, successes: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum MAdmit {
    Normal(u64),
    Probe(u64),
    Rejected,
}

/// The reference: the design's rules, written as plainly as possible.
struct Model {
    now: Duration,
    state: MState,
    epoch: u64,
    run: u32,
    current_break: Duration,
}

impl Model {
    fn open(&mut self, from_half_open: bool, cooldown: Option<Duration>) {
        let wait = match cooldown {
            Some(d) => d,
            None if from_half_open => {
                self.current_break = (self.current_break * 2).min(MAX_BREAK);
                self.current_break
            }
            None => {
                self.current_break = BREAK;
                BREAK
            }
        };
        self.state = MState::Open {
            until: self.now + wait,
        };
        self.epoch += 1;
    }

    fn start(&mut self) -> MAdmit {
        if let MState::Open { until } = self.state {
            if self.now < until {
                return MAdmit::Rejected;
            }
            self.state = MState::HalfOpen {
                in_flight: 0,
                successes: 0,
            };
            self.epoch += 1;
        }
        match &mut self.state {
            MState::Closed => MAdmit::Normal(self.epoch),
            MState::HalfOpen { in_flight, .. } if *in_flight < PROBES => {
                *in_flight += 1;
                MAdmit::Probe(self.epoch)
            }
            _ => MAdmit::Rejected,
        }
    }

    fn finish(&mut self, admit: MAdmit, verdict: Option<Verdict>) {
        // None: dropped before it ended.
        let outcome = match verdict {
            None => Outcome::Ignored,
            Some(Verdict::Ok) => Outcome::Success,
            Some(Verdict::RateLimited(_)) => Outcome::Failure,
            Some(Verdict::Fail(kind)) => default_outcome(&Err(LlmError::new(kind, ""))),
        };
        let cooldown = match verdict {
            Some(Verdict::RateLimited(s)) => Some(Duration::from_secs(s)),
            _ => None,
        };
        match admit {
            MAdmit::Normal(e) if e == self.epoch && self.state == MState::Closed => match outcome {
                Outcome::Success => self.run = 0,
                Outcome::Failure => {
                    self.run += 1;
                    if cooldown.is_some() || self.run >= THRESHOLD {
                        self.run = 0;
                        self.open(false, cooldown);
                    }
                }
                Outcome::Ignored => {}
            },
            MAdmit::Probe(e) if e == self.epoch => {
                let MState::HalfOpen {
                    in_flight,
                    successes,
                } = &mut self.state
                else {
                    return;
                };
                match outcome {
                    Outcome::Success => {
                        *successes += 1;
                        *in_flight -= 1;
                        if *successes >= SUCCESSES {
                            self.state = MState::Closed;
                            self.run = 0;
                            self.current_break = BREAK;
                            self.epoch += 1;
                        }
                    }
                    Outcome::Failure => self.open(true, cooldown),
                    Outcome::Ignored => *in_flight -= 1,
                }
            }
            _ => {}
        }
    }

    fn public_state(&self) -> CircuitState {
        match self.state {
            MState::Closed => CircuitState::Closed,
            MState::Open { .. } => CircuitState::Open,
            MState::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

type Call = Pin<Box<dyn Future<Output = Result<ChatResponse, LlmError>> + Send>>;

/// A target whose every call waits for its verdict on a channel.
#[derive(Clone)]
struct Remote {
    senders: std::sync::Arc<std::sync::Mutex<Vec<oneshot::Sender<Verdict>>>>,
}

impl Service<ChatRequest> for Remote {
    type Response = ChatResponse;
    type Error = LlmError;
    type Future = Call;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, r: ChatRequest) -> Call {
        let (tx, rx) = oneshot::channel();
        self.senders.lock().unwrap().push(tx);
        Box::pin(async move {
            match rx.await {
                Ok(Verdict::Ok) => Ok(ChatResponse::new(&r.model, "ok")),
                Ok(Verdict::Fail(kind)) => Err(LlmError::new(kind, "x").with_status(500)),
                Ok(Verdict::RateLimited(s)) => Err(LlmError::new(ErrorKind::RateLimited, "x")
                    .with_status(429)
                    .with_retry_after(Duration::from_secs(s))),
                Err(_) => Err(LlmError::new(ErrorKind::Cancelled, "dropped")),
            }
        })
    }
}

fn poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

fn check(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let remote = Remote { senders: Default::default() };
        let cb = CircuitBreakerLayer::new(
            CircuitBreakerConfig::new("model")
                .half_open_wait(Duration::ZERO)
                .consecutive_failures(Some(THRESHOLD))
                .break_duration(BREAK)
                .break_growth(2.0, MAX_BREAK)
                .break_jitter(0.0)
                .half_open_probes(PROBES)
                .success_threshold(SUCCESSES),
        )
        .unwrap();
        let handle = cb.handle();
        let mut service = cb.layer(remote.clone());
        let mut model = Model { now: Duration::ZERO, state: MState::Closed, epoch: 0, run: 0, current_break: BREAK };
        // Calls in flight: the real future, its verdict sender, the model's admission.
        let mut flying: Vec<(Call, Option<oneshot::Sender<Verdict>>, MAdmit)> = Vec::new();
        for op in ops {
            match op {
                Op::Start => {
                    let want = model.start();
                    let ready = poll_once(Pin::new(&mut Box::pin(std::future::poll_fn(|cx| service.poll_ready(cx)))));
                    prop_assert!(matches!(ready, Poll::Ready(Ok(()))));
                    let sent_before = remote.senders.lock().unwrap().len();
                    let mut call: Call = Box::pin(service.call(request()));
                    let reached = remote.senders.lock().unwrap().len() > sent_before;
                    if want == MAdmit::Rejected {
                        prop_assert!(!reached, "the breaker let through a call the model refuses");
                        let refused = poll_once(call.as_mut());
                        prop_assert!(matches!(&refused, Poll::Ready(Err(e)) if e.kind == ErrorKind::CircuitOpen));
                    } else {
                        prop_assert!(reached, "the breaker refused a call the model admits");
                        let tx = remote.senders.lock().unwrap().pop();
                        flying.push((call, tx, want));
                    }
                }
                Op::Finish(i, verdict) if !flying.is_empty() => {
                    let (mut call, tx, admit) = flying.remove(i % flying.len());
                    if let Some(tx) = tx {
                        let _ = tx.send(verdict);
                    }
                    prop_assert!(poll_once(call.as_mut()).is_ready());
                    model.finish(admit, Some(verdict));
                }
                Op::Drop(i) if !flying.is_empty() => {
                    let (call, _tx, admit) = flying.remove(i % flying.len());
                    drop(call);
                    model.finish(admit, None);
                }
                Op::Advance(secs) => {
                    tokio::time::advance(Duration::from_secs(secs)).await;
                    model.now += Duration::from_secs(secs);
                }
                Op::Finish(..) | Op::Drop(..) => {}
            }
            prop_assert_eq!(handle.state(), model.public_state());
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn the_breaker_follows_the_reference_model(ops in prop::collection::vec(op(), 1..120)) {
        check(ops)?;
    }
}
