//! The `[[routes]]`: which requests a route serves, and what it answers
//! when every target failed.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use staunch::degrade::DegradeConfig;
use staunch::fallback::ContinuationOrder;

use super::RouteTarget;
use super::durations::opt_secs;

/// A `[[routes]]` entry: which requests it serves and the targets it tries,
/// in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The model names this route serves (`model`): exact, or a pattern
    /// where `*` matches any run of characters (`"gpt-*"`, `"*"`).
    pub model: String,
    /// The targets, tried in order: the first is the primary, the rest its
    /// fallbacks (`targets`, at least one).
    #[serde(default)]
    pub targets: Vec<RouteTarget>,
    /// What to do when a target refuses (`on_refusal`, `"fallback"` or
    /// `"return"`).
    #[serde(default)]
    pub on_refusal: OnRefusal,
    /// Where a stream that broke after its first token continues
    /// (`continue_on`, `"next"` or `"same"`), among the targets that accept
    /// a prefill.
    #[serde(default)]
    pub continue_on: ContinueOn,
    /// The time a whole request may take across every attempt
    /// (`deadline_secs`, none by default).
    #[serde(
        rename = "deadline_secs",
        with = "opt_secs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub deadline: Option<Duration>,
    /// What to answer when every target failed (`[routes.degrade]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degrade: Option<Degrade>,
    /// Limits on each request's size (`[routes.budget]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<RouteBudget>,
    /// Identical requests in flight at once share one upstream call
    /// (`coalesce`, default false): embeddings always, chat completions at
    /// temperature 0 only (two identical prompts at a higher temperature
    /// may rightly want two answers), streams never. Each caller gets the
    /// answer, marked shared; a caller that hangs up cancels no one else's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub coalesce: bool,
}

impl Route {
    /// A route for this model pattern to these targets, every other field
    /// at its default.
    pub fn new(model: impl Into<String>, targets: Vec<RouteTarget>) -> Self {
        Route {
            model: model.into(),
            targets,
            on_refusal: OnRefusal::default(),
            continue_on: ContinueOn::default(),
            deadline: None,
            degrade: None,
            budget: None,
            coalesce: false,
        }
    }

    /// Whether this route serves `model`: `*` in the pattern matches any
    /// run of characters (the empty one too); anything else must be equal.
    pub fn matches(&self, model: &str) -> bool {
        wildcard_match(&self.model, model)
    }
}

/// What a route does when a target answers with a refusal (a content
/// filter, a safety stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRefusal {
    /// Try the next target (`"fallback"`, opt-in).
    Fallback,
    /// Return the refusal to the client (`"return"`, the default: a
    /// refusal is permanent, and the client sees the provider's code).
    #[default]
    Return,
}

/// Where a route continues a stream that broke after its first token: on
/// a target that accepts a prefill, from where the stream stopped. Targets
/// before the one that served the stream are never asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContinueOn {
    /// The targets after the one that broke, in order; the one that broke
    /// itself only after a cut (never after a stall) and only when none of
    /// those can (`"next"`, the default): a stalled target would likely
    /// stall again, costing one more idle timeout.
    #[default]
    Next,
    /// The target that broke first, after a stall too, then the ones after
    /// it (`"same"`): for a first target much better than the rest, whose
    /// breaks are rare and short.
    Same,
}

impl ContinueOn {
    /// The fallback chain's order for this choice.
    pub fn order(self) -> ContinuationOrder {
        match self {
            ContinueOn::Next => ContinuationOrder::NextFirst,
            ContinueOn::Same => ContinuationOrder::SameFirst,
        }
    }
}

/// A route's last resort when every target failed: a cached answer to the
/// same request, or a fixed one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Degrade {
    /// A fixed answer (`static_answer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_answer: Option<String>,
    /// How long a good answer stays cached for reuse (`cache_ttl_secs`;
    /// none: no cache).
    #[serde(
        rename = "cache_ttl_secs",
        with = "opt_secs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_ttl: Option<Duration>,
    /// How many answers the cache holds (`cache_capacity`, 1000).
    #[serde(default = "Degrade::default_cache_capacity")]
    pub cache_capacity: u64,
}

impl Degrade {
    /// A tenth of the layer's own default: a gateway keeps one cache per
    /// route, in one process, so the layer's 10,000 answers (about 20 MB
    /// of 2 KB answers) for each route would multiply with the routes.
    fn default_cache_capacity() -> u64 {
        DegradeConfig::DEFAULT_CACHE_CAPACITY / 10
    }
}

impl Default for Degrade {
    fn default() -> Self {
        Degrade {
            static_answer: None,
            cache_ttl: None,
            cache_capacity: Self::default_cache_capacity(),
        }
    }
}

/// A route's limits on each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteBudget {
    /// The most tokens (prompt and completion) one request may use
    /// (`per_request_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_request_tokens: Option<u64>,
}

/// A `*` glob: `*` matches any run of characters, the rest literally.
/// Allocates nothing: every request's model is matched against the routes.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let Some((first, after)) = pattern.split_once('*') else {
        // No `*`: the whole text must be the pattern.
        return pattern == text;
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    // What follows the last `*` ends the text; what lies between the
    // first and the last is found in order, each part as early as it can.
    let (middle, last) = after.rsplit_once('*').unwrap_or(("", after));
    for part in middle.split('*').filter(|part| !part.is_empty()) {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    /// Tries every split: slow, and plainly a glob.
    fn by_backtracking(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|i| by_backtracking(rest, &text[i..])),
            Some((c, rest)) => text.first() == Some(c) && by_backtracking(rest, &text[1..]),
        }
    }

    /// Every string of `alphabet` up to `max` long.
    fn strings(alphabet: &[u8], max: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |&c| format!("{s}{}", c as char)))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn globs_match_as_backtracking_does() {
        let texts = strings(b"ab", 5);
        for pattern in strings(b"ab*", 5) {
            for text in &texts {
                assert_eq!(
                    wildcard_match(&pattern, text),
                    by_backtracking(pattern.as_bytes(), text.as_bytes()),
                    "{pattern:?} on {text:?}"
                );
            }
        }
        assert!(wildcard_match("gpt-*", "gpt-4o"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("*-mini", "gpt-4o-mini"));
        assert!(!wildcard_match("gpt-4o", "gpt-4o-mini"));
        assert!(wildcard_match("claude-*-4*", "claude-sonnet-4-5"));
    }
}
