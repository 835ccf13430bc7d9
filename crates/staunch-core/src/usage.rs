//! Token usage and prices.

use serde::{Deserialize, Serialize};
use std::ops::{Add, AddAssign};

/// Tokens billed by a provider for one or more calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Prompt (input) tokens, cached ones included.
    pub input_tokens: u64,
    /// Completion (output) tokens, reasoning ones included.
    pub output_tokens: u64,
    /// Of the input tokens, those read from the provider's prompt cache
    /// (OpenAI's `cached_tokens`, Anthropic's `cache_read_input_tokens`),
    /// where reported.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_input_tokens: u64,
    /// Of the output tokens, those spent reasoning (OpenAI's
    /// `reasoning_tokens`), where reported.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    /// Usage of `input_tokens` prompt tokens and `output_tokens` completion tokens.
    pub const fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Usage {
            input_tokens,
            output_tokens,
            cached_input_tokens: 0,
            reasoning_tokens: 0,
        }
    }

    /// Sets the cached input tokens.
    pub const fn with_cached_input(mut self, tokens: u64) -> Self {
        self.cached_input_tokens = tokens;
        self
    }

    /// Sets the reasoning tokens.
    pub const fn with_reasoning(mut self, tokens: u64) -> Self {
        self.reasoning_tokens = tokens;
        self
    }

    /// Input plus output tokens (saturating).
    pub const fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// True when no token was billed.
    pub const fn is_zero(&self) -> bool {
        self.input_tokens == 0 && self.output_tokens == 0
    }
}

impl Add for Usage {
    type Output = Usage;
    fn add(self, rhs: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.saturating_add(rhs.input_tokens),
            output_tokens: self.output_tokens.saturating_add(rhs.output_tokens),
            cached_input_tokens: self
                .cached_input_tokens
                .saturating_add(rhs.cached_input_tokens),
            reasoning_tokens: self.reasoning_tokens.saturating_add(rhs.reasoning_tokens),
        }
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, rhs: Usage) {
        *self = *self + rhs;
    }
}

/// A model's price, in US dollars per token, kept per million tokens.
///
/// ```
/// use staunch_core::{Price, Usage};
/// let price = Price::per_1k(0.0025, 0.01);
/// let cost = price.cost(&Usage::new(2_000, 500));
/// assert!((cost - 0.01).abs() < 1e-12);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Price {
    input_per_million: f64,
    output_per_million: f64,
}

impl Price {
    /// A price given in dollars per 1,000 input and output tokens.
    pub fn per_1k(input: f64, output: f64) -> Self {
        Self::per_million(input * 1_000.0, output * 1_000.0)
    }

    /// A price given in dollars per million input and output tokens, the
    /// unit the providers' price lists use. Negative or non-finite prices are
    /// treated as zero.
    pub fn per_million(input: f64, output: f64) -> Self {
        let clean = |p: f64| if p.is_finite() && p > 0.0 { p } else { 0.0 };
        Price {
            input_per_million: clean(input),
            output_per_million: clean(output),
        }
    }

    /// Dollars per million input tokens.
    pub fn input_per_million(&self) -> f64 {
        self.input_per_million
    }

    /// Dollars per million output tokens.
    pub fn output_per_million(&self) -> f64 {
        self.output_per_million
    }

    /// The cost in dollars of `usage` at this price.
    pub fn cost(&self, usage: &Usage) -> f64 {
        (usage.input_tokens as f64 * self.input_per_million
            + usage.output_tokens as f64 * self.output_per_million)
            / 1_000_000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_adds_and_saturates() {
        let mut u = Usage::new(1, 2);
        u += Usage::new(10, 20);
        assert_eq!(u, Usage::new(11, 22));
        assert_eq!(u.total(), 33);
        assert_eq!(
            (Usage::new(u64::MAX, 0) + Usage::new(1, 0)).input_tokens,
            u64::MAX
        );
        assert!(Usage::default().is_zero());
    }

    #[test]
    fn price_rejects_nonsense() {
        let p = Price::per_million(f64::NAN, -3.0);
        assert_eq!(p.cost(&Usage::new(1_000_000, 1_000_000)), 0.0);
        assert_eq!(
            Price::per_million(3.0, 15.0).cost(&Usage::new(1_000_000, 0)),
            3.0
        );
    }
}
