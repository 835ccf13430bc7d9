//! Provider dialects, and the options passed through to one dialect only.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// A provider wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Dialect {
    /// OpenAI Chat Completions, and every server that speaks it.
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic Messages.
    #[serde(rename = "anthropic")]
    Anthropic,
}

impl Dialect {
    /// The lower-case name: `openai`, `anthropic`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
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
/// `metadata`) never to OpenAI. Everything both understand has a field of
/// its own on [`ChatRequest`](crate::ChatRequest).
///
/// ```
/// use staunch_core::{Dialect, Extras};
/// let mut extras = Extras::default();
/// extras.insert(Dialect::OpenAi, "seed", 7);
/// assert_eq!(extras.get(Dialect::OpenAi)["seed"], 7);
/// assert!(extras.get(Dialect::Anthropic).is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Extras {
    /// Options for OpenAI-dialect targets.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub openai: Map<String, Value>,
    /// Options for Anthropic-dialect targets.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub anthropic: Map<String, Value>,
}

impl Extras {
    /// The options for `dialect`.
    pub fn get(&self, dialect: Dialect) -> &Map<String, Value> {
        match dialect {
            Dialect::OpenAi => &self.openai,
            Dialect::Anthropic => &self.anthropic,
        }
    }

    /// The options for `dialect`, to change.
    pub fn get_mut(&mut self, dialect: Dialect) -> &mut Map<String, Value> {
        match dialect {
            Dialect::OpenAi => &mut self.openai,
            Dialect::Anthropic => &mut self.anthropic,
        }
    }

    /// Adds an option for `dialect`.
    pub fn insert(&mut self, dialect: Dialect, key: impl Into<String>, value: impl Into<Value>) {
        self.get_mut(dialect).insert(key.into(), value.into());
    }

    /// True when no dialect has an option.
    pub fn is_empty(&self) -> bool {
        self.openai.is_empty() && self.anthropic.is_empty()
    }

    /// Every option, with its dialect.
    pub fn iter(&self) -> impl Iterator<Item = (Dialect, &String, &Value)> {
        let openai = self.openai.iter().map(|(k, v)| (Dialect::OpenAi, k, v));
        let anthropic = self
            .anthropic
            .iter()
            .map(|(k, v)| (Dialect::Anthropic, k, v));
        openai.chain(anthropic)
    }
}
