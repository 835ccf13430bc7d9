//! `ServiceBuilder` methods for the staunch layers, in the style of tower-http.

#[cfg(feature = "budget")]
use crate::budget::BudgetLayer;
#[cfg(feature = "circuit-breaker")]
use crate::circuit_breaker::CircuitBreakerLayer;
#[cfg(feature = "degrade")]
use crate::degrade::{DegradeConfig, DegradeLayer};
#[cfg(feature = "fallback")]
use crate::fallback::{FallbackLayer, Target};
#[cfg(feature = "observe")]
use crate::observe::InstrumentLayer;
#[cfg(feature = "quota")]
use crate::quota::QuotaLayer;
#[cfg(feature = "retry")]
use crate::retry::{RetryConfig, RetryLayer};
use tower::ServiceBuilder;
use tower_layer::Stack;

#[cfg(feature = "retry")]
impl From<RetryConfig> for RetryLayer {
    fn from(config: RetryConfig) -> Self {
        RetryLayer::new(config)
    }
}

#[cfg(feature = "degrade")]
impl From<DegradeConfig> for DegradeLayer {
    fn from(config: DegradeConfig) -> Self {
        DegradeLayer::new(config)
    }
}

#[cfg(feature = "fallback")]
impl From<Target> for FallbackLayer {
    fn from(backup: Target) -> Self {
        FallbackLayer::new(backup)
    }
}

mod sealed {
    pub trait Sealed<T> {}
    impl<L> Sealed<L> for tower::ServiceBuilder<L> {}
}

/// Adds the staunch layers to [`ServiceBuilder`], outermost first, like its
/// own `.timeout(..)` and `.rate_limit(..)`.
///
/// Every method takes its layer. Where building the layer cannot fail, its
/// config converts into it, so `.llm_retry(RetryConfig::new())` and
/// `.degrade(DegradeConfig::new())` read as well as `.llm_retry(layer)`;
/// the circuit breaker, the budget and the quota validate their configs in
/// `CircuitBreakerLayer::new` / `BudgetLayer::new` / `QuotaLayer::new`, and
/// their layers hold the handles you keep.
///
/// ```
/// # #[cfg(feature = "full")] {
/// use std::time::Duration;
/// use staunch::ServiceBuilderExt;
/// use staunch::budget::{BudgetConfig, BudgetLayer};
/// use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
/// use staunch::core::{ChatRequest, ChatResponse, LlmError};
/// use staunch::degrade::DegradeConfig;
/// use staunch::quota::{QuotaConfig, QuotaLayer};
/// use staunch::retry::RetryConfig;
/// use tower::{service_fn, ServiceBuilder};
///
/// let provider = service_fn(|r: ChatRequest| async move {
///     Ok::<_, LlmError>(ChatResponse::new(&r.model, "ok"))
/// });
/// let stack = ServiceBuilder::new()
///     .instrument()
///     .degrade(DegradeConfig::new().static_answer("Try again soon."))
///     .budget(BudgetLayer::new(BudgetConfig::new().per_request_tokens(50_000)).expect("valid"))
///     .circuit_breaker(CircuitBreakerLayer::new(CircuitBreakerConfig::new("openai")).expect("valid"))
///     .llm_retry(RetryConfig::new())
///     .quota(QuotaLayer::new(QuotaConfig::new("openai").requests_per_minute(500)).expect("valid"))
///     .timeout(Duration::from_secs(60))
///     .service(provider);
/// # let _ = stack;
/// # }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed<L> + Sized {
    #[cfg(feature = "observe")]
    /// One `llm.request` span and the request metrics per logical request:
    /// [`InstrumentLayer`].
    fn instrument(self) -> ServiceBuilder<Stack<InstrumentLayer, L>>;

    #[cfg(feature = "retry")]
    /// Retries transient failures: a [`RetryLayer`] (or its [`RetryConfig`]).
    fn llm_retry(self, layer: impl Into<RetryLayer>) -> ServiceBuilder<Stack<RetryLayer, L>>;

    #[cfg(feature = "circuit-breaker")]
    /// Fails fast while the service below is down: a [`CircuitBreakerLayer`]
    /// (built with [`CircuitBreakerLayer::new`], which validates the config;
    /// keep a clone, or its [`handle`](CircuitBreakerLayer::handle), to
    /// observe it and to let a fallback chain skip the target).
    fn circuit_breaker(
        self,
        layer: CircuitBreakerLayer,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>>;

    #[cfg(feature = "fallback")]
    /// Falls back to `backup` when the services below fail: a
    /// [`FallbackLayer`] (or the backup [`Target`] itself).
    fn fallback_to(
        self,
        layer: impl Into<FallbackLayer>,
    ) -> ServiceBuilder<Stack<FallbackLayer, L>>;

    #[cfg(feature = "degrade")]
    /// Serves cached or static answers when everything below fails: a
    /// [`DegradeLayer`] (or its [`DegradeConfig`]).
    fn degrade(self, layer: impl Into<DegradeLayer>) -> ServiceBuilder<Stack<DegradeLayer, L>>;

    #[cfg(feature = "budget")]
    /// Enforces token and cost caps: a [`BudgetLayer`] (built with
    /// [`BudgetLayer::new`], which validates the config; keep a clone to
    /// read its [`handle`](BudgetLayer::handle)).
    fn budget(self, layer: BudgetLayer) -> ServiceBuilder<Stack<BudgetLayer, L>>;

    #[cfg(feature = "quota")]
    /// Keeps one target within its requests and tokens per minute (and per
    /// day): a [`QuotaLayer`] (built with [`QuotaLayer::new`], which
    /// validates the config; keep its [`handle`](QuotaLayer::handle) to
    /// read the room left or feed it the provider's headers). It goes per
    /// target, inside the breaker and the retry layer and above the
    /// per-attempt timeout, so that every attempt is admitted; a request
    /// that can't be admitted within `max_wait` and its deadline fails at
    /// once with `RateLimited` (`should_retry` false) and the chain moves
    /// on. Every service one layer builds shares its limits.
    fn quota(self, layer: QuotaLayer) -> ServiceBuilder<Stack<QuotaLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "observe")]
    fn instrument(self) -> ServiceBuilder<Stack<InstrumentLayer, L>> {
        self.layer(InstrumentLayer::new())
    }

    #[cfg(feature = "retry")]
    fn llm_retry(self, layer: impl Into<RetryLayer>) -> ServiceBuilder<Stack<RetryLayer, L>> {
        self.layer(layer.into())
    }

    #[cfg(feature = "circuit-breaker")]
    fn circuit_breaker(
        self,
        layer: CircuitBreakerLayer,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "fallback")]
    fn fallback_to(
        self,
        layer: impl Into<FallbackLayer>,
    ) -> ServiceBuilder<Stack<FallbackLayer, L>> {
        self.layer(layer.into())
    }

    #[cfg(feature = "degrade")]
    fn degrade(self, layer: impl Into<DegradeLayer>) -> ServiceBuilder<Stack<DegradeLayer, L>> {
        self.layer(layer.into())
    }

    #[cfg(feature = "budget")]
    fn budget(self, layer: BudgetLayer) -> ServiceBuilder<Stack<BudgetLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "quota")]
    fn quota(self, layer: QuotaLayer) -> ServiceBuilder<Stack<QuotaLayer, L>> {
        self.layer(layer)
    }
}
