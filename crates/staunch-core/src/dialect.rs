//! Provider dialects, and the options passed through to one dialect only.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

/// A provider wire format.
///
/// Each dialect's encoding, events, errors and extras live in its own
/// folder of `staunch-providers`; here it is only a name, so that a
/// request's [`Extras`] and a cache key can tell the dialects apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Dialect {
    /// OpenAI Chat Completions, and every server that speaks it.
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic Messages.
    #[serde(rename = "anthropic")]
    Anthropic,
    /// Google Gemini `generateContent` (the Generative Language API).
    #[serde(rename = "gemini")]
    Gemini,
    /// OpenAI Responses (`POST /v1/responses`).
    #[serde(rename = "openai-responses")]
    OpenAiResponses,
}

impl Dialect {
    /// Every dialect, in a fixed order.
    pub const ALL: [Dialect; 4] = [
        Dialect::OpenAi,
        Dialect::Anthropic,
        Dialect::Gemini,
        Dialect::OpenAiResponses,
    ];

    /// The name: `openai`, `anthropic`, `gemini`, `openai-responses`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
            Dialect::Gemini => "gemini",
            Dialect::OpenAiResponses => "openai-responses",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Provider options passed through to the wire body as they are, each for
/// one dialect only: an option meant for OpenAI (`seed`, `logprobs`, `n`)
/// is never sent to Anthropic, and one meant for Anthropic (`top_k`,
/// `metadata`) never to OpenAI. Everything the dialects share has a field
/// of its own on [`ChatRequest`](crate::ChatRequest).
///
/// Serialized as one object per dialect, keyed by the dialect's name
/// (`{"openai": {"seed": 7}}`).
///
/// ```
/// use staunch_core::{Dialect, Extras};
/// let mut extras = Extras::default();
/// extras.insert(Dialect::OpenAi, "seed", 7);
/// assert_eq!(extras.get(Dialect::OpenAi)["seed"], 7);
/// assert!(extras.get(Dialect::Anthropic).is_empty());
/// assert_eq!(serde_json::to_value(&extras).unwrap(), serde_json::json!({"openai": {"seed": 7}}));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Extras {
    /// The options, by dialect; a dialect without options has no entry.
    by_dialect: BTreeMap<Dialect, Map<String, Value>>,
}

/// The options of a dialect that has none.
fn no_options() -> &'static Map<String, Value> {
    static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
    EMPTY.get_or_init(Map::new)
}

impl Extras {
    /// The options for `dialect` (empty when it has none).
    pub fn get(&self, dialect: Dialect) -> &Map<String, Value> {
        self.by_dialect
            .get(&dialect)
            .unwrap_or_else(|| no_options())
    }

    /// The options for `dialect`, to change.
    pub fn get_mut(&mut self, dialect: Dialect) -> &mut Map<String, Value> {
        self.by_dialect.entry(dialect).or_default()
    }

    /// Replaces every option for `dialect` with `options`.
    pub fn set(&mut self, dialect: Dialect, options: Map<String, Value>) {
        if options.is_empty() {
            self.by_dialect.remove(&dialect);
        } else {
            self.by_dialect.insert(dialect, options);
        }
    }

    /// Adds an option for `dialect`.
    pub fn insert(&mut self, dialect: Dialect, key: impl Into<String>, value: impl Into<Value>) {
        self.get_mut(dialect).insert(key.into(), value.into());
    }

    /// True when no dialect has an option.
    pub fn is_empty(&self) -> bool {
        self.by_dialect.values().all(Map::is_empty)
    }

    /// Every option, with its dialect, dialects in [`Dialect`]'s order.
    pub fn iter(&self) -> impl Iterator<Item = (Dialect, &String, &Value)> {
        self.by_dialect
            .iter()
            .flat_map(|(d, options)| options.iter().map(move |(k, v)| (*d, k, v)))
    }

    /// Each dialect that has options, with them, in [`Dialect`]'s order.
    pub fn dialects(&self) -> impl Iterator<Item = (Dialect, &Map<String, Value>)> {
        self.by_dialect
            .iter()
            .filter(|(_, options)| !options.is_empty())
            .map(|(d, options)| (*d, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_dialect_round_trips_by_name() {
        for dialect in Dialect::ALL {
            let text = serde_json::to_string(&dialect).unwrap();
            assert_eq!(text, format!("\"{}\"", dialect.as_str()));
            assert_eq!(serde_json::from_str::<Dialect>(&text).unwrap(), dialect);
        }
    }

    #[test]
    fn extras_keep_each_dialect_apart() {
        let mut extras = Extras::default();
        extras.insert(Dialect::Gemini, "safetySettings", json!([]));
        extras.insert(
            Dialect::OpenAiResponses,
            "reasoning",
            json!({"effort": "low"}),
        );
        assert!(extras.get(Dialect::OpenAi).is_empty());
        let text = serde_json::to_value(&extras).unwrap();
        assert_eq!(
            text,
            json!({"gemini": {"safetySettings": []}, "openai-responses": {"reasoning": {"effort": "low"}}})
        );
        let back: Extras = serde_json::from_value(text).unwrap();
        assert_eq!(back, extras);
        let names: Vec<_> = back.iter().map(|(d, k, _)| (d, k.as_str())).collect();
        assert_eq!(
            names,
            [
                (Dialect::Gemini, "safetySettings"),
                (Dialect::OpenAiResponses, "reasoning")
            ]
        );
    }

    #[test]
    fn an_unknown_dialect_is_a_clear_error() {
        let e = serde_json::from_value::<Extras>(json!({"cohere": {"x": 1}})).unwrap_err();
        assert!(e.to_string().contains("unknown variant `cohere`"), "{e}");
    }

    #[test]
    fn emptied_dialects_do_not_count() {
        let mut extras = Extras::default();
        extras.get_mut(Dialect::Anthropic);
        assert!(extras.is_empty());
        assert_eq!(extras.dialects().count(), 0);
        extras.set(Dialect::OpenAi, Map::new());
        assert!(extras.is_empty());
    }
}
