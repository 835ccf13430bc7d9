//! From a [`Config`] to running stacks: one provider client per provider,
//! one staunch stack per route (and a second for its embeddings, over the
//! same clients), one budget per client key.

use crate::config::{
    ClientKey, Config, EmbeddingPlan, OnRefusal, Provider, ProviderKind, Quota, Route, RouteTarget,
};
mod balanced;

use sha2::{Digest, Sha256};
use staunch::budget::{Budget, BudgetConfig, BudgetLayer};
use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerHandle, CircuitState};
use staunch::coalesce::CoalesceLayer;
use staunch::core::{
    ChatRequest, ChatResponse, Classify, EmbeddingRequest, EmbeddingResponse, ErrorClass,
    ErrorKind, LlmError, Operation, Price,
};
use staunch::degrade::DegradeConfig;
use staunch::fallback::Fallback;
use staunch::observe::{Instrument, InstrumentLayer};
use staunch::quota::QuotaConfig;
use staunch::retry::RetryConfig;
use staunch::{ServiceBuilderExt, TargetBuilder};
use staunch_mock::{Fault, MockServer, RandomFault, Scenario};
use staunch_providers::config::ClientConfig;
use staunch_providers::{
    AnthropicConfig, ApiKey, GeminiConfig, HttpOptions, OpenAi, OpenAiConfig, OpenAiResponsesConfig,
};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tower::ServiceBuilder;
use tower::util::{BoxCloneSyncService, Either};

/// One route's stack.
pub(crate) type Stack = BoxCloneSyncService<ChatRequest, ChatResponse, LlmError>;

/// One route's embeddings stack, and a provider's embeddings client.
pub(crate) type EmbedStack = BoxCloneSyncService<EmbeddingRequest, EmbeddingResponse, LlmError>;

/// Why a configuration could not be put to work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A provider client could not be built (a bad URL or header).
    #[error("provider {provider}: {message}")]
    Provider {
        /// The provider's name.
        provider: String,
        /// Why.
        message: String,
    },
    /// A breaker, budget or quota setting can't work.
    #[error("{0}")]
    Setting(String),
    /// The embedded mock could not start.
    #[error("the embedded mock could not start: {0}")]
    Mock(#[from] std::io::Error),
}

/// One route, ready to serve.
pub(crate) struct CompiledRoute {
    pub(crate) route: Route,
    /// The route's layers below the instrumentation: degrade, the route's
    /// budget, the fallback chain. Served through [`CompiledRoute::stack`].
    inner: Stack,
    pub(crate) breakers: Vec<(String, CircuitBreakerHandle)>,
    /// The route's embeddings layers below the instrumentation (degrade,
    /// budget, a chain of its targets in one vector space), or why it
    /// serves no embeddings. Served through [`CompiledRoute::embeddings`].
    embeddings: Result<EmbedStack, Arc<str>>,
}

/// A route's stack for one request: [`CompiledRoute::stack`].
pub(crate) type Served = Instrument<Either<Budget<Stack>, Stack>>;

/// A route's embeddings stack for one request: [`CompiledRoute::embeddings`].
pub(crate) type ServedEmbeddings = Instrument<Either<Budget<EmbedStack>, EmbedStack>>;

impl CompiledRoute {
    /// The route's stack for one request of a client whose key has
    /// `key_budget`: the instrumentation outermost, then the key's budget,
    /// then the route's own layers. The budget sits inside the
    /// instrumentation so that a refusal is counted in the request metrics
    /// (outcome `error`, kind `budget_exhausted`) like any other failure.
    pub(crate) fn stack(
        &self,
        key_budget: Option<BudgetLayer>,
        instrument: InstrumentLayer,
    ) -> Served {
        ServiceBuilder::new()
            .layer(instrument)
            .option_layer(key_budget)
            .service(self.inner.clone())
    }

    /// The route's embeddings stack for one request, layered as
    /// [`stack`](Self::stack) is (the key's budget is the same budget: a
    /// key's window counts its chat and its embeddings alike), or why the
    /// route serves no embeddings.
    pub(crate) fn embeddings(
        &self,
        key_budget: Option<BudgetLayer>,
        instrument: InstrumentLayer,
    ) -> Result<ServedEmbeddings, &str> {
        let inner = self.embeddings.as_ref().map_err(|why| &**why)?;
        Ok(ServiceBuilder::new()
            .layer(instrument)
            .option_layer(key_budget)
            .service(inner.clone()))
    }

    /// Ready while at least one target's circuit is not open.
    pub(crate) fn ready(&self) -> bool {
        self.breakers
            .iter()
            .any(|(_, b)| !matches!(b.state(), CircuitState::Open | CircuitState::ForcedOpen))
    }
}

/// A client key, by the SHA-256 of the key.
pub(crate) struct KeyEntry {
    pub(crate) name: String,
    pub(crate) budget: Option<BudgetLayer>,
}

/// Everything a configuration builds; swapped whole on reload.
pub(crate) struct Running {
    pub(crate) config: Config,
    pub(crate) routes: Vec<CompiledRoute>,
    pub(crate) keys: HashMap<[u8; 32], KeyEntry>,
    // Kept alive while the configuration serves.
    pub(crate) _mock: Option<MockServer>,
    _sharing: Sharing,
}

impl Running {
    pub(crate) fn route(&self, model: &str) -> Option<&CompiledRoute> {
        self.routes.iter().find(|r| r.route.matches(model))
    }
}

/// The gateway: its running configuration, swapped atomically on reload
/// (requests in flight finish on the configuration they started with).
#[derive(Clone)]
pub struct Gateway {
    pub(crate) running: Arc<RwLock<Arc<Running>>>,
    pub(crate) metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
    /// The instrumentation around each request's stack.
    pub(crate) instrument: InstrumentLayer,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds every provider client and route stack of `config` (starting
    /// the embedded mock if a provider is of kind `mock`).
    pub async fn build(config: Config) -> Result<Gateway, GatewayError> {
        let running = build(config).await?;
        Ok(Gateway {
            running: Arc::new(RwLock::new(Arc::new(running))),
            metrics: None,
            instrument: InstrumentLayer::new(),
        })
    }

    /// Whether each request's `llm.request` span gets the request's
    /// outcome fields when it ends (default `true`; see
    /// [`InstrumentLayer::span_outcome`]). Only what reads whole spans
    /// sees them, an OpenTelemetry export among them; the logs show
    /// events, and the span closes right after the fields are recorded.
    /// The binary turns them off when it exports no spans: recording some
    /// twenty fields a request that nothing shows.
    pub fn span_outcome(mut self, record: bool) -> Self {
        self.instrument = self.instrument.span_outcome(record);
        self
    }

    /// Whether each request's call gets its `llm.request` span (default
    /// `true`; see [`InstrumentLayer::spans`]). Without it, the lines of
    /// events logged during a call are nested in the request's own span
    /// alone (its method, path and `request_id`), and the metrics are as
    /// they were. The binary turns the span off when it exports no spans
    /// and `RUST_LOG` does not show staunch's debug lines: the log's
    /// subscriber would otherwise create, enter and close it for every
    /// request, about a twentieth of a plain request's instructions.
    pub fn llm_spans(mut self, on: bool) -> Self {
        self.instrument = self.instrument.spans(on);
        self
    }

    /// Serves `render` (Prometheus text) at `/metrics`.
    pub fn with_metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.metrics = Some(Arc::new(render));
        self
    }

    /// Puts `config` to work in place of the current one. A configuration
    /// that can't be built is refused and the current one kept.
    pub async fn reload(&self, config: Config) -> Result<(), GatewayError> {
        let running = Arc::new(build(config).await?);
        *self.running.write().unwrap_or_else(|p| p.into_inner()) = running;
        Ok(())
    }

    pub(crate) fn current(&self) -> Arc<Running> {
        self.running
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The configuration being served.
    pub fn config(&self) -> Config {
        self.current().config.clone()
    }
}

/// The SHA-256 of a client key.
pub(crate) fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

async fn build(config: Config) -> Result<Running, GatewayError> {
    let mut mock = None;
    let mut clients: HashMap<String, Stack> = HashMap::new();
    let mut embedders: HashMap<String, EmbedStack> = HashMap::new();
    for (name, provider) in &config.providers {
        let (client, embedder) = client(name, provider, &mut mock).await?;
        clients.insert(name.clone(), client);
        if let Some(embedder) = embedder {
            embedders.insert(name.clone(), embedder);
        }
    }
    let mut sharing = Sharing::connect(&config).await?;
    let mut routes = Vec::with_capacity(config.routes.len());
    for (i, route) in config.routes.iter().enumerate() {
        let mut compiled = compile(i, route, &clients, &mut sharing)?;
        compiled.embeddings = compile_embeddings(
            i,
            route,
            config.embedding_plan(route),
            &embedders,
            &mut sharing,
        )?;
        routes.push(compiled);
    }
    let mut keys = HashMap::new();
    for key in &config.client_keys {
        let (hash, entry) = key_entry(key)?;
        keys.insert(hash, entry);
    }
    Ok(Running {
        config,
        routes,
        keys,
        _mock: mock,
        _sharing: sharing,
    })
}

fn key_entry(key: &ClientKey) -> Result<([u8; 32], KeyEntry), GatewayError> {
    let hash = parse_hex32(&key.sha256)
        .ok_or_else(|| GatewayError::Setting(format!("client key {}: bad sha256", key.name)))?;
    let budget = if key.window_tokens.is_some() || key.window_cost.is_some() {
        let mut config = BudgetConfig::new().window(key.window);
        if let Some(tokens) = key.window_tokens {
            config = config.window_tokens(tokens);
        }
        if let Some(cost) = key.window_cost {
            config = config.window_cost(cost);
        }
        Some(
            BudgetLayer::new(config)
                .map_err(|e| GatewayError::Setting(format!("client key {}: {e}", key.name)))?,
        )
    } else {
        None
    };
    Ok((
        hash,
        KeyEntry {
            name: key.name.clone(),
            budget,
        },
    ))
}

/// The provider's client, boxed for chat and, when it has an embeddings
/// API, for embeddings too (the same client: one connection pool).
async fn client(
    name: &str,
    provider: &Provider,
    mock: &mut Option<MockServer>,
) -> Result<(Stack, Option<EmbedStack>), GatewayError> {
    let http = HttpOptions::new()
        .connect_timeout(provider.connect_timeout)
        .request_timeout(provider.request_timeout)
        .header_timeout(provider.header_timeout)
        .first_token_timeout(provider.first_token_timeout)
        .retry_first_token_timeout(provider.retry_first_token_timeout)
        .idle_timeout(provider.idle_timeout)
        .http2_prior_knowledge(provider.http2_prior_knowledge)
        .max_streams_per_connection(provider.max_streams_per_connection);
    let key = provider.api_key_env.as_deref().and_then(ApiKey::from_env);
    let failed = |e: staunch_providers::ConfigError| GatewayError::Provider {
        provider: name.to_owned(),
        message: e.to_string(),
    };
    let stack = match provider.kind {
        ProviderKind::Anthropic => (
            Stack::new(configured::<AnthropicConfig>(name, provider, http, key).map_err(failed)?),
            None,
        ),
        ProviderKind::Gemini => {
            let client = configured::<GeminiConfig>(name, provider, http, key).map_err(failed)?;
            (Stack::new(client.clone()), Some(EmbedStack::new(client)))
        }
        ProviderKind::OpenAiResponses => (
            Stack::new(
                configured::<OpenAiResponsesConfig>(name, provider, http, key).map_err(failed)?,
            ),
            None,
        ),
        ProviderKind::Mock => {
            if mock.is_none() {
                let scenario = match &provider.scenario {
                    Some(path) => {
                        Scenario::from_file(path).map_err(|e| GatewayError::Provider {
                            provider: name.to_owned(),
                            message: e.to_string(),
                        })?
                    }
                    None => demo_scenario(),
                };
                *mock = Some(MockServer::start(scenario).await?);
            }
            let server = mock
                .as_ref()
                .map(MockServer::openai_base_url)
                .unwrap_or_default();
            let config = OpenAiConfig::new()
                .provider(name)
                .base_url(server)
                .no_api_key()
                .http(http);
            let client = OpenAi::new(config).map_err(failed)?;
            (Stack::new(client.clone()), Some(EmbedStack::new(client)))
        }
        _ => {
            let mut config = OpenAiConfig::new().provider(name).http(http);
            if let Some(url) = &provider.base_url {
                config = config.base_url(url.clone());
            }
            config = match key {
                Some(key) => config.api_key(key),
                None => config.no_api_key(),
            };
            for (k, v) in &provider.headers {
                config = config.header(k.clone(), v.clone());
            }
            let client = OpenAi::new(config).map_err(failed)?;
            (Stack::new(client.clone()), Some(EmbedStack::new(client)))
        }
    };
    Ok(stack)
}

/// A client of `C`'s dialect for `provider`: its name, base URL (else
/// the dialect's), key (else the dialect's environment variable), headers
/// and HTTP options.
fn configured<C: ClientConfig>(
    name: &str,
    provider: &Provider,
    http: HttpOptions,
    key: Option<ApiKey>,
) -> Result<C::Client, staunch_providers::ConfigError> {
    let mut config = C::default().with_provider(name).with_http(http);
    if let Some(url) = &provider.base_url {
        config = config.with_base_url(url);
    }
    if let Some(key) = key {
        config = config.with_api_key(key);
    }
    for (k, v) in &provider.headers {
        config = config.with_header(k, v);
    }
    config.build()
}

/// The embedded mock's faults: a few rate limits and server errors, so a
/// new user sees retries and fallbacks at work.
fn demo_scenario() -> Scenario {
    let mut scenario = Scenario {
        seed: 1,
        ..Scenario::default()
    };
    scenario.openai.random = vec![
        RandomFault {
            probability: 0.05,
            fault: Fault::RateLimit { retry_after: 0.1 },
        },
        RandomFault {
            probability: 0.05,
            fault: Fault::ServerError,
        },
    ];
    scenario
}

/// Content-policy refusals end the chain (and are not degraded) on a route
/// that returns them to the client.
#[derive(Clone, Copy)]
struct ReturnRefusals;

impl Classify for ReturnRefusals {
    fn classify(&self, error: &LlmError) -> ErrorClass {
        match error.kind {
            ErrorKind::ContentFiltered => ErrorClass::Fatal,
            _ => error.class(),
        }
    }
}

fn compile(
    index: usize,
    route: &Route,
    clients: &HashMap<String, Stack>,
    sharing: &mut Sharing,
) -> Result<CompiledRoute, GatewayError> {
    let mut targets = Vec::with_capacity(route.targets.len());
    let mut breakers = Vec::with_capacity(route.targets.len());
    for (j, t) in route.targets.iter().enumerate() {
        if !t.deployments.is_empty() {
            let at = format!("routes[{index}].targets[{j}]");
            let (target, handles) = balanced::chat_target(&at, t, clients, sharing)?;
            targets.push(target);
            breakers.extend(handles);
            continue;
        }
        let client = clients.get(&t.provider).cloned().ok_or_else(|| {
            GatewayError::Setting(format!(
                "routes[{index}].targets[{j}]: no provider named {:?}",
                t.provider
            ))
        })?;
        let name = format!("{}/{}", t.provider, t.model);
        let at = format!("routes[{index}].targets[{j}]");
        let mut builder = attempt_stack(
            name.clone(),
            &name,
            t,
            client,
            sharing,
            Operation::Chat,
            &at,
        )?
        .model(t.model.clone())
        .accepts_prefill(t.accepts_prefill);
        if let Some(price) = t.price {
            builder = builder.price(Price::per_million(price.input, price.output));
        }
        if let Some(window) = t.context_window {
            builder = builder.context_window(window);
        }
        let (target, handle) = builder
            .build()
            .map_err(|e| GatewayError::Setting(format!("routes[{index}].targets[{j}]: {e}")))?;
        sharing.share(&name, &handle);
        targets.push(target);
        breakers.push((name, handle));
    }
    let mut chain = Fallback::new(targets)
        .map_err(|e| GatewayError::Setting(format!("routes[{index}]: {e}")))?
        .continuation_order(route.continue_on.order());
    let mut degrade = DegradeConfig::new();
    if route.on_refusal == OnRefusal::Return {
        chain = chain.classify(ReturnRefusals);
        degrade = degrade.classify(ReturnRefusals);
    }
    if let Some(d) = &route.degrade {
        if let Some(text) = &d.static_answer {
            degrade = degrade.static_answer(text.clone());
        }
        if let Some(ttl) = d.cache_ttl {
            degrade = degrade.cache(ttl, d.cache_capacity);
        }
    }
    let budget = route_budget(index, route)?;
    // The instrumentation and the client key's budget go around this per
    // request: `CompiledRoute::stack`.
    // Coalescing outermost: identical requests in flight share the whole
    // route's call (chat at temperature 0 only; a stream never).
    let coalesce = route
        .coalesce
        .then(|| CoalesceLayer::new().chat_when(|r| r.temperature == Some(0.0)));
    let inner = ServiceBuilder::new()
        .option_layer(coalesce)
        .degrade(degrade)
        .option_layer(budget)
        .service(chain);
    Ok(CompiledRoute {
        route: route.clone(),
        inner: BoxCloneSyncService::new(inner),
        breakers,
        embeddings: Err(Arc::from("embeddings are not built yet")),
    })
}

/// The route's embeddings stack, by its `plan`: the same per-target
/// settings as its chat chain (retry, breaker, quota, price), the
/// operation's attempt timeout unless the target sets one, and the route's
/// degrade cache and budget; over the targets of one vector space only.
///
/// Each target gets breakers and quotas of its own for embeddings, named
/// `"{provider}/{model} (embeddings)"`: an embeddings endpoint fails apart
/// from the chat one (a server may serve one and not the other, and the
/// two are separate backends at OpenAI), so a chat outage must not stop
/// embeddings nor the other way round. Context windows are left out: an
/// embedding model's window bounds each input, not the batch's sum.
fn compile_embeddings(
    index: usize,
    route: &Route,
    plan: EmbeddingPlan,
    embedders: &HashMap<String, EmbedStack>,
    sharing: &mut Sharing,
) -> Result<Result<EmbedStack, Arc<str>>, GatewayError> {
    let targets = match plan {
        EmbeddingPlan::Serves(targets) => targets,
        EmbeddingPlan::Unserved(why) => {
            tracing::debug!(target: "staunch_gateway", route = %route.model, "{why}");
            return Ok(Err(Arc::from(why)));
        }
        EmbeddingPlan::Mixed { first, other } => {
            return Err(GatewayError::Setting(format!(
                "routes[{index}]: targets[{first}] and targets[{other}] name different \
                 embedding spaces ({:?} and {:?}); a fallback between them would mix \
                 vector spaces",
                route.targets[first].embedding_space(),
                route.targets[other].embedding_space()
            )));
        }
    };
    let mut chain = Vec::with_capacity(targets.len());
    for j in targets {
        let t = &route.targets[j];
        let at = |e: &dyn std::fmt::Display| {
            GatewayError::Setting(format!("routes[{index}].targets[{j}] (embeddings): {e}"))
        };
        let client = embedders.get(&t.provider).cloned().ok_or_else(|| {
            at(&format_args!(
                "no embeddings client for provider {:?}",
                t.provider
            ))
        })?;
        let name = format!("{}/{}", t.provider, t.model);
        let own = format!("{name} (embeddings)");
        let place = format!("routes[{index}].targets[{j}] (embeddings)");
        let mut builder = attempt_stack(
            name,
            &own,
            t,
            client,
            sharing,
            Operation::Embeddings,
            &place,
        )?
        .model(t.model.clone())
        .vector_space(t.embedding_space().to_owned());
        if let Some(price) = t.price {
            builder = builder.price(Price::per_million(price.input, price.output));
        }
        if t.max_batch_inputs.is_some() || t.max_batch_tokens.is_some() {
            builder = builder.split_batches(
                t.max_batch_inputs.unwrap_or(usize::MAX),
                t.max_batch_tokens.unwrap_or(u64::MAX),
            );
        }
        let (target, breaker) = builder.build().map_err(|e| at(&e))?;
        sharing.share(&own, &breaker);
        chain.push(target);
    }
    let mut chain =
        Fallback::new(chain).map_err(|e| GatewayError::Setting(format!("routes[{index}]: {e}")))?;
    // No static answer: a fixed text is no vector. The cache is where
    // embeddings degrade best: the same input has the same vectors.
    let mut degrade = DegradeConfig::new();
    if route.on_refusal == OnRefusal::Return {
        chain = chain.classify(ReturnRefusals);
        degrade = degrade.classify(ReturnRefusals);
    }
    if let Some(d) = &route.degrade
        && let Some(ttl) = d.cache_ttl
    {
        degrade = degrade.cache(ttl, d.cache_capacity);
    }
    let budget = route_budget(index, route)?;
    // The same input has the same vectors: always safe to share.
    let coalesce = route.coalesce.then(CoalesceLayer::new);
    let inner = ServiceBuilder::new()
        .option_layer(coalesce)
        .degrade(degrade)
        .option_layer(budget)
        .service(chain);
    Ok(Ok(EmbedStack::new(inner)))
}

/// The route's per-request budget, if it has one.
fn route_budget(index: usize, route: &Route) -> Result<Option<BudgetLayer>, GatewayError> {
    match route.budget.as_ref().and_then(|b| b.per_request_tokens) {
        Some(tokens) => Ok(Some(
            BudgetLayer::new(BudgetConfig::new().per_request_tokens(tokens))
                .map_err(|e| GatewayError::Setting(format!("routes[{index}].budget: {e}")))?,
        )),
        None => Ok(None),
    }
}

/// A target's retries, as the layer takes them.
/// A provider client boxed for calls of type `C`.
type CallStack<C> = BoxCloneSyncService<C, <C as staunch::core::Call>::Answer, LlmError>;

/// The per-attempt part of `t`'s stack over `client`, as a builder named
/// `name`: its retries, its breaker and quota named `own` (shared through
/// Redis when the configuration says so: [`Sharing::target`]) and its
/// attempt timeout for `operation`. `at` says where an error is.
fn attempt_stack<C>(
    name: String,
    own: &str,
    t: &RouteTarget,
    client: CallStack<C>,
    sharing: &mut Sharing,
    operation: Operation,
    at: &str,
) -> Result<TargetBuilder<CallStack<C>, C>, GatewayError>
where
    C: staunch::core::Call + Send + 'static,
    C::Answer: Send + 'static,
{
    let (client, breaker, quota) =
        sharing.target(own, t, client, breaker_config(own.to_owned(), t));
    let builder = TargetBuilder::for_call(name, client)
        .retry(retry_config(t))
        .breaker(breaker)
        .attempt_timeout(t.attempt_timeout_for(operation))
        .retry_attempt_timeouts(t.retry_attempt_timeouts);
    match quota {
        // Between the target's retry and its attempt timeout: every
        // attempt is admitted, and a refusal moves the chain on.
        Some(quota) => builder
            .quota(quota_config(own.to_owned(), quota))
            .map_err(|e| GatewayError::Setting(format!("{at}.quota: {e}"))),
        None => Ok(builder),
    }
}

fn retry_config(t: &RouteTarget) -> RetryConfig {
    RetryConfig::new()
        .max_retries(t.retry.max_retries)
        .base_delay(t.retry.base_delay)
        .max_delay(t.retry.max_delay)
}

/// A target's breaker, named `name`, as the layer takes it.
fn breaker_config(name: String, t: &RouteTarget) -> CircuitBreakerConfig {
    CircuitBreakerConfig::new(name)
        .consecutive_failures(Some(t.breaker.consecutive_failures))
        .break_duration(t.breaker.break_duration)
        .break_growth(t.breaker.break_growth, t.breaker.max_break())
        .break_jitter(t.breaker.break_jitter)
        .half_open_probes(t.breaker.half_open_probes)
        .success_threshold(t.breaker.success_threshold)
}

/// A target's quota, named `name`, as the layer takes it.
fn quota_config(name: String, quota: &Quota) -> QuotaConfig {
    let mut config = QuotaConfig::new(name).max_wait(quota.max_wait);
    if let Some(requests) = quota.requests_per_minute {
        config = config.requests_per_minute(requests);
    }
    if let Some(tokens) = quota.tokens_per_minute {
        config = config.tokens_per_minute(tokens);
    }
    config
}

/// `[shared]`: the targets' quotas and breakers shared with the other
/// replicas through Redis (`staunch-redis`); passes everything through
/// untouched when the configuration names no Redis.
///
/// A shared quota belongs to a provider's model (named `provider/model`,
/// with ` (embeddings)` for its embeddings), so one layer serves every
/// route that has that target, and it sits right over the provider's
/// client, below the attempt timeout (a wait for a slot counts in the
/// attempt). A breaker stays per route, as without sharing: the k-th
/// route with a given target shares its breaker with the k-th route of
/// the other replicas, through the k-th [`SharedBreakers`] (prefix
/// `{prefix}`, then `{prefix}:1`, ...).
pub(crate) struct Sharing {
    settings: crate::config::Shared,
    redis: Option<staunch_redis::RedisConnection>,
    quotas: HashMap<String, staunch_redis::SharedQuotaLayer>,
    breakers: Vec<staunch_redis::SharedBreakers>,
    /// The breakers of each name met so far.
    met: HashMap<String, usize>,
}

impl Sharing {
    /// Connects to the configuration's Redis, if it names one. Fails only
    /// on an address that cannot be used: a Redis that is down now is
    /// reached later, and decisions are local meanwhile.
    async fn connect(config: &Config) -> Result<Sharing, GatewayError> {
        let settings = config.shared.clone();
        let mut sharing = Sharing {
            settings,
            redis: None,
            quotas: HashMap::new(),
            breakers: Vec::new(),
            met: HashMap::new(),
        };
        let s = &sharing.settings;
        let Some(url) = s.redis_url.as_deref() else {
            return Ok(sharing);
        };
        // Neither the URL's password nor an error quoting it is shown.
        let failed = |e: staunch_redis::SharedError| {
            GatewayError::Setting(format!(
                "shared.redis_url ({}): {}",
                s.redacted_url().unwrap_or_default(),
                s.scrub(&e.to_string())
            ))
        };
        let redis = staunch_redis::RedisConnection::connect(url)
            .await
            .map_err(failed)?;
        let mut breakers = Vec::new();
        if s.share_breakers {
            let mut routes_with: HashMap<(&str, &str), usize> = HashMap::new();
            for t in config.routes.iter().flat_map(|r| &r.targets) {
                *routes_with.entry((&t.provider, &t.model)).or_default() += 1;
            }
            for k in 0..routes_with.values().copied().max().unwrap_or(0) {
                let prefix = match k {
                    0 => s.prefix.clone(),
                    k => format!("{}:{k}", s.prefix),
                };
                breakers.push(
                    staunch_redis::SharedBreakers::connect(url, &prefix)
                        .await
                        .map_err(failed)?,
                );
            }
        }
        tracing::info!(
            target: "staunch_gateway",
            redis = %s.redacted_url().unwrap_or_default(),
            replicas = s.replicas,
            share_breakers = s.share_breakers,
            "quotas shared through Redis"
        );
        sharing.redis = Some(redis);
        sharing.breakers = breakers;
        Ok(sharing)
    }

    /// The target `name` of `t` over `client`: the client behind its
    /// shared quota, the breaker publishing its openings, and the quota
    /// left to the target's own layer (none once shared).
    fn target<'t, C>(
        &mut self,
        name: &str,
        t: &'t RouteTarget,
        client: BoxCloneSyncService<C, C::Answer, LlmError>,
        breaker: CircuitBreakerConfig,
    ) -> (
        BoxCloneSyncService<C, C::Answer, LlmError>,
        CircuitBreakerConfig,
        Option<&'t Quota>,
    )
    where
        C: staunch::core::Call + Send + 'static,
        C::Answer: Send + 'static,
    {
        let Some(redis) = &self.redis else {
            return (client, breaker, t.quota.as_ref());
        };
        let breaker = if self.breakers.is_empty() {
            breaker
        } else {
            let k = self.met.entry(name.to_owned()).or_default();
            *k += 1;
            let shared = &self.breakers[(*k - 1).min(self.breakers.len() - 1)];
            breaker.on_transition(shared.on_transition())
        };
        let Some(quota) = &t.quota else {
            return (client, breaker, None);
        };
        let s = &self.settings;
        let layer = self.quotas.entry(name.to_owned()).or_insert_with(|| {
            let mut config = staunch_redis::SharedQuotaConfig::new(name, redis.clone())
                .prefix(s.prefix.as_str())
                .replicas(s.replicas)
                .timeout(s.decision_timeout)
                .max_wait(quota.max_wait)
                .lease(s.lease_requests.unwrap_or(0), s.lease_tokens.unwrap_or(0));
            if let Some(requests) = quota.requests_per_minute {
                config = config.requests_per_minute(requests);
            }
            if let Some(tokens) = quota.tokens_per_minute {
                config = config.tokens_per_minute(tokens);
            }
            staunch_redis::SharedQuotaLayer::new(config)
        });
        let client = BoxCloneSyncService::new(tower::Layer::layer(layer, client));
        (client, breaker, None)
    }

    /// Receives the other replicas' openings of the breaker `name` just
    /// built (after [`target`](Self::target) gave it its place).
    fn share(&self, name: &str, handle: &CircuitBreakerHandle) {
        if let Some(k) = self.met.get(name) {
            let shared = &self.breakers[(*k - 1).min(self.breakers.len() - 1)];
            shared.share(name, handle.clone());
        }
    }
}
