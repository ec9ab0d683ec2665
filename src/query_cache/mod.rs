//! A cache that handlers call: one expensive query's result, per user or
//! per parameters, inside a response the HTTP cache can't store whole.
//!
//! [`QueryCache`] is a cloneable handle (put it in axum state). Entries
//! are keyed by a [`QueryKey`], a readable name such as `user:42:orders`
//! plus, optionally, parameters hashed to a fixed size; the name up to
//! its first `:` is the key's **namespace**.
//!
//! - [`get_or_insert_with`](QueryCache::get_or_insert_with) answers from
//!   memory or runs the loader, **once** for any number of concurrent
//!   misses of a key (single flight): every waiter gets the loaded value,
//!   or the loader's error (an error caches nothing). A loader that panics
//!   or whose caller goes away hands the load to a waiter.
//! - Each entry has a TTL (the [default](QueryCacheBuilder::default_ttl)
//!   is 300 s) and, optionally, a stale-while-revalidate window and tags
//!   ([`EntryOptions`]).
//! - Memory is bounded in bytes ([moka](https://docs.rs/moka), least
//!   recently used evicted first); values are held as they are (an
//!   `Arc<V>`), not serialized: a hit is a map lookup and a reference
//!   count. An entry weighs its key, its value's serialized length, its
//!   tags and 160 bytes of bookkeeping.
//! - [`invalidate`](QueryCache::invalidate) drops one key, a namespace,
//!   a prefix, a glob pattern (`user:42:*`) or a tag. A load that began
//!   before an invalidation selecting its key and ends after it is
//!   returned to its callers but not stored.
//! - Counters per namespace ([`QueryCache::stats`]): hits, stale hits,
//!   misses, loads, load errors and time, evictions, invalidations, bytes;
//!   the report shows them (`/performance/cache/queries`, the summary,
//!   Prometheus, the dashboard) with recommendations.
//! - Inside a timed request ([`QueryCache::with_timings`], or the axum
//!   extractor with features `axum` and `timing`), each lookup is a
//!   sub-timing named `cache.hit:<namespace>`, `cache.redis_hit:<namespace>`
//!   or `cache.miss:<namespace>`: the N+1 report leaves cached repetitions
//!   (`cache.hit:…`) out.
//! - With feature `redis`, a [`RedisTier`] shares values between replicas
//!   and broadcasts invalidations (see its docs).
//! - A key whose parameters can't be serialized is never cached
//!   ([`QueryKey::with_params`]); a name's `#` and `%` are escaped, so no
//!   name reads as another key's parameters.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use axum::{Json, Router, extract::{Path, State}, routing::get};
//! use tower_perf::query_cache::{QueryCache, QueryKey};
//!
//! #[derive(Clone)]
//! struct AppState {
//!     queries: QueryCache,
//! }
//!
//! async fn quote(State(state): State<AppState>, Path(symbol): Path<String>) -> Json<f64> {
//!     let key = QueryKey::with_params("quotes", &[("symbol", symbol.as_str())]);
//!     let price = state
//!         .queries
//!         .get_or_insert_with(&key, Duration::from_secs(30), move || async move {
//!             // The expensive query, run once per key and TTL.
//!             Ok::<f64, std::io::Error>(symbol.len() as f64)
//!         })
//!         .await
//!         .map_or(f64::NAN, |p| *p);
//!     Json(price)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let state = AppState { queries: QueryCache::builder().max_bytes(64 << 20).build() };
//! let app: Router = Router::new()
//!     .route("/quotes/{symbol}", get(quote))
//!     .with_state(state.clone());
//! # let _ = app;
//! // A write invalidates what it changes.
//! state.queries.invalidate_namespace("quotes").await.unwrap();
//! # }
//! ```

mod builder;
mod entry;
#[cfg(all(feature = "axum", feature = "timing"))]
mod extract;
mod flight;
mod inner;
mod invalidate;
mod key;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod registry;
#[cfg(feature = "redis")]
mod replica;
mod stats;
#[cfg(feature = "redis")]
mod wire;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use builder::QueryCacheBuilder;
pub use entry::EntryOptions;
pub use invalidate::{Glob, Invalidate, MAX_PATTERN, PatternError};
pub use key::QueryKey;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{RedisTier, RedisTierSnapshot};
pub use stats::{MAX_NAMESPACES, NamespaceStats, OTHER, QueryCacheSnapshot};

use entry::Slot;
use flight::{Outcome, Role};
use inner::Inner;
use stats::Counters;

/// What a query cache can hold: any value that serializes (its length is
/// its weight; the Redis tier stores it so) and can be shared between
/// threads.
pub trait QueryValue: Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> QueryValue for T {}

/// The default TTL of an entry: 300 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// The default memory bound: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

/// A handle on a query cache; clones share it. See the [module
/// docs](self).
#[derive(Clone)]
pub struct QueryCache {
    inner: Arc<Inner>,
    #[cfg(feature = "timing")]
    timings: Option<crate::timing::Timings>,
}

impl std::fmt::Debug for QueryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryCache")
            .field("max_bytes", &self.inner.max_bytes)
            .field("default_ttl", &self.inner.default_ttl)
            .field("entries", &self.inner.map.entry_count())
            .finish_non_exhaustive()
    }
}

impl Default for QueryCache {
    fn default() -> Self {
        Self::builder().build()
    }
}

/// What a lookup in memory found.
enum Found<V> {
    Fresh(Arc<V>, Arc<Slot>),
    /// Past its TTL, within its stale window.
    Stale(Arc<V>, Arc<Slot>),
    /// Nothing usable; the entry's counters if there was one.
    Miss(Option<Arc<Counters>>),
}

impl QueryCache {
    /// A cache of 64 MiB with a default TTL of 300 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// Configures a cache.
    pub fn builder() -> QueryCacheBuilder {
        QueryCacheBuilder::default()
    }

    /// This handle, recording each lookup as a sub-timing of the request
    /// whose [`Timings`](crate::timing::Timings) these are.
    #[cfg(feature = "timing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "timing")))]
    pub fn with_timings(&self, timings: &crate::timing::Timings) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            timings: Some(timings.clone()),
        }
    }

    #[cfg(feature = "timing")]
    fn timed(&self, start: Option<Instant>, name: &str) {
        if let (Some(t), Some(start)) = (&self.timings, start) {
            t.record_str(name, start.elapsed());
        }
    }

    #[cfg(feature = "timing")]
    fn start(&self) -> Option<Instant> {
        self.timings.as_ref().map(|_| Instant::now())
    }

    #[cfg(not(feature = "timing"))]
    fn timed(&self, _: Option<Instant>, _: &str) {}

    #[cfg(not(feature = "timing"))]
    fn start(&self) -> Option<Instant> {
        None
    }

    fn look<V: Send + Sync + 'static>(&self, key: &QueryKey) -> Found<V> {
        let Some(slot) = self.inner.map.get(key) else {
            return Found::Miss(None);
        };
        if self.inner.overtaken(key, &slot) {
            return Found::Miss(Some(Arc::clone(&slot.ns)));
        }
        let now = self.inner.clock.now();
        match slot.downcast::<V>() {
            Some(v) if now < slot.fresh_until => Found::Fresh(v, slot),
            Some(v) if now < slot.stale_until => Found::Stale(v, slot),
            // Past its windows (the map drops it in its own time), or
            // stored as another type by another call site: a miss, and the
            // next insert replaces it.
            _ => Found::Miss(Some(Arc::clone(&slot.ns))),
        }
    }

    fn counters(&self, key: &QueryKey, known: Option<Arc<Counters>>) -> Arc<Counters> {
        known.unwrap_or_else(|| self.inner.namespaces.get(key.namespace()))
    }

    /// The fresh value of `key`, if memory (or the Redis tier, whose
    /// value is then copied to memory) holds one of type `V`.
    pub async fn get<V: QueryValue>(&self, key: &QueryKey) -> Option<Arc<V>> {
        if !key.is_cacheable() {
            return None;
        }
        let start = self.start();
        let ns = match self.look::<V>(key) {
            Found::Fresh(v, slot) => {
                self.hit(&slot, start);
                return Some(v);
            }
            Found::Stale(_, slot) => Arc::clone(&slot.ns),
            Found::Miss(ns) => self.counters(key, ns),
        };
        ns.misses.fetch_add(1, Relaxed);
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.inner.shared {
            let epoch = self.inner.epoch();
            if let replica::Found::Hit(v) = shared.get::<V>(&self.inner, key, &ns, epoch).await {
                self.timed(start, &ns.redis_hit_name);
                return Some(v);
            }
        }
        self.timed(start, &ns.miss_name);
        None
    }

    /// Counts a hit on the entry's own counters (a hit never reads the
    /// namespace registry).
    fn hit(&self, slot: &Slot, start: Option<Instant>) {
        slot.ns.hits.fetch_add(1, Relaxed);
        self.timed(start, &slot.ns.hit_name);
    }

    /// Stores `value` under `key` with `options` (a `Duration` is a TTL;
    /// [`EntryOptions::default()`] takes the default TTL), replacing what
    /// it held. Returns the value as shared. With a Redis tier it is
    /// written through, unconditionally (the caller says it is current;
    /// unlike a load, an invalidation running meanwhile does not hold it
    /// back), and this returns once Redis took it or failed to.
    pub async fn insert<V: QueryValue>(
        &self,
        key: QueryKey,
        value: V,
        options: impl Into<EntryOptions>,
    ) -> Arc<V> {
        let value = Arc::new(value);
        if !key.is_cacheable() {
            return value;
        }
        let ns = self.counters(&key, None);
        let options = options.into();
        let stored = self
            .inner
            .store(&key, &value, &options, Arc::clone(&ns), None);
        // Written through: returns once Redis took it (or failed to).
        #[cfg(feature = "redis")]
        if let (Some(shared), true) = (&self.inner.shared, stored) {
            if let Some(write) = shared.put(&self.inner, &key, &value, &options, None, &ns) {
                let _ = write.await;
            }
        }
        #[cfg(not(feature = "redis"))]
        let _ = stored;
        value
    }

    /// Drops `key`; whether it was held (in memory, or in Redis).
    pub async fn remove(&self, key: &QueryKey) -> Result<bool, InvalidateError> {
        Ok(self.invalidate(Invalidate::Key(key.clone())).await? > 0)
    }

    /// The value of `key`, from memory, or from `loader` (run once
    /// however many callers miss the key at the same time; they all get
    /// its value or its error, and an error is not stored).
    ///
    /// `options` is a TTL (`Duration`) or [`EntryOptions`]. An entry past
    /// its TTL but within its stale-while-revalidate window is returned
    /// at once while a background task runs `loader` to refresh it (so the
    /// loader and its future must be `'static`: clone what they need into
    /// them). A value stored under `key` as another type is a miss, and
    /// replaced.
    pub async fn get_or_insert_with<V, E, F, Fut>(
        &self,
        key: &QueryKey,
        options: impl Into<EntryOptions>,
        loader: F,
    ) -> Result<Arc<V>, Arc<E>>
    where
        V: QueryValue,
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        if !key.is_cacheable() {
            return loader().await.map(Arc::new).map_err(Arc::new);
        }
        let start = self.start();
        let ns = match self.look::<V>(key) {
            Found::Fresh(v, slot) => {
                self.hit(&slot, start);
                return Ok(v);
            }
            Found::Stale(v, slot) => match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    let ns = Arc::clone(&slot.ns);
                    if let Role::Leader(leader) = self.inner.flights.join(key) {
                        let (inner, key, options) =
                            (Arc::clone(&self.inner), key.clone(), options.into());
                        let counters = Arc::clone(&ns);
                        rt.spawn(async move {
                            let _ = inner
                                .load(leader, &key, &options, loader, counters, &mut false)
                                .await;
                        });
                    }
                    ns.stale_hits.fetch_add(1, Relaxed);
                    self.timed(start, &ns.hit_name);
                    return Ok(v);
                }
                // No runtime to refresh it in the background: a miss.
                Err(_) => Arc::clone(&slot.ns),
            },
            Found::Miss(ns) => self.counters(key, ns),
        };
        ns.misses.fetch_add(1, Relaxed);
        let options = options.into();
        let mut loader = Some(loader);
        let mut from_redis = false;
        let result = loop {
            match self.inner.flights.join(key) {
                Role::Leader(leader) => {
                    // A leader that ended between this caller's lookup
                    // and its join has stored its value.
                    if let Found::Fresh(v, _) = self.look::<V>(key) {
                        leader.end(Outcome::Value(Arc::clone(&v) as flight::Erased));
                        break Ok(v);
                    }
                    let Some(loader) = loader.take() else {
                        unreachable!("the loader is taken once, and then returned")
                    };
                    break self
                        .inner
                        .load(
                            leader,
                            key,
                            &options,
                            loader,
                            Arc::clone(&ns),
                            &mut from_redis,
                        )
                        .await;
                }
                Role::Waiter(flight) => match flight.wait().await {
                    Outcome::Value(v) => {
                        if let Ok(v) = v.downcast::<V>() {
                            break Ok(v);
                        }
                    }
                    Outcome::Error(e) => {
                        if let Ok(e) = e.downcast::<E>() {
                            break Err(e);
                        }
                    }
                    Outcome::Abandoned => {}
                },
            }
            // The leader went away, or loaded another type: what it
            // stored may serve, else this caller loads.
            if let Found::Fresh(v, _) = self.look::<V>(key) {
                break Ok(v);
            }
        };
        #[cfg(feature = "redis")]
        if from_redis {
            self.timed(start, &ns.redis_hit_name);
            return result;
        }
        let _ = from_redis;
        self.timed(start, &ns.miss_name);
        result
    }

    /// Drops what `what` selects; how many entries went (in this
    /// replica's memory, or in Redis if more).
    ///
    /// A load in flight for a selected key still answers its callers but
    /// is not stored (the last 64 invalidations are remembered for this;
    /// a load older than all of them is not stored either). Scans the
    /// entries unless `what` is one key: linear in the entries held, off
    /// the async threads past 10,000 entries (about 1 ms per 10,000).
    ///
    /// With a Redis tier, Redis drops them too (a key or a tag's keys are
    /// deleted; a namespace is one `INCR`, everything two per namespace
    /// in use, that make the values written before them read as missing;
    /// a prefix or a pattern
    /// `SCAN`s the keys), then every other replica drops them from its
    /// memory. When Redis can't take it, this replica's memory is
    /// invalidated anyway and the error says so
    /// ([`InvalidateError::Deferred`]); Redis and the other replicas get
    /// it as soon as Redis answers. The whole of it runs as a task of its
    /// own: a caller that goes away (a client that hung up) does not stop
    /// it halfway.
    ///
    /// Selectors match the keys' text, where a name's `#` and `%` are
    /// escaped (`%23`, `%25`): `Namespace("search")` does not select
    /// `QueryKey::new("search#x")`, whose namespace is `search%23x`.
    pub async fn invalidate(&self, what: Invalidate) -> Result<u64, InvalidateError> {
        let inner = Arc::clone(&self.inner);
        #[cfg(feature = "redis")]
        if let (Some(_), Ok(rt)) = (&inner.shared, tokio::runtime::Handle::try_current()) {
            let w = what.clone();
            return rt
                .spawn(async move { inner.invalidate_everywhere(w).await })
                .await
                .unwrap_or_else(|e| {
                    if let Some(shared) = &self.inner.shared {
                        shared.keep_for_replay(what);
                    }
                    Err(InvalidateError::Deferred {
                        local: 0,
                        reason: format!("the invalidation task failed: {e}"),
                    })
                });
        }
        inner.invalidate_everywhere(what).await
    }

    /// Drops every entry of `namespace`.
    pub async fn invalidate_namespace(&self, namespace: &str) -> Result<u64, InvalidateError> {
        self.invalidate(Invalidate::Namespace(namespace.to_owned()))
            .await
    }

    /// Drops every entry tagged `tag`.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64, InvalidateError> {
        self.invalidate(Invalidate::Tag(tag.to_owned())).await
    }

    /// Drops every entry whose key's text starts with `prefix`.
    pub async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, InvalidateError> {
        self.invalidate(Invalidate::Prefix(prefix.to_owned())).await
    }

    /// Drops every entry whose key's text matches the glob `pattern`
    /// (see [`Invalidate::pattern`]).
    pub async fn invalidate_pattern(&self, pattern: &str) -> Result<u64, InvalidateError> {
        let what = Invalidate::pattern(pattern).map_err(InvalidateError::Pattern)?;
        self.invalidate(what).await
    }

    /// Drops everything.
    pub async fn clear(&self) -> Result<u64, InvalidateError> {
        self.invalidate(Invalidate::All).await
    }

    /// Applies the map's pending evictions and expiries now (it otherwise
    /// does so in batches as it is used): the byte figures are then exact.
    pub fn run_pending_tasks(&self) {
        self.inner.map.run_pending_tasks();
    }

    /// The counters, per namespace.
    pub fn stats(&self) -> QueryCacheSnapshot {
        let mut namespaces: Vec<NamespaceStats> = self
            .inner
            .namespaces
            .all()
            .iter()
            .map(|c| NamespaceStats::of(c))
            .collect();
        namespaces.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        QueryCacheSnapshot {
            max_bytes: self.inner.max_bytes,
            bytes: namespaces.iter().map(|n| n.bytes).sum(),
            entries: namespaces.iter().map(|n| n.entries).sum(),
            #[cfg(feature = "redis")]
            redis: self.inner.shared.as_ref().map(|s| s.tier.snapshot()),
            namespaces,
        }
    }

    /// Waits until this replica has subscribed to the others'
    /// invalidations (at most `timeout`); whether it has. Without a Redis
    /// tier, `true`. (A subscription that breaks later is made again by
    /// itself, and memory is emptied then, since messages were missed.)
    /// The subscription starts with [`build`](QueryCacheBuilder::build);
    /// invalidations published before it is up are missed, so wait for it
    /// before serving when that matters.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub async fn subscribed(&self, timeout: Duration) -> bool {
        match &self.inner.shared {
            Some(s) => s.subscribed(timeout).await,
            None => true,
        }
    }
}

/// An invalidation that was refused, or only partly done.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidateError {
    /// The glob pattern was refused (nothing was invalidated).
    Pattern(PatternError),
    /// Redis did not take all of it (its part in Redis, or the message to
    /// the other replicas, failed): `local` entries were dropped from this
    /// replica's memory; Redis and the other replicas get it when Redis
    /// answers again (`reason` says what failed).
    Deferred {
        /// Entries dropped from this replica's memory.
        local: u64,
        /// What failed.
        reason: String,
    },
}

impl std::fmt::Display for InvalidateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pattern(e) => e.fmt(f),
            Self::Deferred { local, reason } => write!(
                f,
                "{reason}; dropped {local} entries from this process's memory; Redis and the \
                 other replicas get the invalidation when Redis answers again"
            ),
        }
    }
}

impl std::error::Error for InvalidateError {}
