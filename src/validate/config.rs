//! What the validate layer checks.

use super::check::Invalid;
use staunch_core::{ChatRequest, ChatResponse};
use std::fmt;
use std::sync::Arc;

type CheckFn = dyn Fn(&ChatRequest, &ChatResponse) -> Result<(), String> + Send + Sync;

/// How the [`ValidateLayer`](super::ValidateLayer) checks answers.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `tool_arguments` | on | tool calls name an offered tool, and their arguments are JSON matching its schema |
/// | `json_output` | on | a `json_object` / `json_schema` answer is JSON (matching its schema) |
/// | `check` | none | checks of your own, in order |
/// | `retries` | 1 | times the same target is asked again after a failed check |
///
/// ```
/// use staunch::validate::ValidateConfig;
/// let config = ValidateConfig::new()
///     .retries(2)
///     .check(|_request, answer| {
///         if answer.text().contains("As an AI") { Err("boilerplate".to_owned()) } else { Ok(()) }
///     });
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct ValidateConfig {
    pub(super) tool_arguments: bool,
    pub(super) json_output: bool,
    pub(super) checks: Vec<Arc<CheckFn>>,
    pub(super) retries: u32,
}

impl Default for ValidateConfig {
    fn default() -> Self {
        ValidateConfig {
            tool_arguments: true,
            json_output: true,
            checks: Vec::new(),
            retries: 1,
        }
    }
}

impl ValidateConfig {
    /// The defaults of the table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether tool calls are checked against the offered tools' schemas.
    pub fn tool_arguments(mut self, on: bool) -> Self {
        self.tool_arguments = on;
        self
    }

    /// Whether JSON answers are checked against the requested format.
    pub fn json_output(mut self, on: bool) -> Self {
        self.json_output = on;
        self
    }

    /// Adds a check of your own: `Err(why)` rejects the answer.
    pub fn check<F>(mut self, check: F) -> Self
    where
        F: Fn(&ChatRequest, &ChatResponse) -> Result<(), String> + Send + Sync + 'static,
    {
        self.checks.push(Arc::new(check));
        self
    }

    /// How many times the same target is asked again after a failed check
    /// (0: fail at once).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Runs the custom checks.
    pub(super) fn custom(
        &self,
        request: &ChatRequest,
        answer: &ChatResponse,
    ) -> Result<(), Invalid> {
        for check in &self.checks {
            check(request, answer).map_err(Invalid::custom)?;
        }
        Ok(())
    }
}

impl fmt::Debug for ValidateConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidateConfig")
            .field("tool_arguments", &self.tool_arguments)
            .field("json_output", &self.json_output)
            .field("checks", &self.checks.len())
            .field("retries", &self.retries)
            .finish()
    }
}
