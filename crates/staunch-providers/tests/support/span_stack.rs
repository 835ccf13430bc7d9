//! The span bookkeeping a test subscriber needs so that `Span::current()`
//! (and a record on it) reaches it: ids handed out in order, each span's
//! metadata by id, and the spans entered, innermost last. Included by the
//! test files whose subscribers track spans (`#[path]`); each uses only
//! some of it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use tracing::Metadata;
use tracing::span::Id;

/// Shared by the clones of one subscriber.
#[derive(Clone, Default)]
pub struct SpanStack {
    spans: Arc<Mutex<Vec<&'static Metadata<'static>>>>,
    entered: Arc<Mutex<Vec<Id>>>,
}

impl SpanStack {
    /// The id of a new span of `metadata`.
    pub fn new_span(&self, metadata: &'static Metadata<'static>) -> Id {
        let mut spans = self.spans.lock().unwrap();
        spans.push(metadata);
        Id::from_u64(spans.len() as u64)
    }

    /// The metadata of span `id`.
    pub fn metadata(&self, id: &Id) -> &'static Metadata<'static> {
        self.spans.lock().unwrap()[id.into_u64() as usize - 1]
    }

    /// The names of every span made, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.name())
            .collect()
    }

    pub fn enter(&self, id: &Id) {
        self.entered.lock().unwrap().push(id.clone());
    }

    pub fn exit(&self, id: &Id) {
        let mut entered = self.entered.lock().unwrap();
        if let Some(at) = entered.iter().rposition(|e| e == id) {
            entered.remove(at);
        }
    }

    /// The span entered last, for `Subscriber::current_span`.
    pub fn current(&self) -> tracing_core::span::Current {
        let last = self.entered.lock().unwrap().last().cloned();
        match last {
            Some(id) => {
                let metadata = self.metadata(&id);
                tracing_core::span::Current::new(id, metadata)
            }
            None => tracing_core::span::Current::none(),
        }
    }
}
