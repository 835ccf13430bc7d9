//! The balancing service.

use super::book::{Book, BookParts};
use super::config::BalanceConfig;
use super::deployment::{Deployment, DeploymentService};
use super::error::InvalidBalance;
use super::future::ResponseFuture;
use super::handle::BalanceHandle;
use staunch_core::{Call, ChatRequest, LlmError};
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Spreads the calls to one target over its [`Deployment`]s and routes
/// around the ones that are slow or out (see the [module](super)).
///
/// Clones share the deployments, their load and latency, and what is out.
pub struct Balance<C: Call = ChatRequest> {
    pub(super) shared: Arc<Shared<C>>,
}

/// What every call reads: the book and the services.
pub(super) struct Shared<C: Call> {
    pub(super) book: Arc<Book>,
    pub(super) services: Box<[DeploymentService<C>]>,
    pub(super) models: Box<[Option<Arc<str>>]>,
}

impl<C: Call> Clone for Balance<C> {
    fn clone(&self) -> Self {
        Balance {
            shared: self.shared.clone(),
        }
    }
}

impl<C: Call> Balance<C> {
    /// A balancer over `deployments` (1 to 64, of distinct names and
    /// weights of at least 1).
    pub fn new(
        config: BalanceConfig,
        deployments: impl IntoIterator<Item = Deployment<C>>,
    ) -> Result<Self, InvalidBalance> {
        let deployments: Vec<Deployment<C>> = deployments.into_iter().collect();
        if deployments.is_empty() {
            return Err(InvalidBalance::Empty);
        }
        if deployments.len() > 64 {
            return Err(InvalidBalance::TooMany(deployments.len()));
        }
        if config.latency_decay.is_zero() {
            return Err(InvalidBalance::ZeroDecay);
        }
        for (i, d) in deployments.iter().enumerate() {
            if d.weight == 0 {
                return Err(InvalidBalance::ZeroWeight(d.name.to_string()));
            }
            if deployments[..i].iter().any(|e| e.name == d.name) {
                return Err(InvalidBalance::DuplicateName(d.name.to_string()));
            }
        }
        let seed = config
            .seed
            .unwrap_or_else(|| RandomState::new().hash_one(0x5eed_u64));
        let book = Book::new(BookParts {
            name: Arc::from(config.name),
            names: deployments.iter().map(|d| d.name.clone()).collect(),
            weights: deployments.iter().map(|d| d.weight).collect(),
            health: deployments.iter().map(|d| d.health.clone()).collect(),
            headroom: deployments.iter().map(|d| d.headroom.clone()).collect(),
            strategy: config.strategy,
            eject_for: config.eject_for,
            decay: config.latency_decay,
            default_rtt: config.default_latency,
            seed,
        });
        Ok(Balance {
            shared: Arc::new(Shared {
                book: Arc::new(book),
                models: deployments.iter().map(|d| d.model.clone()).collect(),
                services: deployments.into_iter().map(|d| d.service).collect(),
            }),
        })
    }

    /// A handle on the balancer: which deployments are out, their load;
    /// take one out or put it back.
    pub fn handle(&self) -> BalanceHandle {
        BalanceHandle {
            book: self.shared.book.clone(),
        }
    }

    /// The balancer's name.
    pub fn name(&self) -> &str {
        &self.shared.book.name
    }

    /// The index of the deployment the next call would go to (for tests
    /// and benchmarks of the pick alone).
    #[doc(hidden)]
    pub fn pick_for(&self, call: &C) -> Option<usize> {
        self.shared
            .book
            .pick(0, || super::future::tokens_per_call(call))
    }
}

impl<C: Call> fmt::Debug for Balance<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balance")
            .field("name", &self.shared.book.name)
            .field("deployments", &self.shared.book.names)
            .field("strategy", &self.shared.book.strategy)
            .finish_non_exhaustive()
    }
}

impl<C: Call> Service<C> for Balance<C> {
    type Response = C::Answer;
    type Error = LlmError;
    type Future = ResponseFuture<C>;

    /// Always ready: the picked deployment is driven to readiness by the
    /// call.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: C) -> ResponseFuture<C> {
        // Every deployment's answer is timed from here.
        request.start_clock();
        ResponseFuture::new(self.shared.clone(), request)
    }
}
