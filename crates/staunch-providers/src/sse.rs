//! Server-Sent Events, decoded incrementally as the WHATWG HTML standard
//! describes them (§9.2 "Server-sent events", "Interpreting an event
//! stream"), with a bound on what one event may hold.
//!
//! Lines end in `\n`, `\r\n` or `\r`; `data:` lines are joined with `\n`;
//! `event:` names the event; comment lines (`:`), `id:` and `retry:` are
//! ignored; an empty line dispatches the event (none when it has no data);
//! one space after the colon is stripped; a leading byte-order mark is
//! dropped. Chunks may split anywhere, inside `\r\n` and inside a UTF-8
//! sequence alike; invalid UTF-8 in a frame is replaced, never a panic.
#![allow(dead_code)] // wired by the streaming client

use staunch_core::{ErrorKind, LlmError, StreamEvent};
use std::collections::VecDeque;
use std::fmt;

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SseFrame {
    /// The `event:` name; `None` when the stream gave none (the default
    /// type, `message`).
    pub(crate) event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub(crate) data: String,
}

impl SseFrame {
    /// A frame with data and no event name.
    pub(crate) fn data(data: impl Into<String>) -> Self {
        SseFrame {
            event: None,
            data: data.into(),
        }
    }

    /// A frame with an event name and data.
    pub(crate) fn named(event: impl Into<String>, data: impl Into<String>) -> Self {
        SseFrame {
            event: Some(event.into()),
            data: data.into(),
        }
    }
}

/// What a dialect's event parser made of one frame.
#[derive(Debug)]
pub(crate) enum Step {
    /// Neutral events to pass on, in order (never empty).
    Events(Vec<StreamEvent>),
    /// The stream's terminator (OpenAI's `[DONE]`, Anthropic's `message_stop`).
    Done,
    /// Nothing for the caller (keep-alives, role announcements, thinking).
    Ignore,
    /// The provider reported an error in the stream, or stopped the answer
    /// in a way that is an error (a content filter, a refusal).
    Error(LlmError),
    /// The frame is not what the dialect sends.
    Malformed(String),
}

/// One event grew past the decoder's bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SseTooLarge {
    /// The bound, in bytes.
    pub(crate) limit: usize,
}

impl fmt::Display for SseTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a stream event exceeded {} bytes", self.limit)
    }
}

impl std::error::Error for SseTooLarge {}

impl SseTooLarge {
    /// The error that ends the stream.
    pub(crate) fn into_error(self) -> LlmError {
        LlmError::new(ErrorKind::MalformedResponse, self.to_string())
    }
}

const BOM: &[u8] = "\u{feff}".as_bytes();

/// The incremental decoder. Feed it bytes with [`push`](Self::push), take
/// frames with [`next_frame`](Self::next_frame) after each push.
///
/// What it holds of the event in progress (the unfinished line, the data
/// so far, the event name) never exceeds `max_event_bytes`; frames
/// completed by one chunk wait in a queue until taken, so drain it after
/// every push.
#[derive(Debug)]
pub(crate) struct SseDecoder {
    max: usize,
    /// The unfinished line (never a comment: those are skipped as they come).
    line: Vec<u8>,
    /// The data buffer, each line followed by `\n`, as the standard keeps it.
    data: Vec<u8>,
    /// The event type buffer.
    event: Vec<u8>,
    /// The last byte seen was a `\r`: a `\n` first in the next chunk ends nothing.
    after_cr: bool,
    /// Inside a comment line: its bytes are dropped until the line ends.
    skipping: bool,
    /// No line ended yet (a byte-order mark may start this one).
    first_line: bool,
    /// A field line was read since the last dispatch.
    in_event: bool,
    /// The bound was exceeded: the decoder takes nothing more.
    failed: bool,
    frames: VecDeque<SseFrame>,
}

impl SseDecoder {
    /// A decoder that holds at most `max_event_bytes` of an event in progress.
    pub(crate) fn new(max_event_bytes: usize) -> Self {
        SseDecoder {
            max: max_event_bytes,
            line: Vec::new(),
            data: Vec::new(),
            event: Vec::new(),
            after_cr: false,
            skipping: false,
            first_line: true,
            in_event: false,
            failed: false,
            frames: VecDeque::new(),
        }
    }

    /// Feeds bytes; Err when one event grows past the bound (the caller ends
    /// the stream as `MalformedResponse`, see [`SseTooLarge::into_error`]).
    /// Frames completed before the oversized event stay queued. After an
    /// error every push fails.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<(), SseTooLarge> {
        if self.failed {
            return Err(self.too_large());
        }
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while !rest.is_empty() {
            // A streamed chunk is a few hundred bytes: found word by word
            // rather than byte by byte (about a thousand instructions an
            // event less).
            let Some(end) = memchr::memchr2(b'\n', b'\r', rest) else {
                self.partial(rest)?;
                break;
            };
            let (head, tail) = rest.split_at(end);
            self.end_line(head)?;
            rest = match tail {
                [b'\r', b'\n', after @ ..] => after,
                [b'\r'] => {
                    self.after_cr = true;
                    &[]
                }
                [_, after @ ..] => after,
                [] => &[],
            };
        }
        Ok(())
    }

    /// The next complete frame, if any.
    pub(crate) fn next_frame(&mut self) -> Option<SseFrame> {
        self.frames.pop_front()
    }

    /// At EOF: true when bytes of an unfinished event are pending (a cut).
    pub(crate) fn has_partial(&self) -> bool {
        self.failed || self.in_event || !self.line.is_empty()
    }

    /// Bytes held of the event in progress (the bound applies to it).
    pub(crate) fn held(&self) -> usize {
        self.line.len() + self.data.len() + self.event.len()
    }

    fn too_large(&self) -> SseTooLarge {
        SseTooLarge { limit: self.max }
    }

    fn fail(&mut self) -> SseTooLarge {
        self.failed = true;
        self.line = Vec::new();
        self.data = Vec::new();
        self.event = Vec::new();
        self.too_large()
    }

    /// Keeps the start of a line whose end has not come yet.
    fn partial(&mut self, part: &[u8]) -> Result<(), SseTooLarge> {
        if self.skipping {
            return Ok(());
        }
        if self.line.is_empty() && part.first() == Some(&b':') {
            self.skipping = true;
            return Ok(());
        }
        if self.held() + part.len() > self.max {
            return Err(self.fail());
        }
        self.line.extend_from_slice(part);
        Ok(())
    }

    /// A line ended: `head` is its part in the current chunk.
    fn end_line(&mut self, head: &[u8]) -> Result<(), SseTooLarge> {
        if self.skipping {
            self.skipping = false;
            self.first_line = false;
            return Ok(());
        }
        if self.line.is_empty() {
            return self.line(head);
        }
        if self.held() + head.len() > self.max {
            return Err(self.fail());
        }
        let mut line = std::mem::take(&mut self.line);
        line.extend_from_slice(head);
        let result = self.line(&line);
        if !self.failed {
            line.clear();
            self.line = line;
        }
        result
    }

    /// Interprets one complete line.
    fn line(&mut self, line: &[u8]) -> Result<(), SseTooLarge> {
        let line = if std::mem::take(&mut self.first_line) {
            line.strip_prefix(BOM).unwrap_or(line)
        } else {
            line
        };
        if line.is_empty() {
            self.dispatch();
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        self.in_event = true;
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                if self.held() + value.len() + 1 > self.max {
                    return Err(self.fail());
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"event" => {
                if self.held() - self.event.len() + value.len() > self.max {
                    return Err(self.fail());
                }
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            // `id`, `retry` and unknown fields change nothing we report.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self) {
        self.in_event = false;
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return;
        }
        // The frame gets a copy of its exact size (without the last line's
        // `\n`) and the buffer is kept for the next event, so a stream of
        // small events allocates once per event instead of growing a new
        // buffer from nothing each time; one event much larger than usual
        // does not stay held for the rest of the stream.
        let data = self.data[..self.data.len() - 1].to_vec();
        self.data.clear();
        if self.data.capacity() > KEPT_BUFFER {
            self.data = Vec::new();
        }
        let event = (!event.is_empty()).then(|| text(event));
        self.frames.push_back(SseFrame {
            event,
            data: text(data),
        });
    }
}

/// The most of its data buffer a decoder keeps between events.
const KEPT_BUFFER: usize = 4096;

/// UTF-8 text of `bytes`, invalid sequences replaced.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_chunks(max: usize, chunks: &[&[u8]]) -> (Vec<SseFrame>, bool) {
        let mut d = SseDecoder::new(max);
        let mut frames = Vec::new();
        for chunk in chunks {
            d.push(chunk).expect("within the bound");
            frames.extend(std::iter::from_fn(|| d.next_frame()));
        }
        (frames, d.has_partial())
    }

    fn decode(input: &str) -> Vec<SseFrame> {
        let (frames, partial) = decode_chunks(1 << 20, &[input.as_bytes()]);
        assert!(!partial, "{input:?}");
        frames
    }

    #[test]
    fn data_lines_are_joined_and_one_space_is_stripped() {
        assert_eq!(
            decode("data: a\ndata:b\ndata:  c\n\n"),
            [SseFrame::data("a\nb\n c")]
        );
        assert_eq!(decode("data\n\n"), [SseFrame::data("")]);
        assert_eq!(decode("data:\n\n"), [SseFrame::data("")]);
        assert_eq!(decode("data:\ndata:\n\n"), [SseFrame::data("\n")]);
    }

    #[test]
    fn the_spec_examples() {
        // The WHATWG examples of §9.2.4/9.2.6.
        assert_eq!(
            decode("data: YHOO\ndata: +2\ndata: 10\n\n"),
            [SseFrame::data("YHOO\n+2\n10")]
        );
        assert_eq!(
            decode(
                ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"
            ),
            [
                SseFrame::data("first event"),
                SseFrame::data("second event"),
                SseFrame::data(" third event"),
            ]
        );
        // An event without data dispatches nothing, and its name is forgotten.
        let mut d = SseDecoder::new(1024);
        d.push(b"data\n\ndata\ndata\n\ndata:").unwrap();
        assert_eq!(d.next_frame(), Some(SseFrame::data("")));
        assert_eq!(d.next_frame(), Some(SseFrame::data("\n")));
        assert_eq!(d.next_frame(), None);
        assert!(d.has_partial(), "the last event never ended");
        assert_eq!(
            decode("event: x\n\ndata: y\n\n"),
            [SseFrame::data("y")],
            "an event name alone does not carry over"
        );
    }

    #[test]
    fn event_names_and_all_line_endings() {
        assert_eq!(
            decode("event: ping\ndata: {}\r\n\r\nevent:delta\rdata: 1\r\r: c\ndata: 2\n\n"),
            [
                SseFrame::named("ping", "{}"),
                SseFrame::named("delta", "1"),
                SseFrame::data("2"),
            ]
        );
        assert_eq!(
            decode("event: a\nevent: b\ndata: x\n\n"),
            [SseFrame::named("b", "x")]
        );
        assert_eq!(decode("event:\ndata: x\n\n"), [SseFrame::data("x")]);
    }

    #[test]
    fn comments_ids_retries_and_unknown_fields_are_ignored() {
        assert_eq!(
            decode(": keep-alive\n\n:\nid: 7\nretry: 1000\nfoo: bar\ndata: x\n\n"),
            [SseFrame::data("x")]
        );
        assert!(decode(": OPENROUTER PROCESSING\n\n").is_empty());
    }

    #[test]
    fn a_leading_bom_is_dropped_once() {
        assert_eq!(
            decode("\u{feff}data: a\n\n\u{feff}data: b\n\n"),
            [SseFrame::data("a")],
            "a second BOM makes an unknown field"
        );
        let (frames, _) = decode_chunks(64, &[b"\xef", b"\xbb", b"\xbfdata: a\n\n"]);
        assert_eq!(frames, [SseFrame::data("a")]);
    }

    #[test]
    fn split_crlf_counts_once() {
        let (frames, partial) =
            decode_chunks(64, &[b"data: a\r", b"\n", b"\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(frames, [SseFrame::data("a"), SseFrame::data("b")]);
        assert!(!partial);
        // An empty chunk between \r and \n changes nothing.
        let (frames, _) = decode_chunks(64, &[b"data: a\r", b"", b"\n\r\n"]);
        assert_eq!(frames, [SseFrame::data("a")]);
    }

    #[test]
    fn split_utf8_is_rejoined_and_invalid_utf8_replaced() {
        let text = "data: héllo 🌍\n\n".as_bytes();
        for cut in 0..text.len() {
            let (frames, _) = decode_chunks(64, &[&text[..cut], &text[cut..]]);
            assert_eq!(frames, [SseFrame::data("héllo 🌍")], "cut at {cut}");
        }
        let (frames, _) = decode_chunks(64, &[b"event: \xff\ndata: a\xf0\x9f\n\n"]);
        assert_eq!(frames, [SseFrame::named("\u{fffd}", "a\u{fffd}")]);
    }

    #[test]
    fn a_cut_is_reported() {
        for cut in [
            "data: {\"a\"",
            "data: x\n",
            "event: ping\n",
            "data: x\n\ndata",
        ] {
            let (_, partial) = decode_chunks(64, &[cut.as_bytes()]);
            assert!(partial, "{cut:?}");
        }
        for whole in [
            "",
            "data: x\n\n",
            ": comment",
            ": comment\n",
            "data: x\r\n\r",
        ] {
            let (_, partial) = decode_chunks(64, &[whole.as_bytes()]);
            assert!(!partial, "{whole:?}");
        }
    }

    #[test]
    fn one_event_past_the_bound_fails() {
        let mut d = SseDecoder::new(16);
        d.push(b"data: 0123456789\n\n").unwrap();
        assert_eq!(d.next_frame(), Some(SseFrame::data("0123456789")));
        assert!(d.push(b"data: 0123456789\ndata: 0123456789\n\n").is_err());
        assert_eq!(d.held(), 0);
        assert!(
            d.push(b"data: x\n\n").is_err(),
            "a failed decoder stays failed"
        );
        assert!(d.has_partial());
        assert_eq!(
            SseTooLarge { limit: 16 }.into_error().kind,
            ErrorKind::MalformedResponse
        );

        // An unfinished line counts too, chunk by chunk.
        let mut d = SseDecoder::new(16);
        d.push(b"data: 01").unwrap();
        d.push(b"23456789").unwrap();
        assert_eq!(d.held(), 16);
        assert!(d.push(b"x").is_err());

        // Comments are skipped as they come, whatever their length.
        let mut d = SseDecoder::new(16);
        d.push(b": ").unwrap();
        for _ in 0..100 {
            d.push(b"padding padding padding").unwrap();
        }
        d.push(b"\ndata: ok\n\n").unwrap();
        assert_eq!(d.next_frame(), Some(SseFrame::data("ok")));

        // Frames completed before the oversized event stay queued.
        let mut d = SseDecoder::new(16);
        assert!(d.push(b"data: a\n\ndata: 0123456789abcdef\n\n").is_err());
        assert_eq!(d.next_frame(), Some(SseFrame::data("a")));
    }

    /// A reference decoder: the standard's algorithm on the whole input at once.
    fn reference(input: &[u8]) -> Vec<SseFrame> {
        let text = String::from_utf8_lossy(input);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut lines = Vec::new();
        let mut rest = text;
        while let Some(end) = rest.find(['\r', '\n']) {
            lines.push(&rest[..end]);
            rest = if rest[end..].starts_with("\r\n") {
                &rest[end + 2..]
            } else {
                &rest[end + 1..]
            };
        }
        let (mut frames, mut data, mut event) = (Vec::new(), String::new(), String::new());
        for line in lines {
            if line.is_empty() {
                if !data.is_empty() {
                    data.pop();
                    frames.push(SseFrame {
                        event: (!event.is_empty()).then(|| event.clone()),
                        data: std::mem::take(&mut data),
                    });
                }
                data.clear();
                event.clear();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "data" => {
                    data.push_str(value);
                    data.push('\n');
                }
                "event" => event = value.to_owned(),
                _ => {}
            }
        }
        frames
    }

    fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"data".to_vec()),
            Just(b"data:".to_vec()),
            Just(b"data: ".to_vec()),
            Just(b"event: ".to_vec()),
            Just(b"event:".to_vec()),
            Just(b": ".to_vec()),
            Just(b"id: 1".to_vec()),
            Just(b"retry: 5".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n\n".to_vec()),
            Just("\u{feff}".as_bytes().to_vec()),
            Just("é🌍".as_bytes().to_vec()),
            Just(b"\xf0\x9f".to_vec()),
            Just(b"{\"type\":\"ping\"}".to_vec()),
            "[a-z :]{0,8}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..6),
        ];
        prop::collection::vec(piece, 0..40).prop_map(|p| p.concat())
    }

    /// Splits `bytes` at the given cut points (taken modulo its length).
    fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        at.push(0);
        at.push(bytes.len());
        at.sort_unstable();
        at.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any bytes in any chunking: no panic, never more held than the
        /// bound, and (within the bound) the frames the standard gives.
        #[test]
        fn any_bytes_any_chunking(
            bytes in prop_oneof![sse_bytes(), prop::collection::vec(any::<u8>(), 0..300)],
            cuts in prop::collection::vec(any::<usize>(), 0..12),
            max in prop_oneof![1usize..64, Just(1usize << 20)],
        ) {
            let mut d = SseDecoder::new(max);
            let mut frames = Vec::new();
            let mut failed = false;
            for chunk in split(&bytes, &cuts) {
                if d.push(&chunk).is_err() {
                    failed = true;
                }
                prop_assert!(d.held() <= max, "held {} > {max}", d.held());
                frames.extend(std::iter::from_fn(|| d.next_frame()));
            }
            let _ = d.has_partial();
            if !failed {
                prop_assert_eq!(frames, reference(&bytes));
            }
        }

        /// A valid stream split at every boundary gives the same frames.
        #[test]
        fn every_split_of_a_valid_stream(bytes in sse_bytes()) {
            let whole = decode_chunks(1 << 20, &[&bytes]);
            prop_assert_eq!(&whole.0, &reference(&bytes));
            for cut in 0..=bytes.len() {
                let (a, b) = bytes.split_at(cut);
                prop_assert_eq!(&decode_chunks(1 << 20, &[a, b]), &whole, "cut at {}", cut);
            }
            let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
            prop_assert_eq!(&decode_chunks(1 << 20, &bytewise), &whole);
        }
    }
}
