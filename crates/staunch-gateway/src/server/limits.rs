//! The bounds [`serve`](super::serve) keeps, and the process's open-file
//! limit that the connection cap's default is taken from.

use crate::config::Server;
use std::time::Duration;

/// The largest default connection cap, whatever the open-file limit.
const DEFAULT_MAX_CONNECTIONS_CAP: usize = 16_384;
/// The connection cap when the open-file limit cannot be read.
const DEFAULT_MAX_CONNECTIONS_UNKNOWN: usize = 1_024;

/// The bounds on client connections that [`serve`](super::serve) keeps
/// (the module's table says what each does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// How many connections may be open at once.
    pub max_connections: usize,
    /// How long a client may take to send a request head.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// The longest pause in a request body, and the grace before
    /// [`min_body_rate`](Self::min_body_rate) applies.
    pub body_timeout: Duration,
    /// The slowest average pace of a request body, in bytes per second.
    pub min_body_rate: u64,
}

impl Limits {
    /// The limits a `[server]` table sets. Without `max_connections`, the
    /// cap is half of `open_file_limit` (the process's soft limit on open
    /// files, from [`open_file_limit`]), at most 16,384, or 1,024 when the
    /// limit is unknown: the other half stays free for upstream
    /// connections, Redis and the logs.
    pub fn new(server: &Server, open_file_limit: Option<u64>) -> Limits {
        let max_connections = server
            .max_connections
            .unwrap_or_else(|| match open_file_limit {
                Some(limit) => usize::try_from(limit / 2)
                    .unwrap_or(usize::MAX)
                    .clamp(1, DEFAULT_MAX_CONNECTIONS_CAP),
                None => DEFAULT_MAX_CONNECTIONS_UNKNOWN,
            });
        Limits {
            max_connections: max_connections.max(1),
            header_timeout: server.header_timeout,
            idle_timeout: server.idle_timeout,
            body_timeout: server.body_timeout,
            min_body_rate: server.min_body_rate.max(1),
        }
    }
}

/// The process's soft limit on open files (`RLIMIT_NOFILE`), or `None`
/// where there is none or it cannot be read.
pub fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Raises the process's soft limit on open files to its hard limit, as a
/// server that holds many sockets should (Go's runtime does the same at
/// start-up), and returns the soft limit now in force (`None` where it
/// cannot be read or there is no limit).
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
            && current < maximum
        {
            let raised = Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                tracing::debug!(error = %e, "could not raise the open-file limit");
            }
        }
    }
    open_file_limit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_is_half_the_file_limit_within_bounds() {
        let server = Server::default();
        assert_eq!(Limits::new(&server, Some(20_000)).max_connections, 10_000);
        assert_eq!(
            Limits::new(&server, Some(1_048_576)).max_connections,
            16_384
        );
        assert_eq!(Limits::new(&server, Some(1)).max_connections, 1);
        assert_eq!(Limits::new(&server, None).max_connections, 1_024);
        let set = Server {
            max_connections: Some(50),
            ..Server::default()
        };
        assert_eq!(Limits::new(&set, Some(20_000)).max_connections, 50);
    }

    #[test]
    fn the_file_limit_is_read() {
        #[cfg(unix)]
        assert!(open_file_limit().is_some_and(|limit| limit > 0));
    }
}
