//! The staunch gateway.
//!
//! ```text
//! staunch-gateway [--config FILE] [--listen ADDR]   serve
//! staunch-gateway check FILE                        validate a configuration
//! ```
//!
//! With no `--config` it serves the embedded mock LLM server, every model
//! routed to it, so a new user sees it work at once. SIGTERM (or Ctrl-C)
//! drains the requests and streams in flight within the configured grace
//! period; SIGHUP reloads the configuration file without dropping a
//! request (a configuration that fails to load or build is refused and the
//! old one kept). With `[telemetry] otlp_endpoint` set (feature `otlp`),
//! spans and metrics also go to an OpenTelemetry collector; what is left
//! of them is exported after the draining.

/// The binary's allocator (feature `jemalloc`, on by default): jemalloc
/// with one arena, which hands freed memory back to the system after a
/// quarter of a second. With glibc's malloc each worker thread allocates
/// from an arena of its own, memory one worker frees is not reused by the
/// other, and frees across threads contend on the arenas' locks. At 1,000
/// concurrent requests this took peak RSS from 51-57 MB to 44-45 MB and CPU
/// per request from 63-98 µs to 51-74 µs (`docs/gateway-benchmarks.md`).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts: one arena for every thread (each
/// thread still caches small blocks of its own); unused pages returned
/// after 250 ms, at once rather than in a second stage.
/// `_RJEM_MALLOC_CONF` in the environment is read after this string, so
/// an operator can override any of them.
// SAFETY: jemalloc reads this symbol (its weak `malloc_conf`, prefixed as
// tikv-jemalloc-sys builds it) as a `const char *` to a NUL-terminated
// string; a reference to a byte array with a final NUL is exactly that, and
// it is never written.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[unsafe(export_name = "_rjem_malloc_conf")]
#[allow(non_upper_case_globals)]
pub static malloc_conf: &[u8; 46] = b"narenas:1,dirty_decay_ms:250,muzzy_decay_ms:0\0";

use staunch_gateway::Gateway;
use staunch_gateway::config::{Config, LogFormat};
use staunch_gateway::json_log::JsonLog;
use staunch_gateway::log_filter::log_filter;
use staunch_gateway::log_writer::{self, LogWriter};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// The OTLP export, when the configuration asks for one.
#[cfg(feature = "otlp")]
type Export = staunch_gateway::telemetry::Otlp;
/// Without the feature `otlp`, never made.
#[cfg(not(feature = "otlp"))]
type Export = std::convert::Infallible;

/// The staunch stack as an OpenAI- and Anthropic-compatible gateway.
///
/// With no --config it serves the embedded mock LLM server, every model
/// routed to it. SIGTERM (or Ctrl-C) drains the requests and streams in
/// flight; SIGHUP reloads the configuration file.
#[derive(clap::Parser)]
#[command(name = "staunch-gateway", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("STAUNCH_GATEWAY_COMMIT"), ")"))]
struct Cli {
    /// The configuration file (TOML); without it, the embedded mock.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The address to listen on, instead of the file's `[server] listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Validates a configuration file and prints every error with its line.
    Check {
        /// The configuration file (TOML).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    match cli.command {
        Some(Command::Check { file: path }) => match Config::load(&path) {
            Ok(config) => {
                println!(
                    "{}: ok ({} provider(s), {} route(s), {} client key(s))",
                    path.display(),
                    config.providers.len(),
                    config.routes.len(),
                    config.client_keys.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        None => {
            let (config, listen) = (cli.config, cli.listen);
            // Declared before the runtime, so dropped after it: what its
            // tasks log while it shuts down is still written.
            let (logs, logs_guard) =
                match LogWriter::new(std::io::stderr(), log_writer::DEFAULT_CAPACITY) {
                    Ok(writer) => writer,
                    Err(e) => {
                        eprintln!("could not start the log writer: {e}");
                        return ExitCode::FAILURE;
                    }
                };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("could not start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let mut export = None;
            let result = runtime.block_on(serve(config, listen, logs, &mut export));
            // From this thread, while the runtime (which makes the
            // exporter's HTTP calls) still runs.
            #[cfg(feature = "otlp")]
            if let Some(export) = export {
                export.shutdown();
            }
            #[cfg(not(feature = "otlp"))]
            let _ = export;
            drop(runtime);
            // Writes out the lines still buffered (after SIGTERM's draining
            // too), before the error below.
            drop(logs_guard);
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("{message}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Log lines the log writer dropped because stderr did not keep up.
const LOG_LINES_DROPPED: &str = "staunch_gateway_log_lines_dropped_total";

/// Starts the log; returns whether it shows staunch's debug lines.
fn init_logs(format: LogFormat, logs: LogWriter, export: Option<&Export>) -> bool {
    // RUST_LOG as EnvFilter reads it; targets and levels alone through a
    // filter that has nothing to do per span (src/log_filter.rs).
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let staunch_debug = filter.shows_staunch_debug();
    #[cfg(feature = "otlp")]
    if let Some(export) = export {
        use tracing_subscriber::prelude::*;
        // RUST_LOG filters the logs only: the export keeps the spans at
        // INFO and above whatever it says.
        let fmt: Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync> =
            match format {
                LogFormat::Json => Box::new(JsonLog::new(logs)),
                _ => Box::new(tracing_subscriber::fmt::layer().with_writer(logs)),
            };
        tracing_subscriber::registry()
            .with(fmt.with_filter(filter.per_layer()))
            .with(export.layer())
            .init();
        return staunch_debug;
    }
    #[cfg(not(feature = "otlp"))]
    let _ = export;
    // Logs go to stderr; stdout carries only the address line. Through a
    // bounded buffer and a thread of their own (src/log_writer.rs): a
    // worker never waits for stderr, and a stalled stderr costs dropped
    // (and counted) lines, not stalled requests. JSON lines are written by
    // the gateway's own layer (src/json_log.rs), in tracing-subscriber's
    // JSON shape at a fraction of its cost.
    use tracing_subscriber::prelude::*;
    match format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(JsonLog::new(logs))
            .with(filter.layer())
            .init(),
        _ => tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(logs))
            .with(filter.layer())
            .init(),
    }
    staunch_debug
}

/// Starts the OTLP export `config` asks for, if any.
#[cfg(feature = "otlp")]
fn start_export(config: &Config) -> Result<Option<Export>, String> {
    staunch_gateway::telemetry::Otlp::start(&config.telemetry, tokio::runtime::Handle::current())
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "otlp"))]
fn start_export(config: &Config) -> Result<Option<Export>, String> {
    match config.telemetry.enabled() {
        true => Err(
            "[telemetry] otlp_endpoint is set, but this staunch-gateway was built \
                     without OTLP export (the cargo feature `otlp`)"
                .to_owned(),
        ),
        false => Ok(None),
    }
}

/// Installs the Prometheus recorder (whose handle renders `/metrics`),
/// and beside it the OTLP export's when it exports metrics.
fn install_metrics(
    export: Option<&Export>,
) -> Result<metrics_exporter_prometheus::PrometheusHandle, String> {
    let prometheus = staunch_gateway::prometheus().build_recorder();
    let handle = prometheus.handle();
    // No idle timeout is set, so the recorder's handles stay valid: each
    // thread keeps them instead of a registry lookup per recording.
    let prometheus = staunch_gateway::metric_handles::HandleCache::new(prometheus);
    let failed = |e: &dyn std::fmt::Display| format!("could not install the metrics recorder: {e}");
    #[cfg(feature = "otlp")]
    if let Some(otlp) = export.and_then(|e| e.metrics_recorder()) {
        let both = metrics_util::layers::FanoutBuilder::default()
            .add_recorder(prometheus)
            .add_recorder(otlp)
            .build();
        metrics::set_global_recorder(both).map_err(|e| failed(&e))?;
        return Ok(handle);
    }
    #[cfg(not(feature = "otlp"))]
    let _ = export;
    metrics::set_global_recorder(prometheus).map_err(|e| failed(&e))?;
    Ok(handle)
}

async fn serve(
    path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    logs: LogWriter,
    export: &mut Option<Export>,
) -> Result<(), String> {
    let mut config = match &path {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::mock(),
    };
    if let Some(listen) = listen {
        config.server.listen = listen;
        config.validate().map_err(|e| e.to_string())?;
    }
    *export = start_export(&config)?;
    let staunch_debug = init_logs(config.server.log_format, logs.clone(), export.as_ref());
    if let Some(endpoint) = &config.telemetry.otlp_endpoint {
        let t = &config.telemetry;
        // The headers' names only: their values are credentials.
        let headers: Vec<&str> = t.headers.keys().map(String::as_str).collect();
        tracing::info!(
            endpoint = %endpoint,
            protocol = t.protocol.as_str(),
            headers = ?headers,
            sampling_ratio = t.sampling_ratio,
            service_name = %t.service_name,
            metrics = t.export_metrics,
            "exporting spans and metrics over OTLP"
        );
    }
    if path.is_none() {
        let keys = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"]
            .iter()
            .any(|k| std::env::var_os(k).is_some());
        tracing::warn!(
            provider_keys_set = keys,
            "no --config: serving the embedded mock LLM server for every model \
             (see crates/staunch-gateway/examples/gateway.toml to route to real providers)"
        );
    }
    if config.client_keys.is_empty() {
        tracing::warn!(
            listen = %config.server.listen,
            "client authentication is off: no client keys are configured and the gateway listens on loopback only"
        );
    }
    let recorder = install_metrics(export.as_ref())?;
    staunch::observe::semconv::describe_metrics();
    metrics::describe_counter!(
        LOG_LINES_DROPPED,
        "Log lines dropped because stderr did not keep up (the log writer's buffer was full)"
    );
    // Brought up to date at each scrape rather than on every dropped line.
    let log_lines_dropped = metrics::counter!(LOG_LINES_DROPPED);
    // Without it, histogram samples pile up until something scrapes /metrics.
    tokio::spawn(staunch_gateway::metrics_upkeep(recorder.clone()));
    let grace = config.server.shutdown_grace;
    let listen = config.server.listen;
    let file_limit = staunch_gateway::server::raise_open_file_limit();
    let limits = staunch_gateway::server::Limits::new(&config.server, file_limit);
    tracing::info!(
        open_file_limit = file_limit,
        max_connections = limits.max_connections,
        header_timeout_secs = limits.header_timeout.as_secs_f64(),
        idle_timeout_secs = limits.idle_timeout.as_secs_f64(),
        "client connection limits"
    );
    if let Some(file_limit) = file_limit
        && limits.max_connections as u64 > file_limit.saturating_sub(64)
    {
        tracing::warn!(
            open_file_limit = file_limit,
            max_connections = limits.max_connections,
            "max_connections leaves too few file descriptors for upstream connections and logs"
        );
    }
    // Only an exporter reads whole spans: without one, the request spans'
    // outcome fields (recorded as each span closes) would show nowhere.
    // Nor, unless the log shows staunch's debug lines, would the span
    // itself: the log names each request by its own span's request_id.
    let exports_spans = export.is_some();
    let gateway = Gateway::build(config)
        .await
        .map_err(|e| format!("could not start: {e}"))?
        .span_outcome(exports_spans)
        .llm_spans(exports_spans || staunch_debug)
        .with_metrics(move || {
            log_lines_dropped.absolute(logs.dropped_lines());
            recorder.render()
        });
    let listener = staunch_gateway::server::bind(listen)
        .map_err(|e| format!("could not listen on {listen}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    println!("gateway listening on http://{bound}");
    tracing::info!(address = %bound, "gateway listening");

    if let Some(path) = path.clone() {
        tokio::spawn(reload_on_sighup(gateway.clone(), path));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // On a worker thread rather than this one, so that what a connection
    // allocates comes from the workers' malloc arenas, not a third one.
    let mut server = tokio::spawn(staunch_gateway::server::serve(
        listener,
        staunch_gateway::service(gateway),
        limits,
        stop_rx,
    ));
    tokio::select! {
        result = &mut server => return result.map_err(|e| e.to_string()),
        () = shutdown_signal() => {}
    }
    tracing::info!(
        grace_secs = grace.as_secs_f64(),
        "shutting down: draining requests in flight"
    );
    let _ = stop_tx.send(true);
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => {
            tracing::warn!("the grace period ended with requests still in flight");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn reload_on_sighup(gateway: Gateway, path: PathBuf) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match Config::load(&path) {
                Err(errors) => {
                    tracing::error!(errors = %errors, "reload refused: the configuration is invalid; the old one stays")
                }
                Ok(config) => {
                    if config.telemetry != gateway.config().telemetry {
                        tracing::warn!(
                            "[telemetry] changed: the new settings take effect at the next start"
                        );
                    }
                    match gateway.reload(config).await {
                        Ok(()) => tracing::info!(path = %path.display(), "configuration reloaded"),
                        Err(e) => {
                            tracing::error!(error = %e, "reload refused; the old configuration stays")
                        }
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (gateway, path);
        std::future::pending::<()>().await;
    }
}
