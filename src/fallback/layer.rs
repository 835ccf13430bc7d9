//! The fallback layer: a primary service with a backup.

use super::service::Fallback;
use super::target::Target;
use staunch_core::{BoxError, Call, ChatRequest};
use std::sync::Arc;
use tower_layer::Layer;
use tower_service::Service;

/// Wraps a primary service in a [`Fallback`] to `backup`. Layers nest, so
/// a chain reads top-down in a `ServiceBuilder`: the last backup is the
/// outermost layer.
///
/// ```
/// use staunch::core::{ChatRequest, ChatResponse, LlmError};
/// use staunch::fallback::{FallbackLayer, Target};
/// use tower::{service_fn, ServiceBuilder};
///
/// let answer = |text: &'static str| {
///     service_fn(move |r: ChatRequest| async move { Ok::<_, LlmError>(ChatResponse::new(&r.model, text)) })
/// };
/// let chain = ServiceBuilder::new()
///     .layer(FallbackLayer::new(Target::new("last-resort", answer("c")).model("gpt-4o-mini")))
///     .layer(FallbackLayer::new(Target::new("anthropic", answer("b")).model("claude-sonnet-4-5")))
///     .service(answer("a"));
/// # let _ = chain;
/// ```
#[derive(Clone, Debug)]
pub struct FallbackLayer<C: Call = ChatRequest> {
    backup: Target<C>,
    primary_name: Arc<str>,
}

impl<C: Call> FallbackLayer<C> {
    /// Falls back to `backup` when the wrapped service fails.
    pub fn new(backup: Target<C>) -> Self {
        FallbackLayer {
            backup,
            primary_name: Arc::from("primary"),
        }
    }

    /// Names the wrapped service in responses and errors (default `primary`).
    pub fn primary_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.primary_name = name.into();
        self
    }
}

impl<S, C> Layer<S> for FallbackLayer<C>
where
    C: Call,
    S: tower_service::Service<C, Response = C::Answer> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    <S as Service<C>>::Future: Send + 'static,
{
    type Service = Fallback<C>;

    fn layer(&self, primary: S) -> Fallback<C> {
        let primary = Target::for_call(self.primary_name.clone(), primary);
        Fallback::from_parts(Arc::from([primary, self.backup.clone()]))
    }
}
