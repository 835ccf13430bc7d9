//! The instrumentation layer.

use super::Instrument;
use tower_layer::Layer;

/// Applies [`Instrument`]: one tracing span and one set of metrics per
/// logical request. Put it outermost.
#[derive(Clone, Copy, Debug)]
pub struct InstrumentLayer {
    span_outcome: bool,
}

impl Default for InstrumentLayer {
    fn default() -> Self {
        InstrumentLayer { span_outcome: true }
    }
}

impl InstrumentLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the `llm.request` span gets the request's outcome fields
    /// (`outcome`, `tier`, `attempts`, the GenAI response and usage
    /// attributes, about twenty in all) when the request ends: `true` by
    /// default.
    ///
    /// They are recorded just before the span closes, so only what reads
    /// whole spans sees them: a span exporter such as OpenTelemetry's, or
    /// a subscriber that logs span closings. A subscriber that only writes
    /// events (a log, events printed with their spans' fields) never shows
    /// them, yet pays to record them for every request: with no span
    /// exporter installed, `false` saves that work. The span itself, its
    /// request fields and every metric stay as they are.
    ///
    /// ```
    /// use staunch::observe::InstrumentLayer;
    ///
    /// // The process exports no spans: its log shows events only.
    /// let layer = InstrumentLayer::new().span_outcome(false);
    /// # let _ = layer;
    /// ```
    pub fn span_outcome(mut self, record: bool) -> Self {
        self.span_outcome = record;
        self
    }
}

impl<S> Layer<S> for InstrumentLayer {
    type Service = Instrument<S>;

    fn layer(&self, inner: S) -> Instrument<S> {
        Instrument {
            inner,
            span_outcome: self.span_outcome,
        }
    }
}
