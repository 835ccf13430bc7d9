//! The validate layer.

use super::{Validate, ValidateConfig};
use std::sync::Arc;
use tower_layer::Layer;

/// Applies [`Validate`] to a service. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ValidateLayer {
    config: Arc<ValidateConfig>,
}

impl ValidateLayer {
    /// A layer that checks answers as `config` says.
    pub fn new(config: ValidateConfig) -> Self {
        ValidateLayer {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for ValidateLayer {
    type Service = Validate<S>;

    fn layer(&self, inner: S) -> Validate<S> {
        Validate::from_shared(inner, self.config.clone())
    }
}
