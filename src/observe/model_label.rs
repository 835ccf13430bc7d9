//! Model names as metric label values, bounded.
//!
//! A model name labels several metrics (`gen_ai.request.model`,
//! `gen_ai.response.model`, the token counter's `model`). Behind a gateway
//! it is whatever the client sent, so a client that makes up a name per
//! request would add series without end: each name costs every histogram
//! its buckets, in memory and in every scrape. The first
//! [`MAX_MODEL_LABELS`] names a process sees are labels as they are; any
//! later one is labelled [`OTHER_MODEL`], as OpenTelemetry's conventions
//! label a value outside a known set (`_OTHER`). Spans and logs still carry
//! the name as sent. Each name kept costs a Prometheus exporter about fifty
//! series (the GenAI histograms' buckets); [`limit_model_labels`] changes
//! the bound.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// How many distinct model names label metrics in one process by default.
pub const MAX_MODEL_LABELS: usize = 64;

/// Sets how many distinct model names label metrics in this process
/// (by default [`MAX_MODEL_LABELS`]): raise it for a deployment that serves
/// more models, lower it to keep an exporter smaller. Names kept already
/// keep their labels; the bound applies to names seen from now on.
pub fn limit_model_labels(max: usize) {
    PROCESS.max.store(max, Ordering::Relaxed);
}

/// The label of a model name seen after the first [`MAX_MODEL_LABELS`].
pub const OTHER_MODEL: &str = "_OTHER";

/// A bounded set of model names.
struct ModelLabels {
    max: AtomicUsize,
    seen: Mutex<Option<HashSet<Box<str>>>>,
}

impl ModelLabels {
    const fn new(max: usize) -> Self {
        ModelLabels {
            max: AtomicUsize::new(max),
            seen: Mutex::new(None),
        }
    }

    fn label<'a>(&self, model: &'a str) -> &'a str {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = seen.get_or_insert_with(HashSet::new);
        if seen.contains(model) {
            return model;
        }
        if seen.len() < self.max.load(Ordering::Relaxed) {
            seen.insert(model.into());
            return model;
        }
        OTHER_MODEL
    }
}

static PROCESS: ModelLabels = ModelLabels::new(MAX_MODEL_LABELS);

/// `model` as a label value: itself when it is among the first
/// [`MAX_MODEL_LABELS`] names the process has seen, else [`OTHER_MODEL`].
/// Takes a lock: call it where a metric key is built, not per sample (the
/// layers build their keys once per thread and label set).
pub(super) fn bounded(model: &str) -> &str {
    PROCESS.label(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_past_the_bound_share_one_label_and_known_ones_keep_theirs() {
        let labels = ModelLabels::new(3);
        for name in ["gpt-4o", "claude", "gemini"] {
            assert_eq!(labels.label(name), name);
        }
        assert_eq!(labels.label("made-up-1"), OTHER_MODEL);
        assert_eq!(labels.label("made-up-2"), OTHER_MODEL);
        assert_eq!(
            labels.label("claude"),
            "claude",
            "a known name keeps its label"
        );
        assert_eq!(
            labels.seen.lock().unwrap().as_ref().map(HashSet::len),
            Some(3)
        );
    }
}
