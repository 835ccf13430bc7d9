//! A real `redis-server` on a free loopback port, killed on drop
//! (feature `redis-server`).
//!
//! ```no_run
//! use staunch_test::redis::RedisServer;
//!
//! let mut server = RedisServer::start();
//! let url = server.url(); // redis://127.0.0.1:<port>/
//! server.pause(); // SIGSTOP: connections stay open, nothing is answered
//! server.resume(); // SIGCONT: answers again, its data intact
//! server.kill(); // nothing answers on the port now
//! server.restart(); // empty again, same port
//! # let _ = url;
//! ```

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to do when `redis-server` is missing, as the panic says it.
pub const INSTALL: &str = "install it with `apt-get install redis-server` \
                           (Debian, Ubuntu) or `brew install redis` (macOS)";

/// How long a started server has to answer `PING`.
const READY_WITHIN: Duration = Duration::from_secs(5);

/// A `redis-server` child process without persistence, on its own port,
/// killed when this is dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits (at most 5 s) until it
    /// answers `PING`.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not on the `PATH` (the message says how to
    /// install it), fails to start, or does not answer in time.
    pub fn start() -> RedisServer {
        match RedisServer::try_start() {
            Ok(Some(server)) => server,
            Ok(None) => panic!("redis-server is not on the PATH: {INSTALL}"),
            Err(e) => panic!("{e}"),
        }
    }

    /// As [`start`](Self::start), but `Ok(None)` when `redis-server` is not
    /// on the `PATH` and an error when it does not start, for a program
    /// that goes on without it.
    pub fn try_start() -> io::Result<Option<RedisServer>> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = RedisServer { port, child: None };
        match server.spawn() {
            Ok(()) => Ok(Some(server)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL, `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server with `SIGSTOP`, as a stalled host would: its port
    /// still accepts connections and commands queue, but nothing is
    /// answered until [`resume`](Self::resume). Does nothing when it is not
    /// running.
    ///
    /// # Panics
    ///
    /// When the signal cannot be sent (no `kill` command).
    pub fn pause(&mut self) {
        self.signal("-STOP");
    }

    /// Lets a [`pause`](Self::pause)d server run again with `SIGCONT`: it
    /// answers what queued meanwhile, its data intact.
    ///
    /// # Panics
    ///
    /// As [`pause`](Self::pause).
    pub fn resume(&mut self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let Some(child) = &self.child else { return };
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill {signal}: {e}"));
        assert!(status.success(), "kill {signal} failed: {status}");
    }

    /// Kills the server: nothing answers on its port afterwards (a paused
    /// one too).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn() {
            match e.kind() {
                io::ErrorKind::NotFound => panic!("redis-server is not on the PATH: {INSTALL}"),
                _ => panic!("{e}"),
            }
        }
    }

    fn spawn(&mut self) -> io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let started = Instant::now();
        while !self.answers() {
            if started.elapsed() > READY_WITHIN {
                self.kill();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "redis-server did not answer PING on port {} within 5 s",
                        self.port
                    ),
                ));
            }
            // A child process starting: real time, not a test's clock.
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
