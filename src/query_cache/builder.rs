//! Configuring a [`QueryCache`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::entry::Slot;
use super::inner::Inner;
use super::key::QueryKey;
use super::stats::Namespaces;
use super::{DEFAULT_MAX_BYTES, DEFAULT_TTL, QueryCache};
use crate::clock::{Clock, SystemClock};

/// Builds a [`QueryCache`].
#[derive(Clone)]
pub struct QueryCacheBuilder {
    max_bytes: u64,
    default_ttl: Duration,
    clock: Arc<dyn Clock>,
    #[cfg(feature = "redis")]
    redis: Option<super::redis::RedisTier>,
}

impl std::fmt::Debug for QueryCacheBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryCacheBuilder")
            .field("max_bytes", &self.max_bytes)
            .field("default_ttl", &self.default_ttl)
            .finish_non_exhaustive()
    }
}

impl Default for QueryCacheBuilder {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            default_ttl: DEFAULT_TTL,
            clock: Arc::new(SystemClock),
            #[cfg(feature = "redis")]
            redis: None,
        }
    }
}

impl QueryCacheBuilder {
    /// Bytes the memory tier holds at most (64 MiB by default).
    ///
    /// # Panics
    /// If `bytes` is 0: a cache that can hold nothing is a mistake.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        assert!(bytes > 0, "QueryCache::max_bytes must be above 0");
        self.max_bytes = bytes;
        self
    }

    /// The TTL of entries stored without one (300 s by default).
    ///
    /// # Panics
    /// If `ttl` is zero: nothing would ever be stored by default.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        assert!(
            !ttl.is_zero(),
            "QueryCache::default_ttl must be above zero (give a zero TTL per entry to store nothing)"
        );
        self.default_ttl = ttl;
        self
    }

    /// The clock that decides freshness (tests move a
    /// [`ManualClock`](crate::clock::ManualClock)).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Shares entries and invalidations with the other replicas through
    /// Redis (feature `redis`): see [`RedisTier`](super::RedisTier).
    /// [`build`](Self::build) must then run inside a Tokio runtime.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, tier: super::redis::RedisTier) -> Self {
        self.redis = Some(tier);
        self
    }

    /// The cache.
    ///
    /// # Panics
    ///
    /// With a Redis tier, outside a Tokio runtime (the invalidation
    /// subscriber is a task).
    pub fn build(self) -> QueryCache {
        let map = moka::sync::Cache::builder()
            .max_capacity(self.max_bytes)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .weigher(|_: &QueryKey, slot: &Arc<Slot>| slot.weight)
            .expire_after(Keep)
            .eviction_listener(|_, slot: Arc<Slot>, cause| {
                let ns = &slot.ns;
                ns.bytes.fetch_sub(i64::from(slot.weight), Relaxed);
                ns.entries.fetch_sub(1, Relaxed);
                if cause == moka::notification::RemovalCause::Size {
                    ns.evictions.fetch_add(1, Relaxed);
                }
            })
            .build_with_hasher(foldhash::fast::RandomState::default());
        #[cfg(feature = "redis")]
        let tier = self.redis;
        QueryCache {
            inner: Arc::new_cyclic(|_weak| Inner {
                map,
                flights: Arc::default(),
                namespaces: Namespaces::default(),
                default_ttl: self.default_ttl,
                max_bytes: self.max_bytes,
                clock: self.clock,
                log: Mutex::default(),
                scans: std::sync::atomic::AtomicUsize::new(0),
                #[cfg(feature = "redis")]
                shared: tier.map(|t| super::replica::Shared::start(t, _weak)),
            }),
            #[cfg(feature = "timing")]
            timings: None,
        }
    }
}

/// The map drops an entry once its TTL and stale window are over (its own
/// clock; freshness itself is decided with the cache's clock).
struct Keep;

impl moka::Expiry<QueryKey, Arc<Slot>> for Keep {
    fn expire_after_create(&self, _: &QueryKey, slot: &Arc<Slot>, _: Instant) -> Option<Duration> {
        Some(slot.keep)
    }

    fn expire_after_update(
        &self,
        _: &QueryKey,
        slot: &Arc<Slot>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(slot.keep)
    }
}
