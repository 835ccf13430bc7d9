//! The `[telemetry]` table: exporting the gateway's spans and metrics to
//! an OpenTelemetry collector over OTLP/HTTP. Off unless `otlp_endpoint`
//! is set.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::durations::secs;
use super::spans::{Seg, child, key};
use super::validate::Check;

/// The `[telemetry]` table.
///
/// With `otlp_endpoint` set, the gateway sends every request's spans (the
/// `{operation} {model}` client span of the OpenTelemetry GenAI
/// conventions, its attempts, the HTTP request around them) and the
/// metrics of `/metrics` (the `gen_ai.client.*` histograms with the
/// conventions' units and buckets, and staunch's own) to the collector,
/// beside the Prometheus endpoint. Changes take effect at the next start,
/// not on reload.
///
/// `Debug` prints the header names only: their values are credentials.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Telemetry {
    /// The collector's OTLP/HTTP base URL (`otlp_endpoint`, e.g.
    /// `"http://127.0.0.1:4318"`); the gateway posts to `/v1/traces` and
    /// `/v1/metrics` under it. None (the default): no export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// The encoding (`protocol`, `"http/protobuf"` (default) or
    /// `"http/json"`).
    pub protocol: OtlpProtocol,
    /// Headers sent with every export (`headers`, a table of name = value),
    /// such as a backend's API key. Never logged nor shown in errors.
    /// `OTEL_EXPORTER_OTLP_HEADERS` in the environment (`name=value,...`)
    /// adds to them and wins, so a key can stay out of the file.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The share of traces recorded, 0.0 to 1.0 (`sampling_ratio`,
    /// default 1.0), by trace id; a span whose parent was sampled is
    /// sampled too (parent-based).
    pub sampling_ratio: f64,
    /// The `service.name` of the resource (`service_name`, default
    /// `"staunch-gateway"`).
    pub service_name: String,
    /// Whether the metrics are exported too (`export_metrics`, default
    /// true); the spans always are.
    pub export_metrics: bool,
    /// How often the metrics are exported (`metrics_interval_secs`,
    /// default 60, at least 1).
    #[serde(rename = "metrics_interval_secs", with = "secs")]
    pub metrics_interval: Duration,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            otlp_endpoint: None,
            protocol: OtlpProtocol::HttpProtobuf,
            headers: BTreeMap::new(),
            sampling_ratio: 1.0,
            service_name: "staunch-gateway".to_owned(),
            export_metrics: true,
            metrics_interval: Duration::from_secs(60),
        }
    }
}

impl Telemetry {
    /// Whether an endpoint is set, so that the gateway exports.
    pub fn enabled(&self) -> bool {
        self.otlp_endpoint.is_some()
    }

    /// Whether every setting is its default (the table is then not
    /// written when a configuration is serialized).
    pub fn is_default(&self) -> bool {
        *self == Telemetry::default()
    }
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|name| (name.as_str(), "[redacted]"))
            .collect();
        f.debug_struct("Telemetry")
            .field("otlp_endpoint", &self.otlp_endpoint)
            .field("protocol", &self.protocol)
            .field("headers", &headers)
            .field("sampling_ratio", &self.sampling_ratio)
            .field("service_name", &self.service_name)
            .field("export_metrics", &self.export_metrics)
            .field("metrics_interval", &self.metrics_interval)
            .finish()
    }
}

/// How OTLP payloads are encoded over HTTP. (OTLP over gRPC is not
/// offered: it would bring a second HTTP/2 stack for one connection.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// Protobuf (`"http/protobuf"`, the default; OTLP's own default).
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// JSON (`"http/json"`).
    #[serde(rename = "http/json")]
    HttpJson,
}

impl OtlpProtocol {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::HttpProtobuf => "http/protobuf",
            OtlpProtocol::HttpJson => "http/json",
        }
    }
}

impl Check<'_> {
    /// The checks of `[telemetry]`. Nothing here prints a header's value.
    pub(super) fn telemetry(&mut self, t: &Telemetry) {
        let at = |k: &str| key(&[Seg::Key("telemetry".into())], k);
        if let Some(endpoint) = &t.otlp_endpoint {
            match endpoint.parse::<http::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.authority().is_some() =>
                {
                    let path = uri.path().trim_end_matches('/');
                    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
                        self.error(
                            at("otlp_endpoint"),
                            "credentials do not belong in the URL; put them in [telemetry.headers]",
                        );
                    } else if uri.query().is_some() {
                        self.error(
                            at("otlp_endpoint"),
                            "the collector's base URL takes no query",
                        );
                    } else if path.ends_with("/v1/traces") || path.ends_with("/v1/metrics") {
                        self.error(
                            at("otlp_endpoint"),
                            "give the collector's base URL (e.g. \"http://127.0.0.1:4318\"): \
                             the gateway adds /v1/traces and /v1/metrics",
                        );
                    }
                }
                _ => self.error(
                    at("otlp_endpoint"),
                    "not an http:// or https:// URL (e.g. \"http://127.0.0.1:4318\"; \
                     OTLP over gRPC is not offered)",
                ),
            }
        }
        for (name, value) in &t.headers {
            let path = child(&at("headers"), Seg::Key(name.clone()));
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.error(path, format!("{name:?} is not a valid header name"));
            } else if http::HeaderValue::from_str(value).is_err() {
                // The value may be a key: never shown.
                self.error(path, "not a valid header value");
            }
        }
        if !(0.0..=1.0).contains(&t.sampling_ratio) {
            self.error(
                at("sampling_ratio"),
                format!("must be between 0.0 and 1.0 (got {})", t.sampling_ratio),
            );
        }
        if t.service_name.trim().is_empty() {
            self.error(at("service_name"), "must not be empty");
        }
        let interval = Duration::from_secs(1)..=Duration::from_secs(3_600);
        if !interval.contains(&t.metrics_interval) {
            self.error(
                at("metrics_interval_secs"),
                format!(
                    "must be between 1 and 3600 seconds (got {})",
                    t.metrics_interval.as_secs_f64()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::ConfigError;

    const ROUTES: &str = r#"
[providers.mock]
kind = "mock"

[[routes]]
model = "*"
targets = [{ provider = "mock", model = "m" }]
"#;

    fn parse(telemetry: &str) -> Result<Config, Vec<ConfigError>> {
        Config::parse(&format!("{telemetry}\n{ROUTES}"), "gw.toml").map_err(|e| e.0)
    }

    #[test]
    fn off_by_default_and_every_default() {
        let c = parse("").unwrap();
        assert_eq!(c.telemetry, Telemetry::default());
        assert!(!c.telemetry.enabled());
        assert_eq!(c.telemetry.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(c.telemetry.sampling_ratio, 1.0);
        assert_eq!(c.telemetry.service_name, "staunch-gateway");
        assert!(c.telemetry.export_metrics);
        assert_eq!(c.telemetry.metrics_interval, Duration::from_secs(60));
    }

    #[test]
    fn reads_every_field_and_round_trips() {
        let c = parse(
            r#"
[telemetry]
otlp_endpoint = "https://otel.example.com:4318/otlp"
protocol = "http/json"
headers = { x-honeycomb-team = "secret-team-key" }
sampling_ratio = 0.25
service_name = "gw-eu"
export_metrics = false
metrics_interval_secs = 15
"#,
        )
        .unwrap();
        let t = &c.telemetry;
        assert!(t.enabled());
        assert_eq!(
            t.otlp_endpoint.as_deref(),
            Some("https://otel.example.com:4318/otlp")
        );
        assert_eq!(t.protocol, OtlpProtocol::HttpJson);
        assert_eq!(t.headers["x-honeycomb-team"], "secret-team-key");
        assert_eq!(t.sampling_ratio, 0.25);
        assert_eq!(t.service_name, "gw-eu");
        assert!(!t.export_metrics);
        assert_eq!(t.metrics_interval, Duration::from_secs(15));
        // The header's value is a credential: Debug shows its name only.
        let debug = format!("{c:?}");
        assert!(debug.contains("x-honeycomb-team"), "{debug}");
        assert!(!debug.contains("secret-team-key"), "{debug}");
        // Written out and read back, the same.
        let text = toml::to_string(&c).unwrap();
        assert_eq!(Config::parse(&text, "again.toml").unwrap(), c);
    }

    #[test]
    fn mistakes_name_their_line_and_field_and_never_a_header_value() {
        let errors = parse(
            r#"
[telemetry]
otlp_endpoint = "localhost:4318"
headers = { "bad name" = "x", authorization = "Bearer sk-very-secret\n" }
sampling_ratio = 1.5
service_name = " "
metrics_interval_secs = 0.5
"#,
        )
        .unwrap_err();
        let find = |field: &str| {
            errors
                .iter()
                .find(|e| e.field == field)
                .unwrap_or_else(|| panic!("no error for {field} in {errors:#?}"))
        };
        assert_eq!(find("telemetry.otlp_endpoint").line, Some(3));
        assert!(find("telemetry.otlp_endpoint").message.contains("http://"));
        assert_eq!(find("telemetry.headers.\"bad name\"").line, Some(4));
        assert_eq!(
            find("telemetry.headers.authorization").message,
            "not a valid header value"
        );
        assert_eq!(find("telemetry.sampling_ratio").line, Some(5));
        assert_eq!(find("telemetry.service_name").line, Some(6));
        assert_eq!(find("telemetry.metrics_interval_secs").line, Some(7));
        assert_eq!(errors.len(), 6, "{errors:#?}");
        for e in &errors {
            assert!(!e.to_string().contains("sk-very-secret"), "{e}");
        }
    }

    #[test]
    fn the_example_file_documents_it_off() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway.toml");
        let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.telemetry, Telemetry::default());
    }

    #[test]
    fn refuses_grpc_a_signal_path_and_unknown_keys() {
        let e = parse("[telemetry]\nprotocol = \"grpc\"").unwrap_err();
        assert_eq!(e[0].field, "telemetry.protocol");
        assert!(e[0].message.contains("http/protobuf"), "{}", e[0].message);

        let e =
            parse("[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"").unwrap_err();
        assert!(e[0].message.contains("base URL"), "{}", e[0].message);

        let e = parse("[telemetry]\nendpoint = \"http://127.0.0.1:4318\"").unwrap_err();
        assert_eq!(e[0].line, Some(2));
        assert!(e[0].message.contains("unknown field"), "{}", e[0].message);
    }
}
