//! The binary's log writer: lines go into a bounded buffer in memory and a
//! thread of their own writes them out in batches, so that a request never
//! waits for stderr.
//!
//! tracing-subscriber formats each event into a line and hands it to
//! [`LogWriter`] (a [`MakeWriter`]) in one `write`. That write copies the
//! line into a shared buffer under a mutex and returns; it never does I/O.
//! The writer thread takes the whole buffer at once and writes it with one
//! `write_all` (one `write(2)` unless the pipe is full), after lingering a
//! millisecond so that a busy gateway's lines share a batch: at 20,000
//! requests a second that is one system call per twenty or so lines
//! instead of one per line, and one wake-up of the writer thread per batch.
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
/// join the batch.
const LINGER: Duration = Duration::from_millis(1);

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
        state.pending.extend_from_slice(line);
        let wake = std::mem::replace(&mut state.idle, false);
        drop(state);
        if wake {
            self.lines.notify_one();
        }
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
            if !state.closing {
                // Let the lines of the next millisecond join this batch.
                drop(state);
                std::thread::sleep(LINGER);
                state = self.lock();
            }
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

    /// An output that records each write, optionally blocked until told.
    struct Recorder {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        gate: Option<mpsc::Receiver<()>>,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
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
        let out = Recorder {
            writes: Arc::clone(&writes),
            gate: None,
        };
        let (writer, guard) = LogWriter::new(out, DEFAULT_CAPACITY).unwrap();
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
        let out = Recorder {
            writes: Arc::clone(&writes),
            gate: Some(gate),
        };
        let (writer, guard) = LogWriter::new(out, 1000).unwrap();
        // The first line is taken by the writer thread, which then blocks.
        line(&writer, "first\n");
        std::thread::sleep(Duration::from_millis(50));
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
        let out = Recorder {
            writes: Arc::new(Mutex::new(Vec::new())),
            gate: Some(gate),
        };
        let (writer, guard) = LogWriter::new(out, 1000).unwrap();
        line(&writer, "stuck\n");
        std::thread::sleep(Duration::from_millis(20));
        let started = Instant::now();
        drop(guard);
        let waited = started.elapsed();
        assert!(
            waited >= FLUSH_TIMEOUT && waited < FLUSH_TIMEOUT * 2,
            "{waited:?}"
        );
    }
}
