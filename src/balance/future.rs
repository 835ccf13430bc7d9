//! The balancer's response future: a call to the picked deployment, and
//! another deployment after each failure until one answers or none is left.

use super::book::{Book, Ejection, Mask, OutReason, bit};
use super::error::{AllDeploymentsOut, DeploymentOutcome};
use super::service::Shared;
use crate::deadline::{Bounded, Deadline};
use crate::metrics::counter;
use pin_project_lite::pin_project;
use staunch_core::{Answer, Call, ChatRequest, ErrorClass, ErrorKind, LlmError, Usage};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use tower::util::Oneshot;

use super::deployment::DeploymentService;

/// Counter: answers by `balance` and the `deployment` that gave them.
pub const ANSWERS: &str = "staunch_balance_answers_total";
/// Counter: calls moved from a deployment that failed (`from`) to another
/// (`to`) of the same `balance`.
pub const FAILOVERS: &str = "staunch_balance_failovers_total";
/// Counter: deployments taken out by their balancer, by `balance`,
/// `deployment` and `reason` (`authentication`, `permission_denied`,
/// `quota_exhausted`). Any rise: a key needs rotating or an account money.
pub const EJECTIONS: &str = "staunch_balance_ejections_total";
/// Counter: calls a balancer failed because every deployment was out or
/// had failed, by `balance`.
pub const EXHAUSTED: &str = "staunch_balance_exhausted_total";

/// The response future of [`Balance`](super::Balance).
///
/// Its state lives in one heap block, so the layers above move a pointer.
pub struct ResponseFuture<C: Call = ChatRequest> {
    state: Pin<Box<State<C>>>,
}

impl<C: Call> std::fmt::Debug for ResponseFuture<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("tried", &self.state.run.tried.count_ones())
            .finish_non_exhaustive()
    }
}

pin_project! {
    struct State<C: Call> {
        run: Run<C>,
        #[pin]
        call: Option<Bounded<Oneshot<DeploymentService<C>, C>>>,
    }
}

/// What the future knows between calls.
struct Run<C: Call> {
    shared: Arc<Shared<C>>,
    request: C,
    /// Deployments called already.
    tried: Mask,
    /// The failures so far, with the deployment of each.
    errors: Vec<(usize, LlmError)>,
    /// The call in flight.
    attempt: Option<Attempt>,
}

/// One call to one deployment: counted in flight until it ends, and
/// measured when it does. Dropped before it ends (the caller gave up, a
/// hedge won), it is counted as a slow failure so far.
struct Attempt {
    book: Arc<Book>,
    index: usize,
    sent: u64,
    ended: bool,
}

impl Attempt {
    fn start(book: &Arc<Book>, index: usize) -> Self {
        book.stats[index].in_flight.fetch_add(1, Ordering::Relaxed);
        Attempt {
            book: book.clone(),
            index,
            sent: book.now(),
            ended: false,
        }
    }

    fn end(&mut self, answered: bool) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let stats = &self.book.stats[self.index];
        stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        let now = self.book.now();
        self.book
            .observe(self.index, now.saturating_sub(self.sent), now, answered);
        if answered {
            stats.answered.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.end(false);
    }
}

/// The size of `call` in tokens, as the headroom strategy weighs it.
pub(super) fn tokens_per_call<C: Call>(call: &C) -> u64 {
    call.estimated_input_tokens()
        .saturating_add(call.max_output_tokens().unwrap_or(0))
        .max(1)
}

/// Whether another deployment of the same model would fail the same way:
/// the request itself is at fault, or its deadline passed.
fn ends_the_call(error: &LlmError) -> bool {
    error.class() == ErrorClass::Fatal
        || matches!(
            error.kind,
            ErrorKind::ContextLengthExceeded | ErrorKind::ContentFiltered
        )
        || error.is_deadline_exceeded()
}

fn ejection(kind: ErrorKind) -> Option<Ejection> {
    match kind {
        ErrorKind::Authentication => Some(Ejection::Authentication),
        ErrorKind::PermissionDenied => Some(Ejection::PermissionDenied),
        ErrorKind::QuotaExhausted => Some(Ejection::QuotaExhausted),
        _ => None,
    }
}

impl<C: Call> ResponseFuture<C> {
    pub(super) fn new(shared: Arc<Shared<C>>, request: C) -> Self {
        ResponseFuture {
            state: Box::pin(State {
                run: Run {
                    shared,
                    request,
                    tried: 0,
                    errors: Vec::new(),
                    attempt: None,
                },
                call: None,
            }),
        }
    }
}

impl<C: Call> Run<C> {
    /// The deployments a hedged call's second attempt should avoid: the one
    /// its first attempt went to.
    #[cfg(feature = "hedge")]
    fn avoided(&self) -> Mask {
        let book = &self.shared.book;
        self.request
            .extensions()
            .get::<crate::hedge::HedgeRoute>()
            .and_then(|route| route.avoid())
            .and_then(|name| book.index_of(name))
            .map_or(0, bit)
    }

    #[cfg(not(feature = "hedge"))]
    fn avoided(&self) -> Mask {
        0
    }

    #[cfg(feature = "hedge")]
    fn note_route(&self, index: usize) {
        if let Some(route) = self.request.extensions().get::<crate::hedge::HedgeRoute>() {
            route.record(&self.shared.book.names[index]);
        }
    }

    #[cfg(not(feature = "hedge"))]
    fn note_route(&self, _: usize) {}

    /// Picks a deployment not tried yet and starts its call.
    fn start_next(&mut self) -> Result<Bounded<Oneshot<DeploymentService<C>, C>>, LlmError> {
        let deadline = Deadline::of(&self.request);
        if let Some(d) = deadline
            && d.is_expired()
        {
            let cut = d.exceeded().with_attempts(0);
            return Err(self.give_up(Some(cut)));
        }
        let book = &self.shared.book;
        let request = &self.request;
        let first = self.tried == 0;
        let avoid = if first { self.avoided() } else { 0 };
        let picked = book
            .pick(self.tried | avoid, || tokens_per_call(request))
            .or_else(|| {
                (avoid != 0)
                    .then(|| book.pick(self.tried, || tokens_per_call(request)))
                    .flatten()
            });
        let Some(index) = picked else {
            return Err(self.give_up(None));
        };
        if let Some((from, _)) = self.errors.last() {
            let from = book.names[*from].clone();
            let to = book.names[index].clone();
            tracing::info!(
                target: "staunch::balance",
                balance = &*book.name,
                from = &*from,
                to = &*to,
                "failing over to another deployment"
            );
            counter!(FAILOVERS, "balance" => book.name.clone(), "from" => from, "to" => to)
                .increment(1);
        }
        if first {
            self.note_route(index);
        }
        let request = match &self.shared.models[index] {
            Some(model) => self.request.clone_for_model(model),
            None => self.request.clone(),
        };
        self.tried |= bit(index);
        self.attempt = Some(Attempt::start(book, index));
        Ok(Bounded::new(
            Oneshot::new(self.shared.services[index].clone(), request),
            deadline,
        ))
    }

    /// The answer of the deployment in flight, with what was spent before.
    fn answered(&mut self, mut answer: C::Answer) -> C::Answer {
        let Some(mut attempt) = self.attempt.take() else {
            return answer;
        };
        attempt.end(true);
        let book = &self.shared.book;
        let name = &book.names[attempt.index];
        counter!(ANSWERS, "balance" => book.name.clone(), "deployment" => name.clone())
            .increment(1);
        let meta = answer.meta_mut();
        meta.answered_at_deployment(name);
        if let Some(model) = &self.shared.models[attempt.index] {
            meta.fill_model(|| model.clone());
        }
        for (_, e) in &self.errors {
            meta.absorb_failed_attempts(e.attempts, e.total_spent());
        }
        answer
    }

    /// Records the failure of the deployment in flight; `Err` when the
    /// call ends with it.
    fn failed(&mut self, error: LlmError) -> Result<(), LlmError> {
        let Some(mut attempt) = self.attempt.take() else {
            return Err(error);
        };
        attempt.end(false);
        let book = &self.shared.book;
        let index = attempt.index;
        if let Some(why) = ejection(error.kind) {
            book.eject(index, why, book.eject_for);
            tracing::warn!(
                target: "staunch::balance",
                balance = &*book.name,
                deployment = &*book.names[index],
                reason = why.as_str(),
                error = %error,
                "deployment taken out"
            );
            counter!(
                EJECTIONS,
                "balance" => book.name.clone(),
                "deployment" => book.names[index].clone(),
                "reason" => why.as_str()
            )
            .increment(1);
        }
        let ends = ends_the_call(&error);
        self.errors.push((index, error));
        if ends {
            return Err(self.fold_errors(None));
        }
        Ok(())
    }

    /// The last error, with the calls and tokens of the earlier ones added
    /// and, when `out` is given, the account of every deployment ending
    /// its message.
    fn fold_errors(&mut self, out: Option<&AllDeploymentsOut>) -> LlmError {
        let mut errors = std::mem::take(&mut self.errors);
        let Some((_, mut last)) = errors.pop() else {
            return LlmError::new(ErrorKind::Other, "the balancer made no call");
        };
        let mut spent = Usage::default();
        for (_, e) in &errors {
            last.add_attempts(e.attempts);
            spent += e.total_spent();
        }
        if spent != Usage::default() {
            let total = last.spent + spent;
            last = last.with_spent(total);
        }
        if let Some(out) = out {
            last.message = format!("{}; {out}", last.message);
        }
        last
    }

    /// The error of a call no deployment may take any more: the last
    /// failure, or (when none was called) an error of the kind that says
    /// why, with the account of every deployment. `cut` is the deadline's
    /// error, when it passed.
    fn give_up(&mut self, cut: Option<LlmError>) -> LlmError {
        let book = &self.shared.book;
        let now = book.now();
        let failed: Vec<(usize, ErrorKind)> =
            self.errors.iter().map(|(i, e)| (*i, e.kind)).collect();
        let deployments = (0..book.len())
            .filter_map(|i| {
                let outcome = match failed.iter().rev().find(|(j, _)| *j == i) {
                    Some((_, kind)) => DeploymentOutcome::Failed(*kind),
                    None => DeploymentOutcome::Out(book.out_reason(i, now)?),
                };
                Some((book.names[i].to_string(), outcome))
            })
            .collect();
        let out = AllDeploymentsOut {
            balance: book.name.to_string(),
            deployments,
        };
        if let Some(cut) = cut {
            if self.errors.is_empty() {
                return cut;
            }
            return self.fold_errors(None);
        }
        tracing::warn!(target: "staunch::balance", balance = &*book.name, "{out}");
        counter!(EXHAUSTED, "balance" => book.name.clone()).increment(1);
        if !self.errors.is_empty() {
            return self.fold_errors(Some(&out));
        }
        out_error(out)
    }
}

/// The error of a call no deployment could be picked for: a kind whose
/// class is `Unavailable` (a fallback above moves on, a retry does not
/// retry), chosen by why they are out, and the soonest one is back as
/// `retry_after`.
fn out_error(out: AllDeploymentsOut) -> LlmError {
    let reasons = || {
        out.deployments.iter().filter_map(|(_, o)| match o {
            DeploymentOutcome::Out(why) => Some(*why),
            DeploymentOutcome::Failed(_) => None,
        })
    };
    let mut soonest: Option<std::time::Duration> = None;
    let mut kind = None;
    for why in reasons() {
        let (k, wait) = match why {
            OutReason::CircuitOpen(wait) => (ErrorKind::CircuitOpen, Some(wait)),
            OutReason::NoRoom => (ErrorKind::RateLimited, None),
            OutReason::Ejected(Ejection::PermissionDenied, wait) => {
                (ErrorKind::PermissionDenied, Some(wait))
            }
            OutReason::Ejected(Ejection::QuotaExhausted, wait) => {
                (ErrorKind::QuotaExhausted, Some(wait))
            }
            OutReason::Ejected(_, wait) => (ErrorKind::Authentication, Some(wait)),
        };
        // A circuit or a quota comes back by itself: prefer their kinds.
        if kind.is_none() || matches!(k, ErrorKind::CircuitOpen | ErrorKind::RateLimited) {
            kind = Some(k);
        }
        if let Some(w) = wait {
            soonest = Some(soonest.map_or(w, |s| s.min(w)));
        }
    }
    let kind = kind.unwrap_or(ErrorKind::CircuitOpen);
    let mut error = LlmError::new(kind, out.to_string()).with_attempts(0);
    if kind == ErrorKind::RateLimited {
        // Not worth a retry here: another target may take it.
        error = error.with_should_retry(false);
    }
    if let Some(wait) = soonest {
        error = error.with_retry_after(wait);
    }
    error.with_source(out)
}

impl<C: Call> Future for ResponseFuture<C> {
    type Output = Result<C::Answer, LlmError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.state.as_mut().project();
        loop {
            if let Some(call) = this.call.as_mut().as_pin_mut() {
                let result = ready!(call.poll(cx));
                this.call.set(None);
                match result {
                    Ok(answer) => return Poll::Ready(Ok(this.run.answered(answer))),
                    Err(error) => {
                        if let Err(end) = this.run.failed(error) {
                            return Poll::Ready(Err(end));
                        }
                    }
                }
            }
            match this.run.start_next() {
                Ok(call) => this.call.set(Some(call)),
                Err(end) => return Poll::Ready(Err(end)),
            }
        }
    }
}
