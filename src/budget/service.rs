//! The budget service.

use super::future::{ResponseFuture, Settle};
use super::layer::Shared;
use crate::into_llm::to_llm;
use staunch_core::Allowance;
use staunch_core::{BoxError, Call, ErrorKind, LlmError};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Refuses requests that would exceed a token or cost cap, before any call,
/// and records what every request spent.
///
/// See [`BudgetConfig`](super::BudgetConfig) for the caps. A refusal is an
/// [`LlmError`] of kind [`BudgetExhausted`](ErrorKind::BudgetExhausted);
/// for a window cap its `retry_after` says when enough spend will have left
/// the window.
#[derive(Clone)]
pub struct Budget<S> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared>,
}

impl<S> Budget<S> {
    /// Wraps `inner` in a budget of its own enforcing `config`, or says why
    /// it can't be enforced. To share one window between services, build a
    /// [`BudgetLayer`](super::BudgetLayer) and apply it to each.
    pub fn new(inner: S, config: super::BudgetConfig) -> Result<Self, super::InvalidBudget> {
        Ok(tower_layer::Layer::layer(
            &super::BudgetLayer::new(config)?,
            inner,
        ))
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for Budget<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish()
    }
}

fn exhausted(message: String) -> LlmError {
    LlmError::new(ErrorKind::BudgetExhausted, message)
}

impl<S, C> Service<C> for Budget<S>
where
    C: Call,
    S: Service<C, Response = C::Answer>,
    S::Error: Into<BoxError>,
{
    type Response = C::Answer;
    type Error = LlmError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx).map_err(to_llm)
    }

    fn call(&mut self, mut request: C) -> Self::Future {
        let config = &self.shared.config;
        let per_attempt = config.estimate(&request);
        let tokens = per_attempt.total();
        if let Some(cap) = config.per_request_tokens {
            if tokens > cap {
                return ResponseFuture::refused(
                    exhausted(format!(
                        "the request needs about {tokens} tokens (prompt estimate plus max_tokens); the per-request cap is {cap}"
                    )),
                    "request",
                );
            }
            request.set_allowance(Some(Allowance::new(cap, tokens)));
        }
        let price = config.price_of(request.model());
        let cost = price.map_or(0.0, |p| p.cost(&per_attempt));

        // The request's clock starts here unless a layer above started it;
        // the answer's latency runs from it, so the settlement knows when
        // the answer came without reading the clock again.
        let started = self.shared.clock.tick(request.start_clock());
        let mut reserved = (0, 0.0);
        if config.window_tokens.is_some() || config.window_cost.is_some() {
            // The window is judged at the request's start, not read again
            // from the clock (a read costs about as much as this whole
            // check): a start a layer above took a little earlier only
            // expires less of the window, which never undercounts it. A
            // refusal reads the clock for an exact wait.
            let mut window = self.shared.window_at(started);
            let (held_tokens, held_cost) = (window.reserved_tokens, window.reserved_cost);
            let fits = |used_tokens: u64, used_cost: f64| {
                config.window_tokens.is_none_or(|cap| {
                    used_tokens
                        .saturating_add(held_tokens)
                        .saturating_add(tokens)
                        <= cap
                }) && config
                    .window_cost
                    .is_none_or(|cap| used_cost + held_cost + cost <= cap)
            };
            let (used_tokens, used_cost) = window.used();
            if !fits(used_tokens, used_cost) {
                let mut error = exhausted(format!(
                    "the window budget is spent: {used_tokens} tokens and ${used_cost:.4} used, {held_tokens} tokens reserved in the last {:?}; this request needs about {tokens} tokens (${cost:.4})",
                    config.window
                ));
                error.retry_after = window.wait_until(self.shared.clock.now(), fits);
                return ResponseFuture::refused(error, "window");
            }
            window.reserved_tokens = window.reserved_tokens.saturating_add(tokens);
            window.reserved_cost += cost;
            reserved = (tokens, cost);
        }
        let mut settle = Settle::new(self.shared.clone(), price, reserved, started);
        if request.is_stream() {
            settle.input_estimate = request.estimated_input_tokens();
        }
        ResponseFuture::running(self.inner.call(request), settle)
    }
}
