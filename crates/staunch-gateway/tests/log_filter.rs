//! `log_filter` lets through exactly what `EnvFilter` let through for the
//! same `RUST_LOG` (the gateway's filter before it), for every setting a
//! user is likely to give, odd ones included: each setting filters the
//! same events, from targets and levels of every kind, under both.

use staunch_gateway::log_filter::{LogFilter, log_filter};
use std::sync::{Arc, Mutex};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Keeps `target level` of every event that reaches it.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl<S: Subscriber> Layer<S> for Seen {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}", meta.target(), meta.level()));
    }
}

macro_rules! every_level {
    ($target:literal) => {
        tracing::trace!(target: $target, "x");
        tracing::debug!(target: $target, "x");
        tracing::info!(target: $target, "x");
        tracing::warn!(target: $target, "x");
        tracing::error!(target: $target, "x");
    };
}

/// Emits events of every level from targets of every kind the gateway's
/// logs have (its own, staunch's, its dependencies'), inside a span.
fn emit() {
    let span = tracing::info_span!(target: "staunch_gateway", "request", id = 1);
    let _entered = span.enter();
    every_level!("staunch");
    every_level!("staunch::retry");
    every_level!("staunch::circuit_breaker");
    every_level!("staunch_gateway");
    every_level!("staunch_gateway::ingress");
    every_level!("staunch_providers");
    every_level!("hyper");
    every_level!("hyper_util::client::legacy");
    every_level!("h2");
    every_level!("other");
}

/// The events `filter` lets through.
fn seen_under(
    filter: impl Layer<tracing_subscriber::layer::Layered<Seen, tracing_subscriber::Registry>>
    + Send
    + Sync
    + 'static,
) -> Vec<String> {
    let seen = Seen::default();
    let subscriber = tracing_subscriber::registry()
        .with(seen.clone())
        .with(filter);
    tracing::subscriber::with_default(subscriber, emit);
    seen.0.lock().unwrap().clone()
}

#[test]
fn every_setting_lets_through_what_env_filter_did() {
    let settings: &[Option<&str>] = &[
        None,
        Some("info"),
        Some("INFO"),
        Some("debug"),
        Some("trace"),
        Some("warn"),
        Some("error"),
        Some("off"),
        Some("3"),
        Some("staunch=debug"),
        Some("staunch=debug,hyper=warn"),
        Some("info,staunch::retry=trace,staunch=warn"),
        Some("staunch_gateway=off,debug"),
        Some("hyper_util=trace,h2=error,info"),
        Some("staunch"),
        Some("staunch_gateway::ingress"),
        Some("info,"),
        Some(",debug"),
        Some(" info"),
        Some("staunch=debug, hyper=warn"),
        Some(""),
        Some("not a level=="),
        Some("staunch=loud"),
        Some("[request]=debug"),
        Some("[request{id=1}]=trace,warn"),
        Some("staunch[request]=debug"),
    ];
    let mut filtered_somewhere = false;
    for &setting in settings {
        // The gateway's filter before: RUST_LOG through EnvFilter, INFO and
        // above when unset or not understood.
        let before = setting
            .and_then(|s| EnvFilter::try_new(s).ok())
            .unwrap_or_else(|| EnvFilter::new("info"));
        let want = seen_under(before);
        let now = log_filter(setting);
        let through_targets = matches!(now, LogFilter::Targets(_));
        let got = seen_under(now.layer());
        assert_eq!(got, want, "RUST_LOG={setting:?}");
        filtered_somewhere |= !got.is_empty() && got.len() < 50;
        // The cheap filter for targets and levels; the span and field
        // settings keep EnvFilter.
        if let Some(s) = setting
            && s.contains('[')
        {
            assert!(!through_targets, "RUST_LOG={s:?}");
        }
        if matches!(
            setting,
            None | Some("info") | Some("staunch=debug,hyper=warn")
        ) {
            assert!(through_targets, "RUST_LOG={setting:?}");
        }
    }
    assert!(filtered_somewhere, "the settings told the events apart");
}

/// The gateway keeps each call's `llm.request` span only when the log
/// shows staunch's debug lines (or it exports spans): whoever sets that is
/// looking into the calls. Which settings count.
#[test]
fn staunch_debug_is_shown_exactly_when_a_setting_lets_it_through() {
    for (setting, shown) in [
        (None, false),
        (Some("info"), false),
        (Some("warn"), false),
        (Some("staunch_gateway=debug"), false),
        (Some("staunch=debug"), true),
        (Some("info,staunch=debug,hyper=warn"), true),
        (Some("debug"), true),
        (Some("trace"), true),
        (Some("debug,staunch=info"), false),
        (Some("not a filter ["), false),
        // Span and field settings: whether anything at DEBUG may show.
        (Some("info,[request]=debug"), true),
        (Some("[request]=info"), false),
    ] {
        assert_eq!(
            log_filter(setting).shows_staunch_debug(),
            shown,
            "RUST_LOG={setting:?}"
        );
    }
}
