//! The fallback service.

use super::continuation::ContinuationOrder;
use super::future::ResponseFuture;
use super::split::DeadlineSplit;
use super::target::{Target, TargetService};
use staunch_core::{Call, ChatRequest, Classify, DefaultClassify, LlmError, Operation};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// An ordered chain of [`Target`]s: each request goes to the first target
/// that can take it and moves down the chain on failure.
///
/// - After a `Transient` error (the target's own retries are spent) or an
///   `Unavailable` one, the next target is tried; a `Fatal` error ends the
///   chain at once.
/// - A target whose [`health`](Target::health) says it is unavailable (an
///   open circuit) is passed over without a call.
/// - After a context overflow, targets whose context window is not larger
///   than the one that overflowed are passed over.
/// - No target is started once the request's [`Deadline`](crate::Deadline)
///   has passed, and each target's call (its retries included) is cut when
///   its share of the time left is spent ([`DeadlineSplit`]), so the targets
///   after it are still called in time.
///
/// A streamed answer is handed over at its commit point (its first
/// content event); everything before it is an ordinary failure of the
/// target. When a text-only stream breaks after it and a target that
/// [accepts a prefill](Target::accepts_prefill) can take over (in the
/// [`ContinuationOrder`]: by default the targets after the serving one,
/// and the serving one itself only after a cut), the chain asks that
/// target for the rest (the text so far sent as an assistant prefill) and
/// the caller's stream goes on from where it stopped, after a
/// [`StreamEvent::Continued`](staunch_core::StreamEvent::Continued) event;
/// its usage counts every segment's tokens.
/// A stream that carried tool calls is never continued; when no target can
/// continue, the caller gets the original break as the stream's error.
///
/// The response's meta names the target and model that answered, the
/// fallback depth and [`QualityTier::Reduced`](staunch_core::QualityTier)
/// when it was not the first target; attempts and tokens of the failed
/// targets are added in. When every target fails, the error is the last
/// target's, with the earlier targets' errors in
/// [`earlier`](staunch_core::ErrorDetails::earlier), in order, and
/// `attempts` counting every call of the chain.
pub struct Fallback<C: Call = ChatRequest> {
    pub(super) shared: Arc<Shared<C>>,
    // This instance's own copy of the service of the target its last
    // request started on, called directly when it is ready at once: a
    // service reused for many requests does not copy the target's service
    // for each (see `future::first_call`). Not shared with clones.
    held: Held<C>,
}

/// A target's index and this instance's copy of its service.
pub(super) type Held<C> = Option<(usize, TargetService<C>)>;

impl<C: Call> Clone for Fallback<C> {
    fn clone(&self) -> Self {
        Fallback {
            shared: self.shared.clone(),
            held: None,
        }
    }
}

/// What every request of a chain reads: one reference per request.
pub(super) struct Shared<C: Call> {
    pub(super) targets: Arc<[Target<C>]>,
    pub(super) classify: Arc<dyn Classify>,
    pub(super) split: DeadlineSplit,
    pub(super) continuation: ContinuationOrder,
}

impl<C: Call> Clone for Shared<C> {
    fn clone(&self) -> Self {
        Shared {
            targets: self.targets.clone(),
            classify: self.classify.clone(),
            split: self.split,
            continuation: self.continuation,
        }
    }
}

impl<C: Call> Fallback<C> {
    pub(super) fn from_parts(targets: Arc<[Target<C>]>) -> Self {
        Fallback {
            shared: Arc::new(Shared {
                targets,
                classify: Arc::new(DefaultClassify),
                split: DeadlineSplit::default(),
                continuation: ContinuationOrder::default(),
            }),
            held: None,
        }
    }
}

/// A fallback chain that cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidChain {
    /// No target at all.
    #[error("a fallback chain needs at least one target")]
    Empty,
    /// Embedding targets whose vectors live in different spaces: a vector
    /// from one compared with the other's means nothing, so one cannot
    /// stand in for the other.
    #[error(
        "targets {first} ({first_space}) and {other} ({other_space}) answer embeddings in different vector spaces; \
         give them the same model, or declare the same vector_space when they are compatible"
    )]
    MixedVectorSpaces {
        /// The first target's name.
        first: String,
        /// Its vector space.
        first_space: String,
        /// The target whose space differs.
        other: String,
        /// Its vector space.
        other_space: String,
    },
}

impl<C: Call> Fallback<C> {
    /// A chain of `targets`, tried in order.
    ///
    /// A chain of embedding targets must answer in one vector space: every
    /// target's [`vector_space`](Target::vector_space) (by default its
    /// model rewrite, or the caller's model when it has none) must be the
    /// same, else [`InvalidChain::MixedVectorSpaces`].
    pub fn new(targets: impl IntoIterator<Item = Target<C>>) -> Result<Self, InvalidChain> {
        let targets: Arc<[Target<C>]> = targets.into_iter().collect();
        let Some(first) = targets.first() else {
            return Err(InvalidChain::Empty);
        };
        if C::OPERATION == Operation::Embeddings {
            let space = |t: &Target<C>| {
                t.vector_space
                    .as_deref()
                    .or(t.model.as_deref())
                    .unwrap_or("the caller's model")
                    .to_owned()
            };
            let first_space = space(first);
            if let Some(other) = targets.iter().find(|t| space(t) != first_space) {
                return Err(InvalidChain::MixedVectorSpaces {
                    first: first.name.to_string(),
                    first_space,
                    other: other.name.to_string(),
                    other_space: space(other),
                });
            }
        }
        Ok(Fallback::from_parts(targets))
    }

    /// Decides error classes with `classify` instead of the default table.
    pub fn classify(mut self, classify: impl Classify) -> Self {
        Arc::make_mut(&mut self.shared).classify = Arc::new(classify);
        self
    }

    /// How a request's [`Deadline`](crate::Deadline) is shared among the
    /// targets (default [`DeadlineSplit::Fraction`]`(0.5)`): a target may
    /// use its share, so a healthy target after it is still called in time.
    pub fn deadline_split(mut self, split: DeadlineSplit) -> Self {
        Arc::make_mut(&mut self.shared).split = split;
        self
    }

    /// Where a stream that broke after its commit point is continued
    /// (default [`ContinuationOrder::NextFirst`]: the targets after the one
    /// that broke, and that one only after a cut, never after a stall).
    pub fn continuation_order(mut self, order: ContinuationOrder) -> Self {
        Arc::make_mut(&mut self.shared).continuation = order;
        self
    }

    /// The targets, in order.
    pub fn targets(&self) -> &[Target<C>] {
        &self.shared.targets
    }
}

impl<C: Call> fmt::Debug for Fallback<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("targets", &self.shared.targets)
            .finish_non_exhaustive()
    }
}

impl<C: Call> Service<C> for Fallback<C> {
    type Response = C::Answer;
    type Error = LlmError;
    type Future = ResponseFuture<C>;

    /// Always ready: each target is driven to readiness in its turn.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: C) -> ResponseFuture<C> {
        // Every target's answer is timed from here.
        request.start_clock();
        ResponseFuture::start(self.shared.clone(), request, &mut self.held)
    }
}
