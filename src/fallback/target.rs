//! One target of a fallback chain.

use crate::health::TargetHealth;
use crate::into_llm::IntoLlm;
use staunch_core::{BoxError, Call, ChatRequest, ChatResponse, LlmError, Price};
use std::fmt;
use std::sync::Arc;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

/// The boxed, cloneable service behind a [`Target`].
pub type TargetService<C = ChatRequest> = BoxCloneSyncService<C, <C as Call>::Answer, LlmError>;

/// A named service in a fallback chain, with what the chain needs to know
/// about it: the model to ask there, its context window, its price and its
/// health.
///
/// ```
/// use staunch::core::{ChatRequest, ChatResponse, LlmError, Price};
/// use staunch::fallback::Target;
/// use tower::service_fn;
///
/// let mini = Target::new(
///     "openai-mini",
///     service_fn(|r: ChatRequest| async move { Ok::<_, LlmError>(ChatResponse::new(&r.model, "hi")) }),
/// )
/// .model("gpt-4o-mini")
/// .context_window(128_000)
/// .price(Price::per_million(0.15, 0.60));
/// assert_eq!(mini.name(), "openai-mini");
/// ```
pub struct Target<C: Call = ChatRequest> {
    pub(super) name: Arc<str>,
    pub(crate) service: TargetService<C>,
    pub(super) model: Option<Arc<str>>,
    pub(super) context_window: Option<u64>,
    pub(super) price: Option<Price>,
    pub(super) health: Option<Arc<dyn TargetHealth>>,
    pub(super) accepts_prefill: bool,
    pub(super) vector_space: Option<Arc<str>>,
}

impl Target {
    /// A chat target called `name` served by `service`. The service may
    /// fail with any error tower produces; it is boxed once here. (A
    /// provider client serves several operations; this names chat, and
    /// [`for_call`](Target::for_call) any other.)
    pub fn new<S>(name: impl Into<Arc<str>>, service: S) -> Self
    where
        S: Service<ChatRequest, Response = ChatResponse> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        Target::for_call(name, service)
    }
}

impl<C: Call> Target<C> {
    /// A target for calls of type `C` (say
    /// `Target::<EmbeddingRequest>::for_call("openai", client)`), called
    /// `name` and served by `service`.
    pub fn for_call<S>(name: impl Into<Arc<str>>, service: S) -> Self
    where
        S: Service<C, Response = C::Answer> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        Target {
            name: name.into(),
            service: BoxCloneSyncService::new(IntoLlm::new(service)),
            model: None,
            context_window: None,
            price: None,
            health: None,
            accepts_prefill: false,
            vector_space: None,
        }
    }

    /// Asks this target for `model` instead of the request's model.
    pub fn model(mut self, model: impl Into<Arc<str>>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// The target's context window in tokens; after a context overflow the
    /// chain skips targets whose window is not larger than the one that
    /// overflowed.
    pub fn context_window(mut self, tokens: u64) -> Self {
        self.context_window = Some(tokens);
        self
    }

    /// The target's price, used to report each answer's cost.
    pub fn price(mut self, price: Price) -> Self {
        self.price = Some(price);
        self
    }

    /// Consults `health` before each call and skips the target while it
    /// reports the target unavailable (an open circuit).
    pub fn health(mut self, health: impl TargetHealth) -> Self {
        self.health = Some(Arc::new(health));
        self
    }

    /// Embeddings: the vector space the target's vectors live in, for a
    /// chain whose targets name different models that are known to be
    /// compatible (the same model served by two vendors, say). By default
    /// it is the target's model. A chain refuses targets of different
    /// spaces ([`InvalidChain::MixedVectorSpaces`](super::InvalidChain)).
    pub fn vector_space(mut self, space: impl Into<Arc<str>>) -> Self {
        self.vector_space = Some(space.into());
        self
    }

    /// Declares that this target continues an assistant message given as
    /// its last message (a prefill: Anthropic does, OpenAI's Chat
    /// Completions does not). A streamed text answer that breaks after its
    /// commit point is then continued on it, from where it stopped: see
    /// [`Fallback`](super::Fallback). Off by default.
    pub fn accepts_prefill(mut self, accepts: bool) -> Self {
        self.accepts_prefill = accepts;
        self
    }

    /// The target's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<C: Call> Clone for Target<C> {
    fn clone(&self) -> Self {
        Target {
            name: self.name.clone(),
            service: self.service.clone(),
            model: self.model.clone(),
            context_window: self.context_window,
            price: self.price,
            health: self.health.clone(),
            accepts_prefill: self.accepts_prefill,
            vector_space: self.vector_space.clone(),
        }
    }
}

impl<C: Call> fmt::Debug for Target<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("context_window", &self.context_window)
            .field("price", &self.price)
            .field("health", &self.health.as_ref().map(|_| "set"))
            .field("accepts_prefill", &self.accepts_prefill)
            .finish_non_exhaustive()
    }
}
