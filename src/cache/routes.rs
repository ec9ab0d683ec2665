//! Hit rates per route: the cache's answers counted by the route template
//! a request matched (axum's `MatchedPath`), for a bounded number of
//! routes.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use super::status::Via;

/// Routes counted apart; later ones count under [`OTHER_ROUTES`].
pub const MAX_ROUTES: usize = 256;

/// The label of the routes past [`MAX_ROUTES`].
pub const OTHER_ROUTES: &str = "(other)";

/// One route's counters, a cache line of their own (two busy routes on
/// two threads don't contend).
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct RouteCounters {
    hits: AtomicU64,
    stale: AtomicU64,
    misses: AtomicU64,
    revalidated: AtomicU64,
}

/// How a cacheable request was answered, as the route counts it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Answer {
    /// From the origin without a stored response to validate.
    Miss,
    /// From the origin, validating a stored response (304 or a new 200).
    Revalidated,
}

impl RouteCounters {
    /// Counts an answer from the store.
    pub(super) fn served(&self, via: &Via) {
        let c = match via {
            Via::Hit | Via::Collapsed => &self.hits,
            Via::Revalidated => &self.revalidated,
            Via::MaxStale
            | Via::WhileRevalidate
            | Via::StaleIfError(_)
            | Via::StaleUnreachable(_) => &self.stale,
        };
        c.fetch_add(1, Relaxed);
    }

    /// Counts an answer from the origin.
    pub(crate) fn fetched(&self, answer: Answer) {
        match answer {
            Answer::Miss => &self.misses,
            Answer::Revalidated => &self.revalidated,
        }
        .fetch_add(1, Relaxed);
    }
}

/// The counters of every route seen, at most [`MAX_ROUTES`] of them, and
/// those of the routes past them.
///
/// A request holds its route's index, not a reference-counted handle, and
/// each thread remembers the last route it looked up: in a run of
/// requests for one route on a thread, each takes no lock and touches no
/// count shared with other threads but the one it adds to. Other requests
/// take the read lock for the index, as they took it before for a handle.
pub(crate) struct Routes {
    /// This table's id in the threads' memos (tables are made and dropped
    /// with their layers: an address could be reused, an id is not).
    id: u64,
    index: RwLock<HashMap<Box<str>, u16, foldhash::fast::RandomState>>,
    /// `MAX_ROUTES` slots, then the one of the routes past them.
    counters: Box<[RouteCounters]>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The routes seen, not the table's 257 slots.
        f.debug_struct("Routes")
            .field("routes", &self.index.read().map(|m| m.len()).unwrap_or(0))
            .finish_non_exhaustive()
    }
}

/// A route's place in its [`Routes`].
pub(crate) type RouteIndex = u16;

const _: () = assert!(MAX_ROUTES < RouteIndex::MAX as usize);
const OTHER_INDEX: RouteIndex = MAX_ROUTES as RouteIndex;

impl Default for Routes {
    fn default() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, Relaxed),
            index: RwLock::default(),
            counters: (0..=MAX_ROUTES).map(|_| RouteCounters::default()).collect(),
        }
    }
}

thread_local! {
    /// The last route this thread looked up: (table id, route, index);
    /// the string's buffer is reused from one route to the next.
    static LAST: std::cell::RefCell<(u64, String, RouteIndex)> =
        const { std::cell::RefCell::new((u64::MAX, String::new(), 0)) };
}

impl Routes {
    /// The index of `route` (given one on first sight while there is
    /// room).
    pub(crate) fn get(&self, route: &str) -> RouteIndex {
        let memo = LAST
            .try_with(|last| {
                let last = last.try_borrow().ok()?;
                let (id, r, i) = &*last;
                (*id == self.id && r == route).then_some(*i)
            })
            .ok()
            .flatten();
        if let Some(i) = memo {
            return i;
        }
        let i = self.look_up(route);
        let _ = LAST.try_with(|last| {
            if let Ok(mut last) = last.try_borrow_mut() {
                let (id, r, index) = &mut *last;
                *id = self.id;
                r.clear();
                r.push_str(route);
                *index = i;
            }
        });
        i
    }

    fn look_up(&self, route: &str) -> RouteIndex {
        if let Ok(map) = self.index.read() {
            if let Some(&i) = map.get(route) {
                return i;
            }
            // Full: no write lock for each request of an unlisted route.
            if map.len() >= MAX_ROUTES {
                return OTHER_INDEX;
            }
        }
        let Ok(mut map) = self.index.write() else {
            return OTHER_INDEX;
        };
        if let Some(&i) = map.get(route) {
            return i;
        }
        let Ok(i) = RouteIndex::try_from(map.len()) else {
            return OTHER_INDEX;
        };
        if usize::from(i) >= MAX_ROUTES {
            return OTHER_INDEX;
        }
        map.insert(route.into(), i);
        i
    }

    /// The counters at `i`.
    pub(crate) fn at(&self, i: RouteIndex) -> &RouteCounters {
        &self.counters[usize::from(i).min(MAX_ROUTES)]
    }

    /// Every route's figures, the busiest first.
    pub(crate) fn snapshot(&self) -> Vec<RouteSnapshot> {
        let mut out: Vec<RouteSnapshot> = match self.index.read() {
            Ok(map) => map
                .iter()
                .map(|(route, &i)| RouteSnapshot::of(route, self.at(i)))
                .collect(),
            Err(_) => Vec::new(),
        };
        let other = RouteSnapshot::of(OTHER_ROUTES, self.at(OTHER_INDEX));
        if other.lookups() > 0 {
            out.push(other);
        }
        out.sort_by(|a, b| b.lookups().cmp(&a.lookups()).then(a.route.cmp(&b.route)));
        out
    }
}

/// One route's cache figures ([`CacheStats::routes`](super::CacheStats::routes)).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteSnapshot {
    /// The route template (axum's `MatchedPath`), or [`OTHER_ROUTES`].
    pub route: String,
    /// Answered from a fresh stored response.
    pub hits: u64,
    /// Answered from a stale stored response (`stale-while-revalidate`,
    /// `stale-if-error`, `max-stale`, the origin unreachable).
    pub stale_served: u64,
    /// Fetched from the origin with nothing stored to validate.
    pub misses: u64,
    /// Validated with the origin (a 304, or a new response).
    pub revalidated: u64,
    /// `(hits + stale_served) / (hits + stale_served + misses +
    /// revalidated)`; 0 when nothing was asked.
    pub hit_rate: f64,
}

impl RouteSnapshot {
    fn of(route: &str, c: &RouteCounters) -> Self {
        let (hits, stale_served) = (c.hits.load(Relaxed), c.stale.load(Relaxed));
        let (misses, revalidated) = (c.misses.load(Relaxed), c.revalidated.load(Relaxed));
        let asked = hits + stale_served + misses + revalidated;
        Self {
            route: route.to_owned(),
            hits,
            stale_served,
            misses,
            revalidated,
            hit_rate: if asked == 0 {
                0.0
            } else {
                (hits + stale_served) as f64 / asked as f64
            },
        }
    }

    /// Cacheable requests counted.
    pub fn lookups(&self) -> u64 {
        self.hits + self.stale_served + self.misses + self.revalidated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_bounded_and_sorted_by_traffic() {
        let routes = Routes::default();
        for i in 0..MAX_ROUTES + 10 {
            routes
                .at(routes.get(&format!("/r{i}")))
                .fetched(Answer::Miss);
        }
        let a = routes.at(routes.get("/r0"));
        for _ in 0..14 {
            a.served(&Via::Hit);
        }
        a.served(&Via::MaxStale);
        let snap = routes.snapshot();
        assert_eq!(snap.len(), MAX_ROUTES + 1);
        assert_eq!(snap[0].route, "/r0");
        assert_eq!(
            (snap[0].hits, snap[0].stale_served, snap[0].misses),
            (14, 1, 1)
        );
        assert_eq!(snap[0].hit_rate, 15.0 / 16.0);
        assert_eq!(snap[1].route, OTHER_ROUTES);
        assert_eq!(snap[1].misses, 10);
    }

    /// The per-thread memo answers for its own table only.
    #[test]
    fn each_table_keeps_its_own_indexes() {
        let (one, two) = (Routes::default(), Routes::default());
        one.get("/a");
        let b_in_one = one.get("/b");
        // "/b" is the first route of `two`: index 0, not one's 1.
        let b_in_two = two.get("/b");
        assert_eq!((b_in_one, b_in_two), (1, 0));
        two.at(b_in_two).served(&Via::Hit);
        one.at(one.get("/b")).served(&Via::Hit);
        one.at(one.get("/b")).served(&Via::Hit);
        assert_eq!(two.snapshot()[0].hits, 1);
        let snap = one.snapshot();
        assert_eq!((snap[0].route.as_str(), snap[0].hits), ("/b", 2));
    }
}
