//! How a balancer picks, and how long it keeps a deployment out.

use std::time::Duration;

/// How a [`Balance`](super::Balance) picks the deployment for a call.
/// Whatever the strategy, a deployment that is out (taken out after a
/// 401/403, its circuit open, its quota without room) is never picked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Strategy {
    /// A random deployment, each with a chance proportional to its weight.
    WeightedRandom,
    /// The deployment with the fewest calls in flight per unit of weight
    /// (ties broken at random).
    LeastInFlight,
    /// The default: two deployments drawn by weight, and of the two the
    /// one whose peak-EWMA latency times its calls in flight plus one is
    /// lower (Finagle's and linkerd's "power of two choices", as
    /// `tower::balance::p2c` with `tower::load::PeakEwma`). A stream's
    /// latency is its time to first token, when its call resolves.
    #[default]
    PowerOfTwoChoices,
    /// The deployment with the most room in its quota: the most calls of
    /// this call's size that its remaining requests and tokens still fit
    /// (a deployment without a headroom source counts as unlimited; ties
    /// broken at random).
    Headroom,
}

impl Strategy {
    /// The name, as the gateway's configuration spells it: `weighted`,
    /// `least-busy`, `p2c`, `headroom`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Strategy::WeightedRandom => "weighted",
            Strategy::LeastInFlight => "least-busy",
            Strategy::PowerOfTwoChoices => "p2c",
            Strategy::Headroom => "headroom",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = UnknownStrategy;

    /// Parses the names of [`as_str`](Strategy::as_str).
    fn from_str(s: &str) -> Result<Self, UnknownStrategy> {
        match s {
            "weighted" => Ok(Strategy::WeightedRandom),
            "least-busy" => Ok(Strategy::LeastInFlight),
            "p2c" => Ok(Strategy::PowerOfTwoChoices),
            "headroom" => Ok(Strategy::Headroom),
            other => Err(UnknownStrategy(other.to_owned())),
        }
    }
}

/// A strategy name that is none of `weighted`, `least-busy`, `p2c`,
/// `headroom`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown balance strategy {0:?}: expected weighted, least-busy, p2c or headroom")]
pub struct UnknownStrategy(pub String);

/// The settings of a [`Balance`](super::Balance).
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `name` | `"balance"` | names the balancer in errors, events and metrics (the target's name, say) |
/// | `strategy` | [`Strategy::PowerOfTwoChoices`] | how a deployment is picked |
/// | `eject_for` | 10 min | how long a deployment stays out after a 401, 403 or `insufficient_quota` |
/// | `latency_decay` | 10 s | how fast the latency estimate forgets (peak-EWMA's time constant) |
/// | `default_latency` | 1 s | the estimate of a deployment not yet measured |
/// | `seed` | random | the picks' random sequence, for reproducible tests |
///
/// ```
/// use std::time::Duration;
/// use staunch::balance::{BalanceConfig, Strategy};
/// let config = BalanceConfig::new("gpt-4o")
///     .strategy(Strategy::LeastInFlight)
///     .eject_for(Duration::from_secs(300))
///     .seed(7);
/// # let _ = config;
/// ```
#[derive(Clone, Debug)]
pub struct BalanceConfig {
    pub(super) name: String,
    pub(super) strategy: Strategy,
    pub(super) eject_for: Duration,
    pub(super) latency_decay: Duration,
    pub(super) default_latency: Duration,
    pub(super) seed: Option<u64>,
}

impl BalanceConfig {
    /// The defaults, for a balancer called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        BalanceConfig {
            name: name.into(),
            strategy: Strategy::default(),
            eject_for: Duration::from_secs(600),
            latency_decay: Duration::from_secs(10),
            default_latency: Duration::from_secs(1),
            seed: None,
        }
    }

    /// How a deployment is picked.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// How long a deployment stays out after a 401, 403 or
    /// `insufficient_quota` (its key is wrong or its account can't pay;
    /// waiting rarely fixes that, but a rotated key or a topped-up account
    /// comes back without a restart). The
    /// [`BalanceHandle`](super::BalanceHandle) puts it back sooner.
    pub fn eject_for(mut self, duration: Duration) -> Self {
        self.eject_for = duration;
        self
    }

    /// The time constant of the peak-EWMA latency estimate: an answer's
    /// latency weighs `1 - e^(-elapsed/decay)` against the estimate, and an
    /// idle deployment's estimate falls by `e` every `decay`.
    pub fn latency_decay(mut self, decay: Duration) -> Self {
        self.latency_decay = decay;
        self
    }

    /// The latency a deployment is assumed to have before its first answer.
    pub fn default_latency(mut self, latency: Duration) -> Self {
        self.default_latency = latency;
        self
    }

    /// Seeds the picks' random sequence (the same seed and the same calls
    /// make the same picks).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig::new("balance")
    }
}
