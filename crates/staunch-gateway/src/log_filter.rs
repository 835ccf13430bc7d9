//! Which log lines `RUST_LOG` lets through, at the least cost per request.
//!
//! tracing-subscriber's [`EnvFilter`] reads the whole directive syntax,
//! `target[span{field=value}]=level`. To filter on spans and fields it
//! keeps a table of the spans that match, and it looks every span up in
//! it as the span is entered, exited, recorded and closed, under a lock:
//! several times a request, each request's spans being entered at every
//! poll. Most settings (none at all, `info`, `staunch=debug,hyper=warn`)
//! name only targets and levels, which [`Targets`] reads the same way (the
//! same parser, the same matching: the most specific target wins) and
//! decides once per callsite, with nothing to do per span.
//! [`log_filter`] picks `Targets` for those and `EnvFilter` for the rest.

use std::str::FromStr;
use tracing::Subscriber;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::{Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

/// What lines are written with no `RUST_LOG`: INFO and above.
const DEFAULT: &str = "info";

/// The filter of `RUST_LOG`'s value `directives` (`None`: not set).
#[derive(Debug)]
pub enum LogFilter {
    /// Targets and levels only.
    Targets(Targets),
    /// Directives on spans or fields.
    Env(Box<EnvFilter>),
}

/// The filter `directives` ask for, as the gateway has always read them:
/// `None`, or directives that do not parse, give INFO and above; an empty
/// value is `EnvFilter`'s reading of it.
pub fn log_filter(directives: Option<&str>) -> LogFilter {
    let Some(directives) = directives else {
        return LogFilter::Targets(default_targets());
    };
    // What EnvFilter does not read gives the default, as it always has.
    let Ok(filter) = EnvFilter::try_new(directives) else {
        return LogFilter::Targets(default_targets());
    };
    // Span and field directives (`[span{field=value}]`) need EnvFilter. So
    // do empty ones (`info,`), which EnvFilter skips and Targets reads as
    // a directive of their own, and an empty value.
    let plain =
        !directives.contains(['[', '{']) && directives.split(',').all(|d| !d.trim().is_empty());
    match Targets::from_str(directives) {
        Ok(targets) if plain => LogFilter::Targets(targets),
        _ => LogFilter::Env(Box::new(filter)),
    }
}

fn default_targets() -> Targets {
    // A constant that parses.
    Targets::from_str(DEFAULT).unwrap_or_else(|_| Targets::new())
}

impl LogFilter {
    /// Whether the log shows staunch's own debug lines (`RUST_LOG` with
    /// `staunch=debug`, `debug` or finer): then whoever reads it is
    /// looking into the calls, and each call's `llm.request` span around
    /// their lines helps. For span or field directives, whether anything
    /// at DEBUG or finer may be shown.
    pub fn shows_staunch_debug(&self) -> bool {
        match self {
            LogFilter::Targets(targets) => targets.would_enable("staunch", &tracing::Level::DEBUG),
            LogFilter::Env(filter) => {
                <EnvFilter as Layer<tracing_subscriber::Registry>>::max_level_hint(filter)
                    .is_none_or(|level| level >= tracing::level_filters::LevelFilter::DEBUG)
            }
        }
    }

    /// The filter as a layer of its own, filtering for every layer of the
    /// subscriber.
    pub fn layer<S>(self) -> Box<dyn Layer<S> + Send + Sync>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        match self {
            LogFilter::Targets(targets) => Box::new(targets),
            LogFilter::Env(filter) => filter,
        }
    }

    /// The filter of one layer (`Layer::with_filter`).
    pub fn per_layer<S>(self) -> Box<dyn Filter<S> + Send + Sync>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        match self {
            LogFilter::Targets(targets) => Box::new(targets),
            LogFilter::Env(filter) => filter,
        }
    }
}
