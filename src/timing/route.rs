//! A route's storage: per-thread cells holding the current window slot,
//! and a ring of finished slots.
//!
//! The hot path shares nothing between threads in the common case: a
//! thread records into its own cell of the route (one of [`SHARDS`], picked
//! per thread, each cell its own allocation aligned to 128 bytes, so
//! neither its lock nor its reference count shares a cache line with
//! another thread's). Readers lock each cell briefly to merge it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;

use super::hist::Hist;
use super::prometheus::PromHist;
use super::registry::OTHER;
use super::sizes::SizeHist;
use super::snapshot::SlowRequest;
use super::spans::{SpanAgg, SpanStats};
use crate::clock::Elapsed;

/// Cells per route. More than the threads that record at once on this
/// class of machine, so two threads rarely share one.
pub(super) const SHARDS: usize = 8;

/// What every cell needs to know, shared and never cloned per request.
pub(crate) struct Shared {
    /// Nanoseconds since the registry started: every time below is one.
    pub(super) time: Elapsed,
    pub(super) slot_len: Duration,
    pub(super) slot_len_ns: u64,
    pub(super) slots: u64,
    pub(super) slow_threshold: Option<Duration>,
    pub(super) slow_cap: usize,
    pub(super) slow: Mutex<VecDeque<SlowRequest>>,
    pub(super) n_plus_one: u32,
    pub(super) p99_target: Duration,
    pub(super) error_rate_target: f64,
}

impl Shared {
    /// Nanoseconds since the registry started.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.time.now()
    }

    pub(super) fn slot_at(&self, at: u64) -> u64 {
        at / self.slot_len_ns
    }

    fn slot_end(&self, slot: u64) -> u64 {
        slot.saturating_add(1).saturating_mul(self.slot_len_ns)
    }

    pub(super) fn keep(&self) -> usize {
        usize::try_from(self.slots)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
    }
}

#[derive(Debug, Default)]
struct Ring {
    /// Finished slots, oldest first.
    slots: VecDeque<(u64, Hist)>,
    /// Every finished slot since start.
    total: Hist,
}

/// One (method, route) pair.
pub(crate) struct Route {
    pub(crate) method: Method,
    pub(crate) label: Arc<str>,
    ring: Mutex<Ring>,
    pub(super) cells: Vec<Arc<Cell>>,
}

struct Current {
    slot: u64,
    /// The current slot ends here; recording compares against it.
    slot_end: u64,
    hist: Hist,
    /// Since start (never flushed): sub-timings by name.
    spans: Vec<(Box<str>, SpanStats)>,
    /// Since start (never flushed): Prometheus buckets by status code.
    by_status: Vec<(StatusKey, PromHist)>,
    /// Since start: request bodies of a known size, response bodies sent.
    request_sizes: SizeHist,
    response_sizes: SizeHist,
}

/// A status code (0: codes past [`MAX_STATUSES`]) and how the request
/// ended.
pub(crate) type StatusKey = (u16, End);

/// How a request ended, as far as OpenTelemetry's `error.type` tells them
/// apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum End {
    /// A response went out whole (its status says whether it is an error).
    Sent,
    /// A response went out, but its body failed midway.
    BodyFailed,
    /// The inner service failed: no response, so no status was sent (it
    /// is counted under 500, what a server ends up answering, or not).
    NoResponse,
}

impl End {
    /// OpenTelemetry's `error.type` of a server request that ended so
    /// with `status`: a 5xx is named by its code; a failed body or no
    /// response by the fallback `_OTHER` (the layer can't name the cause);
    /// anything else has none (a 4xx, 429 included, is the client's).
    pub(crate) fn error_type(self, status: u16) -> Option<ErrorType> {
        match self {
            End::BodyFailed | End::NoResponse => Some(ErrorType::Other),
            End::Sent if (500..600).contains(&status) => Some(ErrorType::Status(status)),
            End::Sent => None,
        }
    }
}

/// A value of OpenTelemetry's `error.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorType {
    /// `_OTHER`.
    Other,
    /// A 5xx status code.
    Status(u16),
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorType::Other => f.write_str("_OTHER"),
            ErrorType::Status(s) => write!(f, "{s}"),
        }
    }
}

/// Distinct span names and status codes a route keeps; more fold together.
const MAX_SPAN_NAMES: usize = 32;
const MAX_STATUSES: usize = 64;

/// What one route's cells hold since start, merged.
#[derive(Debug, Default, Clone)]
pub(crate) struct RouteTotals {
    pub(crate) spans: Vec<(Box<str>, SpanStats)>,
    pub(crate) by_status: Vec<(StatusKey, PromHist)>,
    pub(crate) request_sizes: SizeHist,
    pub(crate) response_sizes: SizeHist,
    /// Requests in flight now.
    pub(crate) active: i64,
}

impl RouteTotals {
    /// Adds `o`'s per-status buckets, sizes and requests in flight (the
    /// sub-timings are left out: the Prometheus text doesn't show them).
    pub(crate) fn merge_series(&mut self, o: &Self) {
        for (key, ph) in &o.by_status {
            match self.by_status.iter_mut().find(|(k, _)| k == key) {
                Some((_, acc)) => acc.merge(ph),
                None => self.by_status.push((*key, ph.clone())),
            }
        }
        self.by_status.sort_by_key(|(k, _)| *k);
        self.request_sizes.merge(&o.request_sizes);
        self.response_sizes.merge(&o.response_sizes);
        self.active += o.active;
    }
}

/// The body sizes of one request, where known.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sizes {
    /// The request body's exact size hint (its `Content-Length`), if any.
    pub(crate) request: Option<u64>,
    /// The bytes of response body this layer passed on.
    pub(crate) response: u64,
}

/// A thread's share of a route: the current slot's histogram.
#[repr(align(128))]
pub(crate) struct Cell {
    current: Mutex<Current>,
    /// Requests that started in this cell and have not ended: raised on
    /// the thread that took the request, lowered wherever it ends.
    active: AtomicI64,
    #[cfg(feature = "otel")]
    otel_route: std::sync::OnceLock<Option<opentelemetry::KeyValue>>,
    route: std::sync::Weak<Route>,
    shared: Arc<Shared>,
}

impl Route {
    pub(super) fn new(method: Method, label: Arc<str>, shared: &Arc<Shared>) -> Arc<Self> {
        Arc::new_cyclic(|weak| Self {
            method,
            label,
            ring: Mutex::new(Ring::default()),
            cells: (0..SHARDS)
                .map(|_| {
                    Arc::new(Cell {
                        current: Mutex::new(Current {
                            slot: 0,
                            slot_end: shared.slot_end(0),
                            hist: Hist::default(),
                            spans: Vec::new(),
                            by_status: Vec::new(),
                            request_sizes: SizeHist::default(),
                            response_sizes: SizeHist::default(),
                        }),
                        active: AtomicI64::new(0),
                        #[cfg(feature = "otel")]
                        otel_route: std::sync::OnceLock::new(),
                        route: weak.clone(),
                        shared: shared.clone(),
                    })
                })
                .collect(),
        })
    }

    fn flush(&self, cur: &mut Current, keep: usize) {
        if cur.hist.is_empty() {
            return;
        }
        let finished = std::mem::take(&mut cur.hist);
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        ring.total.merge(&finished);
        match ring.slots.iter_mut().find(|(s, _)| *s == cur.slot) {
            Some((_, h)) => h.merge(&finished),
            None => {
                let at = ring
                    .slots
                    .iter()
                    .position(|(s, _)| *s > cur.slot)
                    .unwrap_or(ring.slots.len());
                ring.slots.insert(at, (cur.slot, finished));
            }
        }
        while ring.slots.len() > keep {
            ring.slots.pop_front();
        }
    }

    /// Sub-timings and per-status buckets since start, over every cell.
    pub(super) fn totals(&self) -> RouteTotals {
        let mut t = RouteTotals::default();
        for cell in &self.cells {
            t.active += cell.active.load(Ordering::Relaxed);
            let Ok(cur) = cell.current.lock() else {
                continue;
            };
            t.request_sizes.merge(&cur.request_sizes);
            t.response_sizes.merge(&cur.response_sizes);
            for (name, st) in &cur.spans {
                match t.spans.iter_mut().find(|(n, _)| n == name) {
                    Some((_, acc)) => acc.merge(st),
                    None => t.spans.push((name.clone(), st.clone())),
                }
            }
            for (key, ph) in &cur.by_status {
                match t.by_status.iter_mut().find(|(k, _)| k == key) {
                    Some((_, acc)) => acc.merge(ph),
                    None => t.by_status.push((*key, ph.clone())),
                }
            }
        }
        t.spans.sort_by(|a, b| a.0.cmp(&b.0));
        t.by_status.sort_by_key(|(k, _)| *k);
        t
    }

    /// (window ending at `slot`, since start).
    pub(super) fn read(&self, shared: &Shared, slot: u64) -> (Hist, Hist) {
        let keep = shared.keep();
        let mut window = Hist::default();
        let mut total = Hist::default();
        let mut currents = Vec::with_capacity(SHARDS);
        for cell in &self.cells {
            if let Ok(mut cur) = cell.current.lock() {
                if cur.slot != slot {
                    self.flush(&mut cur, keep);
                    cur.slot = slot;
                    cur.slot_end = shared.slot_end(slot);
                }
                currents.push(cur.hist.clone());
            }
        }
        if let Ok(ring) = self.ring.lock() {
            total.merge(&ring.total);
            for (s, h) in &ring.slots {
                if s + shared.slots > slot {
                    window.merge(h);
                }
            }
        }
        for h in &currents {
            window.merge(h);
            total.merge(h);
        }
        (window, total)
    }
}

impl Cell {
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.shared.now()
    }

    fn with_current(&self, at: u64, f: impl FnOnce(&mut Current)) {
        let Ok(mut cur) = self.current.lock() else {
            return;
        };
        if at >= cur.slot_end {
            let slot = self.shared.slot_at(at);
            if let Some(route) = self.route.upgrade() {
                route.flush(&mut cur, self.shared.keep());
            }
            cur.slot = slot;
            cur.slot_end = self.shared.slot_end(slot);
        }
        f(&mut cur);
    }

    /// OpenTelemetry's `http.route` of this cell's route, made on first
    /// use.
    #[cfg(feature = "otel")]
    pub(crate) fn otel_route(&self) -> &Option<opentelemetry::KeyValue> {
        self.otel_route.get_or_init(|| {
            self.route
                .upgrade()
                .and_then(|r| super::otel::route_attribute(r.label.clone()))
        })
    }

    /// Counts a request in flight until [`record`](Self::record) or
    /// [`record_abort`](Self::record_abort).
    #[inline]
    pub(crate) fn start(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a request that started at `start` (nanoseconds on the
    /// registry's clock) and ends now, as `how` says; returns its
    /// duration in nanoseconds.
    pub(crate) fn record(
        &self,
        start: u64,
        status: u16,
        how: End,
        spans: &[SpanAgg],
        sizes: Sizes,
    ) -> u64 {
        self.active.fetch_sub(1, Ordering::Relaxed);
        let end = self.now();
        let ns = end.saturating_sub(start);
        let duration = Duration::from_nanos(ns);
        let threshold = self.shared.n_plus_one;
        self.with_current(end, |cur| {
            cur.hist.record(ns, status, how == End::BodyFailed);
            if let Some(n) = sizes.request {
                cur.request_sizes.record(n);
            }
            if how != End::NoResponse {
                cur.response_sizes.record(sizes.response);
            }
            let key = (status, how);
            // Inner-service errors are one series (no status code), never
            // folded: the fold's would carry the same labels.
            let key = if how != End::NoResponse
                && cur.by_status.len() >= MAX_STATUSES
                && !cur.by_status.iter().any(|(k, _)| *k == key)
            {
                (0, how)
            } else {
                key
            };
            match cur.by_status.iter_mut().find(|(k, _)| *k == key) {
                Some((_, ph)) => ph.record(ns),
                None => {
                    let mut ph = PromHist::default();
                    ph.record(ns);
                    cur.by_status.push((key, ph));
                }
            }
            for agg in spans {
                let full = cur.spans.len() >= MAX_SPAN_NAMES;
                let name: &str = if full && !cur.spans.iter().any(|(n, _)| **n == *agg.name) {
                    OTHER
                } else {
                    &agg.name
                };
                match cur.spans.iter_mut().find(|(n, _)| **n == *name) {
                    Some((_, st)) => st.add(agg, threshold),
                    None => {
                        let mut st = SpanStats::default();
                        st.add(agg, threshold);
                        cur.spans.push((name.into(), st));
                    }
                }
            }
        });
        if let Some(threshold) = self.shared.slow_threshold {
            if duration >= threshold {
                self.push_slow(status, duration, end);
            }
        }
        ns
    }

    pub(crate) fn record_abort(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        self.with_current(self.now(), |cur| cur.hist.record_abort());
    }

    fn push_slow(&self, status: u16, duration: Duration, end: u64) {
        let Some(route) = self.route.upgrade() else {
            return;
        };
        if self.shared.slow_cap == 0 {
            return;
        }
        let Ok(mut ring) = self.shared.slow.lock() else {
            return;
        };
        if ring.len() >= self.shared.slow_cap {
            ring.pop_front();
        }
        ring.push_back(SlowRequest {
            method: route.method.to_string(),
            route: route.label.to_string(),
            status,
            duration_ms: duration.as_secs_f64() * 1000.0,
            at_secs: Duration::from_nanos(end).as_secs_f64(),
        });
    }
}
