//! Hit rates per route: the cache's answers counted by the route template
//! a request matched (axum's `MatchedPath`), for a bounded number of
//! routes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use serde::Serialize;

use super::status::Via;

/// Routes counted apart; later ones count under [`OTHER_ROUTES`].
pub const MAX_ROUTES: usize = 256;

/// The label of the routes past [`MAX_ROUTES`].
pub const OTHER_ROUTES: &str = "(other)";

/// One route's counters.
#[derive(Debug, Default)]
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

/// The counters of every route seen, at most [`MAX_ROUTES`] of them.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    map: RwLock<HashMap<Box<str>, Arc<RouteCounters>, foldhash::fast::RandomState>>,
    other: Arc<RouteCounters>,
}

impl Routes {
    /// The counters of `route` (created on first sight while there is
    /// room).
    pub(crate) fn get(&self, route: &str) -> Arc<RouteCounters> {
        if let Ok(map) = self.map.read() {
            if let Some(c) = map.get(route) {
                return Arc::clone(c);
            }
            // Full: no write lock for each request of an unlisted route.
            if map.len() >= MAX_ROUTES {
                return Arc::clone(&self.other);
            }
        }
        let Ok(mut map) = self.map.write() else {
            return Arc::clone(&self.other);
        };
        if let Some(c) = map.get(route) {
            return Arc::clone(c);
        }
        if map.len() >= MAX_ROUTES {
            return Arc::clone(&self.other);
        }
        let c = Arc::new(RouteCounters::default());
        map.insert(route.into(), Arc::clone(&c));
        c
    }

    /// Every route's figures, the busiest first.
    pub(crate) fn snapshot(&self) -> Vec<RouteSnapshot> {
        let mut out: Vec<RouteSnapshot> = match self.map.read() {
            Ok(map) => map
                .iter()
                .map(|(route, c)| RouteSnapshot::of(route, c))
                .collect(),
            Err(_) => Vec::new(),
        };
        let other = RouteSnapshot::of(OTHER_ROUTES, &self.other);
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
            routes.get(&format!("/r{i}")).fetched(Answer::Miss);
        }
        let a = routes.get("/r0");
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
}
