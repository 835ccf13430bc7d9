//! The batch-splitting layer.

use super::SplitBatch;
use tower_layer::Layer;

/// Splits batch calls into requests of at most `max_inputs` inputs and
/// about `max_tokens` estimated tokens each ([`SplitBatch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitBatchLayer {
    max_inputs: usize,
    max_tokens: u64,
}

impl SplitBatchLayer {
    /// At most `max_inputs` inputs (at least 1) and about `max_tokens`
    /// estimated tokens per request; an input larger than `max_tokens` is
    /// sent alone, and the provider says whether it fits.
    pub fn new(max_inputs: usize, max_tokens: u64) -> Self {
        SplitBatchLayer {
            max_inputs: max_inputs.max(1),
            max_tokens,
        }
    }
}

impl<S> Layer<S> for SplitBatchLayer {
    type Service = SplitBatch<S>;

    fn layer(&self, inner: S) -> SplitBatch<S> {
        SplitBatch {
            inner,
            max_inputs: self.max_inputs,
            max_tokens: self.max_tokens,
        }
    }
}
