//! Where timings go: routes (capped), per-thread cells holding the current
//! window slot, and a ring of finished slots per route.
//!
//! The hot path shares nothing between threads in the common case: a
//! thread finds its route through a per-thread cache and records into its
//! own cell of that route (one of [`SHARDS`], picked per thread, each cell
//! its own allocation aligned to 128 bytes, so neither its lock nor its
//! reference count shares a cache line with another thread's). Readers lock
//! each cell briefly to merge it.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::Method;

use super::hist::Hist;
use super::spans::{SpanAgg, SpanStats};

/// Cells per route. More than the threads that record at once on this
/// class of machine, so two threads rarely share one.
const SHARDS: usize = 8;

use crate::clock::Elapsed;
pub use crate::clock::{Clock, SystemClock};

/// The label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";
/// The label routes fold into once the cap is reached.
pub const OTHER: &str = "other";

/// One slow request.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SlowRequest {
    /// The request method.
    pub method: String,
    /// The route label.
    pub route: String,
    /// The response status.
    pub status: u16,
    /// Milliseconds from arrival to the end of the response body.
    pub duration_ms: f64,
    /// Seconds since the layer started when the request ended.
    pub at_secs: f64,
}

/// What every cell needs to know, shared and never cloned per request.
pub(crate) struct Shared {
    /// Nanoseconds since the registry started: every time below is one.
    time: Elapsed,
    slot_len: Duration,
    slot_len_ns: u64,
    slots: u64,
    slow_threshold: Option<Duration>,
    slow_cap: usize,
    slow: Mutex<VecDeque<SlowRequest>>,
    n_plus_one: u32,
    p99_target: Duration,
    error_rate_target: f64,
}

impl Shared {
    /// Nanoseconds since the registry started.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.time.now()
    }

    fn slot_at(&self, at: u64) -> u64 {
        at / self.slot_len_ns
    }

    fn slot_end(&self, slot: u64) -> u64 {
        slot.saturating_add(1).saturating_mul(self.slot_len_ns)
    }

    fn keep(&self) -> usize {
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
    cells: Vec<Arc<Cell>>,
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

/// Cumulative buckets at OpenTelemetry's advised bounds.
#[derive(Debug, Clone, Default)]
pub(crate) struct PromHist {
    pub(crate) buckets: [u64; PROM_BOUNDS.len()],
    pub(crate) count: u64,
    pub(crate) sum_ns: u128,
}

/// OpenTelemetry's advised bucket bounds for `http.server.request.duration`,
/// in seconds.
pub(crate) const PROM_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// [`PROM_BOUNDS`] in nanoseconds.
const PROM_BOUNDS_NS: [u64; 14] = [
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    75_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    750_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    7_500_000_000,
    10_000_000_000,
];

impl PromHist {
    /// Counts into the first bucket that holds `ns` only; [`cumulative`]
    /// sums them for the exposition.
    ///
    /// [`cumulative`]: Self::cumulative
    fn record(&mut self, ns: u64) {
        let i = PROM_BOUNDS_NS.partition_point(|b| *b < ns);
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
        self.count += 1;
        self.sum_ns += u128::from(ns);
    }

    /// Cumulative counts per bound (`le`), as Prometheus wants them.
    pub(crate) fn cumulative(&self) -> [u64; PROM_BOUNDS.len()] {
        let mut out = self.buckets;
        for i in 1..out.len() {
            out[i] += out[i - 1];
        }
        out
    }

    pub(crate) fn merge(&mut self, o: &Self) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        self.count += o.count;
        self.sum_ns += o.sum_ns;
    }
}

/// Distinct span names and status codes a route keeps; more fold together.
const MAX_SPAN_NAMES: usize = 32;
const MAX_STATUSES: usize = 64;

/// What one route's cells hold since start, merged.
#[derive(Debug, Default)]
pub(crate) struct RouteTotals {
    pub(crate) spans: Vec<(Box<str>, SpanStats)>,
    pub(crate) by_status: Vec<(StatusKey, PromHist)>,
}

/// A thread's share of a route: the current slot's histogram.
#[repr(align(128))]
pub(crate) struct Cell {
    current: Mutex<Current>,
    route: std::sync::Weak<Route>,
    shared: Arc<Shared>,
}

impl Route {
    fn new(method: Method, label: Arc<str>, shared: &Arc<Shared>) -> Arc<Self> {
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
                        }),
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
    fn totals(&self) -> RouteTotals {
        let mut t = RouteTotals::default();
        for cell in &self.cells {
            let Ok(cur) = cell.current.lock() else {
                continue;
            };
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
    fn read(&self, shared: &Shared, slot: u64) -> (Hist, Hist) {
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

    /// Records a request that started at `start` (nanoseconds on the
    /// registry's clock) and ends now, as `how` says.
    pub(crate) fn record(&self, start: u64, status: u16, how: End, spans: &[SpanAgg]) {
        let end = self.now();
        let ns = end.saturating_sub(start);
        let duration = Duration::from_nanos(ns);
        let threshold = self.shared.n_plus_one;
        self.with_current(end, |cur| {
            cur.hist.record(ns, status, how == End::BodyFailed);
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
    }

    pub(crate) fn record_abort(&self) {
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

/// FxHash: the per-thread cache hashes short, trusted labels (route
/// templates), where SipHash's DoS resistance buys nothing and costs most
/// of the lookup.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(w));
        }
    }
    fn write_u64(&mut self, w: u64) {
        self.add(w);
    }
    fn write_usize(&mut self, w: usize) {
        self.add(w as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl Fx {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
static NEXT_REGISTRY: AtomicU64 = AtomicU64::new(0);

/// Entries the per-thread cache keeps at most (over all registries).
const CACHE_CAP: usize = 4096;

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
    /// (registry id, method) → label → this thread's cell of the route.
    static CACHE: RefCell<FxMap<(u64, Method), FxMap<Box<str>, Arc<Cell>>>> = RefCell::new(FxMap::default());
    /// A few recent lookups, slotted by where the label lives: route
    /// templates (axum's `MatchedPath`, constant labels) keep their address
    /// from request to request, so most lookups end here without hashing.
    static MEMO: RefCell<[Option<Memo>; MEMO_SLOTS]> = const { RefCell::new([const { None }; MEMO_SLOTS]) };
}

const MEMO_SLOTS: usize = 16;

struct Memo {
    registry: u64,
    method: Method,
    label: Box<str>,
    cell: Arc<Cell>,
}

fn memo_slot(registry: u64, label: &str) -> usize {
    let addr = label.as_ptr() as usize as u64;
    ((addr >> 3) ^ registry.wrapping_mul(0x9E37_79B9)) as usize % MEMO_SLOTS
}

/// How the registry is configured.
#[derive(Clone)]
pub(crate) struct RegistryConfig {
    /// `None`: the counter clock.
    pub(crate) clock: Option<Arc<dyn Clock>>,
    pub(crate) window: Duration,
    pub(crate) slots: u32,
    pub(crate) max_routes: usize,
    pub(crate) slow_threshold: Option<Duration>,
    pub(crate) slow_cap: usize,
    pub(crate) n_plus_one: u32,
    pub(crate) p99_target: Duration,
    pub(crate) error_rate_target: f64,
}

pub(crate) struct Registry {
    id: u64,
    shared: Arc<Shared>,
    max_routes: usize,
    routes: RwLock<HashMap<(Method, Arc<str>), Arc<Route>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("slot_len", &self.shared.slot_len)
            .field("slots", &self.shared.slots)
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub(crate) fn new(c: RegistryConfig) -> Self {
        let slots = c.slots.max(1);
        let slot_len = (c.window / slots).max(Duration::from_millis(1));
        Self {
            id: NEXT_REGISTRY.fetch_add(1, Ordering::Relaxed),
            shared: Arc::new(Shared {
                time: Elapsed::given(c.clock),
                slot_len,
                slot_len_ns: u64::try_from(slot_len.as_nanos())
                    .unwrap_or(u64::MAX)
                    .max(1),
                slots: u64::from(slots),
                slow_threshold: c.slow_threshold,
                slow_cap: c.slow_cap,
                slow: Mutex::new(VecDeque::new()),
                n_plus_one: c.n_plus_one.max(2),
                p99_target: c.p99_target,
                error_rate_target: c.error_rate_target,
            }),
            max_routes: c.max_routes.max(1),
            routes: RwLock::new(HashMap::new()),
        }
    }

    /// Nanoseconds since the registry started.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.shared.now()
    }

    /// This thread's cell of the route for (method, label), created on
    /// first use; past the cap, new routes fold into [`OTHER`].
    pub(crate) fn cell(&self, method: &Method, label: &str) -> Arc<Cell> {
        let slot = memo_slot(self.id, label);
        let memo = MEMO.with(|m| {
            let m = m.borrow();
            let e = m.get(slot)?.as_ref()?;
            // The content decides; the address only picked the slot.
            (e.registry == self.id && e.method == *method && *e.label == *label)
                .then(|| e.cell.clone())
        });
        if let Some(cell) = memo {
            return cell;
        }
        let cell = self.cell_slow(method, label);
        MEMO.with(|m| {
            if let Some(e) = m.borrow_mut().get_mut(slot) {
                *e = Some(Memo {
                    registry: self.id,
                    method: method.clone(),
                    label: label.into(),
                    cell: cell.clone(),
                });
            }
        });
        cell
    }

    fn cell_slow(&self, method: &Method, label: &str) -> Arc<Cell> {
        let cached = CACHE.with(|c| {
            c.borrow()
                .get(&(self.id, method.clone()))
                .and_then(|m| m.get(label))
                .cloned()
        });
        if let Some(cell) = cached {
            return cell;
        }
        let route = self.route(method, label);
        let shard = SHARD.with(|s| *s);
        let cell = match route.cells.get(shard) {
            Some(c) => c.clone(),
            None => Route::new(method.clone(), Arc::from(OTHER), &self.shared).cells[0].clone(),
        };
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let entries: usize = c.values().map(HashMap::len).sum();
            if entries >= CACHE_CAP {
                c.clear();
            }
            c.entry((self.id, method.clone()))
                .or_default()
                .insert(label.into(), cell.clone());
        });
        cell
    }

    fn route(&self, method: &Method, label: &str) -> Arc<Route> {
        let key: (Method, Arc<str>) = (method.clone(), Arc::from(label));
        if let Ok(routes) = self.routes.read() {
            if let Some(r) = routes.get(&key) {
                return r.clone();
            }
        }
        let Ok(mut routes) = self.routes.write() else {
            return Route::new(method.clone(), Arc::from(OTHER), &self.shared);
        };
        if let Some(r) = routes.get(&key) {
            return r.clone();
        }
        // `other` and `unmatched` are always allowed past the cap.
        let reserved = label == OTHER || label == UNMATCHED;
        let key = if routes.len() >= self.max_routes && !reserved {
            (method.clone(), Arc::from(OTHER))
        } else {
            key
        };
        let shared = &self.shared;
        routes
            .entry(key.clone())
            .or_insert_with(|| Route::new(key.0, key.1, shared))
            .clone()
    }

    pub(crate) fn slow_requests(&self) -> Vec<SlowRequest> {
        self.shared
            .slow
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every route's (window, total, since-start extras), read now.
    pub(crate) fn read(&self) -> Vec<(Arc<Route>, Hist, Hist, RouteTotals)> {
        let slot = self.shared.slot_at(self.shared.now());
        let routes: Vec<Arc<Route>> = self
            .routes
            .read()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default();
        routes
            .into_iter()
            .map(|r| {
                let (w, t) = r.read(&self.shared, slot);
                let extras = r.totals();
                (r, w, t, extras)
            })
            .collect()
    }

    pub(crate) fn n_plus_one(&self) -> u32 {
        self.shared.n_plus_one
    }

    pub(crate) fn targets(&self) -> (Duration, f64) {
        (self.shared.p99_target, self.shared.error_rate_target)
    }

    pub(crate) fn window(&self) -> Duration {
        self.shared
            .slot_len
            .saturating_mul(u32::try_from(self.shared.slots).unwrap_or(u32::MAX))
    }

    pub(crate) fn uptime(&self) -> Duration {
        Duration::from_nanos(self.shared.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_buckets_match_their_bounds() {
        assert_eq!(PROM_BOUNDS.len(), PROM_BOUNDS_NS.len());
        for (s, ns) in PROM_BOUNDS.iter().zip(PROM_BOUNDS_NS) {
            assert_eq!((s * 1e9).round() as u64, ns);
        }
        let mut h = PromHist::default();
        // On a bound counts as `le` that bound; past the last, only +Inf.
        for ns in [
            1,
            5_000_000,
            5_000_001,
            99_999_999,
            10_000_000_000,
            10_000_000_001,
        ] {
            h.record(ns);
        }
        let c = h.cumulative();
        assert_eq!(c[0], 2); // le 0.005
        assert_eq!(c[1], 3); // le 0.01
        assert_eq!(c[5], 4); // le 0.1
        assert_eq!(c[13], 5); // le 10
        assert_eq!(h.count, 6); // +Inf
    }
}
