//! The budget layer and its handle.

use super::Budget;
use super::config::{BudgetConfig, InvalidBudget};
use super::window::{Tick, Window, ticks};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;
use tower_layer::Layer;

pub(crate) struct Shared {
    pub(crate) config: BudgetConfig,
    pub(crate) clock: Clock,
    window: Mutex<Window>,
}

/// The budget's clock: the instant its window's times count from.
pub(crate) struct Clock {
    base: Instant,
}

impl Clock {
    /// `at` as a time in the window (negative for an instant before the
    /// budget was built: a request whose clock a layer started earlier).
    pub(crate) fn tick(&self, at: Instant) -> Tick {
        match at.checked_duration_since(self.base) {
            Some(after) => ticks(after),
            None => ticks(self.base.saturating_duration_since(at)).saturating_neg(),
        }
    }

    pub(crate) fn now(&self) -> Tick {
        self.tick(Instant::now())
    }
}

impl Shared {
    /// The window, expired up to now. A poisoned lock still holds valid
    /// counts (every update is a single assignment), so it is used as is.
    pub(crate) fn window(&self) -> MutexGuard<'_, Window> {
        self.window_at(self.clock.now())
    }

    /// The window, expired up to `now` (a time the caller already read).
    pub(crate) fn window_at(&self, now: Tick) -> MutexGuard<'_, Window> {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        window.expire(now);
        window
    }
}

/// Applies [`Budget`]. Every service it builds shares one rolling window.
#[derive(Clone)]
pub struct BudgetLayer {
    shared: Arc<Shared>,
}

impl BudgetLayer {
    /// A layer enforcing `config`, or why it can't be enforced.
    pub fn new(config: BudgetConfig) -> Result<Self, InvalidBudget> {
        config.validate()?;
        let window = Mutex::new(Window::new(config.window));
        Ok(BudgetLayer {
            shared: Arc::new(Shared {
                config,
                clock: Clock {
                    base: Instant::now(),
                },
                window,
            }),
        })
    }

    /// A handle on the shared window's spend.
    pub fn handle(&self) -> BudgetHandle {
        BudgetHandle {
            shared: self.shared.clone(),
        }
    }
}

impl std::fmt::Debug for BudgetLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetLayer")
            .field("config", &self.shared.config)
            .finish()
    }
}

impl<S> Layer<S> for BudgetLayer {
    type Service = Budget<S>;

    fn layer(&self, inner: S) -> Budget<S> {
        Budget {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Reads what the requests of one [`BudgetLayer`] spent in the current
/// window.
#[derive(Clone)]
pub struct BudgetHandle {
    shared: Arc<Shared>,
}

impl BudgetHandle {
    /// Tokens recorded in the window.
    pub fn window_tokens(&self) -> u64 {
        self.shared.window().used().0
    }

    /// Dollars recorded in the window.
    pub fn window_cost(&self) -> f64 {
        self.shared.window().used().1
    }

    /// Tokens reserved by requests in flight.
    pub fn reserved_tokens(&self) -> u64 {
        self.shared.window().reserved_tokens
    }
}

impl std::fmt::Debug for BudgetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetHandle").finish_non_exhaustive()
    }
}
