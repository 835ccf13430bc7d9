//! `ServiceBuilder` methods for the staunch layers, in the style of tower-http.

use crate::budget::BudgetLayer;
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::degrade::{DegradeConfig, DegradeLayer};
use crate::fallback::{FallbackLayer, Target};
use crate::retry::{RetryConfig, RetryLayer};
use tower::ServiceBuilder;
use tower_layer::Stack;

mod sealed {
    pub trait Sealed<T> {}
    impl<L> Sealed<L> for tower::ServiceBuilder<L> {}
}

/// Adds the staunch layers to [`ServiceBuilder`], outermost first, like its
/// own `.timeout(..)` and `.rate_limit(..)`.
///
/// ```
/// use std::time::Duration;
/// use staunch::ServiceBuilderExt;
/// use staunch::budget::{BudgetConfig, BudgetLayer};
/// use staunch::core::{ChatRequest, ChatResponse, LlmError};
/// use staunch::degrade::DegradeConfig;
/// use staunch::retry::RetryConfig;
/// use tower::{service_fn, ServiceBuilder};
///
/// let provider = service_fn(|r: ChatRequest| async move {
///     Ok::<_, LlmError>(ChatResponse::new(r.model, "ok"))
/// });
/// let stack = ServiceBuilder::new()
///     .degrade(DegradeConfig::new().static_answer("Try again soon."))
///     .budget(BudgetLayer::new(BudgetConfig::new().per_request_tokens(50_000)).expect("valid"))
///     .llm_retry(RetryConfig::new())
///     .timeout(Duration::from_secs(60))
///     .service(provider);
/// # let _ = stack;
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed<L> + Sized {
    /// Retries transient failures: [`RetryLayer`].
    fn llm_retry(self, config: RetryConfig) -> ServiceBuilder<Stack<RetryLayer, L>>;

    /// Fails fast while the service below is down: a [`CircuitBreakerLayer`]
    /// (built with [`CircuitBreakerLayer::new`], which validates the config;
    /// keep a clone, or its [`handle`](CircuitBreakerLayer::handle), to
    /// observe it and to let a fallback chain skip the target).
    fn circuit_breaker(
        self,
        layer: CircuitBreakerLayer,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>>;

    /// Falls back to `backup` when the services below fail: [`FallbackLayer`].
    fn fallback_to(self, backup: Target) -> ServiceBuilder<Stack<FallbackLayer, L>>;

    /// Serves cached or static answers when everything below fails: [`DegradeLayer`].
    fn degrade(self, config: DegradeConfig) -> ServiceBuilder<Stack<DegradeLayer, L>>;

    /// Enforces token and cost caps: a [`BudgetLayer`] (built with
    /// [`BudgetLayer::new`], which validates the config; keep a clone to
    /// read its [`handle`](BudgetLayer::handle)).
    fn budget(self, layer: BudgetLayer) -> ServiceBuilder<Stack<BudgetLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn llm_retry(self, config: RetryConfig) -> ServiceBuilder<Stack<RetryLayer, L>> {
        self.layer(RetryLayer::new(config))
    }

    fn circuit_breaker(
        self,
        layer: CircuitBreakerLayer,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>> {
        self.layer(layer)
    }

    fn fallback_to(self, backup: Target) -> ServiceBuilder<Stack<FallbackLayer, L>> {
        self.layer(FallbackLayer::new(backup))
    }

    fn degrade(self, config: DegradeConfig) -> ServiceBuilder<Stack<DegradeLayer, L>> {
        self.layer(DegradeLayer::new(config))
    }

    fn budget(self, layer: BudgetLayer) -> ServiceBuilder<Stack<BudgetLayer, L>> {
        self.layer(layer)
    }
}
