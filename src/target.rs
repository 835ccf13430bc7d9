//! One fallback target with its own breaker, retry, quota and per-attempt
//! timeout, built in one call.

use crate::any_call::AnyCallLayer;
use crate::batch::SplitBatchLayer;
use crate::circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer, InvalidCircuitBreaker,
};
use crate::fallback::Target;
#[cfg(feature = "quota")]
use crate::quota::{InvalidQuota, QuotaConfig, QuotaHandle, QuotaLayer};
use crate::retry::{RetryConfig, RetryLayer};
#[cfg(feature = "validate")]
use crate::validate::{ValidateConfig, ValidateLayer};
use staunch_core::{
    BoxError, Call, ChatRequest, ChatResponse, ErrorKind, LlmError, Operation, Price,
};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_service::Service;

/// Builds the recommended per-target stack around a provider and wires the
/// breaker's health into the [`Target`], so a fallback chain passes over the
/// target while its circuit is open:
///
/// ```text
/// Validate         (optional) answers checked before they count
/// CircuitBreaker   fail fast while the target is down (its handle is returned)
///   Retry          transient failures, backoff + full jitter, Retry-After, budget
///     Quota        (optional) requests / tokens per minute, every attempt admitted
///       Timeout    tower's, per attempt (30 s for chat, 10 s for embeddings); a Deadline cuts it shorter
///         provider
/// ```
///
/// | setting | default |
/// |---|---|
/// | `breaker` | [`CircuitBreakerConfig::new`] named after the target (5 failures in a row) |
/// | `retry` | [`RetryConfig::new`] (2 retries, full jitter, retry budget) |
/// | `attempt_timeout` | the operation's: 30 s for chat, 10 s for embeddings |
/// | `split_batches` | off: a batch call goes out as one request |
/// | `retry_attempt_timeouts` | off: an attempt that gets no answer within its timeout moves the chain to the next target instead of asking the silent one again |
/// | `quota` | none (feature `quota`; [`QuotaConfig`](crate::quota::QuotaConfig)) |
/// | `model`, `context_window`, `price` | none, as on [`Target`] |
///
/// ```
/// use std::time::Duration;
/// use staunch::TargetBuilder;
/// use staunch::core::{ChatRequest, ChatResponse, LlmError, Price};
/// use staunch::fallback::Fallback;
/// use staunch::retry::RetryConfig;
/// use tower::service_fn;
///
/// let provider = service_fn(|r: ChatRequest| async move {
///     Ok::<_, LlmError>(ChatResponse::new(&r.model, "hi"))
/// });
/// let (openai, openai_circuit) = TargetBuilder::new("openai", provider.clone())
///     .model("gpt-4o")
///     .price(Price::per_million(2.5, 10.0))
///     .retry(RetryConfig::new().max_retries(3))
///     .attempt_timeout(Duration::from_secs(30))
///     .build()
///     .expect("valid breaker");
/// let (anthropic, _) = TargetBuilder::new("anthropic", provider)
///     .model("claude-sonnet-4-5")
///     .build()
///     .expect("valid breaker");
/// let chain = Fallback::new([openai, anthropic]).expect("two targets");
/// assert!(openai_circuit.is_call_permitted());
/// # let _ = chain;
/// ```
///
/// A provider client serves several operations: [`new`](TargetBuilder::new)
/// builds a chat target, and [`for_call`](TargetBuilder::for_call) one for
/// any other [`Call`] (its attempt timeout then defaults to the
/// operation's: 10 s for embeddings).
#[derive(Debug)]
pub struct TargetBuilder<S, C = ChatRequest> {
    name: Arc<str>,
    provider: S,
    model: Option<Arc<str>>,
    context_window: Option<u64>,
    price: Option<Price>,
    accepts_prefill: bool,
    breaker: Option<CircuitBreakerConfig>,
    retry: RetryConfig,
    attempt_timeout: Option<Duration>,
    retry_attempt_timeouts: bool,
    split: Option<SplitBatchLayer>,
    vector_space: Option<Arc<str>>,
    #[cfg(feature = "validate")]
    validate: Option<ValidateConfig>,
    #[cfg(feature = "quota")]
    quota: Option<QuotaLayer>,
    call: PhantomData<fn() -> C>,
}

impl TargetBuilder<()> {
    /// The default [`attempt_timeout`](TargetBuilder::attempt_timeout) of a
    /// chat target: 30 s, whatever the provider
    /// (`TargetBuilder::DEFAULT_ATTEMPT_TIMEOUT`; an operation's own is
    /// [`Operation::default_attempt_timeout`](staunch_core::Operation::default_attempt_timeout)).
    pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Operation::Chat.default_attempt_timeout();
}

impl<S> TargetBuilder<S>
where
    S: Service<ChatRequest, Response = ChatResponse> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    /// A chat target called `name` over `provider`, with the defaults above.
    pub fn new(name: impl Into<Arc<str>>, provider: S) -> Self {
        TargetBuilder::for_call(name, provider)
    }
}

impl<S, C> TargetBuilder<S, C>
where
    C: Call,
    S: Service<C, Response = C::Answer> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    /// A target for calls of type `C` (say
    /// `TargetBuilder::<_, EmbeddingRequest>::for_call("openai", client)`),
    /// called `name` over `provider`, with the defaults above and the
    /// operation's own attempt timeout.
    pub fn for_call(name: impl Into<Arc<str>>, provider: S) -> Self {
        TargetBuilder {
            name: name.into(),
            provider,
            model: None,
            context_window: None,
            price: None,
            accepts_prefill: false,
            breaker: None,
            retry: RetryConfig::new(),
            attempt_timeout: Some(C::OPERATION.default_attempt_timeout()),
            retry_attempt_timeouts: false,
            split: None,
            vector_space: None,
            #[cfg(feature = "validate")]
            validate: None,
            #[cfg(feature = "quota")]
            quota: None,
            call: PhantomData,
        }
    }

    /// Asks this target for `model` instead of the request's model.
    pub fn model(mut self, model: impl Into<Arc<str>>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// The target's context window in tokens ([`Target::context_window`]).
    pub fn context_window(mut self, tokens: u64) -> Self {
        self.context_window = Some(tokens);
        self
    }

    /// The target's price ([`Target::price`]).
    pub fn price(mut self, price: Price) -> Self {
        self.price = Some(price);
        self
    }

    /// Declares that the target continues an assistant prefill
    /// ([`Target::accepts_prefill`]): a streamed answer that breaks is then
    /// continued on it.
    pub fn accepts_prefill(mut self, accepts: bool) -> Self {
        self.accepts_prefill = accepts;
        self
    }

    /// The breaker's settings (by default [`CircuitBreakerConfig::new`] with
    /// the target's name).
    pub fn breaker(mut self, config: CircuitBreakerConfig) -> Self {
        self.breaker = Some(config);
        self
    }

    /// The retry settings.
    pub fn retry(mut self, config: RetryConfig) -> Self {
        self.retry = config;
        self
    }

    /// Tower's per-attempt timeout, inside the retry layer (and so inside
    /// the breaker: a hung probe can't keep the circuit half-open).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    #[cfg(feature = "validate")]
    /// Checks every answer before it counts (tool-call arguments against
    /// their schemas, JSON answers against theirs, checks of your own),
    /// outside the breaker: a rejected answer is asked again, then handed to
    /// the next target ([`ValidateLayer`]).
    ///
    /// Only for a [`TypedCall`](staunch_core::TypedCall): over a raw
    /// `HttpCall` there is nothing to check, and this does not compile.
    pub fn validate(mut self, config: ValidateConfig) -> Self
    where
        C: staunch_core::TypedCall,
    {
        self.validate = Some(config);
        self
    }

    #[cfg(feature = "quota")]
    /// Keeps the target within `config`'s requests and tokens per minute
    /// (and per day), with a [`QuotaLayer`] between the retry layer and the
    /// per-attempt timeout, so that every attempt, retries included, is
    /// admitted. A request that fits waits for its slot (within the
    /// config's `max_wait` and the request's [`Deadline`](crate::Deadline));
    /// one that does not is refused at once, without calling the provider,
    /// with `RateLimited`, `retry_after` and `should_retry` false: the retry
    /// layer passes it on, the breaker opens for `retry_after` (its
    /// `rate_limit_cooldown`), and a fallback chain moves to its next
    /// target.
    ///
    /// The layer is built here, so an invalid config (a limit of 0) is an
    /// error here, and [`quota_handle`](Self::quota_handle) gives its
    /// handle before or after [`build`](Self::build). Name the config after
    /// the target: the name labels the quota's metrics and errors.
    ///
    /// ```
    /// use staunch::TargetBuilder;
    /// use staunch::core::{ChatRequest, ChatResponse, LlmError};
    /// use staunch::quota::QuotaConfig;
    /// use tower::service_fn;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let provider = service_fn(|r: ChatRequest| async move {
    ///     Ok::<_, LlmError>(ChatResponse::new(&r.model, "hi"))
    /// });
    /// let builder = TargetBuilder::new("openai", provider)
    ///     .quota(QuotaConfig::new("openai").requests_per_minute(500).tokens_per_minute(30_000))?;
    /// let quota = builder.quota_handle().expect("a quota was set");
    /// let (openai, _circuit) = builder.build()?;
    /// assert_eq!(quota.available_requests(), Some(500));
    /// # let _ = openai; Ok(()) }
    /// ```
    pub fn quota(mut self, config: QuotaConfig) -> Result<Self, InvalidQuota> {
        self.quota = Some(QuotaLayer::new(config)?);
        Ok(self)
    }

    #[cfg(feature = "quota")]
    /// The handle of the quota set with [`quota`](Self::quota), if any: the
    /// room left, and [`observe`](QuotaHandle::observe) /
    /// [`pause_for`](QuotaHandle::pause_for). Every clone of the built
    /// target shares it.
    pub fn quota_handle(&self) -> Option<QuotaHandle> {
        self.quota.as_ref().map(QuotaLayer::handle)
    }

    /// Whether an attempt that got no answer within the
    /// [`attempt_timeout`](Self::attempt_timeout) may be retried on this
    /// target (off by default). An upstream that never answered is the
    /// likeliest of all to stay silent: by default its `Timeout` says
    /// `should_retry: false`, so the retry layer passes it on and a chain
    /// moves to its next target after one attempt rather than waiting out
    /// the timeout once per retry.
    pub fn retry_attempt_timeouts(mut self, retry: bool) -> Self {
        self.retry_attempt_timeouts = retry;
        self
    }

    /// Embeddings: the vector space the target's vectors live in
    /// ([`Target::vector_space`]; by default its model).
    pub fn vector_space(mut self, space: impl Into<Arc<str>>) -> Self {
        self.vector_space = Some(space.into());
        self
    }

    /// Sends a batch call (embeddings) larger than `max_inputs` inputs or
    /// about `max_tokens` estimated tokens as several requests that fit,
    /// joined back in order ([`SplitBatchLayer`]), between the breaker and
    /// the retry: each part is retried, and admitted by the quota, on its
    /// own. Chat calls are never split. Only for a
    /// [`TypedCall`](staunch_core::TypedCall): a raw `HttpCall` is no batch
    /// staunch can split, and this does not compile for one.
    pub fn split_batches(mut self, max_inputs: usize, max_tokens: u64) -> Self
    where
        C: staunch_core::TypedCall,
    {
        self.split = Some(SplitBatchLayer::new(max_inputs, max_tokens));
        self
    }

    /// No per-attempt timeout of its own: only a request's
    /// [`Deadline`](crate::Deadline) and the provider client's timeout bound
    /// an attempt.
    pub fn no_attempt_timeout(mut self) -> Self {
        self.attempt_timeout = None;
        self
    }

    /// The target, and the handle of its breaker (to watch it, force it open
    /// or reset it); the target already consults the breaker's health.
    pub fn build(self) -> Result<(Target<C>, CircuitBreakerHandle), InvalidCircuitBreaker> {
        let config = self
            .breaker
            .unwrap_or_else(|| CircuitBreakerConfig::new(self.name.clone()));
        let breaker = CircuitBreakerLayer::new(config)?;
        let handle = breaker.handle();
        let retry = RetryLayer::new(self.retry);
        #[cfg(feature = "validate")]
        let stack = ServiceBuilder::new().option_layer(
            self.validate
                .map(|config| AnyCallLayer(ValidateLayer::new(config))),
        );
        #[cfg(not(feature = "validate"))]
        let stack = ServiceBuilder::new();
        let stack = stack
            .layer(breaker)
            .option_layer(self.split.map(AnyCallLayer))
            .layer(retry);
        let (name, provider, attempt_timeout) = (self.name, self.provider, self.attempt_timeout);
        let retry_timeouts = self.retry_attempt_timeouts;
        // The quota (when set) then the per-attempt timeout (when set) over
        // the provider: each combination is its own service type.
        macro_rules! with_timeout {
            ($stack:expr) => {
                match attempt_timeout {
                    Some(timeout) => Target::for_call(
                        name,
                        $stack
                            .map_err(attempt_timed_out(timeout, retry_timeouts))
                            .timeout(timeout)
                            .service(provider),
                    ),
                    None => Target::for_call(name, $stack.service(provider)),
                }
            };
        }
        #[cfg(feature = "quota")]
        let mut target = match self.quota {
            Some(quota) => with_timeout!(stack.layer(quota)),
            None => with_timeout!(stack),
        };
        #[cfg(not(feature = "quota"))]
        let mut target = with_timeout!(stack);
        target = target.health(handle.clone());
        if let Some(model) = self.model {
            target = target.model(model);
        }
        if let Some(window) = self.context_window {
            target = target.context_window(window);
        }
        if let Some(price) = self.price {
            target = target.price(price);
        }
        target = target.accepts_prefill(self.accepts_prefill);
        if let Some(space) = self.vector_space {
            target = target.vector_space(space);
        }
        Ok((target, handle))
    }
}

#[cfg(feature = "balance")]
impl<S, C> TargetBuilder<S, C>
where
    C: Call,
    S: Service<C, Response = C::Answer> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    /// The same stack as [`build`](Self::build) (breaker, retry, quota,
    /// attempt timeout over the provider) as one
    /// [`Deployment`](crate::balance::Deployment) of a balanced target: its
    /// breaker's handle as its [health](crate::balance::Deployment::health)
    /// and its quota's (when set) as its
    /// [headroom](crate::balance::Deployment::headroom), so that a
    /// [`Balance`](crate::balance::Balance) never picks it while its
    /// circuit is open or its quota is spent. The model, price, window and
    /// prefill settings belong to the balanced target, not to a
    /// deployment, and are not used here.
    ///
    /// ```
    /// use staunch::TargetBuilder;
    /// use staunch::balance::{Balance, BalanceConfig};
    /// use staunch::core::{ChatRequest, ChatResponse, LlmError};
    /// use tower::service_fn;
    ///
    /// let key = |name: &'static str| {
    ///     let client = service_fn(|r: ChatRequest| async move { Ok::<_, LlmError>(ChatResponse::new(&r.model, "hi")) });
    ///     TargetBuilder::new(name, client).build_deployment().expect("valid breaker")
    /// };
    /// let ((a, _), (b, _)) = (key("key-a"), key("key-b"));
    /// let balanced = Balance::new(BalanceConfig::new("gpt-4o"), [a, b]).expect("two deployments");
    /// # let _ = balanced;
    /// ```
    pub fn build_deployment(
        self,
    ) -> Result<(crate::balance::Deployment<C>, CircuitBreakerHandle), InvalidCircuitBreaker> {
        #[cfg(feature = "quota")]
        let headroom = self.quota.as_ref().map(QuotaLayer::handle);
        let (target, handle) = self.build()?;
        let name = target.name().to_owned();
        let mut deployment =
            crate::balance::Deployment::for_call(name, target.service).health(handle.clone());
        #[cfg(feature = "quota")]
        if let Some(headroom) = headroom {
            deployment = deployment.headroom(headroom);
        }
        Ok((deployment, handle))
    }
}

/// Names an attempt that got no answer within `timeout` as such, and, unless
/// `retry` is on, tells the retry layer not to ask the silent target again.
fn attempt_timed_out(timeout: Duration, retry: bool) -> impl Fn(BoxError) -> BoxError + Clone {
    move |error| {
        if !error.is::<tower::timeout::error::Elapsed>() {
            return error;
        }
        let timed_out = LlmError::new(
            ErrorKind::Timeout,
            format!("no answer within the attempt timeout of {timeout:?}"),
        );
        Box::new(if retry {
            timed_out
        } else {
            timed_out.with_should_retry(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fallback::Fallback;
    use crate::test_support::{Scripted, Step, fail, request};
    use staunch_core::ErrorKind;
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn a_built_target_is_skipped_while_its_circuit_is_open() {
        let down = Scripted::scripted([fail(ErrorKind::Server)]);
        let up = Scripted::scripted([Step::Answer]);
        let (a, a_circuit) = TargetBuilder::new("a", down.clone())
            .breaker(CircuitBreakerConfig::new("a").consecutive_failures(Some(1)))
            .retry(RetryConfig::new().no_budget().max_retries(0))
            .build()
            .unwrap();
        let (b, _) = TargetBuilder::new("b", up.clone()).build().unwrap();
        let chain = Fallback::new([a, b]).unwrap();
        for _ in 0..3 {
            let answer = chain.clone().oneshot(request()).await.unwrap();
            assert_eq!(answer.meta.target.as_deref(), Some("b"));
        }
        assert!(!a_circuit.is_call_permitted());
        assert_eq!(
            down.calls(),
            1,
            "the open circuit was passed over, not called"
        );
        assert_eq!(up.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_attempt_timeout_sits_inside_the_retry() {
        let slow = Scripted::scripted([Step::Slow(Duration::from_secs(10)), Step::Answer]);
        let (target, _) = TargetBuilder::new("a", slow.clone())
            .retry(
                RetryConfig::new()
                    .no_budget()
                    .jitter(crate::retry::NoJitter),
            )
            .attempt_timeout(Duration::from_secs(1))
            .retry_attempt_timeouts(true)
            .build()
            .unwrap();
        let answer = Fallback::new([target])
            .unwrap()
            .oneshot(request())
            .await
            .unwrap();
        assert_eq!(answer.meta.attempts, 2, "timed out once, then answered");
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_that_timed_out_falls_over_without_a_retry() {
        let silent = Scripted::scripted([Step::Slow(Duration::from_secs(10)), Step::Answer]);
        let spare = Scripted::scripted([Step::Answer]);
        let (a, _) = TargetBuilder::new("a", silent.clone())
            .retry(RetryConfig::new().no_budget().max_retries(2))
            .attempt_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let (b, _) = TargetBuilder::new("b", spare.clone()).build().unwrap();
        let started = tokio::time::Instant::now();
        let answer = Fallback::new([a, b])
            .unwrap()
            .oneshot(request())
            .await
            .unwrap();
        assert_eq!(answer.meta.target.as_deref(), Some("b"));
        assert_eq!(silent.calls(), 1, "the silent target was asked once");
        assert_eq!(started.elapsed(), Duration::from_secs(1), "one timeout");
    }

    /// A half-open circuit's probe is one attempt: the retry layer below
    /// the breaker does not turn it into a retry loop, so a target that is
    /// still down costs one call per break and reopens at once.
    #[tokio::test(start_paused = true)]
    async fn a_probe_is_one_attempt_never_retried() {
        let down = Scripted::scripted(std::iter::repeat_n(fail(ErrorKind::Server), 20));
        let (target, circuit) = TargetBuilder::new("a", down.clone())
            .breaker(
                CircuitBreakerConfig::new("a")
                    .consecutive_failures(Some(1))
                    .break_duration(Duration::from_secs(5)),
            )
            .retry(
                RetryConfig::new()
                    .no_budget()
                    .max_retries(2)
                    .jitter(crate::retry::NoJitter),
            )
            .build()
            .unwrap();
        let chain = Fallback::new([target]).unwrap();
        // Three attempts (one call, two retries) fail, and the breaker,
        // outside the retry, counts one failure: open.
        let _ = chain.clone().oneshot(request()).await.unwrap_err();
        assert_eq!(down.calls(), 3);
        assert!(!circuit.is_call_permitted());
        tokio::time::advance(Duration::from_secs(6)).await;
        // The probe fails once and is not retried.
        let probe = chain.clone().oneshot(request()).await.unwrap_err();
        assert_eq!(down.calls(), 4, "one call for the probe");
        assert_eq!(probe.attempts, 1);
        assert!(!circuit.is_call_permitted(), "open again at once");
    }

    #[cfg(feature = "quota")]
    #[tokio::test(start_paused = true)]
    async fn a_built_target_refuses_past_its_rpm_and_the_chain_moves_on() {
        let limited = Scripted::scripted([Step::Answer]);
        let spare = Scripted::scripted([Step::Answer]);
        let builder = TargetBuilder::new("a", limited.clone())
            .quota(
                QuotaConfig::new("a")
                    .requests_per_minute(2)
                    .max_wait(Duration::from_secs(5)),
            )
            .unwrap();
        let quota = builder.quota_handle().unwrap();
        let (a, a_circuit) = builder.build().unwrap();
        let (b, _) = TargetBuilder::new("b", spare.clone()).build().unwrap();
        let chain = Fallback::new([a, b]).unwrap();
        let mut answered_by = Vec::new();
        for _ in 0..4 {
            let answer = chain.clone().oneshot(request()).await.unwrap();
            answered_by.push(answer.meta.target.as_deref().unwrap_or("?").to_owned());
        }
        // Two requests per minute: the third would wait 30 s, past
        // max_wait, so it is refused at once, without a retry, and the
        // chain answers from b; so is the fourth. The provider never saw
        // them: the refusals leave a's circuit closed.
        assert_eq!(answered_by, ["a", "a", "b", "b"]);
        assert_eq!(
            limited.calls(),
            2,
            "the provider never saw the refused request"
        );
        assert_eq!(spare.calls(), 2);
        assert_eq!(quota.available_requests(), Some(0));
        assert!(
            a_circuit.is_call_permitted(),
            "a quota refusal is not a provider failure"
        );
        // A minute later there is room again.
        tokio::time::advance(Duration::from_secs(61)).await;
        let answer = chain.clone().oneshot(request()).await.unwrap();
        assert_eq!(answer.meta.target.as_deref(), Some("a"));
        assert_eq!(limited.calls(), 3);
    }

    #[cfg(feature = "quota")]
    #[test]
    fn an_invalid_quota_is_a_clear_error() {
        let err = TargetBuilder::new("a", Scripted::scripted([Step::Answer]))
            .quota(QuotaConfig::new("a").requests_per_minute(0))
            .expect_err("a limit of 0 is refused");
        assert_eq!(err, InvalidQuota::Zero("requests per minute"));
    }

    #[test]
    fn an_invalid_breaker_is_a_clear_error() {
        let err = TargetBuilder::new("a", Scripted::scripted([Step::Answer]))
            .breaker(CircuitBreakerConfig::new("a").half_open_probes(0))
            .build()
            .unwrap_err();
        assert_eq!(err, InvalidCircuitBreaker::ZeroProbes);
    }
}
