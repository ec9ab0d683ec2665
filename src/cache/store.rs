//! Where cached responses live: the [`CacheStore`] trait and the default
//! [`MemoryStore`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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
}

/// The entries of the memory store: variants plus their expiry.
#[derive(Clone)]
struct Slot {
    variants: Variants,
    expires_at: Instant,
    weight: u32,
}

struct SlotExpiry;

impl moka::Expiry<CacheKey, Slot> for SlotExpiry {
    fn expire_after_create(&self, _: &CacheKey, value: &Slot, now: Instant) -> Option<Duration> {
        Some(value.expires_at.saturating_duration_since(now))
    }
    fn expire_after_update(
        &self,
        _: &CacheKey,
        value: &Slot,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.expires_at.saturating_duration_since(now))
    }
}

/// The default store: in memory, bounded by a byte budget, entries weighed
/// by their size, admission and eviction by TinyLFU (moka), each entry
/// dropped once it can no longer be used (fresh time plus stale windows).
///
/// ```
/// use tower_perf::cache::{CacheStore, MemoryStore};
///
/// let store = MemoryStore::new(64 * 1024 * 1024); // 64 MiB
/// assert_eq!(store.usage().entries, 0);
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    cache: moka::sync::Cache<CacheKey, Slot, foldhash::fast::RandomState>,
    max_variants: usize,
    evictions: Arc<AtomicU64>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("usage", &self.usage())
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
        let evictions = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&evictions);
        let cache = moka::sync::Cache::builder()
            .max_capacity(budget_bytes)
            .weigher(|_: &CacheKey, slot: &Slot| slot.weight)
            .expire_after(SlotExpiry)
            .eviction_listener(move |_, _, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    counter.fetch_add(1, Relaxed);
                }
            })
            // Keys are URLs, which clients choose: a hash seeded per store.
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self {
            cache,
            max_variants: 16,
            evictions,
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

    /// Holds exactly `variants` (at most [`max_variants`](Self::max_variants)
    /// of them, in order) under `key`, for `ttl`, in one insert: a tier
    /// above refilling this one from the tier below, where putting the
    /// variants one by one could interleave with another refill.
    #[cfg(feature = "redis")]
    pub(crate) fn fill(&self, key: CacheKey, variants: &Variants, ttl: Duration) {
        let kept: Variants = variants.iter().take(self.max_variants).cloned().collect();
        if kept.is_empty() {
            return;
        }
        let weight: usize = kept.iter().map(|v| v.weight()).sum();
        self.cache.insert(
            key,
            Slot {
                variants: kept,
                expires_at: Instant::now() + ttl,
                weight: u32::try_from(weight).unwrap_or(u32::MAX),
            },
        );
    }

    /// Applies pending evictions and expirations now (they otherwise run
    /// in small steps during reads and writes), so [`usage`](CacheStore::usage)
    /// is exact.
    pub fn sync(&self) {
        self.cache.run_pending_tasks();
    }
}

impl CacheStore for MemoryStore {
    fn get(&self, key: &CacheKey) -> StoreFuture<Option<Variants>> {
        StoreFuture::ready(Ok(self.cache.get(key).map(|s| s.variants)))
    }

    fn put(&self, key: CacheKey, response: Arc<CachedResponse>, ttl: Duration) -> StoreFuture<()> {
        let max_variants = self.max_variants;
        let now = Instant::now();
        // A URL not stored yet (every miss of a new URL): a plain insert,
        // without the per-key lock and merge of `and_compute_with` (2,300
        // instructions a miss). The check and the insert are not one
        // step: a put of the same URL on another thread in between (a
        // second variant) may lose its variants to this insert. What is
        // lost is fetched and stored again when next asked for; nothing
        // else is served. (A tiered store refills with `fill`, all the
        // variants in one insert.)
        if !self.cache.contains_key(&key) {
            let weight = u32::try_from(response.weight()).unwrap_or(u32::MAX);
            let slot = Slot {
                variants: Arc::from([response]),
                expires_at: now + ttl,
                weight,
            };
            self.cache.insert(key, slot);
            return StoreFuture::ready(Ok(()));
        }
        self.cache.entry(key).and_compute_with(|old| {
            let mut variants: Vec<Arc<CachedResponse>> = Vec::with_capacity(4);
            let mut expires_at = now + ttl;
            variants.push(Arc::clone(&response));
            if let Some(old) = old {
                let old = old.into_value();
                for v in old.variants.iter() {
                    if v.vary != response.vary && variants.len() < max_variants {
                        variants.push(Arc::clone(v));
                    }
                }
                if variants.len() > 1 {
                    expires_at = expires_at.max(old.expires_at);
                }
            }
            let weight: usize = variants.iter().map(|v| v.weight()).sum();
            moka::ops::compute::Op::Put(Slot {
                variants: variants.into(),
                expires_at,
                weight: u32::try_from(weight).unwrap_or(u32::MAX),
            })
        });
        StoreFuture::ready(Ok(()))
    }

    fn remove(&self, key: &CacheKey) -> StoreFuture<bool> {
        StoreFuture::ready(Ok(self.cache.remove(key).is_some()))
    }

    fn purge(&self, purge: &Purge) -> StoreFuture<u64> {
        let mut n = 0;
        if let Purge::Key(k) = purge {
            n = u64::from(self.cache.remove(k).is_some());
        } else if *purge == Purge::All {
            self.cache.run_pending_tasks();
            n = self.cache.entry_count();
            self.cache.invalidate_all();
            self.cache.run_pending_tasks();
        } else {
            for (k, slot) in self.cache.iter() {
                if purge.matches(&k, &slot.variants) {
                    self.cache.invalidate(&*k);
                    n += 1;
                }
            }
        }
        StoreFuture::ready(Ok(n))
    }

    fn usage(&self) -> StoreUsage {
        // Counts lag behind until moka's pending work runs; statistics are
        // read rarely, so make them exact.
        self.cache.run_pending_tasks();
        StoreUsage {
            entries: self.cache.entry_count(),
            bytes: self.cache.weighted_size(),
            evictions: self.evictions.load(Relaxed),
        }
    }
}
