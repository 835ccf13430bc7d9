//! Operations: `/metrics`, `/healthz`, `/readyz`, and a request id on every
//! request (taken from `x-request-id` or made) and its log lines.

use crate::build::Gateway;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Instrument;

/// `GET /metrics`: Prometheus text.
pub(crate) async fn metrics(State(gateway): State<Gateway>) -> Response {
    match &gateway.metrics {
        Some(render) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}

/// The Prometheus exporter as the gateway sets it up: recommended naming
/// (a unit suffix on described metrics, `_total` on counters that lack
/// it), and the OpenTelemetry GenAI metrics as true histograms with the
/// conventions' bucket boundaries (`gen_ai_client_operation_duration_seconds`,
/// `gen_ai_client_token_usage`,
/// `gen_ai_client_operation_time_to_first_chunk_seconds`); the others are
/// summaries. Call [`describe_metrics`](staunch::observe::semconv::describe_metrics)
/// once its recorder is installed, so that the units are known.
///
/// ```
/// let recorder = staunch_gateway::prometheus().build_recorder();
/// # let _ = recorder;
/// ```
pub fn prometheus() -> metrics_exporter_prometheus::PrometheusBuilder {
    use metrics_exporter_prometheus::Matcher;
    use staunch::observe::semconv::{DURATION_BUCKETS, TOKEN_BUCKETS, metric};
    let builder =
        metrics_exporter_prometheus::PrometheusBuilder::new().with_recommended_naming(true);
    let buckets = [
        (metric::OPERATION_DURATION, &DURATION_BUCKETS),
        (metric::TIME_TO_FIRST_CHUNK, &DURATION_BUCKETS),
        (metric::TOKEN_USAGE, &TOKEN_BUCKETS),
    ];
    buckets
        .into_iter()
        .fold(builder, |builder, (name, bounds)| {
            // Bounds that are not empty never fail.
            builder
                .set_buckets_for_metric(Matcher::Full(name.to_owned()), bounds)
                .unwrap_or_else(|_| {
                    metrics_exporter_prometheus::PrometheusBuilder::new()
                        .with_recommended_naming(true)
                })
        })
}

/// How often [`metrics_upkeep`] folds the recorded histogram samples into
/// their summaries.
pub const METRICS_UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps a Prometheus recorder's memory bounded whether or not anything
/// scrapes `/metrics`: every [`METRICS_UPKEEP_EVERY`], it folds the
/// histogram samples recorded since into their summaries, whose size is
/// bounded.
///
/// A recorder from `PrometheusBuilder::install_recorder` keeps every
/// histogram sample until the next scrape: unscraped, a busy gateway's
/// memory grows with every request (in a test, 200,000 samples, those of
/// 100,000 requests, held 3.3 MB).
/// Spawn this beside it; it runs until its task is dropped.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
/// tokio::spawn(staunch_gateway::metrics_upkeep(recorder.clone()));
/// # Ok(()) }
/// ```
pub async fn metrics_upkeep(recorder: metrics_exporter_prometheus::PrometheusHandle) {
    let mut every = tokio::time::interval(METRICS_UPKEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        recorder.run_upkeep();
    }
}

/// `GET /healthz`: the process is up.
pub(crate) async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: a configuration is loaded and every route has a target
/// whose circuit is not open.
pub(crate) async fn readyz(State(gateway): State<Gateway>) -> Response {
    let running = gateway.current();
    let routes: Vec<_> = running
        .routes
        .iter()
        .map(|r| {
            let targets: Vec<_> = r
                .breakers
                .iter()
                .map(|(name, b)| json!({"target": name, "circuit": b.state().as_str()}))
                .collect();
            json!({"model": r.route.model, "ready": r.ready(), "targets": targets})
        })
        .collect();
    let ready = running.routes.iter().all(|r| r.ready());
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"ready": ready, "routes": routes})),
    )
        .into_response()
}

/// The header that carries the request id, both ways. A constant: a
/// header name given as a `&str` is copied onto the heap at each insert.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request id that is unique in this process and hard to guess across
/// restarts: `req_`, the start-up clock's nanoseconds in 16 hex digits, then
/// a counter in 8, written on the stack.
fn new_request_id() -> [u8; 28] {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut id = *b"req_000000000000000000000000";
    hex_into(&mut id[4..20], nanos);
    hex_into(&mut id[20..], n);
    id
}

/// Writes the low digits of `n` in lowercase hex, filling `out`.
fn hex_into(out: &mut [u8], mut n: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
    }
}

/// Takes `x-request-id` (a short printable one) or makes one, logs the
/// request within a span that carries it, and echoes it in the response.
pub(crate) async fn request_id(mut request: Request, next: Next) -> Response {
    let made;
    let id = match request
        .headers()
        .get(&X_REQUEST_ID)
        .map(HeaderValue::as_bytes)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.iter().all(|b| b.is_ascii_graphic()))
    {
        Some(given) => given,
        None => {
            made = new_request_id();
            &made
        }
    };
    // A copy: the client's value is a slice of the connection's read
    // buffer, which must not be held for the whole request.
    let value = HeaderValue::from_bytes(id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    request.headers_mut().insert(X_REQUEST_ID, value.clone());
    let span = tracing::info_span!(
        target: "staunch_gateway",
        "request",
        // Printable ASCII, checked above. Given as `&str`, not through
        // `%` (Display): the same field value, recorded without a trip
        // through the formatting machinery.
        request_id = value.to_str().unwrap_or("invalid"),
        method = request.method().as_str(),
        path = request.uri().path(),
    );
    let started = std::time::Instant::now();
    // The span is kept in the future and read back once it is done (no
    // second handle to it, taken and released for every request).
    let mut served = std::pin::pin!(next.run(request).instrument(span));
    let mut response = served.as_mut().await;
    served.span().in_scope(|| {
        tracing::info!(
            target: "staunch_gateway",
            // The message as a string field, first as a format string's
            // would be: the same key, value and place, written without the
            // formatting machinery.
            message = "served",
            status = response.status().as_u16(),
            model = response.headers().get("x-staunch-model").and_then(|v| v.to_str().ok()).unwrap_or(""),
            tier = response.headers().get("x-staunch-tier").and_then(|v| v.to_str().ok()).unwrap_or(""),
            ms = started.elapsed().as_secs_f64() * 1e3,
        );
    });
    response.headers_mut().insert(X_REQUEST_ID, value);
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn made_request_ids_are_hex_after_a_prefix_and_differ() {
        let (a, b) = (super::new_request_id(), super::new_request_id());
        assert_ne!(a, b);
        for id in [a, b] {
            let id = std::str::from_utf8(&id).unwrap();
            let hex = id.strip_prefix("req_").unwrap();
            assert_eq!(hex.len(), 24);
            assert!(
                hex.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
        }
        let mut out = [0; 8];
        super::hex_into(&mut out, 0xdead_beef);
        assert_eq!(&out, b"deadbeef");
    }
}
