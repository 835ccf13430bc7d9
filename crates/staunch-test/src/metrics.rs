//! The metrics a piece of code recorded, captured by a local debugging
//! recorder (feature `metrics`).
//!
//! ```
//! use staunch_test::metrics::capture;
//!
//! let ((), recorded) = capture(|| {
//!     metrics::counter!("staunch_retries_total", "provider" => "openai", "kind" => "server")
//!         .increment(2);
//!     metrics::histogram!("staunch_request_duration_seconds", "outcome" => "ok").record(0.25);
//! });
//! assert_eq!(
//!     recorded.counters()["staunch_retries_total{kind=server,provider=openai}"],
//!     2
//! );
//! assert_eq!(
//!     recorded.histogram("staunch_request_duration_seconds", &[("outcome", "ok")]),
//!     [0.25]
//! );
//! assert_eq!(
//!     recorded.series("staunch_retries_total"),
//!     [(vec!["kind=server".to_owned(), "provider=openai".to_owned()], 2)]
//! );
//! ```

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};
use std::collections::BTreeMap;

/// One metric as the debugging recorder reports it.
pub type Entry = (
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
);

/// Runs `f` with a fresh debugging recorder as this thread's recorder and
/// returns what it gave and what was recorded meanwhile. Run a runtime
/// inside `f` (`runtime.block_on(..)`) to capture async code; a
/// current-thread runtime keeps every task on this thread.
pub fn capture<T>(f: impl FnOnce() -> T) -> (T, Recorded) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let out = metrics::with_local_recorder(&recorder, f);
    (out, Recorded(snapshotter.snapshot().into_vec()))
}

/// A snapshot of the metrics recorded.
#[derive(Debug)]
pub struct Recorded(Vec<Entry>);

/// `key=value` for every label of `key`, sorted.
fn labels(key: &CompositeKey) -> Vec<String> {
    let mut labels: Vec<String> = key
        .key()
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    labels
}

impl Recorded {
    /// Every entry, as the recorder gave them.
    pub fn entries(&self) -> &[Entry] {
        &self.0
    }

    /// Every counter, keyed `name{label=value,…}` with its labels sorted.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.0
            .iter()
            .filter_map(|(key, _, _, value)| match value {
                DebugValue::Counter(n) => Some((
                    format!("{}{{{}}}", key.key().name(), labels(key).join(",")),
                    *n,
                )),
                _ => None,
            })
            .collect()
    }

    /// Each series of metric `name`: its labels (`key=value`, sorted) and
    /// its counter's value, its histogram's count of samples, or 0 for a
    /// gauge.
    pub fn series(&self, name: &str) -> Vec<(Vec<String>, u64)> {
        self.0
            .iter()
            .filter(|(key, ..)| key.key().name() == name)
            .map(|(key, _, _, value)| {
                let n = match value {
                    DebugValue::Counter(n) => *n,
                    DebugValue::Histogram(samples) => samples.len() as u64,
                    DebugValue::Gauge(_) => 0,
                };
                (labels(key), n)
            })
            .collect()
    }

    /// The samples of histogram `name` in the series that carry every
    /// label of `with`, in order.
    pub fn histogram(&self, name: &str, with: &[(&str, &str)]) -> Vec<f64> {
        self.0
            .iter()
            .filter(|(key, ..)| {
                key.kind() == MetricKind::Histogram
                    && key.key().name() == name
                    && with
                        .iter()
                        .all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
            })
            .flat_map(|(.., value)| match value {
                DebugValue::Histogram(samples) => samples.iter().map(|s| s.into_inner()).collect(),
                _ => Vec::new(),
            })
            .collect()
    }
}
