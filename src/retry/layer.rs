//! The retry layer.

use super::{Retry, RetryConfig};
use std::sync::Arc;
use tower_layer::Layer;

/// Applies [`Retry`] to a service. Cheap to clone; every service it builds
/// shares its configuration and retry budget.
#[derive(Clone, Debug, Default)]
pub struct RetryLayer {
    config: Arc<RetryConfig>,
}

impl RetryLayer {
    /// A layer that retries as `config` says.
    pub fn new(config: RetryConfig) -> Self {
        RetryLayer {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry::new(inner, RetryConfig::clone(&self.config))
    }
}
