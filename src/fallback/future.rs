//! The fallback response future: walks the chain one target at a time.

use super::target::{Target, TargetService};
use crate::Deadline;
use crate::budget::Allowance;
use crate::observe::names;
use pin_project_lite::pin_project;
use staunch_core::{
    ChatRequest, ChatResponse, Classify, ErrorClass, ErrorKind, LlmError, QualityTier,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::time::Instant;
use tower::util::Oneshot;

pin_project! {
    /// The response future of [`Fallback`](super::Fallback).
    pub struct ResponseFuture {
        targets: Arc<[Target]>,
        classify: Arc<dyn Classify>,
        request: ChatRequest,
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
        started: Instant,
        #[pin]
        call: Option<Oneshot<TargetService, ChatRequest>>,
    }
}

impl ResponseFuture {
    pub(super) fn new(
        targets: Arc<[Target]>,
        classify: Arc<dyn Classify>,
        request: ChatRequest,
    ) -> Self {
        ResponseFuture {
            targets,
            classify,
            request,
            next: 0,
            current: 0,
            errors: Vec::new(),
            failed_cost: 0.0,
            overflowed: None,
            started: Instant::now(),
            call: None,
        }
    }
}

/// An error for a target that was passed over without a call.
fn skipped(target: &Target, kind: ErrorKind, why: String) -> LlmError {
    let mut error = LlmError::new(kind, why).with_target(target.name.as_ref());
    error.attempts = 0;
    error
}

/// The chain's error: the last target's, with the earlier ones attached and
/// every call counted.
fn chain_error(mut errors: Vec<LlmError>, fallback: impl FnOnce() -> LlmError) -> LlmError {
    let Some(mut last) = errors.pop() else {
        return fallback();
    };
    let calls: u32 = errors.iter().map(|e| e.attempts).sum();
    last.attempts = last.attempts.saturating_add(calls);
    let mut earlier = errors;
    earlier.append(&mut last.earlier);
    last.earlier = earlier;
    last
}

impl Future for ResponseFuture {
    type Output = Result<ChatResponse, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some(call) = this.call.as_mut().as_pin_mut() {
                let result = ready!(call.poll(cx));
                this.call.set(None);
                let target = &this.targets[*this.current];
                match result {
                    Ok(mut response) => {
                        let total_usage = response.total_usage();
                        let meta = &mut response.meta;
                        meta.attempts = this
                            .errors
                            .iter()
                            .fold(meta.attempts, |n, e| n.saturating_add(e.attempts));
                        for e in this.errors.iter() {
                            meta.failed_usage += e.total_spent();
                        }
                        // A failed target that was itself a chain passed over
                        // all of its own targets.
                        let passed: usize = this.errors.iter().map(|e| 1 + e.earlier.len()).sum();
                        meta.fallback_depth = meta.fallback_depth.saturating_add(passed as u32);
                        if meta.fallback_depth > 0 && meta.tier == QualityTier::Full {
                            meta.tier = QualityTier::Reduced;
                        }
                        meta.target.get_or_insert_with(|| target.name.to_string());
                        if meta.model.is_none() {
                            meta.model = Some(match &target.model {
                                Some(m) => m.to_string(),
                                None => this.request.model.clone(),
                            });
                        }
                        meta.cost = match (meta.cost, target.price) {
                            (Some(inner), _) => Some(inner + *this.failed_cost),
                            (None, Some(price)) => {
                                Some(price.cost(&total_usage) + *this.failed_cost)
                            }
                            (None, None) => None,
                        };
                        meta.latency = this.started.elapsed();
                        return Poll::Ready(Ok(response));
                    }
                    Err(mut error) => {
                        if error.target.is_none() {
                            error.target = Some(target.name.to_string());
                        }
                        if let Some(price) = target.price {
                            *this.failed_cost += price.cost(&error.total_spent());
                        }
                        let class = this.classify.classify(&error);
                        if error.kind == ErrorKind::ContextLengthExceeded
                            && let Some(window) = target.context_window
                        {
                            *this.overflowed =
                                Some(this.overflowed.map_or(window, |w| w.max(window)));
                        }
                        this.errors.push(error);
                        if class == ErrorClass::Fatal {
                            let errors = std::mem::take(this.errors);
                            return Poll::Ready(Err(chain_error(errors, || {
                                LlmError::new(ErrorKind::Other, "fallback chain failed")
                            })));
                        }
                    }
                }
            }

            if Deadline::of(this.request).is_some_and(|d| d.is_expired()) {
                let errors = std::mem::take(this.errors);
                return Poll::Ready(Err(chain_error(errors, || {
                    LlmError::new(
                        ErrorKind::Timeout,
                        "the deadline passed before any fallback target was tried",
                    )
                })));
            }

            if let Some(allowance) = this.request.extensions.get::<Allowance>() {
                let spent: u64 = this.errors.iter().map(|e| e.total_spent().total()).sum();
                allowance.set_earlier_targets(spent);
                if !this.errors.is_empty() && !allowance.affords_another(0) {
                    tracing::debug!(target: "staunch::fallback", spent, "request token cap reached; not trying further targets");
                    let errors = std::mem::take(this.errors);
                    return Poll::Ready(Err(chain_error(errors, || {
                        LlmError::new(ErrorKind::Other, "fallback chain failed")
                    })));
                }
            }

            let Some(index) = next_target(this.targets, *this.next, *this.overflowed, this.errors)
            else {
                let errors = std::mem::take(this.errors);
                return Poll::Ready(Err(chain_error(errors, || {
                    LlmError::new(ErrorKind::Other, "fallback chain failed")
                })));
            };
            let target = &this.targets[index];
            if let Some(from) = this.errors.last().and_then(|e| e.target.clone()) {
                tracing::info!(
                    target: "staunch::fallback",
                    from = from.as_str(),
                    to = target.name.as_ref(),
                    depth = index,
                    "falling back"
                );
                metrics::counter!(names::FALLBACKS, "from" => from, "to" => target.name.to_string())
                    .increment(1);
            }
            let mut request = this.request.clone();
            if let Some(model) = &target.model {
                request.model = model.to_string();
            }
            *this.current = index;
            *this.next = index + 1;
            this.call
                .set(Some(Oneshot::new(target.service.clone(), request)));
        }
    }
}

/// The first target from `from` on that may take the request, recording an
/// error for each one passed over.
fn next_target(
    targets: &[Target],
    from: usize,
    overflowed: Option<u64>,
    errors: &mut Vec<LlmError>,
) -> Option<usize> {
    for (index, target) in targets.iter().enumerate().skip(from) {
        if let Some(wait) = target.health.as_ref().and_then(|h| h.unavailable_for()) {
            metrics::counter!(names::FALLBACK_SKIPS, "target" => target.name.to_string(), "reason" => "circuit_open")
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
            metrics::counter!(names::FALLBACK_SKIPS, "target" => target.name.to_string(), "reason" => "context_window")
                .increment(1);
            errors.push(skipped(
                target,
                ErrorKind::ContextLengthExceeded,
                format!("skipped: context window of {window} tokens is not larger than the {over} that overflowed"),
            ));
            continue;
        }
        return Some(index);
    }
    None
}
