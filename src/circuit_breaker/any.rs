//! A circuit breaker around any service: one breaker per external
//! dependency of an agent, LLM or not (a web search, a database, a payment
//! API), with the service's own error type sorted into the three classes.

use super::Outcome;
use super::future::Permit;
use super::handle::CircuitBreakerHandle;
use super::state::Admission;
use pin_project_lite::pin_project;
use staunch_core::ErrorClass;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// The error of an [`AnyCircuitBreaker`]: the circuit refused the call, or
/// the service failed with its own error.
#[derive(Debug)]
#[non_exhaustive]
pub enum BreakerError<E> {
    /// The circuit is open (or half-open with its probes taken): the
    /// service was not called.
    Open {
        /// The breaker's name.
        breaker: Arc<str>,
        /// The time until a call may go through again, when known.
        retry_after: Option<Duration>,
    },
    /// The service's own error.
    Inner(E),
}

impl<E> BreakerError<E> {
    /// The service's own error, if that is what this is.
    pub fn into_inner(self) -> Option<E> {
        match self {
            BreakerError::Inner(e) => Some(e),
            BreakerError::Open { .. } => None,
        }
    }

    /// True when the circuit refused the call.
    pub fn is_open(&self) -> bool {
        matches!(self, BreakerError::Open { .. })
    }
}

impl<E: fmt::Display> fmt::Display for BreakerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerError::Open {
                breaker,
                retry_after: Some(wait),
            } => write!(f, "circuit {breaker} is open; retry after {wait:?}"),
            BreakerError::Open { breaker, .. } => write!(f, "circuit {breaker} is open"),
            BreakerError::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: StdError + 'static> StdError for BreakerError<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            BreakerError::Inner(e) => Some(e),
            BreakerError::Open { .. } => None,
        }
    }
}

/// Applies [`AnyCircuitBreaker`]: built from a [`CircuitBreakerLayer`](super::CircuitBreakerLayer)
/// with [`for_any`](super::CircuitBreakerLayer::for_any), it shares that
/// layer's circuit and handle.
#[derive(Clone, Debug)]
pub struct AnyCircuitBreakerLayer<C> {
    pub(super) handle: CircuitBreakerHandle,
    pub(super) classify: Arc<C>,
}

impl<S, C> Layer<S> for AnyCircuitBreakerLayer<C> {
    type Service = AnyCircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AnyCircuitBreaker {
            inner,
            handle: self.handle.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// A circuit breaker around any `Service<Req>`: the same state machine,
/// configuration and handle as the LLM breaker, with outcomes decided by a
/// classifier of the service's errors: `Fatal` (the caller's own mistake)
/// is ignored, `Transient` and `Unavailable` count as failures, answers as
/// successes.
///
/// ```
/// use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
/// use staunch::core::ErrorClass;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// #[derive(Debug)]
/// struct DbDown;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let breaker = CircuitBreakerLayer::new(CircuitBreakerConfig::new("orders-db").consecutive_failures(Some(2)))
///     .expect("valid config");
/// let handle = breaker.handle();
/// let db = breaker
///     .for_any(|_: &DbDown| ErrorClass::Transient)
///     .layer(service_fn(|_: u64| async { Err::<String, _>(DbDown) }));
/// for order in [1, 2] {
///     assert!(!db.clone().oneshot(order).await.unwrap_err().is_open());
/// }
/// assert_eq!(handle.state(), CircuitState::Open);
/// assert!(db.clone().oneshot(3).await.unwrap_err().is_open());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct AnyCircuitBreaker<S, C> {
    inner: S,
    handle: CircuitBreakerHandle,
    classify: Arc<C>,
}

impl<S, C> AnyCircuitBreaker<S, C> {
    /// The handle of this service's circuit.
    pub fn handle(&self) -> CircuitBreakerHandle {
        self.handle.clone()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for AnyCircuitBreaker<S, C>
where
    S: Service<Req>,
    C: Fn(&S::Error) -> ErrorClass,
{
    type Response = S::Response;
    type Error = BreakerError<S::Error>;
    type Future = AnyFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(BreakerError::Inner)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let breaker = &self.handle.breaker;
        let mut permit = Permit::new(breaker, breaker.acquire());
        if let Admission::Rejected { wait, .. } = permit.admission() {
            permit.discard();
            return AnyFuture {
                inner: None,
                permit: None,
                classify: self.classify.clone(),
                refused: Some(BreakerError::Open {
                    breaker: breaker.config.name.clone(),
                    retry_after: wait,
                }),
            };
        }
        permit.start();
        AnyFuture {
            inner: Some(self.inner.call(request)),
            permit: Some(permit),
            classify: self.classify.clone(),
            refused: None,
        }
    }
}

pin_project! {
    /// The response future of [`AnyCircuitBreaker`]. Dropped before it ends,
    /// it gives back a probe slot and counts the call as ignored.
    pub struct AnyFuture<F, C> {
        #[pin]
        inner: Option<F>,
        permit: Option<Permit>,
        classify: Arc<C>,
        refused: Option<BreakerError<()>>,
    }
}

impl<F, C, T, E> Future for AnyFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Fn(&E) -> ErrorClass,
{
    type Output = Result<T, BreakerError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            let (breaker, retry_after) = match this.refused.take() {
                Some(BreakerError::Open {
                    breaker,
                    retry_after,
                }) => (breaker, retry_after),
                _ => (Arc::from("unknown"), None),
            };
            return Poll::Ready(Err(BreakerError::Open {
                breaker,
                retry_after,
            }));
        };
        let result = ready!(inner.poll(cx));
        if let Some(mut permit) = this.permit.take() {
            let outcome = match &result {
                Ok(_) => Outcome::Success,
                Err(e) if (this.classify)(e) == ErrorClass::Fatal => Outcome::Ignored,
                Err(_) => Outcome::Failure,
            };
            permit.record(outcome);
        }
        Poll::Ready(result.map_err(BreakerError::Inner))
    }
}
