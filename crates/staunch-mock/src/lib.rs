//! A mock LLM server for testing resilience: real HTTP on loopback, the
//! OpenAI Chat Completions (`POST /v1/chat/completions`) and Anthropic
//! Messages (`POST /v1/messages`) wire formats, deterministic answers, and
//! faults on demand.
//!
//! # Answers
//!
//! A normal answer depends on what the request asks for, the same way in
//! both dialects:
//!
//! - **text**: `mock answer to: <the last user message>` (its first 48
//!   characters);
//! - **a tool call**, when the request has tools and the user spoke last
//!   (or `tool_choice` forces a call: OpenAI `required` or a named function,
//!   Anthropic `any` or `tool`): a call to the first (or the named) tool
//!   whose arguments are valid for its schema ([`schema::example`]).
//!   OpenAI: `message.tool_calls` with the arguments as JSON text, `content:
//!   null`, `finish_reason: tool_calls`, ids `call_mock_<n>`. Anthropic: one
//!   `tool_use` block with an `input` object, `stop_reason: tool_use`, ids
//!   `toolu_mock_<n>`. `tool_choice` `none` never calls; a forced name
//!   that is not among the tools is the provider's 400;
//! - **after tool results** (OpenAI `role: tool` messages, Anthropic
//!   `tool_result` blocks in the last user turn): text quoting them,
//!   `Tool result: <content>` (500 characters each at most), one line each
//!   (with OpenAI `json_object`, as the `answer`; with `json_schema`, the
//!   JSON answer as usual);
//! - **JSON**: OpenAI `response_format` `json_schema` gets content that is
//!   JSON valid for the schema, `json_object` gets `{"answer": "<text>"}`.
//!   Anthropic sends a JSON format as a forced tool, so it gets a `tool_use`
//!   of that tool whose input matches its `input_schema`.
//!
//! # Faults
//!
//! Faults come from a [`Scenario`]: an ordered script per route (the Nth
//! request gets fault N), random faults with probabilities and a seed, an
//! outage window, context windows per model, added latency. In scenario
//! files a fault is `{ type = "<name>", ... }`:
//!
//! | `type` | what the client gets |
//! |---|---|
//! | `ok` | the normal answer |
//! | `latency` (`ms`) | the normal answer, `ms` later |
//! | `rate_limit` (`retry_after`) | 429 with `Retry-After` (and OpenAI's `retry-after-ms`) |
//! | `overloaded` (`retry_after`?) | OpenAI 503 / Anthropic 529 `overloaded_error` |
//! | `server_error` | 500 |
//! | `bad_gateway` | 502 with an HTML body |
//! | `quota` | 429 `insufficient_quota` / Anthropic's spend limit |
//! | `unauthorized` | 401 |
//! | `context_overflow` | the provider's 400 context-length error (also served when a prompt exceeds its model's window) |
//! | `content_filter` | 200 with `finish_reason: content_filter` / `stop_reason: refusal` |
//! | `bad_tool_arguments` | 200 whose tool call's arguments are not JSON (OpenAI) or an object missing the required properties (Anthropic); a normal answer when no tool is called |
//! | `schema_violation` | 200 whose tool arguments or JSON answer are valid JSON that breaks the schema; a normal answer when there is no tool call or JSON format |
//! | `malformed` | 200 whose body is not JSON |
//! | `cut_json` | 200 whose JSON stops halfway (the HTTP message is complete) |
//! | `truncated` | 200 whose body stops halfway and the connection closes |
//! | `hang` | no answer until the client gives up or the server stops |
//! | `reset` | the connection closes without an answer |
//! | `status` (`status`, `body`, `headers`) | any status, body and headers of your own |
//!
//! Error faults carry the provider's own error body and headers (request
//! ids, `Retry-After`). Scenarios load from TOML or JSON, are built in
//! code, or are replaced at runtime through the control endpoint:
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
pub mod schema;
mod server;
mod state;

pub use scenario::{Fault, Outage, RandomFault, RouteScenario, Scenario, ScenarioError};
pub use server::MockServer;
pub use state::{MockStats, Received, RecordLimits, RecordedBody, Route};
