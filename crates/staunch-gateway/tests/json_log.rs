//! The gateway's JSON log layer writes, for the same events and spans, the
//! very lines tracing-subscriber's JSON formatter (which the gateway used
//! before) writes, byte for byte but for the timestamp's value: so the
//! log's shape is kept for whatever parses it. Escaping is compared on
//! quotes, backslashes, newlines, control characters and non-ASCII text,
//! in values, messages, `Debug` output, names and targets.

use staunch_gateway::json_log::JsonLog;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing::field::Empty;
use tracing_subscriber::prelude::*;

/// Every `write` the layer makes, kept apart.
#[derive(Clone, Default)]
struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

impl Write for Writes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Writes {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().concat()).unwrap()
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[derive(Debug)]
struct Odd {
    #[allow(dead_code)]
    text: &'static str,
    #[allow(dead_code)]
    list: Vec<u32>,
}

#[derive(Debug)]
struct Failure;

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream said \"no\"\n\tand closed")
    }
}

impl std::error::Error for Failure {}

const NASTY: &str = "q\"uote b\\ack nl\n cr\r tab\t nul\0 bell\u{7} esc\u{1b} us\u{1f} del\u{7f} \
                     é ✓ 😀 ls\u{2028} </script>";

/// Events and spans of every kind the log meets.
fn emit() {
    tracing::info!(answer = 42, "no span at all");
    tracing::info!(text = NASTY, "message: {NASTY}");
    tracing::warn!(
        debug = ?Odd { text: NASTY, list: vec![1, 2] },
        display = %NASTY,
        error = &Failure as &(dyn std::error::Error + 'static),
        "values"
    );
    tracing::error!(
        one = 1.0,
        tenth = 0.1,
        huge = 1e300,
        tiny = 1.5e-7,
        negative_zero = -0.0,
        nan = f64::NAN,
        infinite = f64::INFINITY,
        min = i64::MIN,
        max = u64::MAX,
        wide = u128::MAX,
        yes = true,
        bytes = &b"a\0\xff"[..],
        "numbers"
    );
    tracing::debug!(target: "odd \"target\"\n", tokens = 3, "targets");
    tracing::debug!(gen_ai.usage.input_tokens = 3, "dotted");
    tracing::trace!("quoted\"name" = 1, r#type = "raw", "names");

    let outer = tracing::info_span!(
        "outer",
        zeta = 1,
        alpha = NASTY,
        middle = ?Odd { text: "x", list: vec![] },
        r#type = ?"debug raw",
        r#kind = "str raw",
        bytes = &b"\x01\x02"[..],
        later = Empty,
    );
    let _outer = outer.enter();
    tracing::info!(n = 1, "in outer");
    outer.record("later", "recorded");
    outer.record("zeta", 2.5);
    tracing::info!(n = 2, "after records");
    let empty = tracing::info_span!("empty");
    let _empty = empty.enter();
    let inner = tracing::info_span!(
        target: "inner \"target\"",
        "in\"ner",
        status = Empty,
        outcome = Empty,
        model = "gpt-4o"
    );
    let _inner = inner.enter();
    tracing::info!(n = 3, "three deep");
    inner.record("status", 200);
    inner.record("outcome", "ok");
    inner.record("status", 503);
    inner.record("outcome", tracing::field::display("re\"corded\n"));
    tracing::warn!(n = 4, "re-recorded");
    tracing::info!(parent: &outer, n = 5, "explicit parent");
    tracing::info!(parent: None, n = 6, "explicit root");
    // More fields than the writer orders on its stack, and two fields
    // that a log names alike (`r#kind` is written `kind`).
    let wide = tracing::info_span!(
        "wide",
        f17 = 17,
        f16 = 16,
        f15 = 15,
        f14 = 14,
        f13 = 13,
        f12 = 12,
        f11 = 11,
        f10 = 10,
        f09 = 9,
        f08 = 8,
        f07 = 7,
        f06 = 6,
        f05 = 5,
        f04 = 4,
        f03 = 3,
        f02 = 2,
        f01 = 1,
        f00 = 0,
        r#kind = "raw first",
        "kind" = "plain second",
    );
    let _wide = wide.enter();
    tracing::info!(n = 7, "wide");
    let alike = tracing::info_span!("alike", r#kind = "raw first", "kind" = "plain second");
    let _alike = alike.enter();
    tracing::info!(n = 8, "alike");
}

fn run(subscriber: impl tracing::Subscriber + Send + Sync + 'static) {
    tracing::subscriber::with_default(subscriber, emit);
}

/// Blanks the timestamp's value (always 27 characters in this century).
fn without_timestamp(line: &str) -> String {
    const KEY: &str = r#"{"timestamp":""#;
    assert!(line.starts_with(KEY), "{line}");
    let rest = &line[KEY.len()..];
    let (stamp, rest) = rest.split_at(27);
    assert!(rest.starts_with('"'), "{line}");
    assert!(
        stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{stamp}"
    );
    format!("{KEY}{}{rest}", "-".repeat(27))
}

#[test]
fn lines_are_tracing_subscriber_s_json_lines() {
    let theirs = Writes::default();
    let writer = theirs.clone();
    run(tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish());

    let ours = Writes::default();
    let writer = ours.clone();
    run(tracing_subscriber::registry().with(JsonLog::new(move || writer.clone())));

    let (theirs, ours_text) = (theirs.text(), ours.text());
    let theirs: Vec<&str> = theirs.lines().collect();
    let ours_lines: Vec<&str> = ours_text.lines().collect();
    assert_eq!(ours_lines.len(), 15, "{ours_text}");
    assert_eq!(ours_lines.len(), theirs.len());
    for (ours, theirs) in ours_lines.iter().zip(&theirs) {
        assert_eq!(without_timestamp(ours), without_timestamp(theirs));
        // And each is JSON.
        serde_json::from_str::<serde_json::Value>(ours).unwrap();
    }
    // One write a line, each whole.
    assert_eq!(ours.count(), ours_lines.len());
    assert!(ours_text.ends_with('\n'));
}

#[test]
fn escaped_values_read_back_as_they_were() {
    let ours = Writes::default();
    let writer = ours.clone();
    let subscriber = tracing_subscriber::registry().with(JsonLog::new(move || writer.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("s", value = NASTY);
        let _span = span.enter();
        tracing::info!(text = NASTY, debug = ?NASTY, "{NASTY}");
    });
    let text = ours.text();
    let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(line["fields"]["text"], NASTY);
    assert_eq!(line["fields"]["message"], NASTY);
    assert_eq!(line["fields"]["debug"], format!("{NASTY:?}"));
    assert_eq!(line["span"]["value"], NASTY);
    assert_eq!(line["spans"][0]["value"], NASTY);
    // Control characters never appear raw; the rest of Unicode does.
    assert!(!text.trim_end().bytes().any(|b| b < 0x20), "{text}");
    assert!(text.contains("é ✓ 😀"));
    assert!(text.contains(r#"nl\n cr\r tab\t nul\u0000 bell\u0007 esc\u001b us\u001f"#));
}
