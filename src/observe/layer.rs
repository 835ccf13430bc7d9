//! The instrumentation layer.

use super::Instrument;
use tower_layer::Layer;

/// Applies [`Instrument`]: one tracing span and one set of metrics per
/// logical request. Put it outermost.
#[derive(Clone, Copy, Debug, Default)]
pub struct InstrumentLayer {
    _private: (),
}

impl InstrumentLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for InstrumentLayer {
    type Service = Instrument<S>;

    fn layer(&self, inner: S) -> Instrument<S> {
        Instrument { inner }
    }
}
