//! The `stream` scenario: every request asks for a stream, and for each one
//! the demo records what the caller ended up holding — the complete
//! answer, a clean error, or a truncated answer presented as complete — and
//! the time to the first token.
//!
//! Both sides see the same wire: the bare client classifies a broken
//! stream (a cut, a stall, an in-band error event) as an error item at the
//! end of the stream. What differs is what reads it.
//!
//! - (a) The naive reader does what most streaming code does today: append
//!   each delta, and stop at the first error or at the end of the stream,
//!   keeping what it has as the answer. Whatever it kept without a finish
//!   reason (or that is not the whole answer) is a truncated answer
//!   presented as complete.
//! - (b) The staunch stack's caller relies on its contract: a stream never
//!   ends cleanly unless it is complete, and a break is a classified error
//!   as its last item. An answer that ends cleanly without its finish
//!   reason, or with text that is not the whole answer, would be a
//!   truncated answer presented as complete: the demo counts them, and
//!   fails the run (exit status 1) if there is any.
//!
//! The stack continues a text stream that broke after content on a target
//! that accepts an assistant prefill (`StreamEvent::Continued` names it):
//! the demo counts the streams continued and the targets that continued
//! them, and checks that a continued answer is the whole answer, each
//! piece once.

use crate::html;
use crate::report::{pct, top};
use crate::{Args, Client};
use serde::Serialize;
use staunch::core::{ChatRequest, QualityTier, StreamEvent};
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// Who reads the stream.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// Stops at the first error or the end and keeps what it has.
    Naive,
    /// Takes an error item as the error it is.
    Staunch,
}

/// How one request ended for its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The whole answer, with its finish reason.
    Complete,
    /// An error before any content: the caller knows it has nothing.
    ErrorBeforeContent,
    /// Some content, then a classified error: the caller knows the answer
    /// is incomplete.
    ErrorAfterContent,
    /// Content that stopped early, held as if it were the answer.
    TruncatedAsComplete,
}

/// What one request gave its caller.
pub struct Outcome {
    ending: Ending,
    error: Option<&'static str>,
    first_token: Option<Duration>,
    latency: Duration,
    tier: Option<QualityTier>,
    /// The targets that continued the stream after a break, in order.
    continued_on: Vec<String>,
    /// For a clean error: what each target did, for the report.
    story: Option<String>,
    /// The answer's fallback depth and the model that answered.
    depth: Option<u32>,
    model: Option<String>,
}

/// The text the mock answers to request `request` (its echo of the user's
/// last message, clipped to 48 characters), to check that a "complete"
/// answer really is the whole answer.
fn expected_text(request: &ChatRequest) -> String {
    let user = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == staunch::core::Role::User)
        .map(|m| m.content.text().chars().take(48).collect::<String>())
        .unwrap_or_default();
    format!("mock answer to: {user}")
}

/// Sends `request` through `client` and reads the streamed answer as
/// `reader` does.
pub async fn ask(client: Client, request: ChatRequest, reader: Reader) -> Outcome {
    let long = request
        .messages
        .iter()
        .any(|m| m.content.text().len() > 1_000);
    let expected = expected_text(&request);
    let started = Instant::now();
    let mut answer = match client.oneshot(request).await {
        Ok(answer) => answer,
        Err(e) => {
            return Outcome {
                ending: Ending::ErrorBeforeContent,
                error: Some(e.kind.as_str()),
                first_token: None,
                latency: started.elapsed(),
                tier: None,
                continued_on: Vec::new(),
                story: Some(format!(
                    "{}before any content: {}",
                    if long { "long prompt, " } else { "" },
                    chain_story(&e)
                )),
                depth: None,
                model: None,
            };
        }
    };
    let tier = Some(answer.meta.tier);
    let serving = answer.meta.target.as_deref().unwrap_or("?").to_owned();
    let depth = Some(answer.meta.fallback_depth);
    let model = Some(answer.answered_model().to_owned());
    let Some(mut stream) = answer.take_stream() else {
        // Not streamed (no layer here answers so): whole by construction.
        return Outcome {
            ending: Ending::Complete,
            error: None,
            first_token: Some(started.elapsed()),
            latency: started.elapsed(),
            tier,
            continued_on: Vec::new(),
            story: None,
            depth,
            model,
        };
    };
    let mut text = String::new();
    let mut first_token = None;
    let mut finish = None;
    let mut broke = None;
    let mut continued_on = Vec::new();
    while let Some(item) = poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        match item {
            Ok(event) => {
                if event.is_content() && first_token.is_none() {
                    first_token = Some(started.elapsed());
                }
                match event {
                    StreamEvent::TextDelta(t) => text.push_str(&t),
                    StreamEvent::Finish(reason) => finish = Some(reason),
                    StreamEvent::Continued { target } => continued_on.push(target),
                    _ => {}
                }
            }
            Err(e) => {
                broke = Some(e);
                break;
            }
        }
    }
    let latency = started.elapsed();
    // A model's answer must be the mock's whole answer; a static answer
    // of the degrade layer is whole by construction.
    let whole = finish.is_some()
        && (tier == Some(QualityTier::Static) || text == expected || finish_is_filter(&finish));
    let ending = match (reader, &broke) {
        (Reader::Staunch, Some(_)) => Ending::ErrorAfterContent,
        _ if whole => Ending::Complete,
        _ => Ending::TruncatedAsComplete,
    };
    let story = broke.as_ref().map(|e| {
        // The segment that broke last: the serving target's, or the last
        // continuation's.
        let at = continued_on.last().unwrap_or(&serving);
        let continued = if continued_on.is_empty() {
            String::new()
        } else {
            format!(" (continued on {})", continued_on.join(", then "))
        };
        format!(
            "{}after {} bytes of text: the stream{continued} broke on {at} ({}) and no target continued it",
            if long { "long prompt, " } else { "" },
            text.len(),
            e.kind
        )
    });
    Outcome {
        ending,
        error: broke.map(|e| e.kind.as_str()),
        first_token,
        latency,
        tier,
        continued_on,
        story,
        depth,
        model,
    }
}

/// One target's failure after `calls` calls: `target: kind (HTTP status,
/// N calls)`, or why it was passed over without a call.
fn attempt_story(e: &staunch::core::LlmError, calls: u32) -> String {
    let target = e.target.as_deref().unwrap_or("?");
    if calls == 0 {
        return format!("{target}: {}", e.message);
    }
    let status = e.status.map(|s| format!("HTTP {s}, ")).unwrap_or_default();
    let plural = if calls == 1 { "" } else { "s" };
    format!("{target}: {} ({status}{calls} call{plural})", e.kind)
}

/// What every target of the chain did for a request that failed: the
/// earlier targets' errors, then the last one's (whose `attempts` counts
/// the calls of the whole chain).
fn chain_story(e: &staunch::core::LlmError) -> String {
    let mut parts: Vec<String> = e
        .earlier
        .iter()
        .map(|earlier| attempt_story(earlier, earlier.attempts))
        .collect();
    let before: u32 = e.earlier.iter().map(|earlier| earlier.attempts).sum();
    parts.push(attempt_story(e, e.attempts.saturating_sub(before)));
    parts.join("; ")
}

fn finish_is_filter(finish: &Option<staunch::core::FinishReason>) -> bool {
    matches!(finish, Some(staunch::core::FinishReason::ContentFilter))
}

/// What happened in one streamed run.
#[derive(Default, Serialize)]
pub struct StreamRun {
    pub name: String,
    pub requests: u64,
    pub complete: u64,
    pub complete_from_fallback: u64,
    pub complete_static: u64,
    pub clean_errors: u64,
    pub errors_before_content: u64,
    pub errors_after_content: u64,
    pub errors: BTreeMap<String, u64>,
    /// Streams that broke after content and were continued on another
    /// request (at least once), and how many of them ended complete.
    pub continued: u64,
    pub continued_complete: u64,
    /// Continuations by the target that continued.
    pub continuations: BTreeMap<String, u64>,
    /// Answers that stopped early but were held as complete: must be 0 for
    /// the stack.
    pub truncated_as_complete: u64,
    /// What each clean error was (request number and the targets' errors).
    pub clean_error_stories: Vec<String>,
    pub provider_calls: u64,
    pub retries: u64,
    pub fallback_activations: u64,
    pub first_token_p50_ms: f64,
    pub first_token_p99_ms: f64,
    pub answer_p50_ms: f64,
    pub answer_p99_ms: f64,
    pub wall_s: f64,
    #[serde(skip)]
    first_tokens: Vec<Duration>,
    #[serde(skip)]
    latencies: Vec<Duration>,
    /// Every request, for `--html`.
    #[serde(skip)]
    trace: Vec<html::Request>,
}

impl StreamRun {
    pub fn new(name: &str) -> Self {
        StreamRun {
            name: name.to_owned(),
            ..StreamRun::default()
        }
    }

    /// Counts request `i`, sent `sent` after the run's start.
    pub fn record(&mut self, i: usize, sent: Duration, outcome: Outcome) {
        self.requests += 1;
        self.trace.push(html::Request {
            sent,
            latency: outcome.latency,
            outcome: match outcome.ending {
                Ending::Complete => {
                    html::Outcome::Answered(outcome.tier.unwrap_or(QualityTier::Full))
                }
                Ending::TruncatedAsComplete => html::Outcome::Truncated,
                Ending::ErrorBeforeContent | Ending::ErrorAfterContent => {
                    html::Outcome::Error(outcome.error.unwrap_or("error").to_owned())
                }
            },
            depth: outcome.depth.filter(|_| outcome.ending == Ending::Complete),
            model: outcome
                .model
                .clone()
                .filter(|_| outcome.ending == Ending::Complete),
        });
        if matches!(
            outcome.ending,
            Ending::ErrorBeforeContent | Ending::ErrorAfterContent
        ) && let Some(story) = &outcome.story
        {
            self.clean_error_stories
                .push(format!("request {i}, {story}"));
        }
        if !outcome.continued_on.is_empty() {
            self.continued += 1;
            if outcome.ending == Ending::Complete {
                self.continued_complete += 1;
            }
        }
        for target in &outcome.continued_on {
            *self.continuations.entry(target.clone()).or_default() += 1;
        }
        self.latencies.push(outcome.latency);
        self.first_tokens.extend(outcome.first_token);
        match outcome.ending {
            Ending::Complete => {
                self.complete += 1;
                match outcome.tier {
                    Some(QualityTier::Reduced) => self.complete_from_fallback += 1,
                    Some(QualityTier::Static) => self.complete_static += 1,
                    _ => {}
                }
            }
            Ending::ErrorBeforeContent => self.errors_before_content += 1,
            Ending::ErrorAfterContent => self.errors_after_content += 1,
            Ending::TruncatedAsComplete => self.truncated_as_complete += 1,
        }
        if outcome.ending != Ending::TruncatedAsComplete
            && let Some(kind) = outcome.error
        {
            *self.errors.entry(kind.to_owned()).or_default() += 1;
        }
        self.clean_errors = self.errors_before_content + self.errors_after_content;
    }

    pub fn finish(&mut self, wall: Duration, provider_calls: u64) {
        self.wall_s = wall.as_secs_f64();
        self.provider_calls = provider_calls;
        (self.first_token_p50_ms, self.first_token_p99_ms) = percentiles(&mut self.first_tokens);
        (self.answer_p50_ms, self.answer_p99_ms) = percentiles(&mut self.latencies);
        self.clean_error_stories.sort_by_key(|story| {
            story
                .split(|c: char| !c.is_ascii_digit())
                .find_map(|n| n.parse::<usize>().ok())
        });
    }

    /// This run as one side of the `--html` page, with its breakers'
    /// states (`None`: it has no breaker).
    pub fn side(&self, breakers: Option<Vec<html::Track>>) -> html::Side {
        let facts = [
            ("complete answers", pct(self.complete, self.requests)),
            (
                "  from a fallback / static",
                format!("{} / {}", self.complete_from_fallback, self.complete_static),
            ),
            ("clean errors", pct(self.clean_errors, self.requests)),
            ("  most common", top(&self.errors)),
            (
                "truncated, shown as complete",
                pct(self.truncated_as_complete, self.requests),
            ),
            (
                "continued after a break",
                format!("{} ({} complete)", self.continued, self.continued_complete),
            ),
            (
                "time to first token p50 / p99",
                format!(
                    "{:.0} / {:.0} ms",
                    self.first_token_p50_ms, self.first_token_p99_ms
                ),
            ),
            (
                "whole answer p50 / p99",
                format!("{:.0} / {:.0} ms", self.answer_p50_ms, self.answer_p99_ms),
            ),
            (
                "provider calls on the wire",
                self.provider_calls.to_string(),
            ),
            ("retries", self.retries.to_string()),
            (
                "fallback activations",
                self.fallback_activations.to_string(),
            ),
            ("wall time", format!("{:.1} s", self.wall_s)),
        ];
        html::Side {
            name: self.name.clone(),
            requests: self.trace.clone(),
            breakers,
            facts: facts
                .into_iter()
                .map(|(label, value)| (label.to_owned(), value))
                .collect(),
            wall: Duration::from_secs_f64(self.wall_s),
        }
    }

    /// Prints what each clean error was (the first `max` of them).
    pub fn print_clean_errors(&self, max: usize) {
        if self.clean_error_stories.is_empty() {
            return;
        }
        println!("{}'s clean errors:", self.name);
        for story in self.clean_error_stories.iter().take(max) {
            println!("  {story}");
        }
        if self.clean_error_stories.len() > max {
            println!("  ... {} more", self.clean_error_stories.len() - max);
        }
    }
}

/// p50 and p99 in milliseconds (nearest rank).
fn percentiles(values: &mut [Duration]) -> (f64, f64) {
    values.sort_unstable();
    let pick = |q: f64| {
        if values.is_empty() {
            return 0.0;
        }
        let i = ((values.len() as f64 - 1.0) * q).round() as usize;
        values[i].as_secs_f64() * 1e3
    };
    (pick(0.50), pick(0.99))
}

/// Sends the request mix, streamed, through `client`, read by `reader`;
/// send times count from `origin`.
pub async fn drive(
    label: &str,
    client: Client,
    reader: Reader,
    args: &Args,
    origin: Instant,
    run: &mut StreamRun,
) {
    crate::pace(
        label,
        args,
        move |i| {
            let asked = ask(client.clone(), crate::request(i).with_stream(true), reader);
            async move {
                let sent = origin.elapsed();
                (i, sent, asked.await)
            }
        },
        |(i, sent, outcome)| run.record(i, sent, outcome),
    )
    .await;
}

pub fn print(naive: &StreamRun, stack: &StreamRun) {
    let both = |f: &dyn Fn(&StreamRun) -> String| (f(naive), f(stack));
    let rows: Vec<(&str, (String, String))> = vec![
        ("streamed requests", both(&|r| r.requests.to_string())),
        ("complete answers", both(&|r| pct(r.complete, r.requests))),
        (
            "  from a fallback / static",
            both(&|r| format!("{} / {}", r.complete_from_fallback, r.complete_static)),
        ),
        ("clean errors", both(&|r| pct(r.clean_errors, r.requests))),
        (
            "  before any content",
            both(&|r| r.errors_before_content.to_string()),
        ),
        (
            "  after partial content",
            both(&|r| r.errors_after_content.to_string()),
        ),
        ("  most common", both(&|r| top(&r.errors))),
        (
            "continued after a break",
            both(&|r| format!("{} ({} complete)", r.continued, r.continued_complete)),
        ),
        ("  continued on", both(&|r| top(&r.continuations))),
        (
            "truncated, shown as complete",
            both(&|r| pct(r.truncated_as_complete, r.requests)),
        ),
        (
            "time to first token p50/p99",
            both(&|r| {
                format!(
                    "{:.0} / {:.0} ms",
                    r.first_token_p50_ms, r.first_token_p99_ms
                )
            }),
        ),
        (
            "whole answer p50 / p99",
            both(&|r| format!("{:.0} / {:.0} ms", r.answer_p50_ms, r.answer_p99_ms)),
        ),
        (
            "provider calls on the wire",
            both(&|r| r.provider_calls.to_string()),
        ),
        ("retries", both(&|r| r.retries.to_string())),
        (
            "fallback activations",
            both(&|r| r.fallback_activations.to_string()),
        ),
        ("wall time", both(&|r| format!("{:.1} s", r.wall_s))),
    ];
    println!();
    println!("{:<28} {:>26} {:>26}", "", naive.name, stack.name);
    println!("{}", "-".repeat(82));
    for (label, (a, b)) in rows {
        println!("{label:<28} {a:>26} {b:>26}");
    }
    println!();
    println!(
        "time to first token: over the requests that got one (the stack's tail includes first tokens\n\
         that never came, given up on and answered by the next target)\n\
         continued after a break: streams that broke after content and went on where they stopped,\n\
         on a target that accepts an assistant prefill (\"continued on\" counts each continuation)"
    );
}
