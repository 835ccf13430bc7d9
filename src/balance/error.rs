//! The balancer's errors: a set of deployments that can't be balanced,
//! and a call no deployment may take.

use super::book::OutReason;
use staunch_core::ErrorKind;
use std::fmt;

/// A balancer that cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidBalance {
    /// No deployment at all.
    #[error("a balancer needs at least one deployment")]
    Empty,
    /// More than 64 deployments (a pick keeps one bit per deployment).
    #[error("a balancer takes at most 64 deployments, got {0}")]
    TooMany(usize),
    /// A deployment of weight 0: it would never be picked.
    #[error("deployment {0} has weight 0; weights start at 1")]
    ZeroWeight(String),
    /// Two deployments of one name: meta, metrics and the handle could not
    /// tell them apart.
    #[error("two deployments are called {0}")]
    DuplicateName(String),
    /// A latency decay of zero.
    #[error("the latency decay must be longer than zero")]
    ZeroDecay,
}

/// What became of one deployment during a call that none could answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeploymentOutcome {
    /// It was called and failed with this kind.
    Failed(ErrorKind),
    /// It was not called: it was out.
    Out(OutReason),
}

impl fmt::Display for DeploymentOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeploymentOutcome::Failed(kind) => write!(f, "failed: {kind}"),
            DeploymentOutcome::Out(why) => why.fmt(f),
        }
    }
}

/// Every deployment of a balancer failed or is out: the source of the
/// error a [`Balance`](super::Balance) fails with when no deployment was
/// called at all, and the list its message ends with when some were.
///
/// Find it in an error with [`AllDeploymentsOut::of`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct AllDeploymentsOut {
    /// The balancer's name.
    pub balance: String,
    /// Each deployment and what became of it, in the balancer's order.
    pub deployments: Vec<(String, DeploymentOutcome)>,
}

impl AllDeploymentsOut {
    /// The account in `error`'s sources, if a balancer failed it for want
    /// of a deployment.
    pub fn of(error: &staunch_core::LlmError) -> Option<&AllDeploymentsOut> {
        let mut source = std::error::Error::source(error);
        while let Some(s) = source {
            if let Some(out) = s.downcast_ref::<AllDeploymentsOut>() {
                return Some(out);
            }
            source = s.source();
        }
        None
    }
}

impl fmt::Display for AllDeploymentsOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "every deployment of {} is out: ", self.balance)?;
        for (n, (name, outcome)) in self.deployments.iter().enumerate() {
            if n > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name} ({outcome})")?;
        }
        Ok(())
    }
}
