//! The Response object and its output items, written by hand: one writer
//! for the whole answer ([`encode_response`](super::ingress::encode_response))
//! and for the stream's events that carry a Response or an item
//! (`response.created`, `response.output_item.done`, `response.completed`, …).
//!
//! Keys are fixed text in the order a `serde_json::Value` object keeps them
//! (sorted), so the bytes are those serde_json wrote when these were built
//! as values: the tests keep that way as their oracle
//! (`value_oracle.rs`).

use super::ingress::ResponsesOptions;
use crate::json::{push_json_str, push_u64};
use serde_json::Value;
use staunch_core::{FinishReason, Usage};
use std::collections::BTreeMap;

/// What a Response says of settings its request did not give, as JSON
/// text; a request's own settings replace them.
pub(super) const RESPONSE_DEFAULTS: [(&str, &[u8]); 12] = [
    ("instructions", b"null"),
    ("max_output_tokens", b"null"),
    ("metadata", b"{}"),
    ("parallel_tool_calls", b"true"),
    ("reasoning", b"{\"effort\":null,\"summary\":null}"),
    ("temperature", b"null"),
    ("text", b"{\"format\":{\"type\":\"text\"}}"),
    ("tool_choice", b"\"auto\""),
    ("tools", b"[]"),
    ("top_p", b"null"),
    ("truncation", b"\"disabled\""),
    ("user", b"null"),
];

/// The fields of one Response object that are the answer's own.
pub(super) struct ResponseObject<'a> {
    /// Its id (`resp_…`).
    pub(super) id: &'a str,
    /// Its creation time, in seconds since the epoch.
    pub(super) created_at: u64,
    /// The model that answered.
    pub(super) model: &'a str,
    /// `in_progress`, `completed`, `incomplete` or `failed`.
    pub(super) status: &'a str,
    /// `incomplete_details`, as JSON text (`null` unless incomplete).
    pub(super) incomplete_details: &'static [u8],
    /// The error of a failed Response: its code and message.
    pub(super) error: Option<(&'static str, &'a str)>,
    /// The output items, as the JSON text of their array.
    pub(super) output: &'a [u8],
    /// The usage; `null` while in progress.
    pub(super) usage: Option<&'a Usage>,
    /// The request's settings, which the Response repeats.
    pub(super) options: &'a ResponsesOptions,
}

/// The JSON of one field of a Response.
enum Piece<'a> {
    /// Fixed JSON text.
    Json(&'static [u8]),
    /// JSON text written for this answer.
    Bytes(&'a [u8]),
    /// A string, escaped when written.
    Str(&'a str),
    /// A number.
    U64(u64),
    /// The usage.
    Usage(&'a Usage),
    /// A failed Response's error: its code and message.
    Error(&'static str, &'a str),
    /// One of the request's settings.
    Value(&'a Value),
}

/// Appends `response` as a Response object: the defaults of settings its
/// request did not give, the request's settings, then the answer's own
/// fields, each later one replacing an earlier one of the same name, all
/// in the names' order.
pub(super) fn write_response(out: &mut Vec<u8>, response: &ResponseObject<'_>) {
    let echo = response.options.echo();
    let mut fields: BTreeMap<&str, Piece<'_>> = RESPONSE_DEFAULTS
        .iter()
        .map(|&(key, json)| (key, Piece::Json(json)))
        .collect();
    for (key, value) in echo {
        fields.insert(key, Piece::Value(value));
    }
    for (key, piece) in [
        ("id", Piece::Str(response.id)),
        ("object", Piece::Json(b"\"response\"")),
        ("created_at", Piece::U64(response.created_at)),
        ("status", Piece::Str(response.status)),
        ("background", Piece::Json(b"false")),
        (
            "error",
            match response.error {
                Some((code, message)) => Piece::Error(code, message),
                None => Piece::Json(b"null"),
            },
        ),
        (
            "incomplete_details",
            Piece::Json(response.incomplete_details),
        ),
        ("model", Piece::Str(response.model)),
        ("output", Piece::Bytes(response.output)),
        ("previous_response_id", Piece::Json(b"null")),
        ("store", Piece::Json(b"false")),
        (
            "usage",
            match response.usage {
                Some(usage) => Piece::Usage(usage),
                None => Piece::Json(b"null"),
            },
        ),
    ] {
        fields.insert(key, piece);
    }
    out.reserve(
        720 + response.output.len() + response.id.len() + response.model.len() + echo.len() * 32,
    );
    out.push(b'{');
    for (i, (key, piece)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, key);
        out.push(b':');
        match piece {
            Piece::Json(json) => out.extend_from_slice(json),
            Piece::Bytes(bytes) => out.extend_from_slice(bytes),
            Piece::Str(text) => push_json_str(out, text),
            Piece::U64(n) => push_u64(out, *n),
            Piece::Usage(usage) => push_usage(out, usage),
            Piece::Error(code, message) => {
                out.extend_from_slice(b"{\"code\":");
                push_json_str(out, code);
                out.extend_from_slice(b",\"message\":");
                push_json_str(out, message);
                out.push(b'}');
            }
            // A JSON value written into a vector can't fail.
            Piece::Value(value) => {
                let _ = serde_json::to_writer(&mut *out, value);
            }
        }
    }
    out.push(b'}');
}

/// A Response's status and `incomplete_details` (JSON text) for a finish
/// reason: `incomplete` with its reason for a token limit or a content
/// filter, else `completed`.
pub(super) fn status(reason: &FinishReason) -> (&'static str, &'static [u8]) {
    match reason {
        FinishReason::Length => ("incomplete", b"{\"reason\":\"max_output_tokens\"}"),
        FinishReason::ContentFilter => ("incomplete", b"{\"reason\":\"content_filter\"}"),
        _ => ("completed", b"null"),
    }
}

/// Appends a usage object as the Responses API writes it.
fn push_usage(out: &mut Vec<u8>, usage: &Usage) {
    out.extend_from_slice(b"{\"input_tokens\":");
    push_u64(out, usage.input_tokens);
    out.extend_from_slice(
        b",\"input_tokens_details\":{\"cache_write_tokens\":0,\"cached_tokens\":",
    );
    push_u64(out, usage.cached_input_tokens);
    out.extend_from_slice(b"},\"output_tokens\":");
    push_u64(out, usage.output_tokens);
    out.extend_from_slice(b",\"output_tokens_details\":{\"reasoning_tokens\":");
    push_u64(out, usage.reasoning_tokens);
    out.extend_from_slice(b"},\"total_tokens\":");
    push_u64(out, usage.total());
    out.push(b'}');
}

/// Appends an `output_text` content part.
pub(super) fn push_text_part(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"{\"annotations\":[],\"logprobs\":[],\"text\":");
    push_json_str(out, text);
    out.extend_from_slice(b",\"type\":\"output_text\"}");
}

/// An output item's id: `prefix`, then `name`, then `_` and `index` when
/// given (`msg_…`, `fc_…_0`), written without being put together first.
#[derive(Clone, Copy)]
pub(super) struct ItemId<'a> {
    pub(super) prefix: &'static str,
    pub(super) name: &'a str,
    pub(super) index: Option<usize>,
}

impl<'a> ItemId<'a> {
    /// An id given whole.
    pub(super) fn whole(id: &'a str) -> Self {
        ItemId {
            prefix: "",
            name: id,
            index: None,
        }
    }
}

/// Appends `id` as a JSON string (`prefix` is plain text).
fn push_item_id(out: &mut Vec<u8>, id: ItemId<'_>) {
    let start = out.len();
    push_json_str(out, id.name);
    // Between the quotes: the prefix before, the index after.
    out.pop();
    out.splice(start + 1..start + 1, id.prefix.bytes());
    if let Some(index) = id.index {
        out.push(b'_');
        push_u64(out, index as u64);
    }
    out.push(b'"');
}

/// Appends an assistant `message` item, its content an `output_text` part
/// with `text` and a `refusal` part with `refusal`, each when given.
pub(super) fn push_message_item(
    out: &mut Vec<u8>,
    id: ItemId<'_>,
    status: &str,
    text: Option<&str>,
    refusal: Option<&str>,
) {
    out.extend_from_slice(b"{\"content\":[");
    if let Some(text) = text {
        push_text_part(out, text);
    }
    if let Some(refusal) = refusal {
        if text.is_some() {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"refusal\":");
        push_json_str(out, refusal);
        out.extend_from_slice(b",\"type\":\"refusal\"}");
    }
    out.extend_from_slice(b"],\"id\":");
    push_item_id(out, id);
    out.extend_from_slice(b",\"role\":\"assistant\",\"status\":");
    push_json_str(out, status);
    out.extend_from_slice(b",\"type\":\"message\"}");
}

/// Appends a `function_call` item.
pub(super) fn push_call_item(
    out: &mut Vec<u8>,
    id: ItemId<'_>,
    status: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
) {
    out.extend_from_slice(b"{\"arguments\":");
    push_json_str(out, arguments);
    out.extend_from_slice(b",\"call_id\":");
    push_json_str(out, call_id);
    out.extend_from_slice(b",\"id\":");
    push_item_id(out, id);
    out.extend_from_slice(b",\"name\":");
    push_json_str(out, name);
    out.extend_from_slice(b",\"status\":");
    push_json_str(out, status);
    out.extend_from_slice(b",\"type\":\"function_call\"}");
}
