//! Where timings go: the routes (capped), found through a per-thread
//! cache so that the hot path shares nothing between threads in the common
//! case; each route stores its figures as [`route`](super::route) says.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::Method;

use super::hist::Hist;
use super::route::{Cell, Route, RouteTotals, SHARDS, Shared};
use super::snapshot::SlowRequest;

use crate::clock::Clock;
use crate::clock::Elapsed;

/// The label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";
/// The label routes fold into once the cap is reached.
pub const OTHER: &str = "other";

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
