//! The coalescing layer.

use super::Coalesce;
use super::service::InFlight;
use staunch_core::ChatRequest;
use std::fmt;
use std::sync::Arc;
use tower_layer::Layer;

type ChatRule = dyn Fn(&ChatRequest) -> bool + Send + Sync;

/// Shares one upstream call among identical calls in flight at once
/// ([`Coalesce`]; see the [module](super)). Services built by one layer
/// share its table of calls in flight.
#[derive(Clone)]
pub struct CoalesceLayer {
    pub(super) chat_when: Option<Arc<ChatRule>>,
    pub(super) in_flight: Arc<InFlight>,
}

impl CoalesceLayer {
    /// Embeddings are shared; chat completions are not until
    /// [`chat_when`](Self::chat_when) says which may be.
    pub fn new() -> Self {
        CoalesceLayer {
            chat_when: None,
            in_flight: Arc::default(),
        }
    }

    /// Shares the chat completions `rule` accepts, e.g. those asked at
    /// temperature 0, whose identical prompts should get identical answers:
    ///
    /// ```
    /// use staunch::coalesce::CoalesceLayer;
    /// let layer = CoalesceLayer::new().chat_when(|r| r.temperature == Some(0.0));
    /// # let _ = layer;
    /// ```
    pub fn chat_when(
        mut self,
        rule: impl Fn(&ChatRequest) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.chat_when = Some(Arc::new(rule));
        self
    }

    /// How many distinct calls are in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

impl Default for CoalesceLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CoalesceLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoalesceLayer")
            .field("chat_when", &self.chat_when.as_ref().map(|_| "set"))
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

impl<S> Layer<S> for CoalesceLayer {
    type Service = Coalesce<S>;

    fn layer(&self, inner: S) -> Coalesce<S> {
        Coalesce {
            inner,
            layer: self.clone(),
        }
    }
}
