//! Live statistics of a cache layer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use super::routes::{RouteSnapshot, Routes};
use super::store::CacheStore;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) stale_served: AtomicU64,
    pub(crate) revalidated_304: AtomicU64,
    pub(crate) revalidated_200: AtomicU64,
    pub(crate) background_refreshes: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) coalesce_timeouts: AtomicU64,
    pub(crate) stores: AtomicU64,
    pub(crate) not_stored: AtomicU64,
    pub(crate) aborted: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) purged: AtomicU64,
    pub(crate) store_errors: AtomicU64,
    pub(crate) gateway_timeouts: AtomicU64,
    pub(crate) bypassed: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) routes: Routes,
}

impl Counters {
    #[inline]
    pub(crate) fn add(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// Counts how the cache answered a request, and records it on the
    /// request's span as `tower_perf.cache.result` ([`crate::trace`]).
    #[inline]
    pub(crate) fn outcome(c: &AtomicU64, status: &'static str) {
        Self::add(c);
        crate::trace::record(crate::trace::field::CACHE_RESULT, status);
    }
}

/// A cheap, cloneable handle to a [`CacheLayer`](super::CacheLayer)'s
/// counters and its store's usage. Reading never blocks requests.
#[derive(Debug, Clone)]
pub struct CacheStats {
    pub(crate) counters: Arc<Counters>,
    pub(crate) store: Arc<dyn CacheStore>,
}

/// A point-in-time copy of [`CacheStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CacheSnapshot {
    /// Requests answered from a fresh stored response (304s to
    /// conditional requests included).
    pub hits: u64,
    /// Cacheable requests (GET, HEAD) that found nothing usable and went to
    /// the origin without a validator.
    pub misses: u64,
    /// Stale responses served: `stale-while-revalidate`, `stale-if-error`,
    /// a client's `max-stale`, or the origin unreachable
    /// ([`CacheLayer::stale_if_unreachable`](super::CacheLayer::stale_if_unreachable)).
    pub stale_served: u64,
    /// Revalidations the origin answered with 304 (the stored body reused).
    pub revalidated_not_modified: u64,
    /// Revalidations the origin answered with a new response.
    pub revalidated_modified: u64,
    /// Background refreshes started by `stale-while-revalidate`.
    pub background_refreshes: u64,
    /// Requests that waited for another request's origin fetch instead of
    /// making their own.
    pub coalesced: u64,
    /// Waiters that gave up waiting and went to the origin themselves.
    pub coalesce_timeouts: u64,
    /// Responses stored.
    pub stores: u64,
    /// Responses to cacheable requests that could not be stored
    /// (`no-store`, `private`, too large…).
    pub not_stored: u64,
    /// Bodies that ended in an error or were dropped before their end, so
    /// were not stored.
    pub aborted: u64,
    /// URLs invalidated by unsafe methods (RFC 9111 §4.4).
    pub invalidations: u64,
    /// URLs dropped by purges.
    pub purged: u64,
    /// Store operations that failed (the cache then acted as if empty).
    pub store_errors: u64,
    /// 504s: `only-if-cached` with nothing usable, or an unreachable origin
    /// for a response that must be revalidated.
    pub gateway_timeouts: u64,
    /// GET and HEAD requests passed straight through because they carry
    /// `If-Match` or `If-Unmodified-Since`, or a GET's `Range` that is
    /// not a valid byte range (other methods are not counted here).
    pub bypassed: u64,
    /// Requests answered 400 because of their `Host` or target authority
    /// (missing, repeated or invalid; RFC 9112 §3.2).
    pub rejected: u64,
    /// URLs in the store.
    pub entries: u64,
    /// Bytes in the store.
    pub bytes: u64,
    /// Entries evicted to stay within the byte budget.
    pub evictions: u64,
    /// `(hits + stale_served) / (hits + stale_served + misses +
    /// revalidations)`: the share of cacheable lookups answered from the
    /// store without waiting for the origin; 0 when nothing was asked.
    pub hit_rate: f64,
}

impl CacheSnapshot {
    /// GET and HEAD requests by how the cache answered them, under the
    /// names the Prometheus text (`result`) and OpenTelemetry
    /// (`tower_perf.cache.result`) give them.
    #[cfg_attr(not(feature = "report"), allow(dead_code))]
    pub(crate) fn by_result(&self) -> [(&'static str, u64); 7] {
        [
            ("hit", self.hits),
            ("miss", self.misses),
            ("stale", self.stale_served),
            ("revalidated", self.revalidated_not_modified),
            ("modified", self.revalidated_modified),
            ("bypass", self.bypassed),
            ("gateway_timeout", self.gateway_timeouts),
        ]
    }
}

impl CacheStats {
    /// Hit rates per route template (axum's `MatchedPath`), the busiest
    /// first; empty without the `axum` feature or when requests carry no
    /// `MatchedPath`.
    pub fn routes(&self) -> Vec<RouteSnapshot> {
        self.counters.routes.snapshot()
    }

    /// Reads every counter and the store's usage.
    pub fn snapshot(&self) -> CacheSnapshot {
        let c = &self.counters;
        let usage = self.store.usage();
        let hits = c.hits.load(Relaxed);
        let stale = c.stale_served.load(Relaxed);
        let misses = c.misses.load(Relaxed);
        let r304 = c.revalidated_304.load(Relaxed);
        let r200 = c.revalidated_200.load(Relaxed);
        let asked = hits + stale + misses + r304 + r200;
        CacheSnapshot {
            hits,
            misses,
            stale_served: stale,
            revalidated_not_modified: r304,
            revalidated_modified: r200,
            background_refreshes: c.background_refreshes.load(Relaxed),
            coalesced: c.coalesced.load(Relaxed),
            coalesce_timeouts: c.coalesce_timeouts.load(Relaxed),
            stores: c.stores.load(Relaxed),
            not_stored: c.not_stored.load(Relaxed),
            aborted: c.aborted.load(Relaxed),
            invalidations: c.invalidations.load(Relaxed),
            purged: c.purged.load(Relaxed),
            store_errors: c.store_errors.load(Relaxed),
            gateway_timeouts: c.gateway_timeouts.load(Relaxed),
            bypassed: c.bypassed.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            entries: usage.entries,
            bytes: usage.bytes,
            evictions: usage.evictions,
            hit_rate: if asked == 0 {
                0.0
            } else {
                (hits + stale) as f64 / asked as f64
            },
        }
    }
}
