//! The hedging layer.

use super::config::{HedgeAfter, HedgeConfig, InvalidHedge};
use super::latency::LatencyWindow;
use super::service::Hedge;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// What every call of the services one layer built reads and writes: the
/// latencies seen and the budget.
pub(super) struct Shared {
    pub(super) config: HedgeConfig,
    pub(super) latency: LatencyWindow,
}

impl Shared {
    /// How long a call may run before it is hedged, if it may be.
    #[inline]
    pub(super) fn delay(&self) -> Option<Duration> {
        match self.config.after {
            HedgeAfter::Fixed(delay) => Some(delay),
            HedgeAfter::Quantile(_) => self.latency.quantile(),
        }
    }
}

/// Wraps a service in [`Hedge`] (see the [module](super)). Services built
/// by one layer share its latencies and its budget.
#[derive(Clone)]
pub struct HedgeLayer {
    pub(super) shared: Arc<Shared>,
}

impl HedgeLayer {
    /// A layer with `config`.
    pub fn new(config: HedgeConfig) -> Result<Self, InvalidHedge> {
        let quantile = match config.after {
            HedgeAfter::Quantile(q) if !(q > 0.0 && q <= 1.0) => {
                return Err(InvalidHedge::Quantile(q));
            }
            HedgeAfter::Quantile(q) => q,
            HedgeAfter::Fixed(_) => 0.95,
        };
        if config.window.is_zero() {
            return Err(InvalidHedge::Period);
        }
        Ok(HedgeLayer {
            shared: Arc::new(Shared {
                latency: LatencyWindow::new(config.window, quantile, config.min_samples),
                config,
            }),
        })
    }

    /// How long a call may run now before it is hedged: the fixed delay,
    /// or the quantile of the latencies seen (`None` while too few have
    /// been seen).
    pub fn current_delay(&self) -> Option<Duration> {
        self.shared.delay()
    }
}

impl fmt::Debug for HedgeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeLayer")
            .field("config", &self.shared.config)
            .field("current_delay", &self.current_delay())
            .finish()
    }
}

impl<S> Layer<S> for HedgeLayer {
    type Service = Hedge<S>;

    fn layer(&self, inner: S) -> Hedge<S> {
        Hedge {
            inner,
            shared: self.shared.clone(),
        }
    }
}
