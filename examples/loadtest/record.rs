//! What a run records: how each request ended (an answer's status, or the
//! transport error that left it without one) and, for successful answers,
//! its latency; per endpoint and per time bucket.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// An answer, read whole.
    Status(u16),
    /// No answer.
    Transport(TransportError),
}

impl Outcome {
    /// A 2xx or 3xx answer: the ones latencies and throughput count.
    pub(crate) fn is_success(self) -> bool {
        matches!(self, Outcome::Status(s) if (200..400).contains(&s))
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TransportError {
    /// The connection was refused (nothing listens).
    Refused,
    /// The connection was reset or closed mid-exchange.
    Reset,
    /// No whole answer within `--timeout`.
    Timeout,
    /// Anything else (DNS, a malformed answer…).
    Other,
}

impl TransportError {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TransportError::Refused => "refused",
            TransportError::Reset => "reset",
            TransportError::Timeout => "timeout",
            TransportError::Other => "other",
        }
    }

    /// The kind of a client or body error, from the I/O error behind it.
    pub(crate) fn of(e: &(dyn std::error::Error + 'static)) -> Self {
        let mut cause = Some(e);
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                return match io.kind() {
                    ConnectionRefused => TransportError::Refused,
                    ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
                        TransportError::Reset
                    }
                    TimedOut => TransportError::Timeout,
                    _ => TransportError::Other,
                };
            }
            if let Some(h) = c.downcast_ref::<hyper::Error>() {
                if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                    return TransportError::Reset;
                }
            }
            cause = c.source();
        }
        TransportError::Other
    }
}

/// One endpoint's answers.
pub(crate) struct EndpointStats {
    /// Latencies of successful answers, in microseconds.
    pub(crate) ok: Histogram<u64>,
    /// Latencies of every answer, whatever its status (benches/run.sh
    /// times a rate-limited path by its 429s).
    pub(crate) answered: Histogram<u64>,
    pub(crate) statuses: BTreeMap<u16, u64>,
    pub(crate) transport: BTreeMap<TransportError, u64>,
}

impl EndpointStats {
    fn copy(&self) -> Self {
        Self {
            ok: self.ok.clone(),
            answered: self.answered.clone(),
            statuses: self.statuses.clone(),
            transport: self.transport.clone(),
        }
    }

    fn merge(&mut self, o: &Self) {
        let _ = self.ok.add(&o.ok);
        let _ = self.answered.add(&o.answered);
        for (k, n) in &o.statuses {
            *self.statuses.entry(*k).or_insert(0) += n;
        }
        for (k, n) in &o.transport {
            *self.transport.entry(*k).or_insert(0) += n;
        }
    }

    pub(crate) fn new() -> Self {
        Self {
            ok: hist(3),
            answered: hist(3),
            statuses: BTreeMap::new(),
            transport: BTreeMap::new(),
        }
    }
}

/// Microseconds, 1 µs to 10 min, with `sigfig` significant figures.
pub(crate) fn hist(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, sigfig).expect("constant, valid bounds")
}

/// One time bucket of the run.
#[derive(Clone)]
pub(crate) struct Bucket {
    /// Latencies of the successful answers.
    pub(crate) ok: Histogram<u64>,
    /// Requests that ended otherwise (an error status, no answer).
    pub(crate) failed: u64,
}

/// One shard of what the workers record: a few users share it.
pub(crate) struct Shard {
    pub(crate) endpoints: Vec<EndpointStats>,
    /// Per time bucket since start, all endpoints: for the spike's phases.
    pub(crate) buckets: Vec<Bucket>,
}

/// Shards at most: users record into `id % SHARDS`, so a few dozen of them
/// on a few threads rarely wait for one another, and memory stays bounded
/// however many users a run has.
const SHARDS: usize = 16;

/// Everything the workers record into.
pub(crate) struct Recorder {
    pub(crate) start: Instant,
    shards: Vec<Mutex<Shard>>,
    /// Whether time buckets are kept (the spike scenario's phases need
    /// them; nothing else does, and they cost a histogram per bucket).
    timeline: bool,
    /// The length of the time buckets.
    pub(crate) bucket: Duration,
    pub(crate) done: AtomicU64,
    pub(crate) failed: AtomicU64,
}

impl Recorder {
    /// For `endpoints` endpoints, `users` users at most, over `run`; with
    /// time buckets when `timeline`.
    pub(crate) fn new(endpoints: usize, users: usize, run: Duration, timeline: bool) -> Self {
        Self {
            start: Instant::now(),
            timeline,
            shards: (0..users.clamp(1, SHARDS))
                .map(|_| {
                    Mutex::new(Shard {
                        endpoints: (0..endpoints).map(|_| EndpointStats::new()).collect(),
                        buckets: Vec::new(),
                    })
                })
                .collect(),
            // 100 ms buckets, 1 s ones for runs over a minute.
            bucket: if run > Duration::from_secs(60) {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(100)
            },
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Records what user `user` saw of one request to endpoint `ep`.
    pub(crate) fn record(&self, user: u64, ep: usize, latency: Duration, outcome: Outcome) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, 600_000_000);
        let ok = outcome.is_success();
        // Requests that got no answer at once (a refused connection) are
        // counted like the rest; the caller backs off.
        let at = usize::try_from(self.start.elapsed().as_millis() / self.bucket.as_millis().max(1))
            .unwrap_or(usize::MAX);
        let shard = usize::try_from(user).unwrap_or(0) % self.shards.len();
        if let Ok(mut sh) = self.shards[shard].lock() {
            let s = &mut sh.endpoints[ep];
            match outcome {
                Outcome::Status(code) => {
                    *s.statuses.entry(code).or_insert(0) += 1;
                    let _ = s.answered.record(us);
                }
                Outcome::Transport(kind) => *s.transport.entry(kind).or_insert(0) += 1,
            }
            if ok {
                let _ = s.ok.record(us);
            }
            let v = &mut sh.buckets;
            while self.timeline && v.len() <= at && v.len() < 100_000 {
                v.push(Bucket {
                    ok: hist(2),
                    failed: 0,
                });
            }
            if let Some(b) = v.get_mut(at) {
                if ok {
                    let _ = b.ok.record(us);
                } else {
                    b.failed += 1;
                }
            }
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every shard merged: per endpoint, and per time bucket.
    pub(crate) fn merged(&self) -> Shard {
        let mut all: Option<Shard> = None;
        for sh in &self.shards {
            let Ok(sh) = sh.lock() else { continue };
            let Some(acc) = all.as_mut() else {
                all = Some(Shard {
                    endpoints: sh.endpoints.iter().map(EndpointStats::copy).collect(),
                    buckets: sh.buckets.clone(),
                });
                continue;
            };
            for (a, b) in acc.endpoints.iter_mut().zip(&sh.endpoints) {
                a.merge(b);
            }
            for (i, b) in sh.buckets.iter().enumerate() {
                match acc.buckets.get_mut(i) {
                    Some(a) => {
                        let _ = a.ok.add(&b.ok);
                        a.failed += b.failed;
                    }
                    None => acc.buckets.push(b.clone()),
                }
            }
        }
        all.unwrap_or(Shard {
            endpoints: Vec::new(),
            buckets: Vec::new(),
        })
    }
}
