//! The limits of the serving loop, their flags and defaults (the module
//! docs of `serve.rs` say what each one bounds).

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

/// The flags of [`Limits`], for the examples' usage text.
pub(crate) const USAGE: &str = "\nconnection limits (both protocols unless named):\n  \
--header-read-timeout SECS  a request head must arrive within SECS (default 10)\n  \
--idle-timeout SECS         close connections idle for SECS between requests (default 75)\n  \
--send-timeout SECS         close a connection whose client takes no response data for SECS (default 60)\n  \
--body-read-timeout SECS    fail a request whose body delivers under 16 KiB in SECS of waiting (default 60)\n  \
--max-connections N         open connections at most; more wait in the backlog (default 1024)\n  \
--h2-max-streams N          concurrent HTTP/2 streams per connection (default 100)\n  \
--h2-max-header-list KIB    largest HTTP/2 header list (default 16)\n  \
--h1-max-head KIB           largest HTTP/1.1 request head, at least 8 (default 64)\n  \
--shutdown-timeout SECS     on Ctrl-C/SIGTERM, wait this long for requests in flight (default 10)\n";

/// HTTP/2 keep-alive pings: one after this much silence from the peer…
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// …and the connection is closed when the ack takes longer than this.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The limits of the serving loop (see the module docs for each).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    /// How long a connection may go without its client taking response
    /// data while some is waiting for it.
    pub(crate) send_timeout: Duration,
    /// How long a request body may keep a handler waiting without
    /// delivering [`PROGRESS_BYTES`](super::activity::PROGRESS_BYTES).
    pub(crate) body_read_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) h2_max_streams: u32,
    /// Bytes.
    pub(crate) h2_max_header_list: u32,
    /// Bytes, at least 8192 (hyper's minimum).
    pub(crate) h1_max_head: usize,
    pub(crate) shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            // nginx's `send_timeout` and `client_body_timeout`.
            send_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 1024,
            h2_max_streams: 100,
            h2_max_header_list: 16 * 1024,
            h1_max_head: 64 * 1024,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// Whether `flag` is one of the limit flags.
    pub(crate) fn is_flag(flag: &str) -> bool {
        matches!(
            flag,
            "--header-read-timeout"
                | "--idle-timeout"
                | "--send-timeout"
                | "--body-read-timeout"
                | "--max-connections"
                | "--h2-max-streams"
                | "--h2-max-header-list"
                | "--h1-max-head"
                | "--shutdown-timeout"
        )
    }

    /// Sets the limit of `flag` from `value`.
    pub(crate) fn set(&mut self, flag: &str, value: &str) -> Result<(), String> {
        let bad = |why: &str| format!("{flag} {value}: {why}");
        let int = |lo: u64, hi: u64| -> Result<u64, String> {
            let n: u64 = value.parse().map_err(|e| bad(&format!("{e}")))?;
            if (lo..=hi).contains(&n) {
                Ok(n)
            } else {
                Err(bad(&format!("between {lo} and {hi}")))
            }
        };
        let secs = || -> Result<Duration, String> {
            let s: f64 = value.parse().map_err(|e| bad(&format!("{e}")))?;
            // Positive and at most a day, so deadlines never overflow.
            if s > 0.0 && s <= 86_400.0 {
                Ok(Duration::from_secs_f64(s))
            } else {
                Err(bad("seconds, more than 0 and at most 86400"))
            }
        };
        match flag {
            "--header-read-timeout" => self.header_read_timeout = secs()?,
            "--idle-timeout" => self.idle_timeout = secs()?,
            "--send-timeout" => self.send_timeout = secs()?,
            "--body-read-timeout" => self.body_read_timeout = secs()?,
            "--shutdown-timeout" => self.shutdown_timeout = secs()?,
            // Bounded so a permit count always fits the semaphore's u32.
            "--max-connections" => self.max_connections = int(1, 1_000_000)? as usize,
            "--h2-max-streams" => self.h2_max_streams = int(1, 10_000)? as u32,
            "--h2-max-header-list" => self.h2_max_header_list = int(1, 16 * 1024)? as u32 * 1024,
            "--h1-max-head" => self.h1_max_head = int(8, 16 * 1024)? as usize * 1024,
            _ => return Err(format!("unknown argument {flag}")),
        }
        Ok(())
    }

    pub(super) fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            // The loop's own deadlines replace hyper's (module docs).
            .header_read_timeout(None)
            .max_buf_size(self.h1_max_head.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_TIMEOUT)
            .max_concurrent_streams(self.h2_max_streams)
            .max_header_list_size(self.h2_max_header_list);
        builder
    }
}
