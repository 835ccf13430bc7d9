//! Streamed answers, whatever the dialect: an answer cut into token-sized
//! pieces, the events each dialect writes for them, and the plan of what
//! goes out when (the token rate, and the stream faults that delay, stall,
//! cut, break or end a stream early).

use crate::scenario::{Fault, StreamErrorKind};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Duration;

/// A piece of text is at most this many bytes (a long word, or JSON without
/// spaces, is cut into pieces of this size).
const PIECE_BYTES: usize = 12;

/// How long a stream that is cut waits before failing, so the events before
/// the cut reach the client first.
const CUT_PAUSE: Duration = Duration::from_millis(20);

/// Cuts `text` into token-sized pieces: words with the whitespace before
/// them (`"mock answer"` -> `"mock"`, `" answer"`), at most
/// [`PIECE_BYTES`] each. The pieces put together are `text`.
pub(crate) fn pieces(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = 0;
    let mut prev_space = true;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if space && !prev_space {
            words.push(&text[start..i]);
            start = i;
        }
        prev_space = space;
    }
    if start < text.len() {
        words.push(&text[start..]);
    }
    let mut out = Vec::with_capacity(words.len());
    for mut word in words {
        while word.len() > PIECE_BYTES {
            let mut cut = PIECE_BYTES;
            while !word.is_char_boundary(cut) {
                cut -= 1;
            }
            if cut == 0 {
                // A single character wider than a piece.
                cut = word.chars().next().map_or(word.len(), char::len_utf8);
            }
            out.push(&word[..cut]);
            word = &word[cut..];
        }
        if !word.is_empty() {
            out.push(word);
        }
    }
    out
}

/// A streamed answer's events in one dialect, each a whole server-sent
/// event (`data: …\n\n`, with its `event:` line in Anthropic's).
pub(crate) struct Events {
    /// Before any content (OpenAI's role chunk; Anthropic's
    /// `message_start`, a text block's start, `ping`).
    pub(crate) head: Vec<Bytes>,
    /// One per content event: a piece of text, a tool call's opening, a
    /// piece of its arguments.
    pub(crate) content: Vec<Bytes>,
    /// After the content: the finish (and usage).
    pub(crate) tail: Vec<Bytes>,
    /// `data: [DONE]` / `message_stop` / `response.completed` / Gemini's
    /// chunk with the `finishReason`: what `no_terminator` leaves out.
    pub(crate) terminator: Bytes,
    /// An event that is not valid JSON.
    pub(crate) malformed: Bytes,
}

/// What a streamed body does next.
pub(crate) enum Step {
    /// Send these bytes.
    Data(Bytes),
    /// Wait this long.
    Wait(Duration),
    /// Send nothing more, and never end.
    Stall,
    /// Fail, so the connection closes mid-body.
    Cut,
}

/// The steps of a stream of `events` under `fault`, with `token_ms` before
/// each content event; `error` writes the dialect's in-band error event,
/// given its number in the stream (the events before it).
/// Faults counted in content events are capped at the answer's count, so a
/// stall, cut or error always comes before the finish.
pub(crate) fn plan(
    events: Events,
    fault: &Fault,
    token_ms: u64,
    error: impl Fn(StreamErrorKind, usize) -> Bytes,
) -> VecDeque<Step> {
    let opening = events.head.len();
    let mut steps: VecDeque<Step> = events.head.into_iter().map(Step::Data).collect();
    let len = events.content.len();
    let at = |n: usize| n.min(len);
    let mut first_wait = match fault {
        Fault::SlowFirstToken { ms } => Some(*ms),
        _ => None,
    };
    let mut content = events.content.into_iter();
    for i in 0..=len {
        match *fault {
            Fault::MalformedEventAt { n } if at(n) == i => {
                steps.push_back(Step::Data(events.malformed.clone()));
            }
            Fault::ErrorEventAt { n, kind } if at(n) == i => {
                steps.push_back(Step::Data(error(kind, opening + i)));
                return steps;
            }
            Fault::StallAfter { tokens } if at(tokens) == i => {
                steps.push_back(Step::Stall);
                return steps;
            }
            Fault::CutAfter { tokens } if at(tokens) == i => {
                steps.push_back(Step::Wait(CUT_PAUSE));
                steps.push_back(Step::Cut);
                return steps;
            }
            _ => {}
        }
        let Some(event) = content.next() else { break };
        let wait = first_wait.take().unwrap_or(token_ms);
        steps.push_back(Step::Wait(Duration::from_millis(wait)));
        steps.push_back(Step::Data(event));
    }
    if let Some(ms) = first_wait {
        // No content at all: the finish is the first thing that comes late.
        steps.push_back(Step::Wait(Duration::from_millis(ms)));
    }
    steps.extend(events.tail.into_iter().map(Step::Data));
    if *fault != Fault::NoTerminator {
        steps.push_back(Step::Data(events.terminator));
    }
    steps
}

/// A stream that fails before any content: its first frame is an error.
pub(crate) fn error_first(error: Bytes) -> VecDeque<Step> {
    VecDeque::from([Step::Data(error)])
}

/// One server-sent event: `data: <data>\n\n`, after `event: <name>\n` when
/// named.
pub(crate) fn sse(name: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(name) = name {
        out.push_str("event: ");
        out.push_str(name);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(data);
    out.push_str("\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_words_with_their_spaces_and_join_back() {
        let text = "mock answer to: Weather in  Paris?\nTool result: {\"temperature_celsius\":21}";
        let p = pieces(text);
        assert_eq!(&p[..4], ["mock", " answer", " to:", " Weather"]);
        assert!(p.iter().all(|p| p.len() <= PIECE_BYTES));
        assert_eq!(p.concat(), text);
        let accents = "ééééééééééé ü";
        assert_eq!(pieces(accents).concat(), accents);
        assert!(pieces("").is_empty());
        assert_eq!(pieces("  lead"), ["  lead"]);
    }

    fn events(n: usize) -> Events {
        Events {
            head: vec![Bytes::from_static(b"head")],
            content: (0..n).map(|i| Bytes::from(format!("c{i}"))).collect(),
            tail: vec![Bytes::from_static(b"tail")],
            terminator: Bytes::from_static(b"end"),
            malformed: Bytes::from_static(b"bad"),
        }
    }

    fn data(steps: &VecDeque<Step>) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::Data(b) => String::from_utf8(b.to_vec()).unwrap(),
                Step::Wait(d) => format!("wait {}", d.as_millis()),
                Step::Stall => "stall".into(),
                Step::Cut => "cut".into(),
            })
            .collect()
    }

    #[test]
    fn plans_place_each_fault() {
        let err = |_, seq: usize| Bytes::from(format!("err@{seq}"));
        let normal = plan(events(2), &Fault::Ok, 3, err);
        assert_eq!(
            data(&normal),
            ["head", "wait 3", "c0", "wait 3", "c1", "tail", "end"]
        );
        let slow = plan(events(2), &Fault::SlowFirstToken { ms: 50 }, 0, err);
        assert_eq!(
            data(&slow),
            ["head", "wait 50", "c0", "wait 0", "c1", "tail", "end"]
        );
        let stall = plan(events(3), &Fault::StallAfter { tokens: 1 }, 0, err);
        assert_eq!(data(&stall), ["head", "wait 0", "c0", "stall"]);
        let cut = plan(events(3), &Fault::CutAfter { tokens: 9 }, 0, err);
        assert_eq!(
            data(&cut),
            [
                "head", "wait 0", "c0", "wait 0", "c1", "wait 0", "c2", "wait 20", "cut"
            ]
        );
        let bad = plan(events(2), &Fault::MalformedEventAt { n: 1 }, 0, err);
        assert_eq!(
            data(&bad),
            ["head", "wait 0", "c0", "bad", "wait 0", "c1", "tail", "end"]
        );
        let error = plan(
            events(2),
            &Fault::ErrorEventAt {
                n: 0,
                kind: StreamErrorKind::Server,
            },
            0,
            err,
        );
        assert_eq!(data(&error), ["head", "err@1"]);
        let open = plan(events(1), &Fault::NoTerminator, 0, err);
        assert_eq!(data(&open), ["head", "wait 0", "c0", "tail"]);
        let empty = plan(events(0), &Fault::SlowFirstToken { ms: 7 }, 0, err);
        assert_eq!(data(&empty), ["head", "wait 7", "tail", "end"]);
    }
}
