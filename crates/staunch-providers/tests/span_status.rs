//! The client records an answer's HTTP status on its own `llm.http` span,
//! and nowhere else: under a subscriber that does not want that span (it is
//! at DEBUG), the caller's span, current at that point, must not get the
//! status in its place, even when it has a field named `status`.
//!
//! A test binary of its own: tracing caches per callsite whether it is
//! wanted, and a subscriber that wants DEBUG spans elsewhere in the same
//! process would change what these calls see.

#[path = "support/span_stack.rs"]
mod span_stack;
mod support;

use span_stack::SpanStack;
use staunch_mock::Fault;
use std::sync::{Arc, Mutex};
use support::{ask, openai, server};
use tower::ServiceExt;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Instrument, Level, Metadata, Subscriber};

/// Wants spans and events at INFO and above; keeps every `record` made
/// after a span's creation, with the span's name.
#[derive(Clone, Default)]
struct InfoOnly {
    spans: SpanStack,
    records: Arc<Mutex<Vec<String>>>,
}

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl Subscriber for InfoOnly {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::INFO
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::INFO)
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.spans.new_span(span.metadata())
    }
    fn record(&self, id: &Id, values: &Record<'_>) {
        let name = self.spans.metadata(id).name();
        let mut text = Text(String::new());
        values.record(&mut text);
        self.records
            .lock()
            .unwrap()
            .push(format!("{name}:{}", text.0));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, id: &Id) {
        self.spans.enter(id);
    }
    fn exit(&self, id: &Id) {
        self.spans.exit(id);
    }
    fn current_span(&self) -> tracing_core::span::Current {
        self.spans.current()
    }
}

#[tokio::test]
async fn the_status_never_lands_on_the_callers_span() {
    let seen = InfoOnly::default();
    let _tracing = tracing::subscriber::set_default(seen.clone());
    let server = server(vec![Fault::Ok], vec![]).await;
    let client = openai(&server);

    for stream in [false, true] {
        let caller = tracing::info_span!("caller", status = tracing::field::Empty);
        let answer = client
            .clone()
            .oneshot(ask("gpt-4o").with_stream(stream))
            .instrument(caller)
            .await
            .unwrap();
        assert_eq!(answer.is_streaming(), stream);
    }
    // Both calls opened the caller's span, and nothing was recorded on it.
    assert_eq!(seen.spans.names(), ["caller", "caller"]);
    assert_eq!(*seen.records.lock().unwrap(), Vec::<String>::new());
}
