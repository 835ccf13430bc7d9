//! The circuit breaker layer.

use super::config::{CircuitBreakerConfig, InvalidCircuitBreaker};
use super::handle::CircuitBreakerHandle;
use super::service::CircuitBreaker;
use super::state::Breaker;
use std::sync::Arc;
use tower_layer::Layer;

/// Applies [`CircuitBreaker`]. Every service it builds shares one circuit:
/// apply one layer per target.
#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer {
    handle: CircuitBreakerHandle,
}

impl CircuitBreakerLayer {
    /// A breaker configured by `config`, or why the configuration can't work.
    pub fn new(config: CircuitBreakerConfig) -> Result<Self, InvalidCircuitBreaker> {
        config.validate()?;
        Ok(CircuitBreakerLayer {
            handle: CircuitBreakerHandle {
                breaker: Arc::new(Breaker::new(config)),
            },
        })
    }

    /// The same circuit around any service, LLM or not: `classify` sorts the
    /// service's errors into classes (`Fatal` ones are ignored, the others
    /// count as failures). See [`AnyCircuitBreaker`](super::AnyCircuitBreaker).
    pub fn for_any<C>(&self, classify: C) -> super::AnyCircuitBreakerLayer<C> {
        super::AnyCircuitBreakerLayer {
            handle: self.handle.clone(),
            classify: Arc::new(classify),
        }
    }

    /// The handle of the circuit this layer's services share.
    pub fn handle(&self) -> CircuitBreakerHandle {
        self.handle.clone()
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> CircuitBreaker<S> {
        CircuitBreaker::from_handle(self.handle.clone(), inner)
    }
}
