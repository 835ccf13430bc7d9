//! The instrumentation response future.

use super::{genai_metrics, names, semconv};
use crate::into_llm::to_llm;
use metrics::{Key, Label, Level, Metadata};
use pin_project_lite::pin_project;
use staunch_core::{Answer, BoxError, ChatResponse, LlmError, Operation, QualityTier, Usage};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::time::Instant;
use tracing::Span;

pin_project! {
    /// The response future of [`Instrument`](super::Instrument).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        started: Instant,
        // Whether `started` is the request's own start, from which the
        // answer's latency was measured.
        owns_clock: bool,
        // Whether the span gets the request's outcome fields.
        span_outcome: bool,
        done: bool,
        // The GenAI metrics' labels of the request.
        operation: Operation,
        request_model: Arc<str>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.done {
                this.span.record("outcome", "cancelled");
                metrics::counter!(names::REQUESTS, "outcome" => "cancelled", "tier" => "none", "kind" => "none", "class" => "none").increment(1);
                metrics::histogram!(names::REQUEST_DURATION, "outcome" => "cancelled")
                    .record(this.started.elapsed().as_secs_f64());
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(
        inner: F,
        span: Span,
        started: Instant,
        owns_clock: bool,
        span_outcome: bool,
        operation: Operation,
        request_model: Arc<str>,
    ) -> Self {
        ResponseFuture {
            inner,
            span,
            started,
            owns_clock,
            span_outcome,
            done: false,
            operation,
            request_model,
        }
    }
}

/// The metadata `metrics::counter!` and friends would pass from this
/// module (target and module path `staunch::observe::future`, level INFO).
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

// The keys of the success path, built once. A key built by the macros at
// each call allocates its label list and hashes it, recorder or not.
static OK_DURATION_LABELS: [Label; 1] = [Label::from_static_parts("outcome", "ok")];
static OK_DURATION: Key = Key::from_static_parts(names::REQUEST_DURATION, &OK_DURATION_LABELS);
static FALLBACK_DEPTH: Key = Key::from_static_name(names::FALLBACK_DEPTH);

macro_rules! ok_requests_key {
    ($tier:literal) => {{
        static LABELS: [Label; 4] = [
            Label::from_static_parts("outcome", "ok"),
            Label::from_static_parts("tier", $tier),
            Label::from_static_parts("kind", "none"),
            Label::from_static_parts("class", "none"),
        ];
        static KEY: Key = Key::from_static_parts(names::REQUESTS, &LABELS);
        &KEY
    }};
}

/// The key of `staunch_requests_total` for an answer of `tier`, when it is
/// one of the tiers known here.
fn ok_requests(tier: QualityTier) -> Option<&'static Key> {
    Some(match tier {
        QualityTier::Full => ok_requests_key!("full"),
        QualityTier::Reduced => ok_requests_key!("reduced"),
        QualityTier::Cached => ok_requests_key!("cached"),
        QualityTier::Static => ok_requests_key!("static"),
        _ => return None,
    })
}

fn count_tokens(provider: &str, model: &str, usage: Usage) {
    if usage.input_tokens == 0 && usage.output_tokens == 0 {
        return;
    }
    let model = super::model_label::bounded(model);
    if usage.input_tokens > 0 {
        metrics::counter!(names::TOKENS, "provider" => provider.to_owned(), "model" => model.to_owned(), "direction" => "input")
            .increment(usage.input_tokens);
    }
    if usage.output_tokens > 0 {
        metrics::counter!(names::TOKENS, "provider" => provider.to_owned(), "model" => model.to_owned(), "direction" => "output")
            .increment(usage.output_tokens);
    }
}

/// The fields of the `llm.request` span that a finished request fills.
struct Outcome<'a> {
    outcome: &'a str,
    tier: &'a str,
    provider: Option<&'a str>,
    answered_model: Option<&'a str>,
    target: Option<&'a str>,
    attempts: u32,
    fallback_depth: Option<u32>,
    error_kind: Option<&'a str>,
    status: Option<u16>,
    latency_ms: f64,
    /// The GenAI attributes of an answer.
    answer: Option<GenAiAnswer<'a>>,
}

/// What an answer adds to the span under the GenAI conventions' names.
struct GenAiAnswer<'a> {
    provider: &'a str,
    server: Option<(&'a str, u16)>,
    id: Option<&'a str>,
    finish_reason: Option<&'a str>,
    usage: Usage,
}

/// Records `fields` on `span` in one call. A subscriber that formats fields
/// as they are recorded (tracing-subscriber's JSON formatter re-reads and
/// rewrites all it holds each time) then does that once, not once per
/// field: a tenth of the gateway's CPU went to it.
/// The names of the fields `record_fields` sets, in its order.
const OUTCOME_NAMES: [&str; 19] = [
    "outcome",
    "tier",
    "provider",
    "answered_model",
    "target",
    "attempts",
    "fallback_depth",
    "error_kind",
    "status",
    "latency_ms",
    semconv::attr::PROVIDER_NAME,
    semconv::attr::RESPONSE_MODEL,
    semconv::attr::RESPONSE_ID,
    semconv::attr::RESPONSE_FINISH_REASONS,
    semconv::attr::USAGE_INPUT_TOKENS,
    semconv::attr::USAGE_OUTPUT_TOKENS,
    semconv::attr::ERROR_TYPE,
    semconv::attr::SERVER_ADDRESS,
    semconv::attr::SERVER_PORT,
];

/// Those fields of the span's one callsite, looked up once: finding a
/// field by name compares it with each name before it (the span has
/// thirty), which cost more than recording the values.
struct OutcomeFields {
    callsite: tracing::callsite::Identifier,
    fields: [tracing::field::Field; 19],
}

static OUTCOME_FIELDS: std::sync::OnceLock<OutcomeFields> = std::sync::OnceLock::new();

fn outcome_fields(set: &tracing::field::FieldSet) -> Option<[tracing::field::Field; 19]> {
    let found: Option<Vec<_>> = OUTCOME_NAMES.iter().map(|name| set.field(name)).collect();
    found?.try_into().ok()
}

/// The longest `["reason"]` text [`reasons_text`] writes.
pub(super) const REASONS_TEXT_MAX: usize = 64;

/// `["reason"]`, the `Debug` text of a list of one finish reason, written
/// into `buf` without the formatting machinery (a third of the cost of
/// recording the span's results, in the gateway's JSON log): the same
/// text, so every subscriber records the same value. `None` when `reason`
/// has a character `Debug` would escape (only printable ASCII other than
/// `"` and `\` is written as it is) or is too long for `buf`; the caller
/// then formats it.
pub(super) fn reasons_text<'b>(
    reason: &str,
    buf: &'b mut [u8; REASONS_TEXT_MAX],
) -> Option<&'b str> {
    let plain = reason
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\');
    let end = reason.len() + 4;
    if !plain || end > buf.len() {
        return None;
    }
    buf[..2].copy_from_slice(b"[\"");
    buf[2..end - 2].copy_from_slice(reason.as_bytes());
    buf[end - 2..end].copy_from_slice(b"\"]");
    std::str::from_utf8(&buf[..end]).ok()
}

fn record_fields(span: &Span, fields: &Outcome<'_>) {
    use tracing::field::Value;
    let Some(metadata) = span.metadata() else {
        return;
    };
    let set = metadata.fields();
    // The span is declared in `service.rs` with every one of these.
    let looked_up;
    let found = match OUTCOME_FIELDS.get() {
        Some(cached) if cached.callsite == metadata.callsite() => &cached.fields,
        _ => {
            let Some(found) = outcome_fields(set) else {
                return;
            };
            let _ = OUTCOME_FIELDS.set(OutcomeFields {
                callsite: metadata.callsite(),
                fields: found.clone(),
            });
            looked_up = found;
            &looked_up
        }
    };
    let [
        outcome,
        tier,
        provider,
        answered_model,
        target,
        attempts,
        fallback_depth,
        error_kind,
        status,
        latency_ms,
        otel_provider,
        response_model,
        response_id,
        finish_reasons,
        input_tokens,
        output_tokens,
        error_type,
        server_address,
        server_port,
    ] = found;
    let answer = fields.answer.as_ref();
    let provider_name = fields
        .provider
        .map(semconv::provider_name)
        .or(answer.map(|a| semconv::provider_name(a.provider)));
    // One finish reason per choice: staunch answers one.
    let reason = answer.and_then(|a| a.finish_reason);
    let mut text = [0; REASONS_TEXT_MAX];
    let plain = reason.and_then(|r| reasons_text(r, &mut text));
    let listed = reason.map(|r| [r]);
    let listed = listed.as_ref().map(|r| tracing::field::debug(r.as_slice()));
    let id = answer.and_then(|a| a.id);
    // Whole numbers go out signed: OpenTelemetry has no unsigned integer,
    // and tracing-opentelemetry writes a `u64` as a string.
    let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let input = answer.map(|a| signed(a.usage.input_tokens));
    let output = answer.map(|a| signed(a.usage.output_tokens));
    let attempts_value = i64::from(fields.attempts);
    let depth = fields.fallback_depth.map(i64::from);
    let status_value = fields.status.map(i64::from);
    let server = answer.and_then(|a| a.server);
    let address = server.map(|(host, _)| host);
    let port = server.map(|(_, port)| i64::from(port));
    let values: [(&tracing::field::Field, Option<&dyn Value>); 19] = [
        (outcome, Some(&fields.outcome)),
        (tier, Some(&fields.tier)),
        (provider, fields.provider.as_ref().map(|v| v as &dyn Value)),
        (
            answered_model,
            fields.answered_model.as_ref().map(|v| v as &dyn Value),
        ),
        (target, fields.target.as_ref().map(|v| v as &dyn Value)),
        (attempts, Some(&attempts_value)),
        (fallback_depth, depth.as_ref().map(|v| v as &dyn Value)),
        (
            error_kind,
            fields.error_kind.as_ref().map(|v| v as &dyn Value),
        ),
        (status, status_value.as_ref().map(|v| v as &dyn Value)),
        (latency_ms, Some(&fields.latency_ms)),
        (
            otel_provider,
            provider_name.as_ref().map(|v| v as &dyn Value),
        ),
        (
            response_model,
            fields.answered_model.as_ref().map(|v| v as &dyn Value),
        ),
        (response_id, id.as_ref().map(|v| v as &dyn Value)),
        (
            finish_reasons,
            match (&plain, &listed) {
                (Some(text), _) => Some(text as &dyn Value),
                (None, listed) => listed.as_ref().map(|v| v as &dyn Value),
            },
        ),
        (input_tokens, input.as_ref().map(|v| v as &dyn Value)),
        (output_tokens, output.as_ref().map(|v| v as &dyn Value)),
        (
            error_type,
            fields.error_kind.as_ref().map(|v| v as &dyn Value),
        ),
        (server_address, address.as_ref().map(|v| v as &dyn Value)),
        (server_port, port.as_ref().map(|v| v as &dyn Value)),
    ];
    span.record_all(&set.value_set(&values));
}

/// Records an answer's outcome: on `span` (when given) and in the metrics,
/// the GenAI conventions' (labelled by `request_model` and `operation`)
/// with staunch's own, through one lookup of the recorder.
fn record_ok<A: Answer>(
    span: Option<&Span>,
    response: &A,
    seconds: f64,
    operation: Operation,
    request_model: &Arc<str>,
) {
    let meta = response.meta();
    let provider = meta.provider.as_deref().unwrap_or("unknown");
    let model = response.answered_model();
    // A span no subscriber wants records nothing: don't gather its fields.
    if let Some(span) = span.filter(|span| !span.is_disabled()) {
        record_fields(
            span,
            &Outcome {
                outcome: "ok",
                tier: meta.tier.as_str(),
                provider: Some(provider),
                answered_model: Some(model),
                target: meta.target.as_deref(),
                attempts: meta.attempts,
                fallback_depth: Some(meta.fallback_depth),
                error_kind: None,
                status: None,
                latency_ms: seconds * 1e3,
                answer: Some(GenAiAnswer {
                    provider,
                    server: meta.server_address.as_deref().zip(meta.server_port),
                    id: response
                        .as_chat()
                        .map(|c| c.id.as_str())
                        .filter(|id| !id.is_empty()),
                    finish_reason: response
                        .as_chat()
                        .filter(|c| !c.is_streaming())
                        .map(|c| c.finish_reason.as_str()),
                    usage: response.usage(),
                }),
            },
        );
    }
    metrics::with_recorder(|recorder| {
        match ok_requests(meta.tier) {
            Some(key) => recorder.register_counter(key, &METADATA).increment(1),
            None => metrics::counter!(names::REQUESTS, "outcome" => "ok", "tier" => meta.tier.as_str(), "kind" => "none", "class" => "none")
                .increment(1),
        }
        recorder
            .register_histogram(&FALLBACK_DEPTH, &METADATA)
            .record(f64::from(meta.fallback_depth));
        recorder
            .register_histogram(&OK_DURATION, &METADATA)
            .record(seconds);
        let labels = genai_metrics::Labels {
            operation,
            provider: meta.provider.as_deref().unwrap_or(""),
            request_model,
            response_model: model,
        };
        let spend = genai_metrics::Spend {
            usage: response.usage(),
            total: response.total_usage(),
            cost: meta.cost,
        };
        genai_metrics::answered(recorder, &labels, spend, seconds, response.is_streaming());
    });
}

/// Records a failure's outcome: on `span` (when given) and in the metrics.
fn record_err(span: Option<&Span>, error: &LlmError, seconds: f64) {
    if let Some(span) = span.filter(|span| !span.is_disabled()) {
        record_fields(
            span,
            &Outcome {
                outcome: "error",
                tier: "none",
                provider: error.provider.as_deref(),
                answered_model: None,
                target: None,
                attempts: error.attempts,
                fallback_depth: None,
                error_kind: Some(error.kind.as_str()),
                status: error.status,
                latency_ms: seconds * 1e3,
                answer: None,
            },
        );
    }
    metrics::counter!(names::REQUESTS, "outcome" => "error", "tier" => "none", "kind" => error.kind.as_str(), "class" => error.class().as_str())
        .increment(1);
    metrics::histogram!(names::REQUEST_DURATION, "outcome" => "error").record(seconds);
    count_error_tokens(error);
}

/// Counts the tokens of a failed request where they were spent: each
/// target's error (and, for nested chains, theirs) under its own provider.
fn count_error_tokens(error: &LlmError) {
    count_tokens(
        error.provider.as_deref().unwrap_or("unknown"),
        error.model.as_deref().unwrap_or("unknown"),
        error.spent,
    );
    for earlier in &error.earlier {
        count_error_tokens(earlier);
    }
}

impl<F, A, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<A, E>>,
    A: Answer,
    E: Into<BoxError>,
{
    type Output = Result<A, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = {
            let _entered = this.span.enter();
            ready!(this.inner.poll(cx)).map_err(to_llm)
        };
        *this.done = true;
        match &mut result {
            Ok(response) => {
                // The answer's latency runs from this layer's start when the
                // request's clock started here, and is measured already.
                let latency = response.meta().latency;
                let seconds = if *this.owns_clock && !latency.is_zero() {
                    latency.as_secs_f64()
                } else {
                    this.started.elapsed().as_secs_f64()
                };
                record_ok(
                    this.span_outcome.then_some(&*this.span),
                    response,
                    seconds,
                    *this.operation,
                    this.request_model,
                );
                if response.is_streaming()
                    && let Some(response) = response.as_chat_mut()
                {
                    let request_model = std::mem::take(this.request_model);
                    watch_stream(response, seconds, *this.started, request_model);
                }
            }
            Err(error) => {
                let seconds = this.started.elapsed().as_secs_f64();
                record_err(this.span_outcome.then_some(&*this.span), error, seconds);
                genai_metrics::failed(*this.operation, this.request_model, error, seconds);
            }
        }
        Poll::Ready(result)
    }
}

/// A streamed answer: the time to its first token now (the commit point),
/// its duration, events and how it ended when it ends.
fn watch_stream(
    response: &mut ChatResponse,
    first_token: f64,
    started: tokio::time::Instant,
    request_model: Arc<str>,
) {
    metrics::histogram!(names::TIME_TO_FIRST_TOKEN).record(first_token);
    let provider = response.meta.provider.clone().unwrap_or_default();
    let answered = response.answered_model().to_owned();
    crate::stream_watch::watch(response, move |end, tally| {
        let duration = started.elapsed().as_secs_f64();
        let labels = genai_metrics::Labels {
            operation: Operation::Chat,
            provider: &provider,
            request_model: &request_model,
            response_model: &answered,
        };
        let broke = match end {
            crate::stream_watch::StreamEnd::Broke(error) => Some(error.kind.as_str()),
            _ => None,
        };
        genai_metrics::answered_stream_end(
            &labels,
            tally.usage.unwrap_or_default(),
            duration,
            broke,
        );
        let (outcome, kind) = match end {
            crate::stream_watch::StreamEnd::Complete => ("complete", "none"),
            crate::stream_watch::StreamEnd::Broke(error) => ("error", error.kind.as_str()),
            crate::stream_watch::StreamEnd::Dropped => ("dropped", "none"),
        };
        metrics::histogram!(names::STREAM_DURATION, "outcome" => outcome).record(duration);
        metrics::counter!(names::STREAM_EVENTS).increment(tally.events);
        if tally.continuations > 0 {
            metrics::counter!(names::STREAM_CONTINUATIONS).increment(tally.continuations);
        }
        if outcome == "error" {
            metrics::counter!(names::STREAM_ERRORS, "provider" => provider, "kind" => kind)
                .increment(1);
        }
        tracing::debug!(target: "staunch::observe", outcome, kind, events = tally.events, duration_ms = duration * 1e3, "stream ended");
    });
}
