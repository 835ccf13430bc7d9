//! User-overridable error classification.

use super::{ErrorClass, LlmError};

/// Decides the [`ErrorClass`] of an error, and so whether layers retry it,
/// fall back from it, count it against a circuit, or degrade.
///
/// The default, [`DefaultClassify`], uses [`ErrorKind::class`](crate::ErrorKind::class).
/// Any `Fn(&LlmError) -> ErrorClass` is a `Classify`, so an override that
/// changes one case and defers to the default for the rest is a closure:
///
/// ```
/// use staunch_core::{Classify, ErrorClass, ErrorKind, LlmError};
///
/// // This gateway answers 404 while a model is still loading: retry it.
/// let classify = |e: &LlmError| match (e.kind, e.status) {
///     (ErrorKind::ModelNotFound, Some(404)) => ErrorClass::Transient,
///     _ => e.class(),
/// };
/// let err = LlmError::new(ErrorKind::ModelNotFound, "loading").with_status(404);
/// assert_eq!(classify.classify(&err), ErrorClass::Transient);
/// ```
pub trait Classify: Send + Sync + 'static {
    /// The class of `error`.
    fn classify(&self, error: &LlmError) -> ErrorClass;
}

/// The classification table of the design: [`LlmError::class`].
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultClassify;

impl Classify for DefaultClassify {
    fn classify(&self, error: &LlmError) -> ErrorClass {
        error.class()
    }
}

impl<F> Classify for F
where
    F: Fn(&LlmError) -> ErrorClass + Send + Sync + 'static,
{
    fn classify(&self, error: &LlmError) -> ErrorClass {
        self(error)
    }
}
