//! The query cache's counters, per namespace.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use serde::Serialize;

/// Namespaces counted apart at most; lookups in others (namespaces made
/// from request data, say) are counted together under [`OTHER`].
pub const MAX_NAMESPACES: usize = 256;

/// The namespace the counters of namespaces past [`MAX_NAMESPACES`] go to.
pub const OTHER: &str = "_other";

/// One namespace's counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) name: Box<str>,
    /// The sub-timing names of a lookup's outcomes, made once.
    pub(crate) hit_name: Box<str>,
    pub(crate) miss_name: Box<str>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) redis_hit_name: Box<str>,
    pub(crate) hits: AtomicU64,
    pub(crate) stale_hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) loads: AtomicU64,
    /// Loads that returned a value (so the OpenTelemetry counters of
    /// good and failed loads only ever grow).
    pub(crate) loaded: AtomicU64,
    pub(crate) load_errors: AtomicU64,
    pub(crate) load_nanos: AtomicU64,
    pub(crate) evictions: AtomicU64,
    /// Loads not stored: an invalidation ran while they loaded.
    pub(crate) not_stored: AtomicU64,
    pub(crate) invalidated: AtomicU64,
    pub(crate) l2_hits: AtomicU64,
    pub(crate) l2_errors: AtomicU64,
    /// Signed: read while an insert and its replacement's removal are
    /// counted one after the other, the sum may dip below zero.
    pub(crate) bytes: AtomicI64,
    pub(crate) entries: AtomicI64,
}

impl Counters {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            hit_name: format!("cache.hit:{name}").into(),
            miss_name: format!("cache.miss:{name}").into(),
            redis_hit_name: format!("cache.redis_hit:{name}").into(),
            ..Self::default()
        }
    }
}

/// The namespaces' counters.
#[derive(Debug, Default)]
pub(crate) struct Namespaces {
    map: RwLock<HashMap<Box<str>, Arc<Counters>, foldhash::fast::RandomState>>,
}

impl Namespaces {
    /// The counters of `name`, made on first use.
    pub(crate) fn get(&self, name: &str) -> Arc<Counters> {
        if let Some(c) = self
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
        {
            return Arc::clone(c);
        }
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let name = if map.len() >= MAX_NAMESPACES && !map.contains_key(name) {
            OTHER
        } else {
            name
        };
        Arc::clone(
            map.entry(name.into())
                .or_insert_with(|| Arc::new(Counters::new(name))),
        )
    }

    pub(crate) fn all(&self) -> Vec<Arc<Counters>> {
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

/// One namespace's figures since start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamespaceStats {
    /// The namespace.
    pub namespace: String,
    /// Lookups memory answered with a fresh value.
    pub hits: u64,
    /// Lookups answered with a value past its TTL while it was refreshed
    /// (stale-while-revalidate).
    pub stale_hits: u64,
    /// Lookups memory could not answer (the Redis tier's hits among them).
    pub misses: u64,
    /// Lookups answered without a load: (hits + stale hits + Redis hits)
    /// / all lookups; 0 without any.
    pub hit_rate: f64,
    /// Loader runs (single flight: one per key however many waited).
    pub loads: u64,
    /// Loader runs that returned a value.
    pub loaded: u64,
    /// Loader runs that failed (nothing cached).
    pub load_errors: u64,
    /// Mean time of a loader run, in milliseconds.
    pub mean_load_ms: f64,
    /// Time spent in loader runs, in seconds (a sum that only grows).
    pub load_seconds: f64,
    /// Entries evicted to keep the byte bound.
    pub evictions: u64,
    /// Entries dropped by invalidations.
    pub invalidated: u64,
    /// Loads (or Redis copies) not stored because an invalidation ran
    /// while they loaded (their callers still got them).
    pub not_stored: u64,
    /// Misses in memory the Redis tier answered (copied to memory).
    pub redis_hits: u64,
    /// Redis calls that failed or were skipped by the open breaker (the
    /// lookup went on without Redis).
    pub redis_errors: u64,
    /// Entries held in memory.
    pub entries: u64,
    /// Bytes they weigh (keys, values as serialized, tags, bookkeeping).
    pub bytes: u64,
}

impl NamespaceStats {
    /// Lookups by how they were answered, each counted once: `hit`
    /// (memory), `stale`, `redis_hit`, `miss` (loaded, or waited for a
    /// load).
    pub fn by_result(&self) -> [(&'static str, u64); 4] {
        [
            ("hit", self.hits),
            ("stale", self.stale_hits),
            ("redis_hit", self.redis_hits),
            ("miss", self.misses.saturating_sub(self.redis_hits)),
        ]
    }

    pub(crate) fn of(c: &Counters) -> Self {
        let hits = c.hits.load(Relaxed);
        let stale_hits = c.stale_hits.load(Relaxed);
        let misses = c.misses.load(Relaxed);
        let loads = c.loads.load(Relaxed);
        let lookups = hits + stale_hits + misses;
        Self {
            namespace: c.name.to_string(),
            hits,
            stale_hits,
            misses,
            hit_rate: if lookups == 0 {
                0.0
            } else {
                (hits + stale_hits + c.l2_hits.load(Relaxed)).min(lookups) as f64 / lookups as f64
            },
            loads,
            loaded: c.loaded.load(Relaxed),
            load_errors: c.load_errors.load(Relaxed),
            load_seconds: c.load_nanos.load(Relaxed) as f64 / 1e9,
            mean_load_ms: if loads == 0 {
                0.0
            } else {
                c.load_nanos.load(Relaxed) as f64 / loads as f64 / 1e6
            },
            evictions: c.evictions.load(Relaxed),
            invalidated: c.invalidated.load(Relaxed),
            not_stored: c.not_stored.load(Relaxed),
            redis_hits: c.l2_hits.load(Relaxed),
            redis_errors: c.l2_errors.load(Relaxed),
            entries: u64::try_from(c.entries.load(Relaxed)).unwrap_or(0),
            bytes: u64::try_from(c.bytes.load(Relaxed)).unwrap_or(0),
        }
    }
}

/// The query cache's figures: per namespace, and the memory bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryCacheSnapshot {
    /// The memory tier's bound, in bytes.
    pub max_bytes: u64,
    /// Bytes held in memory now.
    pub bytes: u64,
    /// Entries held in memory now.
    pub entries: u64,
    /// The Redis tier's figures, if there is one.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub redis: Option<super::RedisTierSnapshot>,
    /// Per namespace, by name.
    pub namespaces: Vec<NamespaceStats>,
}

impl QueryCacheSnapshot {
    /// One namespace's figures.
    pub fn namespace(&self, name: &str) -> Option<&NamespaceStats> {
        self.namespaces.iter().find(|n| n.namespace == name)
    }
}
