//! The degradation layer.

use super::cache::AnswerCache;
use super::{Degrade, DegradeConfig};
use std::sync::Arc;
use tower_layer::Layer;

/// Applies [`Degrade`]. Every service it builds shares one answer cache.
#[derive(Clone, Debug)]
pub struct DegradeLayer {
    pub(super) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) config: DegradeConfig,
    pub(crate) cache: Option<AnswerCache>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.config.fmt(f)
    }
}

impl DegradeLayer {
    /// A layer that degrades as `config` says.
    pub fn new(config: DegradeConfig) -> Self {
        let cache = config
            .cache
            .map(|(ttl, capacity)| AnswerCache::new(ttl, capacity));
        DegradeLayer {
            shared: Arc::new(Shared { config, cache }),
        }
    }
}

impl Default for DegradeLayer {
    fn default() -> Self {
        Self::new(DegradeConfig::default())
    }
}

impl<S> Layer<S> for DegradeLayer {
    type Service = Degrade<S>;

    fn layer(&self, inner: S) -> Degrade<S> {
        Degrade {
            inner,
            shared: self.shared.clone(),
        }
    }
}
