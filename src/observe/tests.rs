//! The metrics of a scripted scenario, counted by a recording recorder.

use super::{InstrumentLayer, semconv};
use crate::degrade::{DegradeConfig, DegradeLayer};
use crate::fallback::{Fallback, Target};
use crate::retry::{NoJitter, RetryConfig, RetryLayer};
use crate::test_support::{Scripted, Step, fail, fail_after};
use staunch_core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message, Usage};
use staunch_test::fail_status;
use staunch_test::metrics::capture;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// A fake provider named `name` that plays `steps`, the last one for
/// every call after.
fn provider(name: &str, steps: impl IntoIterator<Item = Step>) -> Scripted {
    let fake = Scripted::new(name);
    let mut steps: Vec<Step> = steps.into_iter().collect();
    let then = steps.pop().expect("a step");
    fake.script(steps, then);
    fake
}

#[test]
fn a_scripted_scenario_records_exact_counters() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();

    let primary = provider(
        "anthropic",
        [
            fail_status(ErrorKind::Overloaded, 529), // R1, retried
            Step::Answer,                            // R1
            fail_after(ErrorKind::RateLimited, 429, Duration::from_secs(300)), // R2, too long to wait
            fail_status(ErrorKind::Authentication, 401),                       // R3, not retryable
            fail_status(ErrorKind::InvalidRequest, 400),                       // R4, fatal
        ],
    );
    let backup = provider(
        "openai",
        [
            Step::Answer,                        // R2
            fail_status(ErrorKind::Server, 500), // R3, retried twice
            fail_status(ErrorKind::Server, 500),
            fail_status(ErrorKind::Server, 500),
        ],
    );

    let ((), recorded) = capture(|| {
        runtime.block_on(async {
            let retry = RetryLayer::new(RetryConfig::new().jitter(NoJitter).no_budget());
            let chain = Fallback::new([
                Target::new(
                    "primary",
                    ServiceBuilder::new()
                        .layer(retry.clone())
                        .service(primary.clone()),
                )
                .model("claude"),
                Target::new(
                    "backup",
                    ServiceBuilder::new().layer(retry).service(backup.clone()),
                )
                .model("gpt-4o"),
            ])
            .unwrap();
            let stack = ServiceBuilder::new()
                .layer(InstrumentLayer::new())
                .layer(DegradeLayer::new(
                    DegradeConfig::new().cache(Duration::from_secs(600), 100),
                ))
                .service(chain);
            let ask = |text: &str| ChatRequest::new("any", vec![Message::user(text)]);

            let r1 = stack.clone().oneshot(ask("one")).await.unwrap();
            assert_eq!(r1.meta.tier.as_str(), "full");
            let r2 = stack.clone().oneshot(ask("two")).await.unwrap();
            assert_eq!(r2.meta.tier.as_str(), "reduced");
            let r3 = stack.clone().oneshot(ask("one")).await.unwrap();
            assert_eq!(r3.meta.tier.as_str(), "cached");
            let r4 = stack.clone().oneshot(ask("four")).await.unwrap_err();
            assert_eq!(r4.kind, ErrorKind::InvalidRequest);
        })
    });
    // Every step played, none twice.
    assert_eq!((primary.calls(), backup.calls()), (5, 4));

    let got = recorded.counters();
    let want: BTreeMap<String, u64> = [
        (
            "staunch_requests_total{class=none,kind=none,outcome=ok,tier=full}",
            1,
        ),
        (
            "staunch_requests_total{class=none,kind=none,outcome=ok,tier=reduced}",
            1,
        ),
        (
            "staunch_requests_total{class=none,kind=none,outcome=ok,tier=cached}",
            1,
        ),
        (
            "staunch_requests_total{class=fatal,kind=invalid_request,outcome=error,tier=none}",
            1,
        ),
        (
            "staunch_retries_total{kind=overloaded,provider=anthropic}",
            1,
        ),
        ("staunch_retries_total{kind=server,provider=openai}", 2),
        (
            "staunch_retry_giveups_total{reason=retry_after_too_long}",
            1,
        ),
        ("staunch_retry_giveups_total{reason=not_retryable}", 2),
        ("staunch_retry_giveups_total{reason=max_retries}", 1),
        // R1 recovered after its retry; R3's backup did not.
        ("staunch_retried_requests_total{outcome=ok}", 1),
        ("staunch_retried_requests_total{outcome=error}", 1),
        ("staunch_fallbacks_total{from=primary,to=backup}", 2),
        ("staunch_degraded_total{kind=server,tier=cached}", 1),
        (
            "staunch_tokens_total{direction=input,model=claude,provider=anthropic}",
            10,
        ),
        (
            "staunch_tokens_total{direction=output,model=claude,provider=anthropic}",
            5,
        ),
        (
            "staunch_tokens_total{direction=input,model=gpt-4o,provider=openai}",
            10,
        ),
        (
            "staunch_tokens_total{direction=output,model=gpt-4o,provider=openai}",
            5,
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(got, want);
}

/// Outermost, the layer starts the request's clock and its duration is the
/// answer's latency (every attempt and wait); inside a retry loop, per
/// attempt, it times only its own attempt; over a producer that writes no
/// latency, it reads the clock itself.
#[test]
fn each_instrument_times_from_its_own_start() {
    use tower::util::BoxService;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let retry = || RetryLayer::new(RetryConfig::new().jitter(NoJitter).no_budget());
    let script = || {
        Scripted::scripted([
            fail(ErrorKind::Overloaded),
            Step::Slow(Duration::from_secs(2)),
        ])
    };
    let ask = || ChatRequest::new("any", vec![Message::user("hi")]);

    // One request through `stack` under its own recorder: the answer's
    // latency and the durations recorded.
    let run = |stack: BoxService<ChatRequest, ChatResponse, LlmError>| {
        let (latency, recorded) = capture(|| {
            runtime.block_on(async { stack.oneshot(ask()).await.unwrap().meta.latency })
        });
        let durations = recorded.histogram(super::names::REQUEST_DURATION, &[("outcome", "ok")]);
        (latency, durations)
    };

    // Outermost: 500 ms of backoff, then a 2 s attempt.
    let outermost = ServiceBuilder::new()
        .layer(InstrumentLayer::new())
        .layer(retry())
        .service(script());
    assert_eq!(
        run(BoxService::new(outermost)),
        (Duration::from_millis(2500), vec![2.5])
    );

    // Inside the loop: only the attempt that answered, not the wait.
    let per_attempt = ServiceBuilder::new()
        .layer(retry())
        .layer(InstrumentLayer::new())
        .service(script());
    assert_eq!(
        run(BoxService::new(per_attempt)),
        (Duration::from_millis(2500), vec![2.0])
    );

    // A producer that leaves the latency at zero.
    let slow = service_fn(|_: ChatRequest| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok::<_, LlmError>(ChatResponse::new("m", "late"))
    });
    let over_slow = ServiceBuilder::new()
        .layer(InstrumentLayer::new())
        .service(slow);
    assert_eq!(run(BoxService::new(over_slow)), (Duration::ZERO, vec![3.0]));
}

/// A subscriber that keeps every field recorded on its spans, and counts the
/// `record` calls after a span's creation.
#[derive(Clone, Default)]
struct SpanFields {
    fields: Arc<Mutex<BTreeMap<String, String>>>,
    records: Arc<Mutex<u32>>,
}

struct Visitor<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Visitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl tracing::Subscriber for SpanFields {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        span.record(&mut Visitor(&mut self.fields.lock().unwrap()));
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        *self.records.lock().unwrap() += 1;
        values.record(&mut Visitor(&mut self.fields.lock().unwrap()));
    }

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, _: &tracing::Event<'_>) {}

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// One request that plays `step` through `layer` over a fake provider,
/// on a paused clock: the fields its span ended with, the records made
/// after its creation, and the request counters.
fn one_request(
    layer: InstrumentLayer,
    step: Step,
) -> (u32, BTreeMap<String, String>, BTreeMap<String, u64>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let seen = SpanFields::default();
    let stack = ServiceBuilder::new()
        .layer(layer)
        .service(provider("openai", [step]));
    let ((), recorded) = capture(|| {
        tracing::subscriber::with_default(seen.clone(), || {
            runtime.block_on(async {
                let _ = stack
                    .oneshot(ChatRequest::new("any", vec![Message::user("hi")]))
                    .await;
            })
        })
    });
    let records = *seen.records.lock().unwrap();
    let fields = seen.fields.lock().unwrap().clone();
    (records, fields, recorded.counters())
}

#[test]
fn the_request_span_gets_its_outcome_fields_in_one_record() {
    // The fields the span ended with, less the latency (any value),
    // checked to have come in one record.
    let run = |step: Step| {
        let (records, mut fields, _) = one_request(InstrumentLayer::new(), step);
        assert_eq!(records, 1);
        assert!(fields.remove("latency_ms").is_some(), "{fields:?}");
        fields
    };
    let expect = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };

    // An answer that names the model it came from, as a provider's does.
    let mut answer = ChatResponse::new("gpt-4o", "hi").with_usage(Usage::new(10, 5));
    answer.meta.answered_by("openai", "gpt-4o");
    answer.meta.answered_from("api.openai.com", 443);
    // The OpenTelemetry GenAI attributes (semconv's names) beside
    // staunch's own.
    let request = [
        ("otel.name", "chat any"),
        ("otel.kind", "client"),
        (semconv::attr::OPERATION_NAME, "chat"),
        (semconv::attr::REQUEST_MODEL, "any"),
        (semconv::attr::REQUEST_STREAM, "false"),
        ("model", "any"),
    ];
    let mut ok = request.to_vec();
    ok.extend([
        ("outcome", "ok"),
        ("tier", "full"),
        ("provider", "openai"),
        ("answered_model", "gpt-4o"),
        ("attempts", "1"),
        ("fallback_depth", "0"),
        (semconv::attr::PROVIDER_NAME, "openai"),
        (semconv::attr::RESPONSE_MODEL, "gpt-4o"),
        (semconv::attr::RESPONSE_FINISH_REASONS, "[\"stop\"]"),
        (semconv::attr::USAGE_INPUT_TOKENS, "10"),
        (semconv::attr::USAGE_OUTPUT_TOKENS, "5"),
        (semconv::attr::SERVER_ADDRESS, "api.openai.com"),
        (semconv::attr::SERVER_PORT, "443"),
    ]);
    assert_eq!(run(Step::Reply(Box::new(answer))), expect(&ok));
    let mut failed = request.to_vec();
    failed.extend([
        ("outcome", "error"),
        ("tier", "none"),
        ("error_kind", "rate_limited"),
        ("status", "429"),
        ("provider", "openai"),
        ("attempts", "1"),
        (semconv::attr::PROVIDER_NAME, "openai"),
        (semconv::attr::ERROR_TYPE, "rate_limited"),
    ]);
    assert_eq!(
        run(fail_status(ErrorKind::RateLimited, 429)),
        expect(&failed)
    );
}

#[test]
fn without_span_outcome_the_span_keeps_its_request_fields_and_the_metrics_count() {
    // Under a layer that records no outcome on its span.
    let run = |step: Step| one_request(InstrumentLayer::new().span_outcome(false), step);
    let request: BTreeMap<String, String> = [
        ("otel.name", "chat any"),
        ("otel.kind", "client"),
        (semconv::attr::OPERATION_NAME, "chat"),
        (semconv::attr::REQUEST_MODEL, "any"),
        (semconv::attr::REQUEST_STREAM, "false"),
        ("model", "any"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();

    let (records, fields, counters) = run(Step::Answer);
    assert_eq!((records, &fields), (0, &request));
    assert_eq!(
        counters.get("staunch_requests_total{class=none,kind=none,outcome=ok,tier=full}"),
        Some(&1),
        "{counters:?}"
    );
    let (records, fields, counters) = run(fail_status(ErrorKind::RateLimited, 429));
    assert_eq!((records, &fields), (0, &request));
    assert_eq!(
        counters.get(
            "staunch_requests_total{class=transient,kind=rate_limited,outcome=error,tier=none}"
        ),
        Some(&1),
        "{counters:?}"
    );
}

#[test]
fn without_spans_no_span_is_made_and_the_metrics_count() {
    // Under a layer that makes no span, with a subscriber that wants
    // every span and keeps every field of the ones made.
    let run = |step: Step| one_request(InstrumentLayer::new().spans(false), step);
    let (records, fields, counters) = run(Step::Answer);
    assert_eq!((records, fields), (0, BTreeMap::new()));
    assert_eq!(
        counters.get("staunch_requests_total{class=none,kind=none,outcome=ok,tier=full}"),
        Some(&1),
        "{counters:?}"
    );
    let (records, fields, counters) = run(fail_status(ErrorKind::RateLimited, 429));
    assert_eq!((records, fields), (0, BTreeMap::new()));
    assert_eq!(
        counters.get(
            "staunch_requests_total{class=transient,kind=rate_limited,outcome=error,tier=none}"
        ),
        Some(&1),
        "{counters:?}"
    );
}

#[test]
fn the_genai_metrics_have_the_conventions_names_labels_and_values() {
    use staunch_test::{FakeProvider, stream};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let mut whole = ChatResponse::new("gpt-4o-2024-08-06", "hi").with_usage(Usage::new(12, 3));
    whole.meta.answered_by("openai-main", "gpt-4o-2024-08-06");
    let fake = FakeProvider::scripted([
        Step::Reply(Box::new(whole)),
        stream(["a", "b", "c"])
            .gap(Duration::from_millis(250))
            .usage(Usage::new(20, 7))
            .into(),
        fail_status(ErrorKind::Overloaded, 529),
    ]);
    let ((), recorded) = capture(|| {
        runtime.block_on(async {
            let stack = ServiceBuilder::new()
                .layer(InstrumentLayer::new())
                .service(fake);
            let ask = || ChatRequest::new("gpt-4o", vec![Message::user("hi")]);
            stack.clone().oneshot(ask()).await.unwrap();
            let streamed = stack
                .clone()
                .oneshot(ask().with_stream(true))
                .await
                .unwrap();
            streamed.collect().await.unwrap();
            stack.clone().oneshot(ask()).await.unwrap_err();
        })
    });
    let m = semconv::metric::OPERATION_DURATION;
    let chat = (semconv::attr::OPERATION_NAME, "chat");
    let asked = (semconv::attr::REQUEST_MODEL, "gpt-4o");
    // The whole answer: its duration under the answering model, and its
    // tokens by type.
    let whole_labels = [
        chat,
        asked,
        (semconv::attr::PROVIDER_NAME, "openai"),
        (semconv::attr::RESPONSE_MODEL, "gpt-4o-2024-08-06"),
    ];
    assert_eq!(recorded.histogram(m, &whole_labels), vec![0.0]);
    let tokens = |kind| {
        let mut with = whole_labels.to_vec();
        with.push((semconv::attr::TOKEN_TYPE, kind));
        recorded.histogram(semconv::metric::TOKEN_USAGE, &with)
    };
    assert_eq!((tokens("input"), tokens("output")), (vec![12.0], vec![3.0]));
    // The stream: its time to first chunk at the commit point, its whole
    // duration and its output at its end.
    assert_eq!(
        recorded.histogram(semconv::metric::TIME_TO_FIRST_CHUNK, &[chat, asked]),
        vec![0.25]
    );
    let streamed: Vec<f64> = recorded
        .histogram(m, &[chat, asked])
        .into_iter()
        .filter(|s| *s > 0.0)
        .collect();
    assert_eq!(streamed, vec![0.75]);
    // The failure: its duration with error.type.
    assert_eq!(
        recorded.histogram(m, &[chat, asked, (semconv::attr::ERROR_TYPE, "overloaded")]),
        vec![0.0]
    );
}

/// The finish reasons' text, written by hand, is `Debug`'s text of a list
/// of one reason, byte for byte, whenever it is written at all; a reason
/// `Debug` would escape is left to `Debug`.
#[test]
fn finish_reasons_text_is_debugs_text() {
    use super::future::{REASONS_TEXT_MAX, reasons_text};
    let written = |reason: &str| {
        let mut buf = [0; REASONS_TEXT_MAX];
        reasons_text(reason, &mut buf).map(str::to_owned)
    };
    for reason in [
        "stop",
        "length",
        "tool_calls",
        "content_filter",
        "end_turn",
        "",
        "a b'c~",
    ] {
        assert_eq!(
            written(reason),
            Some(format!("{:?}", [reason])),
            "{reason:?}"
        );
    }
    let long = "x".repeat(REASONS_TEXT_MAX);
    for escaped in [
        "say \"hi\"",
        "back\\slash",
        "tab\t",
        "new\nline",
        "é",
        "\u{7f}",
        long.as_str(),
    ] {
        assert_eq!(written(escaped), None, "{escaped:?}");
    }
}

proptest::proptest! {
    #[test]
    fn finish_reasons_text_matches_debug_for_any_reason(reason in "[ -~\\t\\né]{0,70}") {
        let mut buf = [0; super::future::REASONS_TEXT_MAX];
        if let Some(text) = super::future::reasons_text(&reason, &mut buf) {
            proptest::prop_assert_eq!(text, format!("{:?}", [reason.as_str()]));
        }
    }
}
