//! One deployment of a balanced target, and where its headroom comes from.

use crate::health::TargetHealth;
use crate::into_llm::IntoLlm;
use staunch_core::{BoxError, Call, ChatRequest, ChatResponse, LlmError};
use std::fmt;
use std::sync::Arc;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

/// The boxed, cloneable service behind a [`Deployment`].
pub type DeploymentService<C = ChatRequest> = BoxCloneSyncService<C, <C as Call>::Answer, LlmError>;

/// What a deployment may still be sent before its limits refuse: the
/// requests and tokens left now, each `None` when nothing limits it.
///
/// A [`QuotaHandle`](crate::quota::QuotaHandle) gives it (its buckets and
/// what the provider's rate-limit headers said is left); a closure returning
/// it works too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Room {
    /// Requests that would be admitted now.
    pub requests: Option<u64>,
    /// Tokens that could be reserved now.
    pub tokens: Option<u64>,
}

impl Room {
    /// Room for `requests` more requests and `tokens` more tokens (`None`:
    /// not limited).
    pub fn new(requests: Option<u64>, tokens: Option<u64>) -> Self {
        Room { requests, tokens }
    }

    /// No room at all: what a paused quota reports.
    pub fn none() -> Self {
        Room::new(Some(0), Some(0))
    }

    /// True when no request or no token is left.
    pub fn is_exhausted(&self) -> bool {
        self.requests == Some(0) || self.tokens == Some(0)
    }

    /// How many calls of `per_call` tokens still fit: the least of the
    /// requests left and the tokens left over `per_call`; `u64::MAX` when
    /// nothing limits either.
    pub fn calls_that_fit(&self, per_call: u64) -> u64 {
        let by_tokens = self.tokens.map_or(u64::MAX, |t| t / per_call.max(1));
        self.requests.unwrap_or(u64::MAX).min(by_tokens)
    }
}

/// Tells a balancer how much room a deployment has left (see [`Room`]).
///
/// A deployment whose room [is exhausted](Room::is_exhausted) is never
/// picked; the [`Headroom`](super::Strategy::Headroom) strategy picks the
/// one with the most room.
pub trait HeadroomSource: Send + Sync + 'static {
    /// The room left now.
    fn room(&self) -> Room;
}

impl<F> HeadroomSource for F
where
    F: Fn() -> Room + Send + Sync + 'static,
{
    fn room(&self) -> Room {
        self()
    }
}

#[cfg(feature = "quota")]
impl HeadroomSource for crate::quota::QuotaHandle {
    /// The quota's room on this thread; none while the provider has paused
    /// it (a `Retry-After`, or its headers saying nothing is left).
    fn room(&self) -> Room {
        if self.paused_until().is_some() {
            return Room::none();
        }
        Room::new(self.available_requests(), self.available_tokens())
    }
}

/// One deployment of a target: a named service (its own key, base URL,
/// region, quota and breaker) with a weight, and optionally a health check
/// (its circuit breaker's handle) and a headroom source (its quota's
/// handle).
///
/// ```
/// use staunch::balance::Deployment;
/// use staunch::core::{ChatRequest, ChatResponse, LlmError};
/// use tower::service_fn;
///
/// let east = Deployment::new(
///     "eastus",
///     service_fn(|r: ChatRequest| async move { Ok::<_, LlmError>(ChatResponse::new(&r.model, "hi")) }),
/// )
/// .weight(3)
/// .model("gpt-4o-eastus");
/// assert_eq!((east.name(), east.weight_of()), ("eastus", 3));
/// ```
pub struct Deployment<C: Call = ChatRequest> {
    pub(super) name: Arc<str>,
    pub(super) service: DeploymentService<C>,
    pub(super) model: Option<Arc<str>>,
    pub(super) weight: u32,
    pub(super) health: Option<Arc<dyn TargetHealth>>,
    pub(super) headroom: Option<Arc<dyn HeadroomSource>>,
}

impl Deployment {
    /// A chat deployment called `name` served by `service` (weight 1). The
    /// service may fail with any error tower produces; it is boxed once
    /// here. [`for_call`](Deployment::for_call) serves other operations.
    pub fn new<S>(name: impl Into<Arc<str>>, service: S) -> Self
    where
        S: Service<ChatRequest, Response = ChatResponse> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        Deployment::for_call(name, service)
    }
}

impl<C: Call> Deployment<C> {
    /// A deployment for calls of type `C`, called `name` and served by
    /// `service` (weight 1).
    pub fn for_call<S>(name: impl Into<Arc<str>>, service: S) -> Self
    where
        S: Service<C, Response = C::Answer> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        Deployment {
            name: name.into(),
            service: BoxCloneSyncService::new(IntoLlm::new(service)),
            model: None,
            weight: 1,
            health: None,
            headroom: None,
        }
    }

    /// Its share of the traffic relative to the others (default 1; at
    /// least 1): twice the weight, twice the calls under
    /// [`Strategy::WeightedRandom`](super::Strategy::WeightedRandom); the
    /// other strategies weigh load by it.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Asks this deployment for `model` instead of the request's (an Azure
    /// deployment name, a self-hosted pool's model id).
    pub fn model(mut self, model: impl Into<Arc<str>>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Consults `health` (a circuit breaker's handle) before each pick: a
    /// deployment it reports unavailable is not picked.
    pub fn health(mut self, health: impl TargetHealth) -> Self {
        self.health = Some(Arc::new(health));
        self
    }

    /// Reads the deployment's room from `source` (a quota's handle): a
    /// deployment without room is not picked.
    pub fn headroom(mut self, source: impl HeadroomSource) -> Self {
        self.headroom = Some(Arc::new(source));
        self
    }

    /// The deployment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The deployment's weight.
    pub fn weight_of(&self) -> u32 {
        self.weight
    }
}

impl<C: Call> Clone for Deployment<C> {
    fn clone(&self) -> Self {
        Deployment {
            name: self.name.clone(),
            service: self.service.clone(),
            model: self.model.clone(),
            weight: self.weight,
            health: self.health.clone(),
            headroom: self.headroom.clone(),
        }
    }
}

impl<C: Call> fmt::Debug for Deployment<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deployment")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("weight", &self.weight)
            .field("health", &self.health.as_ref().map(|_| "set"))
            .field("headroom", &self.headroom.as_ref().map(|_| "set"))
            .finish_non_exhaustive()
    }
}
