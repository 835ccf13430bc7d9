//! Model names label metrics, and behind a gateway a client picks them:
//! the labels stay bounded however many names clients make up (issue 27's
//! soak found `gen_ai.request.model` growing with every made-up name).
//!
//! Its own test binary: the bound is per process.

use metrics_util::debugging::DebuggingRecorder;
use staunch::core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message, Usage};
use staunch::observe::{InstrumentLayer, MAX_MODEL_LABELS, OTHER_MODEL};
use std::collections::BTreeSet;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::test]
async fn made_up_model_names_cannot_grow_the_metrics_without_bound() {
    let recorder = DebuggingRecorder::new();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    // A provider that echoes the model asked, as an OpenAI-compatible
    // server does, so the answering model is the client's pick too; every
    // third call fails, so the error path labels names as well.
    let provider = tower::service_fn(|request: ChatRequest| async move {
        if request.model.ends_with('0') {
            return Err(LlmError::new(ErrorKind::Server, "boom").with_status(500));
        }
        let mut answer =
            ChatResponse::new(request.model.clone(), "hi").with_usage(Usage::new(3, 1));
        answer.meta.answered_by("openai", request.model.as_str());
        Ok(answer)
    });
    let stack = ServiceBuilder::new()
        .layer(InstrumentLayer::new())
        .service(provider);
    let made_up = 3 * MAX_MODEL_LABELS;
    for i in 0..made_up {
        let request = ChatRequest::new(format!("made-up-{i}"), vec![Message::user("hi")]);
        let _ = stack.clone().oneshot(request).await;
    }
    let snapshot = recorder.snapshotter().snapshot().into_vec();
    let mut series = 0;
    let mut values: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for (key, _, _, _) in &snapshot {
        series += 1;
        for label in key.key().labels() {
            if label.key().contains("model") {
                values
                    .entry(label.key().to_owned())
                    .or_default()
                    .insert(label.value().to_owned());
            }
        }
    }
    assert!(!values.is_empty(), "the model labels were recorded");
    for (label, seen) in &values {
        assert!(
            seen.len() <= MAX_MODEL_LABELS + 1,
            "{label} has {} values for {made_up} names",
            seen.len()
        );
        assert!(
            seen.contains(OTHER_MODEL),
            "{label} folds the rest into {OTHER_MODEL}"
        );
    }
    // A handful of metrics, each at most one series per kept name and
    // error kind: far below one series per made-up name per metric.
    assert!(
        series < 12 * (MAX_MODEL_LABELS + 1),
        "{series} series for {made_up} names"
    );
    // A name seen before the bound still labels its own series.
    assert!(values.values().all(|seen| seen.contains("made-up-1")));
}
