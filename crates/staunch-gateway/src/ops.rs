//! Operations: `/metrics`, `/healthz`, `/readyz`.

use crate::build::Gateway;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

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
/// it), and every histogram a true histogram with bucket boundaries, never
/// a summary: the OpenTelemetry GenAI metrics with the conventions'
/// boundaries (`gen_ai_client_operation_duration_seconds`,
/// `gen_ai_client_token_usage`,
/// `gen_ai_client_operation_time_to_first_chunk_seconds`), staunch's own
/// durations with the same ones as the GenAI durations, the fallback depth
/// by depth ([`DEPTH_BUCKETS`]) and the cost per request in dollars
/// ([`COST_BUCKETS`]). Buckets add up across replicas, where a summary's
/// quantiles do not, and a sample costs a bucket's count rather than a
/// place in a sketch that is kept re-centred. Call
/// [`describe_metrics`](staunch::observe::semconv::describe_metrics) once
/// its recorder is installed, so that the units are known.
///
/// ```
/// let recorder = staunch_gateway::prometheus().build_recorder();
/// # let _ = recorder;
/// ```
pub fn prometheus() -> metrics_exporter_prometheus::PrometheusBuilder {
    use metrics_exporter_prometheus::Matcher;
    use staunch::metrics as names;
    use staunch::observe::semconv::{DURATION_BUCKETS, TOKEN_BUCKETS, metric};
    let builder =
        metrics_exporter_prometheus::PrometheusBuilder::new().with_recommended_naming(true);
    let buckets: [(&str, &[f64]); 8] = [
        (metric::OPERATION_DURATION, &DURATION_BUCKETS),
        (metric::TIME_TO_FIRST_CHUNK, &DURATION_BUCKETS),
        (metric::TOKEN_USAGE, &TOKEN_BUCKETS),
        (names::REQUEST_DURATION, &DURATION_BUCKETS),
        (names::TIME_TO_FIRST_TOKEN, &DURATION_BUCKETS),
        (names::STREAM_DURATION, &DURATION_BUCKETS),
        (names::FALLBACK_DEPTH, &DEPTH_BUCKETS),
        (names::REQUEST_COST, &COST_BUCKETS),
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

/// The bucket boundaries of `staunch_fallback_depth` in the gateway's
/// exporter: the target that answered, 0 being the first.
pub const DEPTH_BUCKETS: [f64; 7] = [0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0];

/// The bucket boundaries of `staunch_request_cost_usd` in the gateway's
/// exporter, in dollars: a thousandth of a cent to 300 dollars, two per
/// decade.
pub const COST_BUCKETS: [f64; 16] = [
    0.00001, 0.00003, 0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0,
    100.0, 300.0,
];

/// How often [`metrics_upkeep`] folds the recorded histogram samples into
/// their buckets (or summaries).
pub const METRICS_UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps a Prometheus recorder's memory bounded whether or not anything
/// scrapes `/metrics`: every [`METRICS_UPKEEP_EVERY`], it folds the
/// histogram samples recorded since into their buckets (a summary's
/// sketch, for a recorder that keeps summaries), whose size is bounded.
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
