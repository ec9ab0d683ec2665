//! Where timings go: routes (capped), per-route shards for the current
//! window slot, and a ring of finished slots.
//!
//! Recording takes one lock that only the recording thread uses in the
//! common case: each thread writes to its own shard of the route (picked by
//! a per-thread index), and route lookups hit a per-thread cache, so no
//! lock or counter is shared by all requests. Readers lock each shard
//! briefly to merge it.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http::Method;

use super::hist::Hist;

/// Shards per route. More than the threads that record at once on this
/// class of machine, so two threads rarely share one.
const SHARDS: usize = 8;

/// A source of `Instant`s, so tests can move time.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";
/// The label routes fold into once the cap is reached.
pub const OTHER: &str = "other";

#[derive(Debug, Default)]
struct Shard {
    slot: u64,
    hist: Hist,
}

#[derive(Debug, Default)]
struct Ring {
    /// Finished slots, oldest first.
    slots: VecDeque<(u64, Hist)>,
    /// Every finished slot since start.
    total: Hist,
}

/// One (method, route) pair's statistics.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) method: Method,
    pub(crate) label: Arc<str>,
    shards: Vec<Mutex<Shard>>,
    ring: Mutex<Ring>,
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
static NEXT_REGISTRY: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
    /// (registry id, method) → label → route, so the hot path never touches
    /// the registry's lock (and looks up by `&str`, without allocating).
    static CACHE: RefCell<HashMap<(u64, Method), HashMap<Box<str>, Arc<Route>>>> = RefCell::new(HashMap::new());
}

/// Entries the per-thread cache keeps at most (over all registries).
const CACHE_CAP: usize = 4096;

impl Route {
    fn new(method: Method, label: Arc<str>) -> Self {
        Self {
            method,
            label,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            ring: Mutex::new(Ring::default()),
        }
    }

    /// Moves a shard's finished slot into the ring.
    fn flush(&self, shard: &mut Shard, keep: usize) {
        if shard.hist.is_empty() {
            return;
        }
        let finished = std::mem::take(&mut shard.hist);
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        ring.total.merge(&finished);
        match ring.slots.iter_mut().find(|(s, _)| *s == shard.slot) {
            Some((_, h)) => h.merge(&finished),
            None => {
                let at = ring
                    .slots
                    .iter()
                    .position(|(s, _)| *s > shard.slot)
                    .unwrap_or(ring.slots.len());
                ring.slots.insert(at, (shard.slot, finished));
            }
        }
        while ring.slots.len() > keep {
            ring.slots.pop_front();
        }
    }

    fn with_shard(&self, slot: u64, keep: usize, f: impl FnOnce(&mut Hist)) {
        let i = SHARD.with(|s| *s);
        let Some(lock) = self.shards.get(i) else {
            return;
        };
        let Ok(mut shard) = lock.lock() else { return };
        if shard.slot != slot {
            self.flush(&mut shard, keep);
            shard.slot = slot;
        }
        f(&mut shard.hist);
    }

    /// The route's statistics over the window ending at `slot`, and since
    /// start.
    fn read(&self, slot: u64, slots: u64, keep: usize) -> (Hist, Hist) {
        for lock in &self.shards {
            if let Ok(mut shard) = lock.lock() {
                // Finished slots still held by an idle thread's shard.
                if shard.slot != slot {
                    self.flush(&mut shard, keep);
                    shard.slot = slot;
                }
            }
        }
        let mut window = Hist::default();
        let mut total = Hist::default();
        if let Ok(ring) = self.ring.lock() {
            total.merge(&ring.total);
            for (s, h) in &ring.slots {
                if s + slots > slot {
                    window.merge(h);
                }
            }
        }
        for lock in &self.shards {
            if let Ok(shard) = lock.lock() {
                window.merge(&shard.hist);
                total.merge(&shard.hist);
            }
        }
        (window, total)
    }
}

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

pub(crate) struct Registry {
    id: u64,
    clock: Arc<dyn Clock>,
    start: Instant,
    slot_len: Duration,
    slots: u64,
    max_routes: usize,
    routes: RwLock<HashMap<(Method, Arc<str>), Arc<Route>>>,
    pub(crate) slow_threshold: Option<Duration>,
    slow_cap: usize,
    slow: Mutex<VecDeque<SlowRequest>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("slot_len", &self.slot_len)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

/// How the registry is configured.
#[derive(Clone)]
pub(crate) struct RegistryConfig {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) window: Duration,
    pub(crate) slots: u32,
    pub(crate) max_routes: usize,
    pub(crate) slow_threshold: Option<Duration>,
    pub(crate) slow_cap: usize,
}

impl Registry {
    pub(crate) fn new(c: RegistryConfig) -> Self {
        let slots = u64::from(c.slots.max(1));
        let slot_len = (c.window / c.slots.max(1)).max(Duration::from_millis(1));
        Self {
            id: NEXT_REGISTRY.fetch_add(1, Ordering::Relaxed),
            start: c.clock.now(),
            clock: c.clock,
            slot_len,
            slots,
            max_routes: c.max_routes.max(1),
            routes: RwLock::new(HashMap::new()),
            slow_threshold: c.slow_threshold,
            slow_cap: c.slow_cap,
            slow: Mutex::new(VecDeque::new()),
        }
    }

    #[inline]
    pub(crate) fn now(&self) -> Instant {
        self.clock.now()
    }

    fn slot_at(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.start);
        (since.as_nanos() / self.slot_len.as_nanos().max(1)) as u64
    }

    fn keep(&self) -> usize {
        self.slots as usize + 1
    }

    /// The route for (method, label), created on first use; past the cap,
    /// new routes fold into [`OTHER`].
    pub(crate) fn route(&self, method: &Method, label: &str) -> Arc<Route> {
        let cached = CACHE.with(|c| {
            c.borrow()
                .get(&(self.id, method.clone()))
                .and_then(|m| m.get(label))
                .cloned()
        });
        if let Some(r) = cached {
            return r;
        }
        let route = self.route_slow(method, label);
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let entries: usize = c.values().map(HashMap::len).sum();
            if entries >= CACHE_CAP {
                c.clear();
            }
            c.entry((self.id, method.clone()))
                .or_default()
                .insert(label.into(), route.clone());
        });
        route
    }

    fn route_slow(&self, method: &Method, label: &str) -> Arc<Route> {
        let key: (Method, Arc<str>) = (method.clone(), Arc::from(label));
        if let Ok(routes) = self.routes.read() {
            if let Some(r) = routes.get(&key) {
                return r.clone();
            }
        }
        let Ok(mut routes) = self.routes.write() else {
            return Arc::new(Route::new(method.clone(), Arc::from(OTHER)));
        };
        if let Some(r) = routes.get(&key) {
            return r.clone();
        }
        // The cap counts distinct labels' routes; `other` and `unmatched`
        // are always allowed.
        let reserved = label == OTHER || label == UNMATCHED;
        let key = if routes.len() >= self.max_routes && !reserved {
            (method.clone(), Arc::from(OTHER))
        } else {
            key
        };
        routes
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Route::new(key.0, key.1)))
            .clone()
    }

    pub(crate) fn record(&self, route: &Route, end: Instant, duration: Duration, status: u16) {
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let slot = self.slot_at(end);
        route.with_shard(slot, self.keep(), |h| h.record(ns, status));
        if let Some(threshold) = self.slow_threshold {
            if duration >= threshold {
                self.push_slow(route, status, duration, end);
            }
        }
    }

    pub(crate) fn record_abort(&self, route: &Route, end: Instant) {
        let slot = self.slot_at(end);
        route.with_shard(slot, self.keep(), Hist::record_abort);
    }

    fn push_slow(&self, route: &Route, status: u16, duration: Duration, end: Instant) {
        if self.slow_cap == 0 {
            return;
        }
        let Ok(mut ring) = self.slow.lock() else {
            return;
        };
        if ring.len() >= self.slow_cap {
            ring.pop_front();
        }
        ring.push_back(SlowRequest {
            method: route.method.to_string(),
            route: route.label.to_string(),
            status,
            duration_ms: duration.as_secs_f64() * 1000.0,
            at_secs: end.saturating_duration_since(self.start).as_secs_f64(),
        });
    }

    pub(crate) fn slow_requests(&self) -> Vec<SlowRequest> {
        self.slow
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every route's (window, total) statistics, read now.
    pub(crate) fn read(&self) -> Vec<(Arc<Route>, Hist, Hist)> {
        let slot = self.slot_at(self.clock.now());
        let routes: Vec<Arc<Route>> = self
            .routes
            .read()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default();
        routes
            .into_iter()
            .map(|r| {
                let (w, t) = r.read(slot, self.slots, self.keep());
                (r, w, t)
            })
            .collect()
    }

    pub(crate) fn window(&self) -> Duration {
        self.slot_len * u32::try_from(self.slots).unwrap_or(u32::MAX)
    }

    pub(crate) fn uptime(&self) -> Duration {
        self.clock.now().saturating_duration_since(self.start)
    }
}
