//! The binary's log writer: lines go into a bounded buffer in memory and a
//! thread of their own writes them out in batches, so that a request never
//! waits for stderr.
//!
//! tracing-subscriber formats each event into a line and hands it to
//! [`LogWriter`] (a [`MakeWriter`]) in one `write`. That write copies the
//! line into a shared buffer under a mutex and returns; it never does I/O.
//! The writer thread takes the whole buffer at once and writes it with one
//! `write_all` (one `write(2)` unless the pipe is full), after lingering
//! [`DEFAULT_LINGER`] so that a busy gateway's lines share a batch: at
//! 20,000 requests a second that is one system call and one wake-up of the
//! writer thread per 400 or so lines instead of one per line. Each wake-up
//! costs the workers more than the system call (a futex wake, and the
//! writer thread preempting a worker on a 2-core machine): with a 1 ms
//! linger they took about a quarter of a context switch per request. A
//! buffer half full, or the guard's drop, cuts the linger short, so a
//! faster stream of lines is written sooner instead of dropped, and the
//! last lines do not wait. A line that comes to an idle writer is written
//! at most a linger later.
//!
//! When the output is slow or stalled (a pipe nobody reads, a terminal
//! scrolled back), the buffer fills up to its capacity and further lines
//! are dropped and counted ([`LogWriter::dropped_lines`]; the binary
//! publishes the count as `staunch_gateway_log_lines_dropped_total`) rather
//! than blocking a worker or growing memory: at most two buffers of the
//! capacity are held, the one being written and the one filling.
//!
//! [`FlushGuard`] writes out what is buffered when it is dropped, waiting a
//! bounded time for a stalled output, and stops the thread.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// The buffer's capacity unless told otherwise: about 2,000 JSON access
/// log lines, a tenth of a second of a saturated gateway's log.
pub const DEFAULT_CAPACITY: usize = 1024 * 1024;

/// How long the writer thread waits, once a line has arrived, for more to
/// join the batch, unless told otherwise ([`LogWriter::with_linger`]).
pub const DEFAULT_LINGER: Duration = Duration::from_millis(20);

/// How long [`FlushGuard`] waits for the buffered lines to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// A [`MakeWriter`] whose writes go to a bounded buffer drained by a thread
/// of its own. Cheap to clone; every clone feeds the same buffer.
#[derive(Clone, Debug)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Flushes the buffer and stops the writer thread when dropped. Keep it
/// until the program exits.
#[must_use = "dropping the guard stops the log writer"]
#[derive(Debug)]
pub struct FlushGuard {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// The writer thread waits on it for lines (or the end).
    lines: Condvar,
    /// The guard waits on it for the writer thread to finish.
    finished: Condvar,
    dropped: AtomicU64,
    capacity: usize,
    linger: Duration,
}

#[derive(Debug)]
struct State {
    pending: Vec<u8>,
    /// The writer thread is waiting for lines: the next line wakes it.
    idle: bool,
    /// The guard was dropped: write what is left and stop.
    closing: bool,
    /// The writer thread has stopped; lines from now on are dropped.
    finished: bool,
}

impl LogWriter {
    /// A writer to `out` with a buffer of `capacity` bytes, and the guard
    /// that flushes it. Starts the writer thread.
    pub fn new(
        out: impl Write + Send + 'static,
        capacity: usize,
    ) -> io::Result<(Self, FlushGuard)> {
        Self::with_linger(out, capacity, DEFAULT_LINGER)
    }

    /// [`new`](Self::new), with the writer thread waiting `linger` (rather
    /// than [`DEFAULT_LINGER`]) for more lines to join a batch.
    pub fn with_linger(
        out: impl Write + Send + 'static,
        capacity: usize,
        linger: Duration,
    ) -> io::Result<(Self, FlushGuard)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: Vec::with_capacity(capacity),
                idle: false,
                closing: false,
                finished: false,
            }),
            lines: Condvar::new(),
            finished: Condvar::new(),
            dropped: AtomicU64::new(0),
            capacity,
            linger,
        });
        let worker = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("staunch-log-writer".into())
            .spawn(move || worker.run(out))?;
        Ok((
            LogWriter {
                shared: Arc::clone(&shared),
            },
            FlushGuard { shared },
        ))
    }

    /// Lines dropped so far because the buffer was full (or the writer had
    /// stopped, or the output refused them).
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            shared: &self.shared,
        }
    }
}

/// One event's writer: each `write` is kept whole or dropped whole.
#[derive(Debug)]
pub struct Line<'a> {
    shared: &'a Shared,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.shared.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        let mut state = self.lock();
        if state.finished || state.pending.len() + line.len() > self.capacity {
            drop(state);
            self.count_dropped(line);
            return;
        }
        let before = state.pending.len();
        state.pending.extend_from_slice(line);
        // Wake the writer for the first line of a batch, and once more when
        // the batch passes half the capacity, to cut its linger short.
        let half = self.capacity / 2;
        let wake = std::mem::replace(&mut state.idle, false)
            || (before < half && state.pending.len() >= half);
        drop(state);
        if wake {
            self.lines.notify_one();
        }
    }

    /// Whether the writer should stop lingering and write what it has.
    fn batch_ready(&self, state: &State) -> bool {
        state.closing || state.pending.len() >= self.capacity / 2
    }

    fn count_dropped(&self, bytes: &[u8]) {
        let lines = bytes.iter().filter(|&&b| b == b'\n').count().max(1);
        self.dropped.fetch_add(lines as u64, Ordering::Relaxed);
    }

    /// The writer thread.
    fn run(&self, mut out: impl Write) {
        let mut batch = Vec::with_capacity(self.capacity);
        loop {
            let mut state = self.lock();
            while state.pending.is_empty() && !state.closing {
                state.idle = true;
                state = self.lines.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            // Let the lines of the next linger join this batch.
            let (waited, _) = self
                .lines
                .wait_timeout_while(state, self.linger, |s| !self.batch_ready(s))
                .unwrap_or_else(|e| e.into_inner());
            state = waited;
            std::mem::swap(&mut state.pending, &mut batch);
            let last = state.closing && batch.is_empty();
            drop(state);
            if last {
                let _ = out.flush();
                break;
            }
            if out.write_all(&batch).and_then(|()| out.flush()).is_err() {
                self.count_dropped(&batch);
            }
            batch.clear();
        }
        self.lock().finished = true;
        self.finished.notify_all();
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closing = true;
        drop(state);
        self.shared.lines.notify_one();
        let state = self.shared.lock();
        // A stalled output must not keep the process from exiting.
        let _ = self
            .shared
            .finished
            .wait_timeout_while(state, FLUSH_TIMEOUT, |s| !s.finished);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    /// An output that records each write, says when one starts, and is
    /// optionally blocked (its first write) until told.
    struct Recorder {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        gate: Option<mpsc::Receiver<()>>,
        started: Option<mpsc::Sender<usize>>,
    }

    impl Recorder {
        fn new(writes: &Arc<Mutex<Vec<Vec<u8>>>>) -> Self {
            Recorder {
                writes: Arc::clone(writes),
                gate: None,
                started: None,
            }
        }
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(started) = &self.started {
                let _ = started.send(buf.len());
            }
            if let Some(gate) = self.gate.take() {
                let _ = gate.recv();
            }
            self.writes.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn line(writer: &LogWriter, text: &str) {
        writer.make_writer().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn lines_arrive_whole_in_order_and_in_few_writes() {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let (writer, guard) = LogWriter::new(Recorder::new(&writes), DEFAULT_CAPACITY).unwrap();
        for i in 0..1000 {
            line(&writer, &format!("line {i}\n"));
        }
        drop(guard);
        let writes = writes.lock().unwrap();
        let all: Vec<u8> = writes.concat();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8(all).unwrap(), expected);
        assert!(writes.len() < 100, "{} writes for 1000 lines", writes.len());
        assert_eq!(writer.dropped_lines(), 0);
    }

    #[test]
    fn a_stalled_output_drops_and_counts_lines_instead_of_blocking() {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let (open, gate) = mpsc::channel();
        let (started, writing) = mpsc::channel();
        let out = Recorder {
            gate: Some(gate),
            started: Some(started),
            ..Recorder::new(&writes)
        };
        let (writer, guard) = LogWriter::new(out, 1000).unwrap();
        // The first line is taken by the writer thread, which then blocks.
        line(&writer, "first\n");
        assert_eq!(writing.recv_timeout(Duration::from_secs(10)), Ok(6));
        let started = Instant::now();
        for _ in 0..10_000 {
            line(&writer, "0123456789\n");
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        // 1000 bytes hold 90 of them; the rest are dropped.
        assert_eq!(writer.dropped_lines(), 10_000 - 90);
        open.send(()).unwrap();
        drop(guard);
        let written: usize = writes.lock().unwrap().iter().map(Vec::len).sum();
        assert_eq!(written, "first\n".len() + 90 * 11);
        // After the guard, nothing is buffered any more.
        line(&writer, "late\n");
        assert_eq!(writer.dropped_lines(), 10_000 - 90 + 1);
    }

    #[test]
    fn the_guard_gives_up_on_an_output_that_never_drains() {
        let (_open, gate) = mpsc::channel::<()>();
        let (started, writing) = mpsc::channel();
        let out = Recorder {
            gate: Some(gate),
            started: Some(started),
            ..Recorder::new(&Arc::default())
        };
        let (writer, guard) = LogWriter::new(out, 1000).unwrap();
        line(&writer, "stuck\n");
        assert_eq!(writing.recv_timeout(Duration::from_secs(10)), Ok(6));
        let started = Instant::now();
        drop(guard);
        let waited = started.elapsed();
        assert!(
            waited >= FLUSH_TIMEOUT && waited < FLUSH_TIMEOUT * 2,
            "{waited:?}"
        );
    }

    #[test]
    fn a_half_full_buffer_is_written_without_waiting_out_the_linger() {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let (started, writing) = mpsc::channel();
        let out = Recorder {
            started: Some(started),
            ..Recorder::new(&writes)
        };
        // A linger no test would wait out.
        let (writer, _guard) =
            LogWriter::with_linger(out, 1000, Duration::from_secs(3600)).unwrap();
        for _ in 0..45 {
            line(&writer, "0123456789\n"); // 495 bytes: under half
        }
        line(&writer, "0123456789\n"); // 506: past half
        assert_eq!(writing.recv_timeout(Duration::from_secs(10)), Ok(506));
        assert_eq!(writer.dropped_lines(), 0);
    }

    #[test]
    fn the_guard_cuts_the_linger_short_and_writes_every_line() {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let (writer, guard) =
            LogWriter::with_linger(Recorder::new(&writes), 1000, Duration::from_secs(3600))
                .unwrap();
        line(&writer, "one\n");
        line(&writer, "two\n");
        let started = Instant::now();
        drop(guard);
        assert!(started.elapsed() < FLUSH_TIMEOUT, "{:?}", started.elapsed());
        assert_eq!(writes.lock().unwrap().concat(), b"one\ntwo\n");
        assert_eq!(writer.dropped_lines(), 0);
    }
}
