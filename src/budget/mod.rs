//! Token and cost budgets: refuse what would overspend, before spending it.
//!
//! [`BudgetLayer`] caps the tokens of one logical request (across every
//! retry and fallback) and the tokens and dollars of all requests in a
//! rolling window. A request whose estimate does not fit is refused with
//! [`ErrorKind::BudgetExhausted`](staunch_core::ErrorKind) before any call;
//! in-flight requests reserve their estimate so concurrent requests can't
//! overshoot together, and settle with their real usage when they finish.
//! A request dropped mid-flight releases its reservation.
//!
//! ```
//! use staunch::budget::{BudgetConfig, BudgetLayer};
//! use staunch::core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message, Usage};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let provider = service_fn(|r: ChatRequest| async move {
//!     Ok::<_, LlmError>(ChatResponse::new(&r.model, "ok").with_usage(Usage::new(900, 100)))
//! });
//! let layer = BudgetLayer::new(BudgetConfig::new().window_tokens(1_100)).expect("valid");
//! let service = layer.layer(provider);
//! let ask = || ChatRequest::new("gpt-4o", vec![Message::user("hi")]).with_max_tokens(100);
//!
//! service.clone().oneshot(ask()).await.unwrap();
//! assert_eq!(layer.handle().window_tokens(), 1_000);
//! // 1,000 used + about 106 for the next one (prompt estimate + max_tokens) > 1,100.
//! let refused = service.oneshot(ask()).await.unwrap_err();
//! assert_eq!(refused.kind, ErrorKind::BudgetExhausted);
//! # }
//! ```

mod config;
mod future;
mod layer;
mod service;
#[cfg(test)]
mod tests;
mod window;

pub use config::{BudgetConfig, InvalidBudget};
pub use future::ResponseFuture;
pub use layer::{BudgetHandle, BudgetLayer};
pub use service::Budget;
pub use staunch_core::Allowance;
