//! Hedged requests (opt-in): when a call runs longer than most do, send
//! one more and take whichever answers first.
//!
//! A provider's latency has a long tail: most answers come in a second or
//! two, a few take twenty. [`HedgeLayer`] watches the latencies of the
//! answers it passes and, once a call has run longer than their p95 (or a
//! [fixed delay](HedgeAfter::Fixed)), sends a second attempt of it through
//! the same inner service. Over a [`Balance`](crate::balance::Balance) the
//! second attempt goes to another deployment than the first (see
//! [`HedgeRoute`]).
//!
//! - **First answer wins.** The first attempt to answer is returned; the
//!   other is dropped at once, which cancels it (its connection is closed,
//!   its slot in every layer below released). Its spend is counted in the
//!   answer's meta: one more attempt, and its prompt estimate in
//!   `failed_usage` (what a provider bills a call it had started; a
//!   cancelled call's own answer is never seen). A failure of one attempt
//!   while the other runs is not an answer: the other is awaited, and the
//!   failure's attempts and tokens are counted in.
//! - **Errors are not slowness.** An attempt that fails before the hedge
//!   is sent fails the call at once; retrying and falling back are the
//!   jobs of the layers made for them.
//! - **Streams before their first token.** A stream's call resolves at its
//!   commit point: the race is to the first token, and once one attempt
//!   has streamed content, nothing is hedged.
//! - **A budget.** Every call deposits into a [`HedgeBudget`] and every
//!   hedge withdraws; by default hedges are at most 5 % of calls.
//! - **The deadline.** No hedge is planned or sent when the request's
//!   [`Deadline`](crate::Deadline) would not leave it the hedge delay to
//!   answer, and both attempts are cut when it comes.
//! - **Not for side effects.** A call whose extensions hold
//!   [`NonIdempotent`] is never hedged.
//! - With too few answers seen ([`min_samples`](HedgeConfig::min_samples),
//!   20 by default) there is no p95 yet, and nothing is hedged.
//!
//! ```
//! use std::time::Duration;
//! use staunch::core::{ChatRequest, ChatResponse, LlmError, Message};
//! use staunch::hedge::{HedgeAfter, HedgeConfig, HedgeLayer};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let seen = calls.clone();
//! // The first call hangs; any later one answers in 100 ms.
//! let provider = service_fn(move |r: ChatRequest| {
//!     let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     async move {
//!         let wait = if n == 0 { 3_600 } else { 0 };
//!         tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
//!         Ok::<_, LlmError>(ChatResponse::new(&r.model, "hello"))
//!     }
//! });
//! let budget = staunch::hedge::HedgeBudget::new(Duration::from_secs(10), 1, 0.05).unwrap();
//! let hedge = HedgeLayer::new(
//!     HedgeConfig::new().after(HedgeAfter::Fixed(Duration::from_secs(2))).budget(budget),
//! )
//! .unwrap();
//! let service = hedge.layer(provider);
//! let started = tokio::time::Instant::now();
//! let answer = service.oneshot(ChatRequest::new("gpt-4o", vec![Message::user("hi")])).await.unwrap();
//! assert_eq!(started.elapsed(), Duration::from_millis(2_100), "the hedge answered");
//! assert_eq!(answer.meta.attempts, 2, "the hung attempt counts");
//! # }
//! ```
//!
//! ## Why not `tower::hedge`
//!
//! `tower::hedge::Hedge` is the same idea (and its rotating two-window
//! histogram is the model of the one here), but it does not fit LLM calls:
//! it returns the first *result*, so an attempt that fails fast with a 429
//! ends the call while the other is about to answer; it has no budget
//! (its `Policy::can_retry` could consult one, but every call's deposit
//! needs a hook it does not have), no deadline, and no way to count the
//! dropped attempt's spend in the answer; its histogram sits behind a
//! `Mutex` locked, and unwrapped, three times per call, and needs the
//! `hdrhistogram` crate. Here the read path is one atomic load, the
//! histogram is written once per answer, and the budget is tower's own
//! [`TpsBudget`](tower::retry::budget::TpsBudget).

mod config;
mod latency;
mod layer;
mod service;
#[cfg(test)]
mod tests;

pub use config::{HedgeAfter, HedgeBudget, HedgeConfig, InvalidHedge};
pub use layer::HedgeLayer;
pub use service::{Hedge, ResponseFuture};

use std::sync::{Arc, OnceLock};

/// Counter: hedges by `outcome`: `sent`, `won` (the hedge answered first),
/// `lost` (the first attempt did), `budget` (not sent: the budget was
/// spent), `deadline` (not sent: the deadline was too near).
pub const HEDGES: &str = "staunch_hedges_total";

/// Marks a call that must not be sent twice: put it in the request's
/// extensions and no hedge layer will hedge it.
///
/// A model call itself has no side effects (tools run in the caller), but
/// some callers meter, log or bill each call, or front a model with an
/// endpoint that acts; they say so with this mark.
///
/// ```
/// use staunch::core::{ChatRequest, Message};
/// use staunch::hedge::NonIdempotent;
/// let request = ChatRequest::new("gpt-4o", vec![Message::user("transfer the funds")])
///     .with_extension(NonIdempotent);
/// # let _ = request;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NonIdempotent;

/// Where the first attempt of a hedged call went, so that the second goes
/// elsewhere: the hedge layer puts one in the extensions of both attempts;
/// a balancer below records the deployment it sends the first to and
/// passes over that deployment for the second (unless no other may take
/// it). A balancer of your own can do the same with
/// [`record`](Self::record) and [`avoid`](Self::avoid).
#[derive(Clone, Debug, Default)]
pub struct HedgeRoute {
    first: Arc<OnceLock<Arc<str>>>,
    second: bool,
}

impl HedgeRoute {
    /// The route of the second attempt of the same call.
    pub(crate) fn for_second(&self) -> Self {
        HedgeRoute {
            first: self.first.clone(),
            second: true,
        }
    }

    /// Records that the first attempt went to `deployment` (the first
    /// record counts; the second attempt records nothing).
    pub fn record(&self, deployment: &Arc<str>) {
        if !self.second {
            let _ = self.first.set(deployment.clone());
        }
    }

    /// For the second attempt: the deployment the first went to.
    pub fn avoid(&self) -> Option<&str> {
        if self.second {
            self.first.get().map(|d| &**d)
        } else {
            None
        }
    }
}
