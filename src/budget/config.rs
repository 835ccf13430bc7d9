//! The budget configuration.

use staunch_core::{Call, Price, Usage};
use std::collections::HashMap;
use std::time::Duration;

/// Token and cost caps for the [`BudgetLayer`](super::BudgetLayer).
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `per_request_tokens` | none | tokens one logical request may use across all its attempts and fallbacks |
/// | `window` | 60 s | the rolling window of the window caps |
/// | `window_tokens` | none | tokens all requests may use per window |
/// | `window_cost` | none | dollars all requests may spend per window |
/// | `price` / `default_price` | none | dollars per token by model, for cost caps when a response carries no cost |
/// | `output_estimate` | 1,024 | answer tokens assumed for a request without `max_tokens` |
///
/// A request is refused with `BudgetExhausted` (a `Fatal` error: no retry,
/// no fallback, no degradation) before any call when its estimate (prompt
/// estimate plus `max_tokens`) does not fit; during the request, retries
/// and fallbacks stop once another attempt would not fit the per-request
/// cap. Spend is recorded from the response's usage (failed attempts
/// included) or from the error's.
///
/// ```
/// use std::time::Duration;
/// use staunch::budget::BudgetConfig;
/// use staunch::core::Price;
///
/// let config = BudgetConfig::new()
///     .per_request_tokens(20_000)
///     .window(Duration::from_secs(3600))
///     .window_tokens(2_000_000)
///     .window_cost(25.0)
///     .price("gpt-4o", Price::per_million(2.5, 10.0))
///     .default_price(Price::per_million(3.0, 15.0));
/// # let _ = config;
/// ```
#[derive(Clone, Debug)]
pub struct BudgetConfig {
    pub(super) per_request_tokens: Option<u64>,
    pub(super) window: Duration,
    pub(super) window_tokens: Option<u64>,
    pub(super) window_cost: Option<f64>,
    pub(super) prices: HashMap<String, Price>,
    pub(super) default_price: Option<Price>,
    pub(super) output_estimate: u32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            per_request_tokens: None,
            window: Self::DEFAULT_WINDOW,
            window_tokens: None,
            window_cost: None,
            prices: HashMap::new(),
            default_price: None,
            output_estimate: 1_024,
        }
    }
}

/// A [`BudgetConfig`] that can't be enforced.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidBudget {
    /// The window must be at least a millisecond long.
    #[error("the budget window must be at least 1 ms, got {0:?}")]
    Window(Duration),
    /// The cost cap must be a finite, non-negative number of dollars.
    #[error("the cost cap must be a finite, non-negative number of dollars, got {0}")]
    Cost(f64),
    /// A cost cap needs a way to price answers.
    #[error("a cost cap needs prices: set `price` for the models used or a `default_price`")]
    NoPrices,
}

impl BudgetConfig {
    /// The default [`window`](Self::window): 60 s.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

    /// No caps, a 60 s window.
    pub fn new() -> Self {
        Self::default()
    }

    /// Caps the tokens of one logical request.
    pub fn per_request_tokens(mut self, tokens: u64) -> Self {
        self.per_request_tokens = Some(tokens);
        self
    }

    /// The rolling window for the window caps.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Caps the tokens of all requests per window.
    pub fn window_tokens(mut self, tokens: u64) -> Self {
        self.window_tokens = Some(tokens);
        self
    }

    /// Caps the dollars of all requests per window.
    pub fn window_cost(mut self, dollars: f64) -> Self {
        self.window_cost = Some(dollars);
        self
    }

    /// The price of `model`.
    pub fn price(mut self, model: impl Into<String>, price: Price) -> Self {
        self.prices.insert(model.into(), price);
        self
    }

    /// The price of models without their own.
    pub fn default_price(mut self, price: Price) -> Self {
        self.default_price = Some(price);
        self
    }

    /// Answer tokens assumed for requests without `max_tokens`.
    pub fn output_estimate(mut self, tokens: u32) -> Self {
        self.output_estimate = tokens;
        self
    }

    pub(super) fn validate(&self) -> Result<(), InvalidBudget> {
        if self.window < Duration::from_millis(1) {
            return Err(InvalidBudget::Window(self.window));
        }
        if let Some(cost) = self.window_cost {
            if !cost.is_finite() || cost < 0.0 {
                return Err(InvalidBudget::Cost(cost));
            }
            if self.prices.is_empty() && self.default_price.is_none() {
                return Err(InvalidBudget::NoPrices);
            }
        }
        Ok(())
    }

    pub(super) fn price_of(&self, model: &str) -> Option<Price> {
        self.prices.get(model).copied().or(self.default_price)
    }

    /// The usage one attempt of `request` is expected to need.
    pub(super) fn estimate(&self, request: &impl Call) -> Usage {
        Usage::new(
            request.estimated_input_tokens(),
            request
                .max_output_tokens()
                .unwrap_or(u64::from(self.output_estimate)),
        )
    }
}
