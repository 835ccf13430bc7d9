//! The server's shared state: the scenario, the random draws, what it saw.

use crate::scenario::{Fault, Scenario};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use tokio::time::Instant;

/// The routes the mock serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// `POST /v1/chat/completions`.
    OpenAi,
    /// `POST /v1/messages`.
    Anthropic,
}

impl Route {
    /// `openai` or `anthropic`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Route::OpenAi => "openai",
            Route::Anthropic => "anthropic",
        }
    }
}

/// A request the mock received.
#[derive(Clone, Debug, Serialize)]
pub struct Received {
    /// Its route.
    pub route: Route,
    /// Milliseconds since the start (or last reset).
    pub at_ms: u64,
    /// The fault it was served.
    pub fault: &'static str,
    /// Its JSON body (`null` if it was not JSON).
    pub body: Value,
    /// Its headers; credential values (`authorization`, `x-api-key`,
    /// `api-key`) are recorded as `[present]`, never as sent.
    pub headers: BTreeMap<String, String>,
}

/// What the mock has seen since it started (or was last reset).
#[derive(Clone, Debug, Default, Serialize)]
pub struct MockStats {
    /// Requests per route.
    pub requests: BTreeMap<String, u64>,
    /// Faults served, by name (`ok` for normal answers).
    pub faults: BTreeMap<String, u64>,
    /// The last requests, oldest first (at most 100).
    pub recent: VecDeque<Received>,
}

impl MockStats {
    /// Requests that reached `route`.
    pub fn requests_to(&self, route: Route) -> u64 {
        self.requests.get(route.as_str()).copied().unwrap_or(0)
    }

    /// How many times `fault` (by [`Fault::name`]) was served.
    pub fn served(&self, fault: &str) -> u64 {
        self.faults.get(fault).copied().unwrap_or(0)
    }
}

const RECENT: usize = 100;

struct Inner {
    scenario: Scenario,
    rng: SmallRng,
    started: Instant,
    stats: MockStats,
}

pub(crate) struct State {
    inner: Mutex<Inner>,
}

/// A rough token count: about four bytes of text per token plus framing.
pub(crate) fn estimate_tokens(body: &Value) -> u64 {
    let mut total = 0;
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for m in messages {
            let text = m.get("content").and_then(Value::as_str).unwrap_or_default();
            total += (text.len() as u64).div_ceil(4) + 4;
        }
    }
    if let Some(system) = body.get("system").and_then(Value::as_str) {
        total += (system.len() as u64).div_ceil(4) + 4;
    }
    total
}

impl State {
    pub(crate) fn new(scenario: Scenario) -> Self {
        State {
            inner: Mutex::new(Inner {
                rng: SmallRng::seed_from_u64(scenario.seed),
                scenario,
                started: Instant::now(),
                stats: MockStats::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_scenario(&self, scenario: Scenario) {
        let mut inner = self.lock();
        inner.rng = SmallRng::seed_from_u64(scenario.seed);
        inner.scenario = scenario;
    }

    pub(crate) fn scenario(&self) -> Scenario {
        self.lock().scenario.clone()
    }

    pub(crate) fn reset(&self) {
        let mut inner = self.lock();
        inner.stats = MockStats::default();
        inner.started = Instant::now();
        inner.rng = SmallRng::seed_from_u64(inner.scenario.seed);
    }

    pub(crate) fn stats(&self) -> MockStats {
        self.lock().stats.clone()
    }

    /// Records a request and decides what it gets, with the latency to add.
    pub(crate) fn admit(
        &self,
        route: Route,
        body: Value,
        headers: BTreeMap<String, String>,
    ) -> (Fault, u64) {
        let mut inner = self.lock();
        let at_ms = inner.started.elapsed().as_millis() as u64;
        let nth = inner.stats.requests_to(route) as usize;
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let scenario = &inner.scenario;
        let routes = match route {
            Route::OpenAi => &scenario.openai,
            Route::Anthropic => &scenario.anthropic,
        };
        let down = scenario.outage.as_ref().is_some_and(|o| {
            (o.start_ms..o.end_ms).contains(&at_ms)
                && (o.routes.is_empty() || o.routes.iter().any(|r| r == route.as_str()))
        });
        let too_long = scenario
            .context_windows
            .get(&model)
            .is_some_and(|window| estimate_tokens(&body) > *window);
        let latency = scenario.latency_ms;
        let scripted = routes.script.get(nth).cloned();
        let random = routes.random.clone();
        let fault = if down {
            Fault::Overloaded { retry_after: None }
        } else if too_long {
            Fault::ContextOverflow
        } else if let Some(f) = scripted {
            f
        } else {
            let mut chosen = Fault::Ok;
            for candidate in random {
                if inner.rng.random_bool(candidate.probability.clamp(0.0, 1.0)) {
                    chosen = candidate.fault;
                    break;
                }
            }
            chosen
        };
        let stats = &mut inner.stats;
        *stats.requests.entry(route.as_str().to_owned()).or_default() += 1;
        *stats.faults.entry(fault.name().to_owned()).or_default() += 1;
        if stats.recent.len() == RECENT {
            stats.recent.pop_front();
        }
        stats.recent.push_back(Received {
            route,
            at_ms,
            fault: fault.name(),
            body,
            headers,
        });
        (fault, latency)
    }
}
