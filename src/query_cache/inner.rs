//! What the handles share: the memory map, the loads in flight, the
//! counters, and the invalidations recent loads must respect.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{self, Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::QueryValue;
use super::entry::{EntryOptions, Slot, weigh};
use super::flight::{Erased, Flights, Leader, Outcome};
use super::invalidate::Invalidate;
use super::key::QueryKey;
use super::stats::{Counters, Namespaces};
use crate::clock::Clock;

/// Entries an invalidation scans on the caller's thread at most; larger
/// scans (about 1 ms per 10,000 entries, more past the CPU's caches:
/// `benches/query_cache.rs`) go to Tokio's blocking threads.
const SCAN_INLINE: u64 = 10_000;

/// Invalidations remembered for the loads in flight (see
/// [`QueryCache::invalidate`](super::QueryCache::invalidate)); a load older than all of them is not
/// stored.
const RECENT_INVALIDATIONS: usize = 64;

type Map = moka::sync::Cache<QueryKey, Arc<Slot>, foldhash::fast::RandomState>;

pub(crate) struct Inner {
    pub(crate) map: Map,
    pub(crate) flights: Arc<Flights>,
    pub(crate) namespaces: Namespaces,
    pub(crate) default_ttl: Duration,
    pub(crate) max_bytes: u64,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) log: Mutex<Log>,
    /// Scans of memory not finished yet: while there are, a lookup checks
    /// the invalidations made since its entry was stored.
    pub(crate) scans: AtomicUsize,
    #[cfg(feature = "redis")]
    pub(crate) shared: Option<Arc<super::replica::Shared>>,
}

/// A scan of memory in progress: ends (for lookups) when dropped.
pub(crate) struct Scan(Arc<Inner>);

impl Scan {
    fn run(self, what: &Invalidate) -> u64 {
        self.0.scan(what)
    }
}

impl Drop for Scan {
    fn drop(&mut self) {
        self.0.scans.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The invalidations made while loads may be in flight.
#[derive(Default)]
pub(crate) struct Log {
    epoch: u64,
    recent: VecDeque<(u64, Invalidate)>,
}

impl Log {
    /// Whether an invalidation since `epoch` may select `key`: one that
    /// does, or one forgotten since.
    fn selects_since(&self, epoch: u64, key: &QueryKey, tags: &[Box<str>]) -> bool {
        if self.epoch == epoch {
            return false;
        }
        match self.recent.front() {
            Some((oldest, _)) if *oldest <= epoch + 1 => self
                .recent
                .iter()
                .any(|(e, w)| *e > epoch && w.selects(key, tags)),
            _ => true,
        }
    }
}

impl Inner {
    /// Runs `loader` as the leader of `key`'s flight (after a look in
    /// Redis, which sets `from_redis` when it answers): stores and shares
    /// its value, or shares its error.
    pub(crate) async fn load<V, E, F, Fut>(
        &self,
        leader: Leader,
        key: &QueryKey,
        options: &EntryOptions,
        loader: F,
        ns: Arc<Counters>,
        #[cfg_attr(not(feature = "redis"), allow(unused_variables))] from_redis: &mut bool,
    ) -> Result<Arc<V>, Arc<E>>
    where
        V: QueryValue,
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let epoch = self.epoch();
        #[cfg(feature = "redis")]
        let mut fence = None;
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            match shared.get::<V>(self, key, &ns, epoch).await {
                super::replica::Found::Hit(v) => {
                    *from_redis = true;
                    leader.end(Outcome::Value(Arc::clone(&v) as Erased));
                    return Ok(v);
                }
                super::replica::Found::Miss(f) => fence = f,
            }
        }
        let started = Instant::now();
        let result = loader().await;
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        ns.loads.fetch_add(1, Relaxed);
        ns.load_nanos.fetch_add(took, Relaxed);
        match result {
            Ok(v) => {
                ns.loaded.fetch_add(1, Relaxed);
                let v = Arc::new(v);
                let stored = self.store(key, &v, options, Arc::clone(&ns), Some(epoch));
                leader.end(Outcome::Value(Arc::clone(&v) as Erased));
                // Shared in the background, unless Redis failed the
                // lookup (its breaker says whether to try) or an
                // invalidation made the value out of date.
                #[cfg(feature = "redis")]
                if let (Some(shared), true, Some(_)) = (&self.shared, stored, fence) {
                    let _ = shared.put(self, key, &v, options, fence, &ns);
                }
                #[cfg(not(feature = "redis"))]
                let _ = stored;
                Ok(v)
            }
            Err(e) => {
                ns.load_errors.fetch_add(1, Relaxed);
                let e = Arc::new(e);
                leader.end(Outcome::Error(Arc::clone(&e) as Erased));
                Err(e)
            }
        }
    }

    /// The invalidations made so far (a load notes it before it starts).
    pub(crate) fn epoch(&self) -> u64 {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .epoch
    }

    /// Puts `value` in memory, unless a TTL of zero says not to, or (for a
    /// load that began at `since`) an invalidation made meanwhile selects
    /// it. Whether it did.
    pub(crate) fn store<V: QueryValue>(
        &self,
        key: &QueryKey,
        value: &Arc<V>,
        options: &EntryOptions,
        ns: Arc<Counters>,
        since: Option<u64>,
    ) -> bool {
        let ttl = options.ttl.unwrap_or(self.default_ttl);
        if ttl.is_zero() {
            return false;
        }
        let weight = u32::try_from(weigh(key, &**value, &options.tags)).unwrap_or(u32::MAX);
        let tags = options.tags.clone().into_boxed_slice();
        let now = self.clock.now();
        // Held while inserting: an invalidation either comes first (and
        // is seen here) or scans after the insert (and drops it).
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if since.is_some_and(|e| log.selects_since(e, key, &tags)) {
            ns.not_stored.fetch_add(1, Relaxed);
            return false;
        }
        let slot = Arc::new(Slot {
            value: Arc::clone(value) as Erased,
            fresh_until: now + ttl,
            stale_until: now + ttl + options.stale,
            keep: ttl.saturating_add(options.stale),
            tags,
            ns: Arc::clone(&ns),
            weight,
            epoch: log.epoch,
        });
        ns.bytes.fetch_add(i64::from(slot.weight), Relaxed);
        ns.entries.fetch_add(1, Relaxed);
        self.map.insert(key.clone(), slot);
        drop(log);
        true
    }

    /// Whether invalidating `what` scans more than [`SCAN_INLINE`]
    /// entries (and a Tokio runtime can take it off this thread).
    fn scan_elsewhere(&self, what: &Invalidate) -> Option<tokio::runtime::Handle> {
        let large = !matches!(what, Invalidate::Key(_)) && self.map.entry_count() > SCAN_INLINE;
        large.then(tokio::runtime::Handle::try_current)?.ok()
    }

    /// Invalidates `what` in memory, then (with a Redis tier) in Redis and
    /// the other replicas.
    pub(crate) async fn invalidate_everywhere(
        self: Arc<Self>,
        what: Invalidate,
    ) -> Result<u64, super::InvalidateError> {
        let local = Arc::clone(&self).invalidate_local(what.clone()).await;
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            return match shared.invalidate(&what, &Arc::downgrade(&self)).await {
                Ok(n) => Ok(n.max(local)),
                Err(reason) => Err(super::InvalidateError::Deferred { local, reason }),
            };
        }
        Ok(local)
    }

    /// [`invalidate_memory`](Self::invalidate_memory), on Tokio's
    /// blocking threads when the scan is large.
    pub(crate) async fn invalidate_local(self: Arc<Self>, what: Invalidate) -> u64 {
        match self.scan_elsewhere(&what) {
            Some(rt) => {
                let scan = self.start_scan(&what);
                rt.spawn_blocking(move || scan.run(&what))
                    .await
                    .unwrap_or(0)
            }
            None => self.invalidate_memory(what),
        }
    }

    /// [`invalidate_memory`](Self::invalidate_memory) from a thread that
    /// can't wait (the subscriber's): a large scan is started on Tokio's
    /// blocking threads; until it ends, lookups check the entry they find
    /// against the invalidation.
    #[cfg(feature = "redis")]
    pub(crate) fn invalidate_soon(self: Arc<Self>, what: Invalidate) {
        match self.scan_elsewhere(&what) {
            Some(rt) => {
                let scan = self.start_scan(&what);
                rt.spawn_blocking(move || scan.run(&what));
            }
            None => {
                self.invalidate_memory(what);
            }
        }
    }

    /// Notes an invalidation (loads in flight that it selects will not
    /// be stored), then drops what memory holds of it.
    pub(crate) fn invalidate_memory(self: &Arc<Self>, what: Invalidate) -> u64 {
        self.start_scan(&what).run(&what)
    }

    /// Notes `what` and counts a scan as running until the guard is done.
    fn start_scan(self: &Arc<Self>, what: &Invalidate) -> Scan {
        self.scans.fetch_add(1, Ordering::SeqCst);
        self.note(what);
        Scan(Arc::clone(self))
    }

    /// Whether `slot`, found under `key`, was selected by an invalidation
    /// whose scan has not reached it yet.
    pub(crate) fn overtaken(&self, key: &QueryKey, slot: &Slot) -> bool {
        self.scans.load(Ordering::SeqCst) > 0
            && self
                .log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .selects_since(slot.epoch, key, &slot.tags)
    }

    fn note(&self, what: &Invalidate) {
        {
            let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
            log.epoch += 1;
            let epoch = log.epoch;
            log.recent.push_back((epoch, what.clone()));
            if log.recent.len() > RECENT_INVALIDATIONS {
                log.recent.pop_front();
            }
        }
        // A tag's keys are not known before their loads end: every flight
        // goes for a tag.
        self.flights
            .detach(|k| matches!(what, Invalidate::Tag(_)) || what.selects(k, &[]));
    }

    /// Drops what memory holds of `what`; how many entries went.
    fn scan(&self, what: &Invalidate) -> u64 {
        let gone = |slot: &Slot| {
            slot.ns.invalidated.fetch_add(1, Relaxed);
        };
        if let Invalidate::Key(key) = what {
            return match self.map.remove(key) {
                Some(slot) => {
                    gone(&slot);
                    1
                }
                None => 0,
            };
        }
        let mut n = 0;
        for (key, slot) in self.map.iter() {
            if what.selects(&key, &slot.tags) && self.map.remove(&*key).is_some() {
                gone(&slot);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query_cache::QueryCache;

    /// Between an invalidation's note and the end of its scan (a large
    /// scan runs on another thread), a lookup does not serve what it
    /// selects; what it doesn't select is served.
    #[tokio::test]
    async fn a_lookup_during_a_running_scan_checks_the_invalidation() {
        let cache = QueryCache::new();
        let (orders, items) = (QueryKey::new("user:42:orders"), QueryKey::new("items:1"));
        let ttl = Duration::from_secs(60);
        cache.insert(orders.clone(), 1u8, ttl).await;
        cache.insert(items.clone(), 2u8, ttl).await;
        let scan = cache
            .inner
            .start_scan(&Invalidate::Namespace("user".into()));
        assert!(
            cache.get::<u8>(&orders).await.is_none(),
            "selected: not served"
        );
        assert_eq!(cache.get::<u8>(&items).await.as_deref(), Some(&2));
        // Stored after the invalidation: served.
        cache.insert(orders.clone(), 3u8, ttl).await;
        assert_eq!(cache.get::<u8>(&orders).await.as_deref(), Some(&3));
        assert_eq!(scan.run(&Invalidate::Namespace("user".into())), 1);
        assert_eq!(cache.inner.scans.load(Ordering::SeqCst), 0);
        assert!(cache.get::<u8>(&orders).await.is_none());
    }
}
