//! Measuring a run and printing the side-by-side report.

use crate::html;
use serde::Serialize;
use staunch::core::{ChatResponse, LlmError, QualityTier};
use std::collections::BTreeMap;
use std::time::Duration;

/// What happened in one run (one client over the whole request mix).
#[derive(Default, Serialize)]
pub struct Run {
    pub name: String,
    pub requests: u64,
    pub answered: u64,
    pub tiers: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub provider_calls: u64,
    pub retries: u64,
    pub fallbacks: u64,
    pub fallback_activations: u64,
    pub breaker_transitions: Option<u64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    #[serde(skip)]
    latencies: Vec<Duration>,
    /// Every request, for `--html`.
    #[serde(skip)]
    pub trace: Vec<html::Request>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub wall_s: f64,
}

impl Run {
    pub fn new(name: &str) -> Self {
        Run {
            name: name.to_owned(),
            ..Run::default()
        }
    }

    /// Counts one request, sent `sent` after the run's start.
    pub fn record(
        &mut self,
        result: &Result<ChatResponse, LlmError>,
        sent: Duration,
        latency: Duration,
        price: impl Fn(&str) -> (f64, f64),
    ) {
        self.requests += 1;
        self.latencies.push(latency);
        self.trace.push(html::Request {
            sent,
            latency,
            outcome: match result {
                Ok(r) => html::Outcome::Answered(r.meta.tier),
                Err(e) => html::Outcome::Error(e.kind.as_str().to_owned()),
            },
            depth: result.as_ref().ok().map(|r| r.meta.fallback_depth),
            model: result.as_ref().ok().map(|r| r.answered_model().to_owned()),
        });
        match result {
            Ok(r) => {
                self.answered += 1;
                *self
                    .tiers
                    .entry(r.meta.tier.as_str().to_owned())
                    .or_default() += 1;
                if matches!(r.meta.tier, QualityTier::Reduced) {
                    self.fallbacks += 1;
                }
                let usage = r.total_usage();
                self.tokens_in += usage.input_tokens;
                self.tokens_out += usage.output_tokens;
                self.cost_usd += r.meta.cost.unwrap_or_else(|| {
                    let (i, o) = price(r.answered_model());
                    (usage.input_tokens as f64 * i + usage.output_tokens as f64 * o) / 1e6
                });
            }
            Err(e) => {
                *self.errors.entry(e.kind.as_str().to_owned()).or_default() += 1;
                let spent = e.total_spent();
                self.tokens_in += spent.input_tokens;
                self.tokens_out += spent.output_tokens;
            }
        }
    }

    pub fn finish(&mut self, wall: Duration, provider_calls: u64) {
        self.wall_s = wall.as_secs_f64();
        self.provider_calls = provider_calls;
        self.latencies.sort_unstable();
        let pick = |q: f64| {
            if self.latencies.is_empty() {
                return 0.0;
            }
            let i = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
            self.latencies[i].as_secs_f64() * 1e3
        };
        self.p50_ms = pick(0.50);
        self.p99_ms = pick(0.99);
    }

    /// This run as one side of the `--html` page, with its breakers'
    /// states (`None`: it has no breaker).
    pub fn side(&self, breakers: Option<Vec<html::Track>>) -> html::Side {
        let mut facts = vec![
            (
                "errors reaching the caller".to_owned(),
                self.failed().to_string(),
            ),
            ("  most common".to_owned(), top(&self.errors)),
            (
                "full / reduced / cached / static".to_owned(),
                format!(
                    "{} / {} / {}",
                    tier_pair(self, "full", "reduced"),
                    self.tiers.get("cached").copied().unwrap_or(0),
                    self.tiers.get("static").copied().unwrap_or(0)
                ),
            ),
            (
                "provider calls on the wire".to_owned(),
                self.provider_calls.to_string(),
            ),
            ("retries".to_owned(), self.retries.to_string()),
            (
                "fallback activations".to_owned(),
                self.fallback_activations.to_string(),
            ),
        ];
        if let Some(n) = self.breaker_transitions {
            facts.push(("breaker transitions".to_owned(), n.to_string()));
        }
        facts.extend([
            (
                "latency p50 / p99".to_owned(),
                format!("{:.0} / {:.0} ms", self.p50_ms, self.p99_ms),
            ),
            (
                "tokens in / out".to_owned(),
                format!("{} / {}", self.tokens_in, self.tokens_out),
            ),
            ("cost".to_owned(), format!("${:.4}", self.cost_usd)),
            ("wall time".to_owned(), format!("{:.1} s", self.wall_s)),
        ]);
        html::Side {
            name: self.name.clone(),
            requests: self.trace.clone(),
            breakers,
            facts,
            wall: Duration::from_secs_f64(self.wall_s),
        }
    }

    fn failed(&self) -> u64 {
        self.requests - self.answered
    }
}

/// `n` and its share of `of`, for a table cell (`-` when `of` is 0).
pub fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        return "-".into();
    }
    format!("{n} ({:.1}%)", n as f64 * 100.0 / of as f64)
}

/// The two largest counts of `map`, for a table cell (`-` when empty).
pub fn top(map: &BTreeMap<String, u64>) -> String {
    let mut v: Vec<_> = map.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let shown: Vec<String> = v.iter().take(2).map(|(k, n)| format!("{k} {n}")).collect();
    if shown.is_empty() {
        return "-".into();
    }
    let mut text = shown.join(", ");
    if text.chars().count() > 26 {
        text = text.chars().take(25).collect::<String>() + "…";
    }
    text
}

pub fn print(naive: &Run, stack: &Run) {
    let rows: Vec<(&str, String, String)> = vec![
        (
            "requests",
            naive.requests.to_string(),
            stack.requests.to_string(),
        ),
        (
            "answered (success rate)",
            pct(naive.answered, naive.requests),
            pct(stack.answered, stack.requests),
        ),
        (
            "  full / reduced",
            tier_pair(naive, "full", "reduced"),
            tier_pair(stack, "full", "reduced"),
        ),
        (
            "  cached / static",
            tier_pair(naive, "cached", "static"),
            tier_pair(stack, "cached", "static"),
        ),
        (
            "errors reaching the caller",
            naive.failed().to_string(),
            stack.failed().to_string(),
        ),
        ("  most common", top(&naive.errors), top(&stack.errors)),
        (
            "provider calls on the wire",
            naive.provider_calls.to_string(),
            stack.provider_calls.to_string(),
        ),
        (
            "retries",
            naive.retries.to_string(),
            stack.retries.to_string(),
        ),
        (
            "fallback activations",
            naive.fallback_activations.to_string(),
            stack.fallback_activations.to_string(),
        ),
        (
            "answers from a fallback",
            naive.fallbacks.to_string(),
            stack.fallbacks.to_string(),
        ),
        (
            "breaker transitions",
            naive
                .breaker_transitions
                .map_or("-".into(), |n| n.to_string()),
            stack
                .breaker_transitions
                .map_or("-".into(), |n| n.to_string()),
        ),
        (
            "latency p50 / p99",
            format!("{:.0} / {:.0} ms", naive.p50_ms, naive.p99_ms),
            format!("{:.0} / {:.0} ms", stack.p50_ms, stack.p99_ms),
        ),
        (
            "tokens in / out",
            format!("{} / {}", naive.tokens_in, naive.tokens_out),
            format!("{} / {}", stack.tokens_in, stack.tokens_out),
        ),
        (
            "cost",
            format!("${:.4}", naive.cost_usd),
            format!("${:.4}", stack.cost_usd),
        ),
        (
            "wall time",
            format!("{:.1} s", naive.wall_s),
            format!("{:.1} s", stack.wall_s),
        ),
    ];
    println!();
    println!("{:<28} {:>26} {:>26}", "", naive.name, stack.name);
    println!("{}", "-".repeat(82));
    for (label, a, b) in rows {
        println!("{label:<28} {a:>26} {b:>26}");
    }
}

fn tier_pair(run: &Run, a: &str, b: &str) -> String {
    let get = |k: &str| run.tiers.get(k).copied().unwrap_or(0);
    format!("{} / {}", get(a), get(b))
}
