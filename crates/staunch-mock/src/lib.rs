//! A mock LLM server for testing resilience: real HTTP on loopback, the
//! OpenAI Chat Completions (`POST /v1/chat/completions`), OpenAI embeddings
//! (`POST /v1/embeddings`), Anthropic Messages (`POST /v1/messages`),
//! Google Gemini (`POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent`) and OpenAI Responses (`POST /v1/responses`)
//! wire formats, deterministic answers, and faults on demand.
//!
//! # Answers
//!
//! A normal answer depends on what the request asks for, the same way in
//! every dialect (Gemini and Responses below):
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
//!   of that tool whose input matches its `input_schema`;
//! - **an assistant prefill** (the conversation ends with the assistant's
//!   turn: OpenAI a trailing `{"role": "assistant", "content": "..."}`
//!   without tool calls, Anthropic a trailing assistant turn) whose text
//!   begins the text answer gets only the rest of it, streamed or not (a
//!   prefill that does not begin it gets the whole answer). A route with
//!   `reject_prefill = true` answers the provider's 400
//!   `invalid_request_error` "prefill is not supported" instead.
//!
//! # Gemini
//!
//! The model is the path's (`/v1beta/models/{model}:…`, or `/v1/…`);
//! `:streamGenerateContent` streams (server-sent events, with `alt=sse` or
//! not). The key may come as `x-goog-api-key` or `?key=`. The request's
//! `contents` (roles `user` and `model`, parts `text`, `functionCall`,
//! `functionResponse`), `systemInstruction`, `tools[].functionDeclarations`
//! (`parameters` in Gemini's OpenAPI subset, `"type": "OBJECT"`, or
//! `parametersJsonSchema`), `toolConfig.functionCallingConfig` (`NONE`,
//! `ANY` with `allowedFunctionNames`, `AUTO`) and `generationConfig`
//! (`responseMimeType: application/json` with `responseJsonSchema` or
//! `responseSchema`; `maxOutputTokens`) are read as the others' are; a
//! trailing `model` turn is a prefill; tool results are the
//! `functionResponse`s' `response` (its `output` or `result` when text).
//! The answer is `{"candidates": [{"content": {"role": "model", "parts":
//! [{"text"} | {"functionCall": {"name", "args"}}]}, "finishReason",
//! "index"}], "usageMetadata": {"promptTokenCount", "candidatesTokenCount",
//! "totalTokenCount"}, "modelVersion", "responseId"}`; `finishReason` is
//! `STOP`, `MAX_TOKENS` (a text longer than `maxOutputTokens` words is cut
//! there) or `SAFETY` (the content filter: no content, `safetyRatings`). A
//! stream is `data: {GenerateContentResponse}` frames without event names:
//! a chunk per piece of text, or one with the whole `functionCall`, then a
//! last chunk with the `finishReason` and `usageMetadata`; there is no
//! `[DONE]`, so `no_terminator` leaves that last chunk out. Errors are
//! `{"error": {"code", "message", "status", "details"?}}` with no
//! `Retry-After` header: a rate limit is 429 `RESOURCE_EXHAUSTED` with a
//! per-minute `QuotaFailure` and a `RetryInfo` (`retryDelay: "2s"`), a
//! quota 429 `RESOURCE_EXHAUSTED` with a per-day `QuotaFailure` and no
//! `RetryInfo`, overloaded 503 `UNAVAILABLE` (with a `RetryInfo` when it
//! has a `retry_after`), server 500 `INTERNAL`, unauthorized 401
//! `UNAUTHENTICATED` (`API_KEY_INVALID`), a context overflow 400
//! `INVALID_ARGUMENT` "The input token count (N) exceeds the maximum number
//! of tokens allowed (M)." (M: the model's window, else 1048576), a refused
//! request 400 `INVALID_ARGUMENT`. An error event is `data: {"error":
//! {…}}`.
//!
//! # Responses
//!
//! `POST /v1/responses` reads `instructions`, `input` (text, or items:
//! messages whose content is text or `input_text`/`output_text` parts,
//! `function_call`, `function_call_output`), `tools` (`{"type":
//! "function", "name", "parameters"}`), `tool_choice` and `text.format`
//! (`json_schema`, `json_object`); it keeps no state, so a tool-result
//! round is read from the `function_call_output` items the input ends
//! with. The answer is a Response object (`id: resp_mock_<n>`, `object:
//! "response"`, `status`, `model`, `output`: a `message` with an
//! `output_text` part, or a `function_call` item with `call_id`, `name`
//! and `arguments` as JSON text; `usage` with its details; the request's
//! settings echoed: `instructions`, `tools`, `tool_choice`, `text`,
//! `metadata`, …). The content filter is `status: "incomplete"` with
//! `incomplete_details.reason: "content_filter"`. With `stream: true`: the
//! typed events (`event: <type>`, each with its `sequence_number`):
//! `response.created`, `response.in_progress`, then for text
//! `response.output_item.added`, `response.content_part.added`, a
//! `response.output_text.delta` per piece, `response.output_text.done`,
//! `response.content_part.done`, `response.output_item.done`; for a tool
//! call `response.output_item.added`, `response.function_call_arguments.delta`
//! pieces, `.done`, `response.output_item.done`; last `response.completed`
//! (`response.incomplete` for a content filter), which `no_terminator`
//! leaves out. Errors are OpenAI's; an error event is `event: error`
//! `{"type": "error", "code", "message", "param", "sequence_number"}`.
//!
//! # Embeddings
//!
//! `POST /v1/embeddings` answers as OpenAI does: `{"object": "list",
//! "data": [{"object": "embedding", "index", "embedding"}], "model",
//! "usage": {"prompt_tokens", "total_tokens"}}`, one vector per input in
//! input order. `input` is a string, an array of strings, an array of
//! token ids or an array of token arrays. Each vector is deterministic
//! (drawn from a hash of the model and the input) and of unit length; its
//! length is `dimensions`, else [`Scenario::embedding_dimensions`] (16 by
//! default, for speed), and a shortened vector is the start of the full one
//! scaled to unit length again. `encoding_format: "base64"` gets base64 of
//! the little-endian `f32`s (what the official Python SDK asks for by
//! default), `"float"` or none JSON numbers. Usage counts four bytes of
//! text per token (rounded up, per input) and one per token id.
//!
//! A request OpenAI would refuse gets its 400 `invalid_request_error`: an
//! `input` that is empty or not one of those shapes, more inputs than
//! [`Scenario::embedding_max_inputs`] (2048 by default: "Too many inputs.
//! The max number of inputs is 2048. …"), `dimensions` outside 1–8192, an
//! unknown `encoding_format`. With a context window for the model, an input
//! longer than the window gets the context-overflow 400.
//!
//! The route has its own faults ([`Scenario::embeddings`]) and counts
//! ([`Route::Embeddings`], `embeddings` in the stats): the status faults,
//! `latency`, `hang`, `reset`, `malformed`, `cut_json`, `truncated` and
//! `status` work as for chat; the stream, content-filter, tool and schema
//! faults leave its normal answer. An outage of the `openai` route covers it.
//!
//! # Streaming
//!
//! A request with `"stream": true` gets `200` with `content-type:
//! text/event-stream` and the same answer as above (text, tool call, JSON,
//! prefill remainder) sent event by event over time: the text in
//! token-sized pieces (words with the whitespace before them, at most 12
//! bytes), a tool call's arguments in pieces of its JSON, so the collected
//! stream equals the answer that is not streamed. Each content event comes
//! [`Scenario::stream_token_ms`] after the one before (5 ms by default, 0:
//! as fast as possible; a route can set its own,
//! [`RouteScenario::stream_token_ms`]).
//!
//! - **OpenAI**: `data: {chunk}\n\n` events of `chat.completion.chunk`
//!   (`id`, `object`, `created`, `model`, `choices[{index, delta,
//!   finish_reason}]`): a first chunk with `delta.role: "assistant"`
//!   (and `content: ""`, or `null` before a tool call), a chunk per piece
//!   of text (`delta.content`), or a tool call's opening (`tool_calls[{index,
//!   id, type, function: {name, arguments: ""}}]`) and then its argument
//!   pieces (`tool_calls[{index, function: {arguments}}]`); a chunk with
//!   an empty delta and the `finish_reason` (`stop`, `tool_calls`,
//!   `content_filter`); with `stream_options.include_usage`, a chunk with
//!   `choices: []` and the `usage` (every other chunk then has `usage:
//!   null`); then `data: [DONE]`.
//! - **Anthropic**: `event: X\ndata: {json}\n\n` events: `message_start`
//!   (the message without content, `usage.input_tokens`), for text a
//!   `content_block_start` of a text block, `ping`; then `content_block_delta`
//!   events (`text_delta`), or a `tool_use` block's `content_block_start`
//!   (`id`, `name`, `input: {}`) and its input as `input_json_delta`
//!   `partial_json` pieces; `content_block_stop`, `message_delta`
//!   (`stop_reason`, `usage.output_tokens`), `message_stop`.
//!
//! A stream's *content events* are its pieces of text, a tool call's
//! opening and its argument pieces (not the role chunk, `message_start`,
//! `ping` or the finish): the stream faults below count them, and a count
//! past the answer's end means just before the finish. Faults that are not
//! about streams work the same on a streamed request (an error status
//! before any byte, latency before the headers, a hang, a reset); the
//! stream faults leave a request without `stream` its normal answer
//! (`slow_first_token` delays it).
//!
//! # Faults
//!
//! Faults come from a [`Scenario`]: an ordered script per route (its
//! field: `openai`, `anthropic`, `embeddings`, `gemini`, `responses`; the
//! Nth request gets fault N), random faults with probabilities and a seed, an
//! outage window, context windows per model, added latency. In scenario
//! files a fault is `{ type = "<name>", ... }`:
//!
//! | `type` | what the client gets |
//! |---|---|
//! | `ok` | the normal answer |
//! | `latency` (`ms`) | the normal answer, `ms` later |
//! | `rate_limit` (`retry_after`) | 429 with `Retry-After` (and OpenAI's `retry-after-ms`; Gemini: a `RetryInfo` detail instead) |
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
//! | `slow_first_token` (`ms`) | a stream whose headers and opening events come at once and first content event `ms` later |
//! | `stall_after` (`tokens`) | a stream that sends `tokens` content events, then nothing (no finish, no terminator) with the connection open, until the client gives up |
//! | `cut_after` (`tokens`) | a stream whose connection closes abruptly after `tokens` content events (no finish, no terminator) |
//! | `malformed_event_at` (`n`) | a stream with an event that is not JSON (OpenAI `data: {"id":…,"choices": [`, Anthropic a cut `content_block_delta`) after `n` content events; it carries none of the answer and the stream goes on normally |
//! | `no_terminator` | a complete stream (content, finish, usage) without `data: [DONE]` / `message_stop`; the body then ends |
//! | `error_event_at` (`n`, `kind`) | a stream with an in-band error after `n` content events, then the end: OpenAI `data: {"error": {"message", "type", "param", "code"}}`, Anthropic `event: error` `{"type": "error", "error": {"type", "message"}}`; `kind` is `overloaded` (the default: OpenAI `server_error` "The engine is currently overloaded…", Anthropic `overloaded_error` "Overloaded"), `server` (`server_error` / `api_error`) or `rate_limit` (`rate_limit_exceeded` / `rate_limit_error`) |
//! | `error_first_frame` | a 200 event stream whose first and only frame is the overloaded error event: the provider failed before any content |
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

pub use scenario::{
    DEFAULT_EMBEDDING_DIMENSIONS, DEFAULT_EMBEDDING_MAX_INPUTS, DEFAULT_HTTP2_MAX_STREAMS,
    DEFAULT_STREAM_TOKEN_MS, Fault, Outage, RandomFault, RouteScenario, Scenario, ScenarioError,
    StreamErrorKind,
};
pub use server::MockServer;
pub use state::{MockStats, Received, RecordLimits, RecordedBody, Route};
