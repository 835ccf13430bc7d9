//! A mock LLM server for testing resilience: real HTTP on loopback, the
//! OpenAI Chat Completions (`POST /v1/chat/completions`) and Anthropic
//! Messages (`POST /v1/messages`) wire formats, deterministic answers, and
//! faults on demand.
//!
//! Faults come from a [`Scenario`]: an ordered script per route (the Nth
//! request gets fault N), random faults with probabilities and a seed, an
//! outage window, context windows per model, added latency. A fault is any
//! status with the provider's own error body and headers (`Retry-After`,
//! `retry-after-ms`, request ids), a hang, a reset connection, a body that
//! is not JSON, a JSON body cut in half, a body cut off mid-transfer, a
//! content-filter stop, a context overflow. Scenarios load from TOML or
//! JSON, are built in code, or are replaced at runtime through the control
//! endpoint:
//!
//! | endpoint | what |
//! |---|---|
//! | `GET /_mock/stats` | requests per route, faults served, the newest requests (within [`RecordLimits`]: 100 requests, 4 MiB by default) |
//! | `GET /_mock/scenario` | the scenario in force, as JSON |
//! | `POST /_mock/scenario` | replace the scenario (JSON body) |
//! | `POST /_mock/reset` | forget the stats, restart the clock, reseed |
//!
//! The `staunch-mock` binary serves a scenario file:
//! `cargo run -p staunch-mock -- --scenario chaos.toml --port 8080`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod render;
mod scenario;
mod server;
mod state;

pub use scenario::{Fault, Outage, RandomFault, RouteScenario, Scenario, ScenarioError};
pub use server::MockServer;
pub use state::{MockStats, Received, RecordLimits, RecordedBody, Route};
