//! The `[[client_keys]]`: the keys clients may present, and their limits.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use staunch::budget::BudgetConfig;

use super::durations::secs;

/// A `[[client_keys]]` entry: a key a client may present, and its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientKey {
    /// A name for logs and metrics (`name`, unique).
    pub name: String,
    /// The SHA-256 of the key, 64 hex digits (`sha256`); stored in lower
    /// case (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
    /// The window the limits below count over (`window_secs`, 60).
    #[serde(
        rename = "window_secs",
        with = "secs",
        default = "ClientKey::default_window"
    )]
    pub window: Duration,
    /// The most tokens per window (`window_tokens`, none: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_tokens: Option<u64>,
    /// The most dollars per window (`window_cost`, none: no limit), priced
    /// with the targets' `price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_cost: Option<f64>,
}

impl ClientKey {
    fn default_window() -> Duration {
        BudgetConfig::DEFAULT_WINDOW
    }
}
