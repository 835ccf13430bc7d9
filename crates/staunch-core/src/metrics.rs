//! The names of the metrics recorded below the `staunch` crate, by crates
//! that may not depend on it (the provider clients).
//!
//! Every one is re-exported from `staunch::metrics`, the one list of
//! staunch's metric names: dashboards and alerts read them there.

/// Counter: stream events skipped because they could not be read (an SSE
/// event whose data is not the dialect's JSON), by `provider`. Three in a
/// row end the stream with a `malformed_response` error. A steady rate
/// means a provider's streams (or a proxy in front of it) are degrading.
pub const STREAM_MALFORMED_EVENTS: &str = "staunch_stream_malformed_events_total";
