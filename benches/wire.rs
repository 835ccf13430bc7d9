//! The gateway's wire work for the OpenAI dialect, per request and per
//! streamed token, next to serde_json reading the same bytes into a
//! `serde_json::Value` (the least any JSON-parsing proxy does with them),
//! in one run:
//!
//! - `decode_request`: a client's Chat Completions body (a system and a
//!   user message, `max_tokens`, `stream`, and two parameters staunch has
//!   no field for, kept as extras) into a `ChatRequest`;
//! - `value_request`: the same body into a `Value`;
//! - `encode_chunk`: one streamed text delta written as a chunk frame;
//! - `value_chunk`: the same chunk's JSON read into a `Value`;
//! - `openai_answer`: a whole answer (text, usage) written as a Chat
//!   Completions body;
//! - `anthropic_answer`: the same answer as a Messages body;
//! - `anthropic_delta`: one streamed text delta written as a Messages
//!   `content_block_delta` event (the stream already started);
//! - `responses_delta`: the same delta as a Responses
//!   `response.output_text.delta` event (the stream and its message item
//!   already started);
//! - `gemini_chunk`: the same delta as a Gemini stream chunk;
//! - `gemini_answer`: the whole answer as a `GenerateContentResponse`;
//! - `responses_answer`: the whole answer as a Response object, repeating
//!   the settings of a typical request (instructions, a temperature);
//! - `responses_stream`: the same answer streamed as the Responses events,
//!   eight text deltas with the usage and finish reason: the stream's
//!   `response.created`, `response.in_progress`, its message item's events
//!   and `response.completed`, each repeating those settings.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use staunch::core::{ChatResponse, StreamEvent, Usage};
use staunch_providers::anthropic::wire as anthropic;
use staunch_providers::gemini::wire as gemini;
use staunch_providers::openai::wire::{decode_request, encode_chunk, encode_response};
use staunch_providers::responses::wire as responses;
use std::hint::black_box;

const REQUEST: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a terse assistant. Answer in one short sentence."},{"role":"user","content":"What is the capital of France, and why is it famous?"}],"max_tokens":16,"temperature":0.2,"stream":true,"stream_options":{"include_usage":true},"user":"user-1234","seed":7}"#;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire");
    group.bench_function("decode_request", |b| {
        b.iter(|| decode_request(black_box(REQUEST)).expect("a valid request"))
    });
    group.bench_function("value_request", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(REQUEST)).expect("JSON"))
    });
    let event = StreamEvent::TextDelta(" famous".to_owned());
    let id = "chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012";
    group.bench_function("encode_chunk", |b| {
        b.iter(|| {
            encode_chunk(
                black_box(&event),
                id,
                "gpt-4o-mini-2024-07-18",
                1_733_500_000,
                false,
                true,
            )
        })
    });
    let chunk = encode_chunk(
        &event,
        id,
        "gpt-4o-mini-2024-07-18",
        1_733_500_000,
        false,
        true,
    )
    .expect("a chunk");
    let json = &chunk[b"data: ".len()..chunk.len() - 2];
    group.bench_function("value_chunk", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(json)).expect("JSON"))
    });
    let mut answer = ChatResponse::new(
        "gpt-4o-mini-2024-07-18",
        "Paris; it is famous for the Eiffel Tower and the Louvre.",
    );
    answer.id = id.to_owned();
    answer.usage = Usage::new(38, 14);
    group.bench_function("openai_answer", |b| {
        b.iter(|| encode_response(black_box(&answer), 1_733_500_000))
    });
    group.bench_function("anthropic_answer", |b| {
        b.iter(|| anthropic::encode_response(black_box(&answer)).expect("an answer"))
    });
    let mut encoder = anthropic::StreamEncoder::new(id, "claude-sonnet-4-5");
    // The stream's start and its text block's start, once.
    black_box(encoder.encode(&event));
    group.bench_function("anthropic_delta", |b| {
        b.iter(|| encoder.encode(black_box(&event)))
    });
    // A fresh encoder per batch: a Responses encoder keeps the text so far
    // (its `.done` events repeat it), which would grow without end here.
    let started = || {
        let mut encoder = responses::StreamEncoder::new(
            "resp_AbCdEfGhIjKlMnOpQrStUvWxYz012",
            "gpt-4o-mini-2024-07-18",
            1_733_500_000,
            responses::ResponsesOptions::default(),
        );
        black_box(encoder.encode(&event));
        encoder
    };
    group.bench_function("responses_delta", |b| {
        b.iter_batched_ref(
            started,
            |encoder| encoder.encode(black_box(&event)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("gemini_answer", |b| {
        b.iter(|| gemini::encode_response(black_box(&answer)).expect("an answer"))
    });
    let options = responses::decode_request(
        br#"{"model":"gpt-4o-mini","input":"What is the capital of France?","instructions":"Answer in one sentence.","temperature":0.2}"#,
    )
    .expect("a valid request")
    .options;
    group.bench_function("responses_answer", |b| {
        b.iter(|| responses::encode_response(black_box(&answer), &options, 1_733_500_000))
    });
    let tokens: Vec<StreamEvent> = [
        "The", " capital", " of", " France", " is", " Paris", ",", " famous.",
    ]
    .into_iter()
    .map(|t| StreamEvent::TextDelta(t.to_owned()))
    .chain([
        StreamEvent::Usage(Usage::new(31, 8)),
        StreamEvent::Finish(staunch::core::FinishReason::Stop),
    ])
    .collect();
    group.bench_function("responses_stream", |b| {
        b.iter(|| {
            let mut encoder =
                responses::StreamEncoder::new(id, "gpt-4o-mini", 1_733_500_000, options.clone());
            let mut bytes = 0;
            for event in &tokens {
                bytes += encoder.encode(black_box(event)).len();
            }
            bytes + encoder.finish().len()
        })
    });
    let mut encoder = gemini::StreamEncoder::new(id, "gemini-2.5-flash");
    group.bench_function("gemini_chunk", |b| {
        b.iter(|| encoder.encode(black_box(&event)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
