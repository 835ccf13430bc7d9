//! The checks every configuration passes, parsed or built in code: each
//! mistake is reported, with the field's path and (from a file) its line.

use std::collections::BTreeSet;
use std::time::Duration;

use super::spans::{Seg, child, key, render};
use super::{
    Config, ConfigError, EmbeddingPlan, Provider, ProviderKind, Route, RouteBudget, RouteTarget,
};

/// Where the parsed items sit in the file: items that failed to
/// deserialize are missing from the `Config`, so its indexes are mapped
/// back to the file's.
#[derive(Default)]
pub(super) struct Layout {
    /// Every provider name in the file, those that failed too.
    pub(super) provider_names: BTreeSet<String>,
    /// How many routes the file has, those that failed too.
    pub(super) file_routes: usize,
    /// The file index of each route in `Config::routes`.
    pub(super) route_index: Vec<usize>,
    /// The file index of each key in `Config::client_keys`.
    pub(super) key_index: Vec<usize>,
}

pub(super) struct Check<'a> {
    pub(super) errors: Vec<ConfigError>,
    pub(super) layout: Layout,
    pub(super) locate: &'a dyn Fn(&[Seg]) -> Option<usize>,
    pub(super) origin: &'a str,
    /// Checking a `[defaults]` table: only what is wrong on its own, not
    /// what a route or target may still complete (a degrade's answer, a
    /// quota's limit, a delay bounded by the other).
    pub(super) partial: bool,
}

impl Check<'_> {
    /// Records an error at `path`, with the line it is on.
    pub(super) fn error(&mut self, path: Vec<Seg>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            origin: self.origin.to_owned(),
            line: (self.locate)(&path),
            field: render(&path),
            message: message.into(),
        });
    }

    fn positive(&mut self, path: Vec<Seg>, d: Duration) {
        if d.is_zero() {
            self.error(path, "must be greater than 0");
        }
    }

    pub(super) fn config(&mut self, config: &Config) {
        self.server(config);
        for (name, provider) in &config.providers {
            self.provider(name, provider);
        }
        self.routes(config);
        self.client_keys(config);
        self.telemetry(&config.telemetry);
        self.shared(config);
    }

    fn server(&mut self, config: &Config) {
        let s = &config.server;
        let at = |k: &str| key(&[Seg::Key("server".into())], k);
        if s.max_body_bytes == 0 {
            self.error(at("max_body_bytes"), "must be greater than 0");
        }
        if s.max_concurrency == 0 {
            self.error(at("max_concurrency"), "must be greater than 0");
        }
        if s.max_connections == Some(0) {
            self.error(at("max_connections"), "must be greater than 0");
        }
        // Zero would close every connection at once; more than an hour
        // is no bound against a client that trickles bytes.
        let bounds = Duration::from_millis(10)..=Duration::from_secs(3_600);
        for (name, value) in [
            ("header_timeout_secs", s.header_timeout),
            ("idle_timeout_secs", s.idle_timeout),
            ("body_timeout_secs", s.body_timeout),
        ] {
            if !bounds.contains(&value) {
                self.error(
                    at(name),
                    format!(
                        "must be between 0.01 and 3600 seconds (got {})",
                        value.as_secs_f64()
                    ),
                );
            }
        }
        if s.min_body_rate == 0 {
            self.error(
                at("min_body_bytes_per_sec"),
                "must be greater than 0 (a body may then take forever)",
            );
        }
        if !s.listen.ip().is_loopback() && config.client_keys.is_empty() {
            self.error(
                at("listen"),
                format!(
                    "refusing to serve without client keys on a public address ({}); \
                     add [[client_keys]] or listen on 127.0.0.1",
                    s.listen.ip()
                ),
            );
        }
    }

    fn provider(&mut self, name: &str, p: &Provider) {
        let path = vec![Seg::Key("providers".into()), Seg::Key(name.to_owned())];
        if name.is_empty() {
            self.error(path.clone(), "a provider needs a non-empty name");
        }
        match &p.base_url {
            None if p.kind == ProviderKind::OpenAiCompatible => self.error(
                key(&path, "base_url"),
                "a provider of kind \"openai-compatible\" needs base_url \
                 (e.g. \"http://localhost:8000/v1\")",
            ),
            Some(_) if p.kind == ProviderKind::Mock => self.error(
                key(&path, "base_url"),
                "a provider of kind \"mock\" is embedded and has no base_url",
            ),
            Some(url) => match url.parse::<http::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.authority().is_some() => {}
                _ => self.error(
                    key(&path, "base_url"),
                    format!("{url:?} is not an http:// or https:// URL"),
                ),
            },
            None => {}
        }
        if let Some(env) = &p.api_key_env
            && (env.is_empty() || env.contains('=') || env.contains('\0'))
        {
            self.error(
                key(&path, "api_key_env"),
                format!("{env:?} is not an environment variable name"),
            );
        }
        for (hname, hvalue) in &p.headers {
            let hpath = child(&key(&path, "headers"), Seg::Key(hname.clone()));
            if http::HeaderName::from_bytes(hname.as_bytes()).is_err() {
                self.error(hpath, format!("{hname:?} is not a valid header name"));
            } else if http::HeaderValue::from_str(hvalue).is_err() {
                self.error(hpath, "not a valid header value");
            }
        }
        self.positive(key(&path, "connect_timeout_secs"), p.connect_timeout);
        self.positive(key(&path, "request_timeout_secs"), p.request_timeout);
        self.positive(key(&path, "header_timeout_secs"), p.header_timeout);
        self.positive(
            key(&path, "first_token_timeout_secs"),
            p.first_token_timeout,
        );
        self.positive(key(&path, "idle_timeout_secs"), p.idle_timeout);
        if p.max_streams_per_connection == 0 {
            self.error(
                key(&path, "max_streams_per_connection"),
                "must be at least 1",
            );
        }
        if p.http2_prior_knowledge {
            let plain = p
                .base_url
                .as_deref()
                .and_then(|url| url.parse::<http::Uri>().ok())
                .is_some_and(|uri| uri.scheme_str() == Some("http"));
            if !plain {
                self.error(
                    key(&path, "http2_prior_knowledge"),
                    "only for a plain http:// base_url (https:// negotiates HTTP/2 on its own)",
                );
            }
        }
        if p.scenario.is_some() && p.kind != ProviderKind::Mock {
            self.error(
                key(&path, "scenario"),
                format!(
                    "only a provider of kind \"mock\" takes a scenario (this one is \"{}\")",
                    p.kind
                ),
            );
        }
    }

    fn routes(&mut self, config: &Config) {
        let routes_path = vec![Seg::Key("routes".into())];
        if self.layout.file_routes == 0 {
            self.error(
                routes_path.clone(),
                "no routes: add at least one [[routes]] with a model pattern and its targets",
            );
        }
        let known = self.known_providers();
        for (ci, route) in config.routes.iter().enumerate() {
            let fi = self.layout.route_index[ci];
            let path = child(&routes_path, Seg::Index(fi));
            let model_path = key(&path, "model");
            if route.model.is_empty() {
                self.error(
                    model_path.clone(),
                    "an empty model pattern matches nothing; use \"*\" for every model",
                );
            } else if let Some((ei, earlier)) = config.routes[..ci]
                .iter()
                .enumerate()
                .find(|(_, e)| e.model == route.model)
            {
                let first = self.layout.route_index[ei];
                let line = self.line_note(key(&child(&routes_path, Seg::Index(first)), "model"));
                self.error(
                    model_path.clone(),
                    format!(
                        "duplicate route for model {:?} (first at routes[{first}]{line})",
                        earlier.model
                    ),
                );
            } else if let Some((ei, earlier)) =
                config.routes[..ci].iter().enumerate().find(|(_, e)| {
                    (!route.model.contains('*') && e.matches(&route.model))
                        || (!e.model.is_empty() && e.model.chars().all(|c| c == '*'))
                })
            {
                let first = self.layout.route_index[ei];
                let line = self.line_note(key(&child(&routes_path, Seg::Index(first)), "model"));
                self.error(
                    model_path.clone(),
                    format!(
                        "unreachable route: routes[{first}]{line} (model {:?}) comes first and \
                         serves {:?}; put the more specific route first",
                        earlier.model, route.model
                    ),
                );
            }
            if route.targets.is_empty() {
                self.error(
                    key(&path, "targets"),
                    "a route needs at least one target: targets = [{ provider = \"...\", model = \"...\" }]",
                );
            }
            for (ti, target) in route.targets.iter().enumerate() {
                let tpath = child(&key(&path, "targets"), Seg::Index(ti));
                self.target(&tpath, target, &known);
                let kind = config.providers.get(&target.provider).map(|p| p.kind);
                if target.embedding_space.is_some()
                    && let Some(kind) = kind.filter(|k| !k.serves_embeddings())
                {
                    self.error(
                        key(&tpath, "embedding_space"),
                        format!(
                            "provider {:?} is of kind {kind}, which serves no embeddings",
                            target.provider
                        ),
                    );
                }
            }
            if let EmbeddingPlan::Mixed { first, other } = config.embedding_plan(route) {
                let (a, b) = (&route.targets[first], &route.targets[other]);
                let field = if b.embedding_space.is_some() {
                    "embedding_space"
                } else {
                    "model"
                };
                let tpath = child(&key(&path, "targets"), Seg::Index(other));
                self.error(
                    key(&tpath, field),
                    format!(
                        "targets[{first}] ({}/{}) embeds in the space {:?} and targets[{other}] \
                         ({}/{}) in {:?}: a fallback between them would mix vector spaces \
                         (vectors of two models, or of one model at two sizes, cannot be \
                         compared); give targets the same embedding_space only when they \
                         serve the same model at the same dimensions, and route other \
                         embedding models on routes of their own",
                        a.provider,
                        a.model,
                        a.embedding_space(),
                        b.provider,
                        b.model,
                        b.embedding_space()
                    ),
                );
            }
            self.route_fields(&path, route);
        }
    }

    /// The providers a target may name, for an error about one it may not.
    fn known_providers(&self) -> String {
        if self.layout.provider_names.is_empty() {
            "no providers are defined; add a [providers.NAME] table".to_owned()
        } else {
            let names: Vec<&str> = self
                .layout
                .provider_names
                .iter()
                .map(String::as_str)
                .collect();
            format!("known providers: {}", names.join(", "))
        }
    }

    /// `[defaults.route]`, checked on its own (its `model` is a
    /// placeholder), so that a mistake there is reported once, at its line.
    pub(super) fn defaults_route(&mut self, route: &Route) {
        let path = vec![Seg::Key("defaults".into()), Seg::Key("route".into())];
        self.partial = true;
        self.route_fields(&path, route);
        self.partial = false;
    }

    /// `[defaults.target]`, checked on its own: its provider only when it
    /// names one, never its model (placeholders where it has none).
    pub(super) fn defaults_target(&mut self, target: &RouteTarget, names_provider: bool) {
        let path = vec![Seg::Key("defaults".into()), Seg::Key("target".into())];
        if names_provider {
            let known = self.known_providers();
            self.target_provider(&path, target, &known);
        }
        self.partial = true;
        self.target_fields(&path, target);
        self.partial = false;
    }

    /// The settings of a route other than its model and targets.
    fn route_fields(&mut self, path: &[Seg], route: &Route) {
        let path = path.to_vec();
        if let Some(d) = route.deadline {
            self.positive(key(&path, "deadline_secs"), d);
        }
        if let Some(degrade) = &route.degrade {
            let dpath = key(&path, "degrade");
            if !self.partial && degrade.static_answer.is_none() && degrade.cache_ttl.is_none() {
                self.error(
                    dpath.clone(),
                    "degrade needs static_answer or cache_ttl_secs (or remove it)",
                );
            }
            if let Some(ttl) = degrade.cache_ttl {
                self.positive(key(&dpath, "cache_ttl_secs"), ttl);
                if degrade.cache_capacity == 0 {
                    self.error(key(&dpath, "cache_capacity"), "must be greater than 0");
                }
            }
        }
        if let Some(RouteBudget {
            per_request_tokens: Some(0),
        }) = route.budget
        {
            self.error(
                key(&key(&path, "budget"), "per_request_tokens"),
                "must be greater than 0",
            );
        }
    }

    fn line_note(&self, path: Vec<Seg>) -> String {
        match (self.locate)(&path) {
            Some(line) => format!(", line {line}"),
            None => String::new(),
        }
    }

    fn target(&mut self, path: &[Seg], t: &RouteTarget, known: &str) {
        self.target_provider(path, t, known);
        if t.model.is_empty() {
            self.error(key(path, "model"), "a target needs a model name");
        }
        self.target_fields(path, t);
    }

    fn target_provider(&mut self, path: &[Seg], t: &RouteTarget, known: &str) {
        if t.deployments.is_empty() {
            if t.provider.is_empty() {
                self.error(
                    key(path, "provider"),
                    "a target needs a provider (provider = \"NAME\") or its deployments \
                     (deployments = [{ provider = \"NAME\" }, ...])",
                );
            } else if !self.layout.provider_names.contains(&t.provider) {
                self.error(
                    key(path, "provider"),
                    format!("unknown provider {:?}; {known}", t.provider),
                );
            }
            for (field, set) in [
                ("balance", t.balance.is_some()),
                ("hedge", t.hedge.is_some()),
            ] {
                if set {
                    self.error(
                        key(path, field),
                        format!(
                            "{field} needs deployments: a target of one provider has nothing \
                             to balance or hedge over"
                        ),
                    );
                }
            }
            return;
        }
        if !t.provider.is_empty() {
            self.error(
                key(path, "provider"),
                "a target names a provider or its deployments, not both (add this provider \
                 to deployments)",
            );
        }
        let dpath = key(path, "deployments");
        let mut seen = std::collections::BTreeSet::new();
        for (i, d) in t.deployments.iter().enumerate() {
            let at = child(&dpath, Seg::Index(i));
            if !self.layout.provider_names.contains(&d.provider) {
                self.error(
                    key(&at, "provider"),
                    format!("unknown provider {:?}; {known}", d.provider),
                );
            } else if !seen.insert(d.provider.as_str()) {
                self.error(
                    key(&at, "provider"),
                    format!(
                        "provider {:?} is already a deployment of this target",
                        d.provider
                    ),
                );
            }
            if d.weight == 0 {
                self.error(key(&at, "weight"), "must be at least 1");
            }
        }
        if let Some(strategy) = &t.balance
            && strategy.parse::<staunch::balance::Strategy>().is_err()
        {
            self.error(
                key(path, "balance"),
                format!(
                    "unknown strategy {strategy:?}: one of \"p2c\", \"least-busy\", \
                     \"weighted\", \"headroom\""
                ),
            );
        }
        if let Some(hedge) = &t.hedge {
            let hpath = key(path, "hedge");
            if !(hedge.budget.is_finite() && hedge.budget > 0.0 && hedge.budget <= 1.0) {
                self.error(
                    key(&hpath, "budget"),
                    "must be a fraction of the calls in (0, 1] (0.05: at most 5 % extra calls)",
                );
            }
            if hedge.after == crate::config::HedgeAfter::Millis(0) {
                self.error(key(&hpath, "after"), "must be at least 1 ms, or \"p95\"");
            }
            if t.deployments.len() < 2 {
                self.error(
                    hpath,
                    "a hedge goes to another deployment: it needs at least two",
                );
            }
        }
    }

    /// The settings of a target other than its provider and model.
    fn target_fields(&mut self, path: &[Seg], t: &RouteTarget) {
        if let Some(price) = t.price {
            let ppath = key(path, "price");
            for (name, v) in [("input", price.input), ("output", price.output)] {
                if !(v.is_finite() && v >= 0.0) {
                    self.error(
                        key(&ppath, name),
                        "must be a price ≥ 0 (dollars per million tokens)",
                    );
                }
            }
        }
        if t.context_window == Some(0) {
            self.error(key(path, "context_window"), "must be greater than 0");
        }
        if !self.partial && t.retry.base_delay > t.retry.max_delay {
            self.error(
                key(&key(path, "retry"), "base_delay_ms"),
                format!(
                    "base_delay_ms ({}) is larger than max_delay_ms ({})",
                    t.retry.base_delay.as_millis(),
                    t.retry.max_delay.as_millis()
                ),
            );
        }
        if t.breaker.consecutive_failures == 0 {
            self.error(
                key(&key(path, "breaker"), "consecutive_failures"),
                "must be at least 1",
            );
        }
        let bpath = key(path, "breaker");
        self.positive(key(&bpath, "break_secs"), t.breaker.break_duration);
        let b = &t.breaker;
        if !(b.break_growth.is_finite() && b.break_growth >= 1.0) {
            self.error(
                key(&bpath, "break_growth"),
                format!(
                    "must be a factor ≥ 1.0 (1.0: breaks do not grow); got {}",
                    b.break_growth
                ),
            );
        }
        if !self.partial
            && let Some(max) = b.max_break_duration
            && max < b.break_duration
        {
            self.error(
                key(&bpath, "max_break_secs"),
                format!(
                    "max_break_secs ({}) is shorter than break_secs ({})",
                    max.as_secs_f64(),
                    b.break_duration.as_secs_f64()
                ),
            );
        }
        if !(0.0..1.0).contains(&b.break_jitter) {
            self.error(
                key(&bpath, "break_jitter"),
                format!(
                    "must be a fraction in [0.0, 1.0) (0: exact breaks); got {}",
                    b.break_jitter
                ),
            );
        }
        for (name, n) in [
            ("half_open_probes", b.half_open_probes),
            ("success_threshold", b.success_threshold),
        ] {
            if n == 0 {
                self.error(key(&bpath, name), "must be at least 1");
            }
        }
        if let Some(timeout) = t.attempt_timeout {
            self.positive(key(path, "attempt_timeout_secs"), timeout);
        }
        if t.max_batch_inputs == Some(0) {
            self.error(key(path, "max_batch_inputs"), "must be at least 1");
        }
        if t.max_batch_tokens == Some(0) {
            self.error(key(path, "max_batch_tokens"), "must be at least 1");
        }
        if t.embedding_space.as_deref().is_some_and(str::is_empty) {
            self.error(
                key(path, "embedding_space"),
                "must name a space (or leave it out: the target's model)",
            );
        }
        if let Some(quota) = &t.quota {
            let qpath = key(path, "quota");
            if !self.partial
                && quota.requests_per_minute.is_none()
                && quota.tokens_per_minute.is_none()
            {
                self.error(
                    qpath.clone(),
                    "quota needs requests_per_minute or tokens_per_minute (or remove it)",
                );
            }
            for (name, limit) in [
                ("requests_per_minute", quota.requests_per_minute),
                ("tokens_per_minute", quota.tokens_per_minute),
            ] {
                if limit == Some(0) {
                    self.error(
                        key(&qpath, name),
                        "must be greater than 0 (leave it out for no limit)",
                    );
                }
            }
        }
    }

    fn client_keys(&mut self, config: &Config) {
        let keys_path = vec![Seg::Key("client_keys".into())];
        for (ci, k) in config.client_keys.iter().enumerate() {
            let path = child(&keys_path, Seg::Index(self.layout.key_index[ci]));
            if k.name.is_empty() {
                self.error(key(&path, "name"), "a client key needs a non-empty name");
            } else if let Some(ei) = config.client_keys[..ci]
                .iter()
                .position(|e| e.name == k.name)
            {
                let first = self.layout.key_index[ei];
                self.error(
                    key(&path, "name"),
                    format!(
                        "duplicate client key name {:?} (first at client_keys[{first}])",
                        k.name
                    ),
                );
            }
            if k.sha256.len() != 64 || !k.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                self.error(
                    key(&path, "sha256"),
                    format!(
                        "must be exactly 64 hex digits, the SHA-256 of the key \
                         (`printf %s \"$KEY\" | sha256sum`); found {} characters",
                        k.sha256.chars().count()
                    ),
                );
            } else if let Some(ei) = config.client_keys[..ci]
                .iter()
                .position(|e| e.sha256.eq_ignore_ascii_case(&k.sha256))
            {
                let first = self.layout.key_index[ei];
                self.error(
                    key(&path, "sha256"),
                    format!("the same key as client_keys[{first}]"),
                );
            }
            self.positive(key(&path, "window_secs"), k.window);
            if k.window_tokens == Some(0) {
                self.error(key(&path, "window_tokens"), "must be greater than 0");
            }
            if let Some(cost) = k.window_cost
                && !(cost.is_finite() && cost > 0.0)
            {
                self.error(key(&path, "window_cost"), "must be a number of dollars > 0");
            }
        }
    }
}
