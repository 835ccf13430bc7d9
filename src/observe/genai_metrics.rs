//! The GenAI conventions' client metrics ([`semconv::metric`]): operation
//! duration, token usage and a stream's time to first chunk, labelled with
//! the operation, the provider, the requested and the answering model (and
//! `error.type` on failures).
//!
//! The keys of the success path, these and staunch's own token and cost
//! metrics of an answer, are built once per thread for the few label sets
//! a stack answers with: a key built by the macros at each call allocates
//! its labels and hashes them. One lookup finds all of an answer's keys.

use super::model_label;
use super::names;
use super::semconv::{self, attr, metric};
use metrics::{Key, Label, Level, Metadata};
use staunch_core::{LlmError, Operation, Usage};
use std::cell::RefCell;
use std::sync::Arc;

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// What labels an answer's metrics.
pub(super) struct Labels<'a> {
    pub(super) operation: Operation,
    pub(super) provider: &'a str,
    /// From the instrument's per-thread set of names: the same name is
    /// the same `Arc`, so a label set is found by pointer.
    pub(super) request_model: &'a Arc<str>,
    pub(super) response_model: &'a str,
}

/// The keys of one label set.
struct Keys {
    operation: Operation,
    provider: Box<str>,
    request_model: Arc<str>,
    response_model: Box<str>,
    duration: Key,
    ttfc: Key,
    input: Key,
    output: Key,
    /// staunch's own counters of the answer's tokens (its failed
    /// attempts' too) and histogram of its cost, by provider and
    /// answering model.
    tokens_input: Key,
    tokens_output: Key,
    cost: Key,
}

impl Keys {
    fn new(labels: &Labels<'_>) -> Self {
        let base = || {
            vec![
                Label::new(attr::OPERATION_NAME, labels.operation.as_str()),
                Label::new(
                    attr::PROVIDER_NAME,
                    semconv::provider_name(labels.provider).to_owned(),
                ),
                Label::new(
                    attr::REQUEST_MODEL,
                    model_label::bounded(labels.request_model).to_owned(),
                ),
                Label::new(
                    attr::RESPONSE_MODEL,
                    model_label::bounded(labels.response_model).to_owned(),
                ),
            ]
        };
        let tokens = |kind: &'static str| {
            let mut l = base();
            l.push(Label::new(attr::TOKEN_TYPE, kind));
            Key::from_parts(metric::TOKEN_USAGE, l)
        };
        let provider = match labels.provider {
            "" => "unknown",
            named => named,
        };
        let model = model_label::bounded(labels.response_model);
        let staunch_tokens = |direction: &'static str| {
            Key::from_parts(
                names::TOKENS,
                vec![
                    Label::new("provider", provider.to_owned()),
                    Label::new("model", model.to_owned()),
                    Label::new("direction", direction),
                ],
            )
        };
        Keys {
            tokens_input: staunch_tokens("input"),
            tokens_output: staunch_tokens("output"),
            cost: Key::from_parts(
                names::REQUEST_COST,
                vec![Label::new("provider", provider.to_owned())],
            ),
            operation: labels.operation,
            provider: labels.provider.into(),
            request_model: labels.request_model.clone(),
            response_model: labels.response_model.into(),
            duration: Key::from_parts(metric::OPERATION_DURATION, base()),
            ttfc: Key::from_parts(metric::TIME_TO_FIRST_CHUNK, base()),
            input: tokens("input"),
            output: tokens("output"),
        }
    }

    fn matches(&self, labels: &Labels<'_>) -> bool {
        self.operation == labels.operation
            && *self.provider == *labels.provider
            && (Arc::ptr_eq(&self.request_model, labels.request_model)
                || *self.request_model == **labels.request_model)
            && *self.response_model == *labels.response_model
    }
}

/// Label sets remembered per thread; past this many the memory starts over.
const REMEMBERED: usize = 32;

thread_local! {
    static KEYS: RefCell<Vec<Keys>> = const { RefCell::new(Vec::new()) };
}

fn with_keys(labels: &Labels<'_>, f: impl FnOnce(&Keys)) {
    let mut f = Some(f);
    let _ = KEYS.try_with(|keys| {
        let Ok(mut keys) = keys.try_borrow_mut() else {
            return;
        };
        let index = match keys.iter().position(|k| k.matches(labels)) {
            Some(index) => index,
            None => {
                if keys.len() >= REMEMBERED {
                    keys.clear();
                }
                keys.push(Keys::new(labels));
                keys.len() - 1
            }
        };
        if let Some(f) = f.take() {
            f(&keys[index]);
        }
    });
    if let Some(f) = f {
        // This thread's keys are out of reach (being torn down, or
        // borrowed by a recorder that called back in): record through
        // keys built for this once.
        f(&Keys::new(labels));
    }
}

/// What an answer spent: this answer's `usage` (the GenAI histograms), and
/// with its failed attempts' (`total`, staunch's counters) and its cost.
pub(super) struct Spend {
    pub(super) usage: Usage,
    pub(super) total: Usage,
    pub(super) cost: Option<f64>,
}

/// A whole answer (`seconds` from the request to the answer), or a
/// stream's commit point (`first_chunk`: the time to its first chunk; its
/// duration is recorded when it ends, by [`answered_stream_end`]).
///
/// Records through `recorder`: the caller holds the one it records its own
/// metrics of the answer with (finding it costs a thread-local lookup).
pub(super) fn answered(
    recorder: &dyn metrics::Recorder,
    labels: &Labels<'_>,
    spend: Spend,
    seconds: f64,
    streaming: bool,
) {
    let Spend { usage, total, cost } = spend;
    with_keys(labels, |keys| {
        if total.input_tokens > 0 {
            recorder
                .register_counter(&keys.tokens_input, &METADATA)
                .increment(total.input_tokens);
        }
        if total.output_tokens > 0 {
            recorder
                .register_counter(&keys.tokens_output, &METADATA)
                .increment(total.output_tokens);
        }
        if let Some(cost) = cost {
            recorder
                .register_histogram(&keys.cost, &METADATA)
                .record(cost);
        }
        if streaming {
            recorder
                .register_histogram(&keys.ttfc, &METADATA)
                .record(seconds);
        } else {
            recorder
                .register_histogram(&keys.duration, &METADATA)
                .record(seconds);
        }
        if usage.input_tokens > 0 {
            recorder
                .register_histogram(&keys.input, &METADATA)
                .record(usage.input_tokens as f64);
        }
        // A stream's output is counted when it ends.
        if usage.output_tokens > 0 && !streaming {
            recorder
                .register_histogram(&keys.output, &METADATA)
                .record(usage.output_tokens as f64);
        }
    });
}

/// A stream's whole duration, and its usage (known at its end), or the
/// kind of error that broke it.
pub(super) fn answered_stream_end(
    labels: &Labels<'_>,
    usage: Usage,
    seconds: f64,
    error: Option<&'static str>,
) {
    match error {
        None => with_keys(labels, |keys| {
            metrics::with_recorder(|recorder| {
                recorder
                    .register_histogram(&keys.duration, &METADATA)
                    .record(seconds);
                if usage.output_tokens > 0 {
                    recorder
                        .register_histogram(&keys.output, &METADATA)
                        .record(usage.output_tokens as f64);
                }
            });
        }),
        Some(kind) => failed_labels(
            labels.operation,
            labels.provider,
            labels.request_model,
            kind,
            seconds,
        ),
    }
}

/// A failed request: its duration, with `error.type`.
pub(super) fn failed(operation: Operation, request_model: &str, error: &LlmError, seconds: f64) {
    failed_labels(
        operation,
        error.provider.as_deref().unwrap_or(""),
        request_model,
        error.kind.as_str(),
        seconds,
    );
}

fn failed_labels(
    operation: Operation,
    provider: &str,
    request_model: &str,
    kind: &'static str,
    seconds: f64,
) {
    metrics::histogram!(
        metric::OPERATION_DURATION,
        attr::OPERATION_NAME => operation.as_str(),
        attr::PROVIDER_NAME => semconv::provider_name(provider).to_owned(),
        attr::REQUEST_MODEL => model_label::bounded(request_model).to_owned(),
        attr::ERROR_TYPE => kind,
    )
    .record(seconds);
}
