//! Where cached responses live: the [`CacheStore`] trait and the default
//! [`MemoryStore`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use quick_cache::sync::{EntryAction, EntryResult};

use super::entry::CachedResponse;
use super::key::CacheKey;
use crate::BoxError;

/// The stored variants of one URL (one per distinct set of `Vary` values),
/// most recent first.
pub type Variants = Arc<[Arc<CachedResponse>]>;

/// What to purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// One URL on one host (every variant).
    Key(CacheKey),
    /// One path and query, on every host.
    PathAndQuery(String),
    /// Every URL whose path starts with this prefix, on every host.
    Prefix(String),
    /// Every response that carried this tag.
    Tag(String),
    /// Everything.
    All,
}

impl Purge {
    /// Whether the entry stored under `key`, with these variants, goes.
    pub fn matches(&self, key: &CacheKey, variants: &[Arc<CachedResponse>]) -> bool {
        match self {
            Self::Key(k) => k == key,
            Self::PathAndQuery(pq) => key.path_and_query() == pq,
            Self::Prefix(p) => key.path_and_query().starts_with(p.as_str()),
            Self::Tag(t) => variants.iter().any(|v| v.tags().any(|x| x == t)),
            Self::All => true,
        }
    }
}

/// A store failed (a Redis timeout, say). The cache then behaves as if the
/// store had nothing, and counts the error.
///
/// A purge can also fail in part: a `TieredStore` (feature `redis`)
/// drops its memory copies at once but cannot reach Redis (and through it
/// the other replicas) during an outage. That error says how many URLs went
/// here ([`purged_here`](Self::purged_here)); the store replays the rest
/// when Redis answers again.
#[derive(Debug)]
pub struct StoreError {
    source: BoxError,
    purged_here: Option<u64>,
    invalid: bool,
}

impl StoreError {
    /// Wraps the store's own error.
    pub fn new(e: impl Into<BoxError>) -> Self {
        Self {
            source: e.into(),
            purged_here: None,
            invalid: false,
        }
    }

    /// A purge that took effect in this process (`purged` URLs) but not
    /// everywhere it had to, for the reason `e`.
    pub fn partial_purge(purged: u64, e: impl Into<BoxError>) -> Self {
        Self {
            source: e.into(),
            purged_here: Some(purged),
            invalid: false,
        }
    }

    /// For a purge that took effect only in part: the URLs dropped in this
    /// process. `None` when nothing is known to have been purged.
    pub fn purged_here(&self) -> Option<u64> {
        self.purged_here
    }

    /// A request to the store that is wrong in itself (a URL to purge that
    /// is not one): the caller's mistake, not the store's failure.
    pub(crate) fn invalid(message: &'static str) -> Self {
        Self {
            source: message.into(),
            purged_here: None,
            invalid: true,
        }
    }

    /// Whether this error is the caller's mistake, not the store's
    /// failure: a request wrong in itself, such as a URL to purge that is
    /// not one (an HTTP answer to it is a 4xx, not a 5xx).
    pub fn is_invalid(&self) -> bool {
        self.invalid
    }

    /// The message without the "cache store error" prefix.
    #[cfg(any(feature = "report", feature = "redis"))]
    pub(crate) fn message(&self) -> String {
        self.source.to_string()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cache store error: {}", self.source)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// The future a [`CacheStore`] method returns: either a value at hand
/// (a memory store answers without allocating a future) or a boxed
/// future (a networked store).
#[must_use = "futures do nothing unless polled"]
pub struct StoreFuture<T> {
    inner: FutInner<T>,
}

enum FutInner<T> {
    Ready(Option<Result<T, StoreError>>),
    Boxed(Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>),
}

impl<T> fmt::Debug for StoreFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.inner {
            FutInner::Ready(_) => "StoreFuture::Ready",
            FutInner::Boxed(_) => "StoreFuture::Pending",
        })
    }
}

impl<T> StoreFuture<T> {
    /// A result already at hand.
    pub fn ready(result: Result<T, StoreError>) -> Self {
        Self {
            inner: FutInner::Ready(Some(result)),
        }
    }

    /// A result still to come.
    pub fn new<F>(fut: F) -> Self
    where
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        Self {
            inner: FutInner::Boxed(Box::pin(fut)),
        }
    }

    /// The result, if it is at hand without polling.
    pub(crate) fn take_ready(&mut self) -> Option<Result<T, StoreError>> {
        match &mut self.inner {
            FutInner::Ready(r) => r.take(),
            FutInner::Boxed(_) => None,
        }
    }
}

impl<T> Unpin for StoreFuture<T> {}

impl<T> Future for StoreFuture<T> {
    type Output = Result<T, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.inner {
            FutInner::Ready(r) => Poll::Ready(
                r.take()
                    .unwrap_or_else(|| Err(StoreError::new("StoreFuture polled after completion"))),
            ),
            FutInner::Boxed(f) => f.as_mut().poll(cx),
        }
    }
}

/// How much a store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreUsage {
    /// URLs held (each with one or more variants).
    pub entries: u64,
    /// Bytes held, as the store weighs them (bodies, headers, bookkeeping).
    pub bytes: u64,
    /// Entries the store dropped to stay within its budget.
    pub evictions: u64,
}

/// Where a [`CacheLayer`](super::CacheLayer) keeps responses.
///
/// The trait is object-safe (the layer holds an `Arc<dyn CacheStore>`) and
/// asynchronous through [`StoreFuture`], which a memory store fills at once.
/// A store never decides freshness: the layer does, from the stored
/// response and the clock.
pub trait CacheStore: fmt::Debug + Send + Sync + 'static {
    /// The variants stored for `key`.
    fn get(&self, key: &CacheKey) -> StoreFuture<Option<Variants>>;

    /// Stores `response` under `key`, replacing the variant with the same
    /// `Vary` values if there is one, for at most `ttl`.
    fn put(&self, key: CacheKey, response: Arc<CachedResponse>, ttl: Duration) -> StoreFuture<()>;

    /// Drops every variant of `key`; `true` if there was one.
    fn remove(&self, key: &CacheKey) -> StoreFuture<bool>;

    /// Drops what `purge` selects; returns how many URLs went. A store
    /// with several tiers or replicas returns an error unless the purge
    /// reached all of them ([`StoreError::partial_purge`] when it took
    /// effect in part).
    fn purge(&self, purge: &Purge) -> StoreFuture<u64>;

    /// How much the store holds now.
    fn usage(&self) -> StoreUsage;

    /// The heaviest entry (a response with its key, as
    /// [`CachedResponse`] weighs it) the store can ever keep, if it has
    /// such a bound (none by default). A [`CacheLayer`](super::CacheLayer)
    /// whose `max_entry_size` can't fit under it fails when it is layered.
    fn max_entry_weight(&self) -> Option<usize> {
        None
    }
}

/// The entries of the memory store: variants plus their expiry.
#[derive(Clone)]
struct Slot {
    variants: Variants,
    expires_at: Instant,
    weight: u32,
}

impl Slot {
    /// Whether the entry can still be used at `now` (fresh time plus the
    /// stale windows the layer gave it as its TTL).
    fn live(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

/// What a key adds to its entry's weight: its text and the map's
/// bookkeeping.
pub(super) fn key_weight(key: &CacheKey) -> usize {
    key.as_str().len() + 64
}

/// An entry weighs what [`CachedResponse::weight`] says of its variants,
/// plus its key ([`key_weight`]).
#[derive(Clone)]
struct SlotWeight;

impl quick_cache::Weighter<CacheKey, Slot> for SlotWeight {
    fn weight(&self, _: &CacheKey, slot: &Slot) -> u64 {
        u64::from(slot.weight)
    }
}

/// Counts the entries dropped to stay within the budget, and drops the first two of one insert after the
/// shard's lock is released rather than under it.
#[derive(Clone)]
struct Evictions(Arc<AtomicU64>);

impl quick_cache::Lifecycle<CacheKey, Slot> for Evictions {
    type RequestState = [Option<Slot>; 2];

    fn begin_request(&self) -> Self::RequestState {
        [None, None]
    }

    fn on_evict(&self, state: &mut Self::RequestState, _: CacheKey, slot: Slot) {
        self.0.fetch_add(1, Relaxed);
        if let Some(free) = state.iter_mut().find(|s| s.is_none()) {
            *free = Some(slot);
        }
    }
}

type Map =
    quick_cache::sync::Cache<CacheKey, Slot, SlotWeight, foldhash::fast::RandomState, Evictions>;

/// Each shard of the memory store holds at least this much (a store with
/// a smaller budget has one shard): a shard is the most one entry can
/// weigh.
const MIN_SHARD_BYTES: u64 = 8 * 1024 * 1024;

/// The share of a shard its entries may take before the oldest are
/// evicted (quick_cache's "hot" allocation, set here so the store knows
/// the heaviest entry a shard admits).
const HOT_ALLOCATION: f64 = 0.97;

/// The weight an entry is guessed at, from which quick_cache sizes the
/// list of recently evicted keys it readmits (half as many keys as the
/// guess of entries) and keeps shards from holding too few.
const TYPICAL_ENTRY_WEIGHT: u64 = 4 * 1024;

/// How long a put waits for another put of the same URL on another thread
/// (held only while that one merges, unless its thread was descheduled)
/// before giving up with an error.
const PUT_WAIT: Duration = Duration::from_millis(10);

/// Shards for a store of `budget` bytes on `cores` cores: four a core, as
/// quick_cache chooses, but no fewer than `MIN_SHARD_BYTES` each; a power
/// of two (quick_cache rounds up, so rounding down here keeps the floor).
fn shard_count(budget: u64, cores: usize) -> usize {
    let by_size = usize::try_from(budget / MIN_SHARD_BYTES).unwrap_or(usize::MAX);
    let wanted = cores.saturating_mul(4).min(by_size).max(1);
    1usize << wanted.ilog2()
}

/// The default store: in memory, bounded by a byte budget, entries weighed
/// by their size, admission and eviction by S3-FIFO (quick_cache: a small
/// queue that URLs asked for once leave first, a main queue for the rest,
/// and a ghost list that readmits what was evicted too soon), each entry
/// unusable once its time (fresh time plus stale windows) is up.
///
/// The map is split into shards of at least 8 MiB (one shard below
/// 16 MiB), each with its own lock and its share of the budget. A
/// response heavier than 97% of a shard (with its key) is refused: the
/// put fails with a store error saying so (counted in
/// [`CacheStats`](super::CacheStats) as a store error, not as stored), and
/// a copy it would have replaced goes. Keep
/// [`CacheLayer::max_entry_size`](super::CacheLayer::max_entry_size)
/// (1 MiB by default) below that. A URL whose variants together outgrow
/// it keeps its newest ones. Entries weigh their key (the URL a client
/// chose) as well as their responses.
///
/// An entry whose time is up is never returned. It goes when next looked
/// up or stored over, when eviction reaches it, or at
/// [`sync`](Self::sync), and counts in [`usage`](CacheStore::usage) until
/// then. Eviction goes by use, not by age: an expired entry that was
/// asked for often can stay until the budget needs its room, so a
/// service that wants exact usage figures (or its memory back sooner)
/// calls `sync` now and then (it scans every entry).
///
/// ```
/// use tower_perf::cache::{CacheStore, MemoryStore};
///
/// let store = MemoryStore::new(64 * 1024 * 1024); // 64 MiB
/// assert_eq!(store.usage().entries, 0);
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    cache: Arc<Map>,
    max_variants: usize,
    /// The heaviest entry a shard admits.
    max_weight: usize,
    evictions: Arc<AtomicU64>,
    /// Bumped by every purge before it scans: a put that grew an entry
    /// (stored through a placeholder, which a purge's scan can't see)
    /// knows a purge may have missed the variants it carried over.
    purges: Arc<AtomicU64>,
    /// Tests run a purge at the moment a growing put holds its
    /// placeholder.
    #[cfg(test)]
    pub(super) while_growing: Arc<std::sync::Mutex<Option<Box<dyn Fn() + Send>>>>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("usage", &self.usage())
            .field("shards", &self.cache.num_shards())
            .field("max_variants", &self.max_variants)
            .finish()
    }
}

impl Default for MemoryStore {
    /// A 64 MiB store.
    fn default() -> Self {
        Self::new(64 * 1024 * 1024)
    }
}

impl MemoryStore {
    /// A store holding at most `budget_bytes` (bodies, headers and
    /// bookkeeping).
    ///
    /// # Panics
    ///
    /// When `budget_bytes` is 0: such a store keeps nothing, while every
    /// response would still be counted and reported as stored. To run
    /// without a cache, leave the cache layer out.
    pub fn new(budget_bytes: u64) -> Self {
        assert!(
            budget_bytes > 0,
            "cache::MemoryStore::new(0): a zero-byte budget stores nothing; give it bytes, or leave the cache layer out"
        );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let items = usize::try_from(budget_bytes / TYPICAL_ENTRY_WEIGHT)
            .unwrap_or(usize::MAX)
            .max(32);
        let evictions = Arc::new(AtomicU64::new(0));
        let mut options = quick_cache::OptionsBuilder::new();
        options
            .shards(shard_count(budget_bytes, cores))
            .estimated_items_capacity(items)
            .weight_capacity(budget_bytes)
            .hot_allocation(HOT_ALLOCATION);
        let options = match options.build() {
            Ok(o) => o,
            // Only a missing size or an allocation outside 0..1 fails.
            Err(e) => unreachable!("quick_cache options: {e}"),
        };
        let cache = Map::with_options(
            options,
            SlotWeight,
            // Keys are URLs, which clients choose: a hash seeded per store.
            foldhash::fast::RandomState::default(),
            Evictions(Arc::clone(&evictions)),
        );
        // As quick_cache computes the most a shard admits.
        let max_weight = (cache.shard_capacity() as f64 * HOT_ALLOCATION) as u64;
        Self {
            cache: Arc::new(cache),
            max_variants: 16,
            max_weight: usize::try_from(max_weight).unwrap_or(usize::MAX),
            evictions,
            purges: Arc::default(),
            #[cfg(test)]
            while_growing: Arc::default(),
        }
    }

    /// Variants kept per URL (default 16); the oldest goes first.
    ///
    /// # Panics
    ///
    /// When `n` is 0 (it was once taken as 1 silently): every URL keeps
    /// at least the variant just stored.
    pub fn max_variants(mut self, n: usize) -> Self {
        assert!(
            n > 0,
            "cache::MemoryStore::max_variants(0): a URL keeps at least the variant just stored"
        );
        self.max_variants = n;
        self
    }

    /// An entry of `variants` (newest first) until `expires_at`, the
    /// oldest dropped while they (and the key) outweigh what a shard
    /// admits; the newest always stays.
    fn fitted(
        &self,
        key: &CacheKey,
        mut variants: Vec<Arc<CachedResponse>>,
        expires_at: Instant,
    ) -> Slot {
        // The key is the client's URL, as long as it likes: it counts.
        let mut weight = key_weight(key) + variants.iter().map(|v| v.weight()).sum::<usize>();
        while variants.len() > 1 && weight > self.max_weight {
            if let Some(oldest) = variants.pop() {
                weight -= oldest.weight();
            }
        }
        Slot {
            variants: variants.into(),
            expires_at,
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
        }
    }

    /// What `slot` becomes with `response` stored into it at `now`: the
    /// response first, then the slot's other variants (those with other
    /// `Vary` values), while it is still live.
    fn merged(
        &self,
        key: &CacheKey,
        slot: &Slot,
        response: &Arc<CachedResponse>,
        now: Instant,
        expires_at: Instant,
    ) -> Slot {
        let mut variants: Vec<Arc<CachedResponse>> = Vec::with_capacity(4);
        variants.push(Arc::clone(response));
        let mut until = expires_at;
        if slot.live(now) {
            for v in slot.variants.iter() {
                if v.vary != response.vary && variants.len() < self.max_variants {
                    variants.push(Arc::clone(v));
                }
            }
            if variants.len() > 1 {
                until = until.max(slot.expires_at);
            }
        }
        self.fitted(key, variants, until)
    }

    /// Why a response weighing `weight` with its key can't be kept at
    /// all, if so: more than a shard admits.
    fn too_heavy(&self, weight: usize) -> Option<StoreError> {
        (weight > self.max_weight).then(|| {
            StoreError::new(format!(
                "a response weighing {weight} bytes with its key is more than one shard of this \
                 MemoryStore admits ({} bytes): give the store a larger budget, or lower \
                 CacheLayer::max_entry_size",
                self.max_weight
            ))
        })
    }

    /// Holds exactly `variants` (at most [`max_variants`](Self::max_variants)
    /// of them, in order) under `key`, for `ttl`, in one step: a tier
    /// above refilling this one from the tier below, where putting the
    /// variants one by one could interleave with another refill.
    #[cfg(feature = "redis")]
    pub(crate) fn fill(&self, key: CacheKey, variants: &Variants, ttl: Duration) {
        let kept: Vec<_> = variants.iter().take(self.max_variants).cloned().collect();
        if kept.is_empty() {
            return;
        }
        let slot = self.fitted(&key, kept, Instant::now() + ttl);
        if slot.weight as usize > self.max_weight {
            // The lower tier keeps it.
            return;
        }
        // Through a placeholder, as a put that grows an entry: the size
        // check and eviction of an insert, and a replaced entry is not
        // counted as evicted (a plain insert over it would be).
        match self.cache.entry(&key, Some(PUT_WAIT), |_, _| {
            EntryAction::<()>::ReplaceWithGuard
        }) {
            EntryResult::Vacant(guard) => {
                let _ = guard.insert(slot);
            }
            EntryResult::Replaced(guard, old) => {
                let _ = guard.insert(slot);
                drop(old);
            }
            // A refill is an optimisation: skipped when the URL is busy.
            EntryResult::Retained(()) | EntryResult::Removed(..) | EntryResult::Timeout => {}
        }
    }

    /// Drops the entries whose time is up now (they otherwise go when
    /// next looked up, stored over or evicted), so
    /// [`usage`](CacheStore::usage) counts only live ones. It scans every
    /// entry, a shard at a time under that shard's lock.
    pub fn sync(&self) {
        let now = Instant::now();
        self.cache.retain(|_, slot| slot.live(now));
    }
}

impl CacheStore for MemoryStore {
    fn get(&self, key: &CacheKey) -> StoreFuture<Option<Variants>> {
        let found = match self.cache.get(key) {
            Some(slot) if slot.live(Instant::now()) => Some(slot.variants),
            Some(slot) => {
                // Only this expired copy goes: a fresher one stored
                // meanwhile stays.
                let _ = self
                    .cache
                    .remove_if(key, |s| Arc::ptr_eq(&s.variants, &slot.variants));
                None
            }
            None => None,
        };
        StoreFuture::ready(Ok(found))
    }

    fn put(&self, key: CacheKey, response: Arc<CachedResponse>, ttl: Duration) -> StoreFuture<()> {
        let now = Instant::now();
        let expires_at = now + ttl;
        // One step under the shard's lock: a put of another variant, a
        // remove or a purge of the same URL on another thread comes
        // wholly before or wholly after this one. An entry that grows is
        // stored through a placeholder (the insert path: the shard's
        // budget kept, entries evicted), one that doesn't is replaced in
        // place; either way the old one is dropped after the lock is
        // released.
        let own = key_weight(&key) + response.weight();
        if let Some(e) = self.too_heavy(own) {
            // Not kept, and not shadowed by the copy it replaces either.
            self.cache.remove(&key);
            return StoreFuture::ready(Err(e));
        }
        let mut grown = None;
        let epoch = self.purges.load(Acquire);
        let result = self.cache.entry(&key, Some(PUT_WAIT), |_, slot| {
            let merged = self.merged(&key, slot, &response, now, expires_at);
            if merged.weight <= slot.weight {
                EntryAction::Retain(Some(std::mem::replace(slot, merged)))
            } else {
                grown = Some(merged);
                EntryAction::ReplaceWithGuard
            }
        });
        let outcome = match result {
            EntryResult::Retained(old) => {
                drop(old);
                Ok(())
            }
            EntryResult::Vacant(guard) => {
                // Err: the placeholder went meanwhile (a remove of this
                // URL, or a refill): the response is not kept, as if
                // stored just before that.
                let _ = guard.insert(Slot {
                    variants: Arc::from([response]),
                    expires_at,
                    weight: u32::try_from(own).unwrap_or(u32::MAX),
                });
                Ok(())
            }
            EntryResult::Replaced(guard, old) => {
                #[cfg(test)]
                if let Some(hook) = self.while_growing.lock().ok().and_then(|mut h| h.take()) {
                    hook();
                }
                if let Some(slot) = grown {
                    let _ = guard.insert(slot);
                }
                drop(old);
                // A purge that scanned while the placeholder stood didn't
                // see the variants carried over into the grown entry: it
                // wins, and the URL is fetched again.
                if self.purges.load(Acquire) != epoch {
                    self.cache.remove(&key);
                }
                Ok(())
            }
            EntryResult::Removed(..) => Ok(()),
            EntryResult::Timeout => Err(StoreError::new(format!(
                "another put of this URL held it for {PUT_WAIT:?}; not stored"
            ))),
        };
        StoreFuture::ready(outcome)
    }

    fn remove(&self, key: &CacheKey) -> StoreFuture<bool> {
        StoreFuture::ready(Ok(self.cache.remove(key).is_some()))
    }

    fn purge(&self, purge: &Purge) -> StoreFuture<u64> {
        self.purges.fetch_add(1, Release);
        let n = match purge {
            Purge::Key(k) => u64::from(self.cache.remove(k).is_some()),
            _ => {
                let n = AtomicU64::new(0);
                self.cache.retain(|k, slot| {
                    let goes = purge.matches(k, &slot.variants);
                    if goes {
                        n.fetch_add(1, Relaxed);
                    }
                    !goes
                });
                n.into_inner()
            }
        };
        StoreFuture::ready(Ok(n))
    }

    fn max_entry_weight(&self) -> Option<usize> {
        Some(self.max_weight)
    }

    fn usage(&self) -> StoreUsage {
        StoreUsage {
            entries: self.cache.len() as u64,
            bytes: self.cache.weight(),
            evictions: self.evictions.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests;
