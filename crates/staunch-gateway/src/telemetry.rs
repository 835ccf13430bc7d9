//! OTLP export of the gateway's spans and metrics (feature `otlp`),
//! configured by [`[telemetry]`](crate::config::Telemetry).
//!
//! [`Otlp::start`] builds an OpenTelemetry tracer provider and meter
//! provider that post to the collector over OTLP/HTTP (protobuf or JSON),
//! with the `service.name` of the configuration. The binary then adds
//! [`Otlp::layer`] to its tracing subscriber (the `tracing` spans become
//! OpenTelemetry spans: the GenAI conventions' `{operation} {model}`
//! client span, its `llm.attempt` children, the HTTP request around them)
//! and [`Otlp::metrics_recorder`] beside the Prometheus recorder (the
//! `metrics` facade's metrics become OpenTelemetry instruments, the
//! `gen_ai.client.*` histograms with the conventions' units and bucket
//! boundaries). [`Otlp::shutdown`] exports what is left and stops them.
//!
//! The SDK exports from threads of its own, outside any tokio runtime; each
//! export's HTTP call is run on the runtime given to [`Otlp::start`], so
//! that runtime must outlive [`Otlp::shutdown`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use metrics_exporter_otel::OpenTelemetryRecorder;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument, PeriodicReader, SdkMeterProvider, Stream, Temporality,
};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use staunch::observe::semconv::{DURATION_BUCKETS, TOKEN_BUCKETS, metric};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::config::{OtlpProtocol, Telemetry};

/// How long one export may take before it is abandoned.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The instrumentation scope the gateway's spans and metrics carry.
const SCOPE: &str = "staunch-gateway";

/// Why OTLP export could not start.
#[derive(Debug)]
pub struct OtlpError(String);

impl fmt::Display for OtlpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not set up OTLP export: {}", self.0)
    }
}

impl std::error::Error for OtlpError {}

/// The OpenTelemetry providers that export the gateway's spans and
/// metrics. Dropped without [`Otlp::shutdown`], they shut down on their
/// own; `shutdown` says whether what was left got out.
pub struct Otlp {
    tracer: SdkTracerProvider,
    meter: Option<SdkMeterProvider>,
}

impl fmt::Debug for Otlp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Otlp")
            .field("metrics", &self.meter.is_some())
            .finish_non_exhaustive()
    }
}

impl Otlp {
    /// Starts exporting as `config` says: `None` when it names no
    /// endpoint. Each export's HTTP call runs on `runtime`.
    pub fn start(
        config: &Telemetry,
        runtime: tokio::runtime::Handle,
    ) -> Result<Option<Otlp>, OtlpError> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let base = endpoint.trim_end_matches('/');
        let client = OnRuntime::new(runtime)?;
        let protocol = match config.protocol {
            OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
            OtlpProtocol::HttpJson => Protocol::HttpJson,
        };
        let headers: HashMap<String, String> = config
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();

        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{base}/v1/traces"))
            .with_protocol(protocol)
            .with_timeout(EXPORT_TIMEOUT)
            .with_headers(headers.clone())
            .with_http_client(client.clone())
            .build()
            .map_err(|e| OtlpError(e.to_string()))?;
        let tracer = SdkTracerProvider::builder()
            .with_batch_exporter(spans)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sampling_ratio,
            ))))
            .with_resource(resource.clone())
            .build();

        let meter = if config.export_metrics {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_endpoint(format!("{base}/v1/metrics"))
                .with_protocol(protocol)
                .with_timeout(EXPORT_TIMEOUT)
                .with_headers(headers)
                .with_http_client(client)
                .with_temporality(Temporality::Cumulative)
                .build()
                .map_err(|e| OtlpError(e.to_string()))?;
            let reader = PeriodicReader::builder(exporter)
                .with_interval(config.metrics_interval)
                .build();
            Some(
                SdkMeterProvider::builder()
                    .with_reader(reader)
                    .with_resource(resource)
                    .with_view(token_usage_view)
                    .build(),
            )
        } else {
            None
        };
        Ok(Some(Otlp { tracer, meter }))
    }

    /// The tracing layer that turns spans into OpenTelemetry spans (with
    /// the events inside them as span events), whatever `RUST_LOG` says of
    /// the logs: staunch's spans at DEBUG and above (the retry layer's
    /// `llm.attempt` spans are DEBUG), the rest at INFO and above, except
    /// the OpenTelemetry SDK's own.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let filter = tracing_subscriber::filter::filter_fn(|meta| {
            let target = meta.target();
            let least = if meta.is_span() && target.starts_with("staunch") {
                tracing::Level::DEBUG
            } else {
                tracing::Level::INFO
            };
            *meta.level() <= least && !target.starts_with("opentelemetry")
        });
        tracing_opentelemetry::layer()
            .with_tracer(self.tracer.tracer(SCOPE))
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(filter)
    }

    /// A `metrics` recorder that records into the meter provider, with the
    /// GenAI histograms' bucket boundaries set: to be installed beside the
    /// Prometheus recorder (`metrics_util::layers::FanoutBuilder`), and
    /// described (`semconv::describe_metrics`) after. `None` when metrics
    /// are not exported.
    pub fn metrics_recorder(&self) -> Option<OpenTelemetryRecorder> {
        use opentelemetry::metrics::MeterProvider as _;
        let meter = self.meter.as_ref()?;
        let recorder = OpenTelemetryRecorder::new(meter.meter(SCOPE));
        let bounds = [
            (metric::OPERATION_DURATION, &DURATION_BUCKETS),
            (metric::TIME_TO_FIRST_CHUNK, &DURATION_BUCKETS),
            (metric::TOKEN_USAGE, &TOKEN_BUCKETS),
        ];
        for (name, bounds) in bounds {
            recorder.set_histogram_bounds(&metrics::KeyName::from(name), bounds.to_vec());
        }
        Some(recorder)
    }

    /// Exports the spans and metrics not yet sent and stops exporting.
    /// Blocks until done (or each export's timeout): call it from outside
    /// the runtime given to [`Otlp::start`], while that runtime still runs.
    pub fn shutdown(self) {
        if let Err(e) = self.tracer.shutdown() {
            tracing::warn!(error = %e, "OTLP: the last spans may not have been exported");
        }
        if let Some(meter) = self.meter
            && let Err(e) = meter.shutdown()
        {
            tracing::warn!(error = %e, "OTLP: the last metrics may not have been exported");
        }
    }
}

/// The conventions give the token usage histogram the unit `{token}`,
/// which the `metrics` facade cannot say (its `Count` is `1`); a view sets
/// it, and the buckets with it (a view replaces the instrument's own).
fn token_usage_view(instrument: &Instrument) -> Option<Stream> {
    if instrument.name() != metric::TOKEN_USAGE {
        return None;
    }
    Stream::builder()
        .with_unit("{token}")
        .with_aggregation(Aggregation::ExplicitBucketHistogram {
            boundaries: TOKEN_BUCKETS.to_vec(),
            record_min_max: true,
        })
        .build()
        .ok()
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// An OTLP HTTP client (hyper over rustls, `http://` and `https://`)
/// whose calls run on a tokio runtime: the SDK's export threads have
/// none.
#[derive(Clone)]
struct OnRuntime {
    client: opentelemetry_http::hyper::HyperClient<Connector>,
    runtime: tokio::runtime::Handle,
}

impl fmt::Debug for OnRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnRuntime").finish_non_exhaustive()
    }
}

impl OnRuntime {
    fn new(runtime: tokio::runtime::Handle) -> Result<Self, OtlpError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .map_err(|e| OtlpError(format!("TLS: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = opentelemetry_http::hyper::HyperClient::new(https, EXPORT_TIMEOUT, None);
        Ok(OnRuntime { client, runtime })
    }
}

impl HttpClient for OnRuntime {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let client = self.client.clone();
        let call = self
            .runtime
            .spawn(async move { client.send_bytes(request).await });
        Box::pin(async move { call.await? })
    }
}
