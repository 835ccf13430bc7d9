//! Retry around any service, not only LLM calls: an agent's web search, its
//! database, a payment API — anything a tower service wraps, with the error
//! classified into the same three classes.

use super::RetryConfig;
use staunch_core::ErrorClass;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Sleep;

/// A [`tower::retry::Policy`] for any `Service<Req>` whose errors `classify`
/// sorts into [`ErrorClass`]es: only `Transient` errors are retried, with the
/// backoff, jitter, `max_retries` and retry budget of a [`RetryConfig`]
/// (its `classify` and `max_retry_after` are for LLM errors and unused here).
///
/// Build the service with tower's `Retry` (or [`AnyRetryPolicy::layer`]):
///
/// ```
/// use std::time::Duration;
/// use staunch::core::ErrorClass;
/// use staunch::retry::{AnyRetryPolicy, NoJitter, RetryConfig};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// #[derive(Debug)]
/// enum SearchError { Busy, BadQuery }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
/// let search = {
///     let calls = calls.clone();
///     service_fn(move |query: String| {
///         let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
///         async move { if n == 0 { Err(SearchError::Busy) } else { Ok(format!("results for {query}")) } }
///     })
/// };
/// let policy = AnyRetryPolicy::new(RetryConfig::new().jitter(NoJitter), |e: &SearchError| match e {
///     SearchError::Busy => ErrorClass::Transient,
///     SearchError::BadQuery => ErrorClass::Fatal,
/// });
/// let search = ServiceBuilder::new().layer(policy.layer()).service(search);
/// assert_eq!(search.oneshot("rust".to_owned()).await.unwrap(), "results for rust");
/// assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
/// # }
/// ```
pub struct AnyRetryPolicy<C> {
    config: Arc<RetryConfig>,
    classify: Arc<C>,
    retries: u32,
}

impl<C> AnyRetryPolicy<C> {
    /// A policy that retries what `classify` calls transient, as `config` says.
    pub fn new(config: RetryConfig, classify: C) -> Self {
        AnyRetryPolicy {
            config: Arc::new(config),
            classify: Arc::new(classify),
            retries: 0,
        }
    }

    /// Tower's retry layer with this policy.
    pub fn layer(self) -> tower::retry::RetryLayer<Self> {
        tower::retry::RetryLayer::new(self)
    }

    /// Retries made so far for the current request.
    pub fn retries(&self) -> u32 {
        self.retries
    }
}

impl<C> Clone for AnyRetryPolicy<C> {
    fn clone(&self) -> Self {
        AnyRetryPolicy {
            config: self.config.clone(),
            classify: self.classify.clone(),
            retries: self.retries,
        }
    }
}

impl<C> fmt::Debug for AnyRetryPolicy<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyRetryPolicy")
            .field("config", &self.config)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl<C> AnyRetryPolicy<C> {
    fn wait<E>(&self, error: &E) -> Option<Duration>
    where
        C: Fn(&E) -> ErrorClass,
    {
        let config = &*self.config;
        if (self.classify)(error) != ErrorClass::Transient || self.retries >= config.max_retries {
            return None;
        }
        if let Some(budget) = &config.budget
            && !budget.withdraw()
        {
            return None;
        }
        Some(config.jitter.jitter(config.backoff_bound(self.retries)))
    }
}

impl<C, Req, Res, E> tower::retry::Policy<Req, Res, E> for AnyRetryPolicy<C>
where
    C: Fn(&E) -> ErrorClass,
    Req: Clone,
{
    type Future = Sleep;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, E>) -> Option<Sleep> {
        if self.retries == 0
            && let Some(budget) = &self.config.budget
        {
            budget.deposit();
        }
        let error = result.as_ref().err()?;
        let wait = self.wait(error)?;
        self.retries += 1;
        tracing::debug!(target: "staunch::retry", retry = self.retries, wait_ms = wait.as_millis() as u64, "retrying a service call");
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }
}
