//! The fallback response future: walks the chain one target at a time.

use super::service::{Held, Shared};
use super::target::{Target, TargetService};
use crate::deadline::{Bounded, Deadline, DeadlineScope};
use crate::metrics as names;
use pin_project_lite::pin_project;
use staunch_core::{Answer, Call, ChatRequest, ErrorClass, ErrorKind, LlmError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use tower::util::Oneshot;
use tower_service::Service;

/// The response future of [`Fallback`](super::Fallback).
///
/// Its state (the request, the errors so far, the call in flight) lives in
/// one heap block: the future is a pointer, so the layers above a chain
/// move eight bytes instead of several hundred each time they wrap it.
pub struct ResponseFuture<C: Call = ChatRequest> {
    state: Pin<Box<State<C>>>,
}

pin_project! {
    struct State<C: Call> {
        chain: Chain<C>,
        #[pin]
        call: Option<Bounded<TargetCall<C>>>,
        // The chain ended before its first call (no target could take the
        // request, or its deadline had passed).
        ended: Option<LlmError>,
    }
}

pin_project! {
    /// One target's call.
    #[project = TargetCallProj]
    enum TargetCall<C: Call> {
        // Made at once on the chain service's own copy of the target's
        // service, which was ready.
        Called { #[pin] future: <TargetService<C> as Service<C>>::Future },
        // Waiting for the target's readiness on a copy of its service.
        Waiting { #[pin] oneshot: Oneshot<TargetService<C>, C> },
        // The target's readiness failed.
        Failed { error: Option<LlmError> },
    }
}

impl<C: Call> Future for TargetCall<C> {
    type Output = Result<C::Answer, LlmError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            TargetCallProj::Called { future } => future.poll(cx),
            TargetCallProj::Waiting { oneshot } => oneshot.poll(cx),
            TargetCallProj::Failed { error } => {
                Poll::Ready(Err(error.take().unwrap_or_else(|| {
                    LlmError::new(
                        ErrorKind::Other,
                        "fallback target call polled after completion",
                    )
                })))
            }
        }
    }
}

/// The first call of a request on a chain service used for many: made
/// directly on the service's own copy of the target's service (`held`)
/// when that is ready at once, so the request copies no service. One that
/// is not ready at once (a concurrency limit that is full, a breaker
/// waiting for its probes' verdict) goes to the call, which waits for it
/// with the task's waker, and `held` takes a fresh copy: it never keeps a
/// readiness, or a place in a queue, that no call will use.
fn first_call<C: Call>(
    held: &mut Held<C>,
    index: usize,
    target: &Target<C>,
    request: C,
) -> TargetCall<C> {
    let service = match held {
        Some((at, service)) if *at == index => service,
        _ => &mut held.insert((index, target.service.clone())).1,
    };
    let mut cx = Context::from_waker(Waker::noop());
    match service.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => TargetCall::Called {
            future: service.call(request),
        },
        Poll::Ready(Err(error)) => {
            // A service whose readiness failed is not used again.
            *held = None;
            TargetCall::Failed { error: Some(error) }
        }
        Poll::Pending => {
            let waiting = std::mem::replace(service, target.service.clone());
            TargetCall::Waiting {
                oneshot: Oneshot::new(waiting, request),
            }
        }
    }
}

impl<C: Call> std::fmt::Debug for ResponseFuture<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("current", &self.state.chain.current)
            .field("failed", &self.state.chain.errors.len())
            .finish_non_exhaustive()
    }
}

/// What the future knows between calls.
struct Chain<C: Call> {
    shared: Arc<Shared<C>>,
    request: C,
    // The next target to consider.
    next: usize,
    // The target whose call is in flight.
    current: usize,
    // One error per target passed, in order.
    errors: Vec<LlmError>,
    // Cost of the failed targets' tokens, where their price is known.
    failed_cost: f64,
    // The largest context window that overflowed.
    overflowed: Option<u64>,
    // The request's deadline (read once: the chain's own copy of the
    // request keeps it).
    deadline: Option<Deadline>,
    // What the request's allowance said was spent before this chain, read
    // at the chain's first failure.
    allowance_base: Option<u64>,
}

impl<C: Call> ResponseFuture<C> {
    /// The future of `request`, its first target's call already made
    /// (through `held` when that target's service is ready at once).
    pub(super) fn start(shared: Arc<Shared<C>>, request: C, held: &mut Held<C>) -> Self {
        let mut future = ResponseFuture::new(shared, request);
        let mut this = future.state.as_mut().project();
        match this
            .chain
            .may_continue()
            .and_then(|()| this.chain.start_next(Some(held)))
        {
            Ok(call) => this.call.set(Some(call)),
            Err(end) => *this.ended = Some(end),
        }
        future
    }

    fn new(shared: Arc<Shared<C>>, request: C) -> Self {
        let deadline = Deadline::of(&request);
        let state = State {
            chain: Chain {
                shared,
                request,
                next: 0,
                current: 0,
                errors: Vec::new(),
                failed_cost: 0.0,
                overflowed: None,
                deadline,
                allowance_base: None,
            },
            call: None,
            ended: None,
        };
        ResponseFuture {
            state: Box::pin(state),
        }
    }
}

/// An error for a target that was passed over without a call.
fn skipped<C: Call>(target: &Target<C>, kind: ErrorKind, why: String) -> LlmError {
    LlmError::new(kind, why)
        .with_target(target.name.as_ref())
        .with_attempts(0)
}

/// The chain's error: the last target's, with the earlier ones attached and
/// every call counted.
fn chain_error(mut errors: Vec<LlmError>, fallback: impl FnOnce() -> LlmError) -> LlmError {
    let Some(mut last) = errors.pop() else {
        return fallback();
    };
    for e in &errors {
        last.add_attempts(e.attempts);
    }
    let mut earlier = errors;
    earlier.append(&mut last.earlier);
    last.earlier = earlier;
    last
}

fn chain_failed() -> LlmError {
    LlmError::new(ErrorKind::Other, "fallback chain failed")
}

impl<C: Call> Chain<C> {
    /// The answer of the current target, with what the chain did before it.
    fn answered(&mut self, mut response: C::Answer) -> C::Answer {
        let target = &self.shared.targets[self.current];
        let total_usage = response.total_usage();
        let meta = response.meta_mut();
        for e in &self.errors {
            meta.absorb_failed_attempts(e.attempts, e.total_spent());
        }
        // A failed target that was itself a chain passed over all of its
        // own targets.
        let passed: usize = self.errors.iter().map(|e| 1 + e.earlier.len()).sum();
        meta.add_fallback_depth(passed as u32);
        meta.target.get_or_insert_with(|| target.name.clone());
        meta.fill_model(|| match &target.model {
            Some(m) => m.clone(),
            None => self.request.model().into(),
        });
        meta.cost = match (meta.cost, target.price) {
            (Some(inner), _) => Some(inner + self.failed_cost),
            (None, Some(price)) => Some(price.cost(&total_usage) + self.failed_cost),
            (None, None) => None,
        };
        if response.is_streaming() {
            self.continue_if_it_breaks(&mut response);
        }
        response
    }

    /// Wraps a chat stream so that it continues on a prefill target if it
    /// breaks (only chat completions stream).
    fn continue_if_it_breaks(&self, response: &mut C::Answer) {
        use std::any::Any;
        let targets = &self.shared.targets as &dyn Any;
        let request = &self.request as &dyn Any;
        if let (Some(answer), Some(targets), Some(request)) = (
            response.as_chat_mut(),
            targets.downcast_ref::<Arc<[Target<ChatRequest>]>>(),
            request.downcast_ref::<ChatRequest>(),
        ) {
            super::continuation::Continuing::wrap(
                answer,
                targets,
                self.shared.continuation,
                self.current,
                request,
            );
        }
    }

    /// Records the current target's failure; `Err` when it ends the chain.
    fn failed(&mut self, mut error: LlmError) -> Result<(), LlmError> {
        let target = &self.shared.targets[self.current];
        if error.target.is_none() {
            error.target = Some(target.name.to_string());
        }
        if let Some(price) = target.price {
            self.failed_cost += price.cost(&error.total_spent());
        }
        let class = self.shared.classify.classify(&error);
        if error.kind == ErrorKind::ContextLengthExceeded
            && let Some(window) = target.context_window
        {
            self.overflowed = Some(self.overflowed.map_or(window, |w| w.max(window)));
        }
        self.errors.push(error);
        if class == ErrorClass::Fatal {
            return Err(chain_error(std::mem::take(&mut self.errors), chain_failed));
        }
        Ok(())
    }

    /// Whether the chain may go on: the deadline has not passed and the
    /// request's token allowance affords another target.
    fn may_continue(&mut self) -> Result<(), LlmError> {
        if let Some(deadline) = self.deadline
            && deadline.is_expired()
        {
            return Err(chain_error(std::mem::take(&mut self.errors), || {
                let mut error = deadline.exceeded().with_attempts(0);
                error.message =
                    "the request's deadline passed before any fallback target was tried".to_owned();
                error
            }));
        }
        // Before the first target nothing has been spent here.
        if self.errors.is_empty() {
            return Ok(());
        }
        if let Some(mut allowance) = self.request.allowance() {
            let here: u64 = self.errors.iter().map(|e| e.total_spent().total()).sum();
            // Written into the chain's own request, which the next
            // target's copy is made from; on top of what was spent before
            // the chain (by an outer chain's earlier targets).
            let base = *self
                .allowance_base
                .get_or_insert(allowance.earlier_targets());
            let spent = base.saturating_add(here);
            allowance.set_earlier_targets(spent);
            // Writes (copying the request's fields if a target's copy
            // still shares them) only a changed figure.
            self.request.set_allowance(Some(allowance));
            if !allowance.affords_another(0) {
                tracing::debug!(target: "staunch::fallback", spent, "request token cap reached; not trying further targets");
                return Err(chain_error(std::mem::take(&mut self.errors), chain_failed));
            }
        }
        Ok(())
    }

    /// Picks the next target that may take the request and builds its
    /// call, bounded by the target's share of the deadline.
    /// The first call goes through `held`, the chain service's own copy of
    /// a target's service ([`first_call`]); the next ones each copy theirs.
    fn start_next(
        &mut self,
        held: Option<&mut Held<C>>,
    ) -> Result<Bounded<TargetCall<C>>, LlmError> {
        let Some((index, next)) = next_target(
            &self.shared.targets,
            self.next,
            self.overflowed,
            &mut self.errors,
        ) else {
            return Err(chain_error(std::mem::take(&mut self.errors), chain_failed));
        };
        let target = &self.shared.targets[index];
        if let Some(from) = self.errors.last().and_then(|e| e.target.clone()) {
            tracing::info!(
                target: "staunch::fallback",
                from = from.as_str(),
                to = target.name.as_ref(),
                depth = index,
                "falling back"
            );
            crate::metrics::counter!(names::FALLBACKS, "from" => from, "to" => target.name.to_string())
                .increment(1);
        }
        let mut request = match &target.model {
            Some(model) => self.request.clone_for_model(model),
            None => self.request.clone(),
        };
        let deadline = self.deadline.map(|d| {
            let after = self.shared.targets[index + 1..]
                .iter()
                .filter(|t| {
                    t.health
                        .as_ref()
                        .is_none_or(|h| h.unavailable_for().is_none())
                })
                .count();
            self.shared.split.target_deadline(d, after)
        });
        if let Some(d) = deadline
            && d.scope() == DeadlineScope::TargetShare
        {
            request.extensions_mut().insert(d);
        }
        self.current = index;
        self.next = next;
        let call = match held {
            Some(held) => first_call(held, index, target, request),
            None => TargetCall::Waiting {
                oneshot: Oneshot::new(target.service.clone(), request),
            },
        };
        Ok(Bounded::new(call, deadline))
    }
}

impl<C: Call> Future for ResponseFuture<C> {
    type Output = Result<C::Answer, LlmError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.state.as_mut().project();
        if let Some(end) = this.ended.take() {
            return Poll::Ready(Err(end));
        }
        loop {
            if let Some(call) = this.call.as_mut().as_pin_mut() {
                let result = ready!(call.poll(cx));
                this.call.set(None);
                match result {
                    Ok(response) => return Poll::Ready(Ok(this.chain.answered(response))),
                    Err(error) => {
                        if let Err(end) = this.chain.failed(error) {
                            return Poll::Ready(Err(end));
                        }
                    }
                }
            }
            let next = this
                .chain
                .may_continue()
                .and_then(|()| this.chain.start_next(None));
            match next {
                Ok(call) => this.call.set(Some(call)),
                Err(end) => return Poll::Ready(Err(end)),
            }
        }
    }
}

/// The first target from `from` on that may take the request, recording an
/// error for each one passed over. A target whose circuit is half-open with
/// its probe slots taken (its wait is zero) is passed over while another
/// target may answer; when none may, it is called after all, and its
/// breaker waits for the probes' verdict within the deadline. Returns the
/// target and where to look next.
fn next_target<C: Call>(
    targets: &[Target<C>],
    from: usize,
    overflowed: Option<u64>,
    errors: &mut Vec<LlmError>,
) -> Option<(usize, usize)> {
    let mut probing = None;
    for (index, target) in targets.iter().enumerate().skip(from) {
        if let Some(wait) = target.health.as_ref().and_then(|h| h.unavailable_for()) {
            if wait.is_zero() && probing.is_none() {
                probing = Some((index, errors.len()));
            }
            crate::metrics::counter!(names::FALLBACK_SKIPS, "target" => target.name.to_string(), "reason" => "circuit_open")
                .increment(1);
            errors.push(
                skipped(
                    target,
                    ErrorKind::CircuitOpen,
                    "skipped: circuit open".to_owned(),
                )
                .with_retry_after(wait),
            );
            continue;
        }
        if let (Some(over), Some(window)) = (overflowed, target.context_window)
            && window <= over
        {
            crate::metrics::counter!(names::FALLBACK_SKIPS, "target" => target.name.to_string(), "reason" => "context_window")
                .increment(1);
            errors.push(skipped(
                target,
                ErrorKind::ContextLengthExceeded,
                format!("skipped: context window of {window} tokens is not larger than the {over} that overflowed"),
            ));
            continue;
        }
        return Some((index, index + 1));
    }
    let (index, error_at) = probing?;
    // Called after all: its skip is not an error of the chain, and every
    // target after it has been passed over already.
    errors.remove(error_at);
    Some((index, targets.len()))
}
