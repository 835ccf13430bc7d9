//! The instrumentation layer.

use super::Instrument;
use tower_layer::Layer;

/// Applies [`Instrument`]: one tracing span and one set of metrics per
/// logical request. Put it outermost.
#[derive(Clone, Copy, Debug)]
pub struct InstrumentLayer {
    spans: bool,
    span_outcome: bool,
}

impl Default for InstrumentLayer {
    fn default() -> Self {
        InstrumentLayer {
            spans: true,
            span_outcome: true,
        }
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

    /// Whether each request gets its `llm.request` span: `true` by
    /// default. With `false` the layer records the metrics alone.
    ///
    /// The span is what a trace of the request is made of, and what the
    /// lines of events logged during the call are nested in (with the
    /// span's request fields: the operation and the model). A process
    /// that exports no spans and whose log already names each request (an
    /// HTTP server's request span with its id, say) can turn it off: the
    /// span then costs nothing, where a subscriber that records spans
    /// otherwise creates, enters and closes one for every request.
    ///
    /// ```
    /// use staunch::observe::InstrumentLayer;
    ///
    /// // Metrics only: no span for any request.
    /// let layer = InstrumentLayer::new().spans(false);
    /// # let _ = layer;
    /// ```
    pub fn spans(mut self, on: bool) -> Self {
        self.spans = on;
        self
    }
}

impl<S> Layer<S> for InstrumentLayer {
    type Service = Instrument<S>;

    fn layer(&self, inner: S) -> Instrument<S> {
        Instrument {
            inner,
            spans: self.spans,
            span_outcome: self.span_outcome,
        }
    }
}
