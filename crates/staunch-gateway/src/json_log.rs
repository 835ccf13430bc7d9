//! The JSON log (`log_format = "json"`, the default), written by a
//! tracing [`Layer`] of the gateway's own.
//!
//! Each line has the shape of tracing-subscriber's JSON formatter
//! (`fmt::layer().json()` with its defaults), which the gateway used
//! before, key for key and in the same order, so that whatever parses the
//! log keeps working:
//!
//! ```text
//! {"timestamp":"2026-12-06T18:47:10.821315Z","level":"INFO",
//!  "fields":{"message":"served","status":200,…},"target":"staunch_gateway",
//!  "span":{"method":"POST","path":"/v1/chat/completions","request_id":"req_…","name":"request"},
//!  "spans":[{…,"name":"request"}]}
//! ```
//!
//! (one line each): the event's fields in the order they were recorded,
//! `"span"` the event's span (its parent, else the current span) with its
//! fields sorted by name and then its name, and `"spans"` every span of the
//! current scope from the root, each the same way; both are left out when
//! the event is in no span. Strings are escaped as serde_json escapes them
//! (it writes every value here).
//!
//! What differs is the cost. tracing-subscriber keeps a span's fields as a
//! JSON text: every `Span::record` parses that text back into a map and
//! writes it out again, and every event parses each span's text once for
//! `"span"` and once more for `"spans"`, allocating each value on the way.
//! Here a span keeps its values already encoded, one after another in one
//! buffer, with a list of where each field's latest value is, sorted by
//! name: a record appends, an event copies. An event's line is written
//! into a buffer that each thread reuses, and handed whole to the writer
//! (the binary's [`LogWriter`](crate::log_writer::LogWriter)) in one
//! `write`.

use serde::Serializer as _;
use std::cell::RefCell;
use std::fmt;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

/// A [`Layer`] that writes every event it sees as one line of JSON to the
/// writers `W` makes (see the [module](self) for the shape).
#[derive(Debug)]
pub struct JsonLog<W> {
    make_writer: W,
}

impl<W> JsonLog<W>
where
    W: for<'a> MakeWriter<'a> + 'static,
{
    /// Lines go to the writers `make_writer` makes, one `write_all` a line.
    pub fn new(make_writer: W) -> Self {
        JsonLog { make_writer }
    }
}

/// A span's fields, their values already encoded as JSON.
#[derive(Debug, Default)]
struct SpanFields {
    /// The values, one after another. A field recorded again gets its new
    /// value appended; the old one stays, unused, until the values are
    /// compacted (when most of them are old).
    values: Vec<u8>,
    /// Each field of the span's callsite by its index there: its name and
    /// latest value, if it has one. Set in place, so that a record costs
    /// no search; sorted by name only when the span is written out.
    slots: Vec<Option<Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    name: &'static str,
    start: u32,
    end: u32,
}

impl Entry {
    /// A placeholder, never written out.
    const EMPTY: Entry = Entry {
        name: "",
        start: 0,
        end: 0,
    };
}

/// Values are compacted when they take more than this many bytes and
/// more than twice what the latest values take.
const COMPACT_AFTER: usize = 4096;

impl SpanFields {
    /// Notes that `values[start..]` is the value of field `index`, `name`.
    fn set(&mut self, index: usize, name: &'static str, start: usize) {
        let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(self.values.len())) else {
            // Four gigabytes of one span's fields: keep the older values.
            self.values.truncate(start);
            return;
        };
        if index >= self.slots.len() {
            // Not a field of the span's callsite (tracing does not record
            // those): kept all the same.
            self.slots.resize(index + 1, None);
        }
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let replaced = slot.replace(Entry { name, start, end }).is_some();
        if replaced && self.values.len() > COMPACT_AFTER {
            self.compact();
        }
    }

    /// Drops the values no field has any more, when they are most of them.
    fn compact(&mut self) {
        let live: usize = self
            .slots
            .iter()
            .flatten()
            .map(|e| (e.end - e.start) as usize)
            .sum();
        if self.values.len() <= 2 * live {
            return;
        }
        let mut values = Vec::with_capacity(live);
        for entry in self.slots.iter_mut().flatten() {
            let start = values.len();
            let value = self
                .values
                .get(entry.start as usize..entry.end as usize)
                .unwrap_or(b"null");
            values.extend_from_slice(value);
            // Within the old values' length, which fitted.
            entry.start = start as u32;
            entry.end = values.len() as u32;
        }
        self.values = values;
    }

    /// Writes the span as an object: its fields by name (each name once:
    /// the last field of that name), then `"name"`.
    fn write_object(&self, name: &str, out: &mut Vec<u8>) {
        // A span has a few fields: they are put in order on the stack.
        const ON_STACK: usize = 16;
        let mut stack = [Entry::EMPTY; ON_STACK];
        let mut heap = Vec::new();
        let mut count = 0;
        for entry in self.slots.iter().flatten() {
            match stack.get_mut(count) {
                Some(slot) => *slot = *entry,
                None => {
                    if heap.is_empty() {
                        heap.extend_from_slice(&stack);
                    }
                    heap.push(*entry);
                }
            }
            count += 1;
        }
        let entries = if heap.is_empty() {
            &mut stack[..count]
        } else {
            &mut heap[..]
        };
        // Stable: fields of one name stay in their order, and the last of
        // them is written, as tracing-subscriber's map of them keeps it.
        entries.sort_by(|a, b| a.name.cmp(b.name));
        out.push(b'{');
        for (i, entry) in entries.iter().enumerate() {
            if entries
                .get(i + 1)
                .is_some_and(|next| next.name == entry.name)
            {
                continue;
            }
            let value = self
                .values
                .get(entry.start as usize..entry.end as usize)
                .unwrap_or(b"null");
            write_str(out, entry.name);
            out.push(b':');
            out.extend_from_slice(value);
            out.push(b',');
        }
        out.extend_from_slice(b"\"name\":");
        write_str(out, name);
        out.push(b'}');
    }
}

/// Records a span's fields into its [`SpanFields`], as tracing-subscriber's
/// `JsonFields` did: a value recorded with `Debug` is its `Debug` text as
/// a string (and an `r#` before its name is dropped); bytes are an array
/// of numbers.
struct SpanVisitor<'a>(&'a mut SpanFields);

impl SpanVisitor<'_> {
    fn record(&mut self, field: &Field, name: &'static str, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.0.values.len();
        write(&mut self.0.values);
        self.0.set(field.index(), name, start);
    }
}

impl Visit for SpanVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.record(field, field.name(), |out| write_value(out, &value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, field.name(), |out| write_value(out, &value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, field.name(), |out| write_value(out, &value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, field.name(), |out| write_value(out, &value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, field.name(), |out| write_str(out, value));
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.record(field, field.name(), |out| write_value(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.record(field, name, |out| write_debug(out, value));
    }
}

/// Writes an event's fields as the members of an object, in the order
/// they come, as tracing-serde did: a value recorded with `Debug` (bytes
/// among them, in hex) is its `Debug` text as a string.
struct EventVisitor<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl EventVisitor<'_> {
    fn key(&mut self, name: &str) -> &mut Vec<u8> {
        if !std::mem::replace(&mut self.first, false) {
            self.out.push(b',');
        }
        write_str(self.out, name);
        self.out.push(b':');
        self.out
    }
}

impl Visit for EventVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        write_value(self.key(field.name()), &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        write_value(self.key(field.name()), &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        write_value(self.key(field.name()), &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        write_value(self.key(field.name()), &value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        write_str(self.key(field.name()), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        write_debug(self.key(field.name()), value);
    }
}

/// Writes `value` as serde_json writes it (a number that is not finite as
/// `null`). Writing to a `Vec` does not fail.
fn write_value<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let start = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"null");
    }
}

/// Writes `value` as a JSON string, escaped as serde_json escapes.
fn write_str(out: &mut Vec<u8>, value: &str) {
    staunch_providers::ingress::push_json_str(out, value);
}

/// Writes `value`'s `Debug` text as a JSON string, escaped as it is
/// formatted (no string in between). A `Debug` that fails leaves `null`.
fn write_debug(out: &mut Vec<u8>, value: &dyn fmt::Debug) {
    let start = out.len();
    let written = serde_json::Serializer::new(&mut *out).collect_str(&format_args!("{value:?}"));
    if written.is_err() {
        out.truncate(start);
        out.extend_from_slice(b"null");
    }
}

/// Writes `now` as tracing-subscriber's `SystemTime` timer does: RFC 3339
/// in UTC with microseconds, `2026-12-06T18:47:10.821315Z`.
fn write_timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let (secs, nanos) = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            // Before 1970: count back, and forward again within the second.
            let d = e.duration();
            match d.subsec_nanos() {
                0 => (-(d.as_secs() as i64), 0),
                n => (-(d.as_secs() as i64) - 1, 1_000_000_000 - n),
            }
        }
    };
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    if (0..=9999).contains(&year) {
        push_digits(out, year as u32, 4);
    } else if year > 9999 {
        let _ = write!(out, "+{year}");
    } else {
        let _ = write!(out, "{year:05}");
    }
    out.push(b'-');
    push_digits(out, month, 2);
    out.push(b'-');
    push_digits(out, day, 2);
    out.push(b'T');
    push_digits(out, (of_day / 3600) as u32, 2);
    out.push(b':');
    push_digits(out, (of_day / 60 % 60) as u32, 2);
    out.push(b':');
    push_digits(out, (of_day % 60) as u32, 2);
    out.push(b'.');
    push_digits(out, nanos / 1000, 6);
    out.push(b'Z');
}

/// The proleptic Gregorian date of the day `days` after 1970-01-01.
///
/// Counted in 400-year eras that start on 1 March (so that the leap day
/// ends a year): an era has 146,097 days, and within it the year of a day
/// follows from how many 4-, 100- and 400-year leap rules it has crossed.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // 0000-03-01 is 719,468 days before 1970-01-01.
    let from_0000_03 = days + 719_468;
    let era = from_0000_03.div_euclid(146_097);
    let day_of_era = from_0000_03.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March, of 31, 30, 31, 30, 31 days in turn (153 in five).
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Writes the last `width` decimal digits of `n`, zeros in front.
fn push_digits(out: &mut Vec<u8>, mut n: u32, width: usize) {
    let at = out.len();
    out.resize(at + width, b'0');
    for slot in out[at..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

fn level_str(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        _ => "ERROR",
    }
}

/// A line is at most this big in the buffer a thread keeps between events;
/// a bigger one is written from a buffer of its own, then freed.
const KEPT_CAPACITY: usize = 16 * 1024;

thread_local! {
    /// The buffer each thread writes its lines into, reused.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// Runs `f` with this thread's line buffer, emptied; or with a fresh one
/// when it is in use (an event logged while formatting one) or gone (the
/// thread is ending).
fn with_line_buffer(f: impl FnOnce(&mut Vec<u8>)) {
    let mut f = Some(f);
    let _ = LINE.try_with(|line| {
        if let Ok(mut line) = line.try_borrow_mut() {
            line.clear();
            if let Some(f) = f.take() {
                f(&mut line);
            }
            if line.capacity() > KEPT_CAPACITY {
                *line = Vec::with_capacity(1024);
            }
        }
    });
    if let Some(f) = f {
        f(&mut Vec::new());
    }
}

impl<S, W> Layer<S> for JsonLog<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if extensions.get_mut::<SpanFields>().is_some() {
            return;
        }
        // A slot for every field the span declares.
        let slots = vec![None; attrs.metadata().fields().len()];
        // The values are written into this thread's buffer first, and kept
        // in a copy of the size they came to.
        with_line_buffer(|scratch| {
            let mut fields = SpanFields {
                values: std::mem::take(scratch),
                slots,
            };
            attrs.record(&mut SpanVisitor(&mut fields));
            let values = fields.values.as_slice().to_vec();
            *scratch = std::mem::replace(&mut fields.values, values);
            extensions.insert(fields);
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<SpanFields>() {
            Some(fields) => values.record(&mut SpanVisitor(fields)),
            None => {
                let mut fields = SpanFields::default();
                values.record(&mut SpanVisitor(&mut fields));
                extensions.insert(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        with_line_buffer(|out| {
            out.extend_from_slice(b"{\"timestamp\":\"");
            write_timestamp(out, SystemTime::now());
            out.extend_from_slice(b"\",\"level\":\"");
            out.extend_from_slice(level_str(meta.level()).as_bytes());
            out.extend_from_slice(b"\",\"fields\":{");
            event.record(&mut EventVisitor {
                out: &mut *out,
                first: true,
            });
            out.extend_from_slice(b"},\"target\":");
            write_str(out, meta.target());
            let span = event
                .parent()
                .and_then(|id| ctx.span(id))
                .or_else(|| ctx.lookup_current());
            if let Some(span) = span {
                out.extend_from_slice(b",\"span\":");
                let start = out.len();
                write_span(&span, out);
                let written = start..out.len();
                out.extend_from_slice(b",\"spans\":[");
                if let Some(current) = ctx.lookup_current() {
                    for (i, scope) in current.scope().from_root().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        if scope.id() == span.id() {
                            out.extend_from_within(written.clone());
                        } else {
                            write_span(&scope, out);
                        }
                    }
                }
                out.push(b']');
            }
            out.extend_from_slice(b"}\n");
            let _ = self.make_writer.make_writer_for(meta).write_all(out);
        });
    }
}

fn write_span<S: for<'a> LookupSpan<'a>>(span: &SpanRef<'_, S>, out: &mut Vec<u8>) {
    let name = span.metadata().name();
    match span.extensions().get::<SpanFields>() {
        Some(fields) => fields.write_object(name, out),
        None => SpanFields::default().write_object(name, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn timestamp(secs: u64, nanos: u32) -> String {
        let mut out = Vec::new();
        write_timestamp(&mut out, UNIX_EPOCH + Duration::new(secs, nanos));
        String::from_utf8(out).unwrap()
    }

    /// The date of `days` after 1970-01-01, counted a year and a month at a
    /// time: slow, and plainly right.
    fn counted(mut days: i64) -> (i64, u32, u32) {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let mut year = 1970;
        loop {
            let length = if leap(year) { 366 } else { 365 };
            if days < length {
                break;
            }
            days -= length;
            year += 1;
        }
        let months = [
            31,
            if leap(year) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        let mut month = 0;
        while days >= months[month] {
            days -= months[month];
            month += 1;
        }
        (year, month as u32 + 1, days as u32 + 1)
    }

    #[test]
    fn a_field_recorded_over_and_over_keeps_its_latest_value_in_bounded_memory() {
        let mut fields = SpanFields {
            values: Vec::new(),
            slots: vec![None; 2],
        };
        for i in 0..100_000u32 {
            let start = fields.values.len();
            write_value(&mut fields.values, &format!("value {i}"));
            fields.set(1, "b", start);
            if i == 7 {
                let start = fields.values.len();
                write_value(&mut fields.values, &true);
                fields.set(0, "a", start);
            }
        }
        assert!(
            fields.values.len() <= COMPACT_AFTER + 16,
            "{}",
            fields.values.len()
        );
        let mut out = Vec::new();
        fields.write_object("s", &mut out);
        assert_eq!(out, br#"{"a":true,"b":"value 99999","name":"s"}"#);
    }

    #[test]
    fn dates_agree_with_counting_days_for_three_centuries() {
        for days in 0..(330 * 366) {
            assert_eq!(civil_from_days(days), counted(days), "day {days}");
        }
    }

    #[test]
    fn timestamps_have_the_timer_s_shape() {
        assert_eq!(timestamp(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(timestamp(951_782_400, 999), "2000-02-29T00:00:00.000000Z");
        assert_eq!(
            timestamp(1_796_584_761, 123_456_789),
            "2026-12-06T19:19:21.123456Z"
        );
        assert_eq!(
            timestamp(4_102_444_799, 1_000),
            "2099-12-31T23:59:59.000001Z"
        );
        let mut out = Vec::new();
        write_timestamp(&mut out, UNIX_EPOCH - Duration::new(1, 500_000_000));
        assert_eq!(out, b"1969-12-31T23:59:58.500000Z");
    }
}
