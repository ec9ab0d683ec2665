//! Cache stores in Redis: [`RedisCacheStore`] (shared by replicas) and
//! [`TieredStore`] (a memory store in front of it, kept coherent across
//! replicas by invalidations published on a Redis channel).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::codec;
use super::entry::CachedResponse;
use super::invalidation::{self, Broadcast};
use super::key::CacheKey;
use super::store::{CacheStore, MemoryStore, Purge, StoreError, StoreFuture, StoreUsage, Variants};
use crate::breaker::{BreakerConfig, BreakerSnapshot, CircuitBreaker};
use crate::outbox::Outbox;

/// Stores a variant, keeps the longest expiry on the URL's hash and on its
/// tag sets, and caps the variants per URL. KEYS: the URL's hash, then one
/// set per tag. ARGV: variant field, encoded response, TTL (ms), the URL
/// key (member of the tag sets), the variant cap.
const PUT: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = tonumber(ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[5]) then
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    if f ~= ARGV[1] then redis.call('HDEL', KEYS[1], f) break end
  end
end
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[4])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
";

/// On a cluster, where a URL's hash and its tag sets live in different
/// slots: adds a URL to one tag's set (`KEYS[1]`), keeping the longer
/// expiry. ARGV: the URL key, TTL (ms).
const TAG_ADD: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
";

/// URL hashes one `DEL` deletes at most when a cluster's tag is purged.
const PURGE_BATCH: usize = 500;

/// Drops every URL in a tag's set, then the set. `KEYS[1]`: the set.
/// `ARGV[1]`: the prefix of URL hashes.
const PURGE_TAG: &str = r"
local n = 0
for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  n = n + redis.call('DEL', ARGV[1] .. k)
end
redis.call('DEL', KEYS[1])
return n
";

#[derive(Debug, Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    pub(crate) errors: AtomicU64,
    timeouts: AtomicU64,
    undecodable: AtomicU64,
    pub(crate) received: AtomicU64,
    l1_hits: AtomicU64,
    fallbacks: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) replayed: AtomicU64,
    pending: AtomicU64,
    pub(crate) l1_dropped: AtomicU64,
    /// Bumped before every purge of the memory tier, so a lookup that
    /// copies a Redis answer into it can tell a purge ran meanwhile.
    generation: AtomicU64,
}

/// Counters of the Redis cache stores; clones share them.
#[derive(Debug, Clone)]
pub struct RedisCacheStats {
    pub(crate) inner: Arc<Counters>,
    breaker: CircuitBreaker,
}

/// A point-in-time copy of [`RedisCacheStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RedisCacheSnapshot {
    /// Lookups Redis answered with a stored response.
    pub l2_hits: u64,
    /// Lookups Redis answered with nothing.
    pub l2_misses: u64,
    /// Lookups the memory tier answered ([`TieredStore`] only).
    pub l1_hits: u64,
    /// Redis errors (connection refused or lost, error replies).
    pub errors: u64,
    /// Operations Redis didn't answer within the timeout.
    pub timeouts: u64,
    /// Stored values that could not be read back (dropped).
    pub undecodable: u64,
    /// Lookups Redis failed to answer (error, timeout, or refused at once
    /// by the open breaker), so the cache answered without it.
    pub fallbacks: u64,
    /// Invalidations published to the other replicas.
    pub invalidations_published: u64,
    /// Invalidations received from the other replicas.
    pub invalidations_received: u64,
    /// Purges and invalidations made here that Redis has not taken yet
    /// (it was unreachable): they are replayed, to Redis and the other
    /// replicas, as soon as it answers.
    pub invalidations_pending: u64,
    /// Purges and invalidations replayed after an outage.
    pub invalidations_replayed: u64,
    /// Times the memory tier was emptied because the invalidation
    /// subscription had been interrupted (messages may have been missed).
    pub l1_dropped: u64,
    /// The circuit breaker in front of Redis.
    pub breaker: BreakerSnapshot,
}

impl RedisCacheStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> RedisCacheSnapshot {
        let c = &self.inner;
        RedisCacheSnapshot {
            l2_hits: c.hits.load(Relaxed),
            l2_misses: c.misses.load(Relaxed),
            l1_hits: c.l1_hits.load(Relaxed),
            errors: c.errors.load(Relaxed),
            timeouts: c.timeouts.load(Relaxed),
            undecodable: c.undecodable.load(Relaxed),
            fallbacks: c.fallbacks.load(Relaxed),
            invalidations_published: c.published.load(Relaxed),
            invalidations_received: c.received.load(Relaxed),
            invalidations_pending: c.pending.load(Relaxed),
            invalidations_replayed: c.replayed.load(Relaxed),
            l1_dropped: c.l1_dropped.load(Relaxed),
            breaker: self.breaker.snapshot(),
        }
    }

    /// Call before purging the memory tier.
    pub(crate) fn bump_generation(&self) {
        self.inner
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn generation(&self) -> u64 {
        self.inner
            .generation
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn has_pending(&self) -> bool {
        self.inner.pending.load(Relaxed) > 0
    }

    pub(crate) fn set_pending(&self, n: usize) {
        self.inner
            .pending
            .store(u64::try_from(n).unwrap_or(u64::MAX), Relaxed);
    }

    /// Counters belonging to no store (unit tests).
    #[cfg(test)]
    pub(crate) fn detached() -> Self {
        Self {
            inner: Arc::default(),
            breaker: CircuitBreaker::new("redis cache store", BreakerConfig::default()),
        }
    }
}

/// A [`CacheStore`] in Redis, shared by every replica that points at the
/// same Redis and prefix.
///
/// Each URL is a Redis hash (`PREFIX:e:HOST/PATH?QUERY`) with one field per
/// variant, holding the response in a compact binary form, expiring when
/// the last of its variants can no longer be used; each tag is a set of
/// URLs (`PREFIX:t:TAG`), so purge by tag works from any replica. Every
/// operation waits at most [`timeout`](Self::timeout) (default 50 ms);
/// a failed or slow Redis reads as "nothing stored" (the cache then asks
/// the origin) and is counted. The connection is made lazily and comes
/// back by itself.
///
/// [`usage`](CacheStore::usage) reports nothing for Redis (it would cost a
/// round trip); Redis's own `INFO memory` tells.
#[derive(Clone)]
pub struct RedisCacheStore {
    listeners: crate::redis_conn::Listeners,
    pub(crate) conn: crate::redis_conn::Conn,
    prefix: Arc<str>,
    pub(crate) timeout: Duration,
    max_variants: usize,
    scripts: Arc<Scripts>,
    pub(crate) stats: RedisCacheStats,
}

/// The store's Lua scripts, made (and hashed) once.
struct Scripts {
    put: redis::Script,
    purge_tag: redis::Script,
    tag_add: redis::Script,
}

impl std::fmt::Debug for RedisCacheStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCacheStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisCacheStore {
    /// A store on the Redis at `target` (a URL, or a cluster's seed nodes,
    /// see [`RedisTarget`](crate::RedisTarget)), its keys under `prefix`.
    /// Does not connect yet; fails only on a malformed URL. Must be called
    /// inside a Tokio runtime.
    ///
    /// On a cluster, URL hashes spread over the slots by their key; a
    /// tag's set lives in its own slot, so a store writes the tag sets
    /// first and the URL's hash second (an entry is never in Redis without
    /// its tags), and a purge by tag reads the set, then deletes its URLs
    /// slot by slot, 500 at a time, each batch leaving the set after its
    /// URLs are deleted (a purge cut short leaves the rest for its
    /// replay). A store in flight while a tag purge runs may keep its
    /// entry, out of the set, until its TTL: the response was fetched
    /// before the purge, as with a store landing just after a purge on one
    /// server. Purges by prefix, path or everything scan every master.
    pub fn new(target: impl Into<crate::RedisTarget>, prefix: &str) -> Result<Self, StoreError> {
        let (listeners, conn) =
            crate::redis_conn::connect(&target.into()).map_err(StoreError::new)?;
        Ok(Self {
            listeners,
            conn,
            prefix: prefix.into(),
            timeout: Duration::from_millis(50),
            max_variants: 16,
            scripts: Arc::new(Scripts {
                put: redis::Script::new(PUT),
                purge_tag: redis::Script::new(PURGE_TAG),
                tag_add: redis::Script::new(TAG_ADD),
            }),
            stats: RedisCacheStats {
                inner: Arc::default(),
                breaker: CircuitBreaker::new("redis cache store", BreakerConfig::default()),
            },
        })
    }

    /// The circuit breaker's settings (default: open after 3 consecutive
    /// failures or timeouts, for 100 ms doubling up to 500 ms per failed
    /// probe). While it is open no operation waits for Redis: lookups read
    /// as "nothing stored" at once ([`TieredStore`] answers from memory).
    ///
    /// # Panics
    ///
    /// On a configuration that cannot work (`failures` 0, `min_open` zero,
    /// `max_open` below `min_open`), with a message naming it.
    pub fn breaker(self, config: BreakerConfig) -> Self {
        // In place: stats handles taken before this call see it too.
        self.stats.breaker.configure(config);
        self
    }

    /// The longest an operation waits for Redis (default 50 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// This store's counters.
    pub fn stats(&self) -> RedisCacheStats {
        self.stats.clone()
    }

    fn entry_key(&self, key: &str) -> String {
        format!("{}:e:{key}", self.prefix)
    }

    /// Runs `op` with the timeout, counting failures; refused at once
    /// while the circuit breaker is open.
    pub(crate) async fn run<T>(
        stats: &RedisCacheStats,
        timeout: Duration,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        crate::redis_conn::through(
            &stats.breaker,
            timeout,
            op,
            &stats.inner.errors,
            &stats.inner.timeouts,
        )
        .await
        .map_err(StoreError::new)
    }

    /// Deletes every URL hash `purge` selects by scanning (prefix, path,
    /// all) the server or each of a cluster's masters: rare operations,
    /// done in batches.
    async fn purge_scan(&self, purge: Purge) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}:e:*", self.prefix);
        let skip = self.prefix.len() + 3;
        let mut n = 0;
        // Scans take longer than one lookup: a generous timeout per batch.
        let timeout = self.timeout.max(Duration::from_secs(2));
        let nodes = Self::run(&self.stats, timeout, conn.scan_nodes()).await?;
        for node in &nodes {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys) = Self::run(
                    &self.stats,
                    timeout,
                    conn.clone().scan_step(node, cursor, &pattern, 500),
                )
                .await?;
                let doomed: Vec<&String> = keys
                    .iter()
                    .filter(|k| {
                        k.get(skip..)
                            .is_some_and(|text| purge.matches(&CacheKey::from_text(text), &[]))
                    })
                    .collect();
                if !doomed.is_empty() {
                    let deleted: u64 = Self::run(
                        &self.stats,
                        timeout,
                        redis::cmd("DEL").arg(&doomed).query_async(&mut conn),
                    )
                    .await?;
                    n += deleted;
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(n)
    }

    /// A tag purge on a cluster: the set is read in its slot, then its
    /// URLs' hashes deleted a batch at a time (the client sends each key
    /// to its slot's master), each batch's URLs leaving the set after.
    async fn purge_tag_cluster(&self, tag: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let timeout = self.timeout.max(Duration::from_secs(2));
        let set = format!("{}:t:{tag}", self.prefix);
        let urls: Vec<String> = Self::run(
            &self.stats,
            timeout,
            redis::cmd("SMEMBERS").arg(&set).query_async(&mut conn),
        )
        .await?;
        // Each batch's hashes go before its URLs leave the set, so a
        // purge cut short leaves what it did not delete for the replay.
        let mut n = 0;
        for batch in urls.chunks(PURGE_BATCH) {
            let keys: Vec<String> = batch.iter().map(|u| self.entry_key(u)).collect();
            n += Self::run::<u64>(
                &self.stats,
                timeout,
                redis::cmd("DEL").arg(&keys).query_async(&mut conn),
            )
            .await?;
            Self::run::<u64>(
                &self.stats,
                timeout,
                redis::cmd("SREM")
                    .arg(&set)
                    .arg(batch)
                    .query_async(&mut conn),
            )
            .await?;
        }
        Ok(n)
    }
}

impl CacheStore for RedisCacheStore {
    fn get(&self, key: &CacheKey) -> StoreFuture<Option<Variants>> {
        let mut conn = self.conn.clone();
        let k = self.entry_key(key.as_str());
        let (stats, timeout) = (self.stats.clone(), self.timeout);
        StoreFuture::new(async move {
            let fields: Vec<(Vec<u8>, Vec<u8>)> = Self::run(
                &stats,
                timeout,
                redis::cmd("HGETALL").arg(&k).query_async(&mut conn),
            )
            .await
            .inspect_err(|_| {
                stats.inner.fallbacks.fetch_add(1, Relaxed);
            })?;
            let mut variants: Vec<Arc<CachedResponse>> = Vec::with_capacity(fields.len());
            for (_, value) in fields {
                match codec::decode(&value) {
                    Some(r) => variants.push(Arc::new(r)),
                    None => {
                        stats.inner.undecodable.fetch_add(1, Relaxed);
                    }
                }
            }
            if variants.is_empty() {
                stats.inner.misses.fetch_add(1, Relaxed);
                return Ok(None);
            }
            stats.inner.hits.fetch_add(1, Relaxed);
            // Most recent first (RFC 9111 §4.1).
            variants.sort_by_key(|v| std::cmp::Reverse(v.response_time));
            Ok(Some(variants.into()))
        })
    }

    fn put(&self, key: CacheKey, response: Arc<CachedResponse>, ttl: Duration) -> StoreFuture<()> {
        let mut conn = self.conn.clone();
        let entry_key = self.entry_key(key.as_str());
        let tag_keys: Vec<String> = response
            .tags()
            .map(|t| format!("{}:t:{t}", self.prefix))
            .collect();
        let field = codec::encode_vary(&response.vary);
        let value = codec::encode(&response);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let (scripts, stats, timeout) =
            (Arc::clone(&self.scripts), self.stats.clone(), self.timeout);
        let max_variants = self.max_variants;
        StoreFuture::new(async move {
            let mut inv = scripts.put.key(entry_key);
            if conn.is_cluster() {
                // Other slots: the tag sets first, each on its own, at
                // once.
                let adds = tag_keys.into_iter().map(|t| {
                    let mut conn = conn.clone();
                    let (scripts, stats) = (&scripts, &stats);
                    let url = key.as_str();
                    async move {
                        let mut inv = scripts.tag_add.key(t);
                        inv.arg(url).arg(ttl_ms);
                        Self::run::<i64>(stats, timeout, inv.invoke_async(&mut conn)).await
                    }
                });
                futures_util::future::try_join_all(adds).await?;
            } else {
                for t in tag_keys {
                    inv.key(t);
                }
            }
            inv.arg(field)
                .arg(value)
                .arg(ttl_ms)
                .arg(key.as_str())
                .arg(max_variants);
            let _: i64 = Self::run(&stats, timeout, inv.invoke_async(&mut conn)).await?;
            Ok(())
        })
    }

    fn remove(&self, key: &CacheKey) -> StoreFuture<bool> {
        let mut conn = self.conn.clone();
        let k = self.entry_key(key.as_str());
        let (stats, timeout) = (self.stats.clone(), self.timeout);
        StoreFuture::new(async move {
            let n: u64 = Self::run(
                &stats,
                timeout,
                redis::cmd("DEL").arg(&k).query_async(&mut conn),
            )
            .await?;
            Ok(n > 0)
        })
    }

    fn purge(&self, purge: &Purge) -> StoreFuture<u64> {
        let this = self.clone();
        let purge = purge.clone();
        StoreFuture::new(async move {
            match &purge {
                Purge::Key(k) => {
                    let mut conn = this.conn.clone();
                    let k = this.entry_key(k.as_str());
                    Self::run(
                        &this.stats,
                        this.timeout,
                        redis::cmd("DEL").arg(&k).query_async(&mut conn),
                    )
                    .await
                }
                Purge::Tag(t) if this.conn.is_cluster() => this.purge_tag_cluster(t).await,
                Purge::Tag(t) => {
                    let mut conn = this.conn.clone();
                    let mut inv = this.scripts.purge_tag.key(format!("{}:t:{t}", this.prefix));
                    inv.arg(format!("{}:e:", this.prefix));
                    let timeout = this.timeout.max(Duration::from_secs(2));
                    Self::run(&this.stats, timeout, inv.invoke_async(&mut conn)).await
                }
                _ => this.purge_scan(purge.clone()).await,
            }
        })
    }

    fn usage(&self) -> StoreUsage {
        StoreUsage::default()
    }
}

/// A memory store (L1) in front of a [`RedisCacheStore`] (L2), for services
/// that run as several replicas.
///
/// - Lookups try L1 first (no round trip on a local hit), then L2; an L2
///   hit is copied into L1.
/// - Stores go to both (the L2 write runs in the background, so a slow
///   Redis never delays the response).
/// - Removals and purges go to both, and are published on a Redis channel
///   (`PREFIX:invalidate`) so that every other replica drops its L1 copy.
///   A subscriber task per store listens (and re-subscribes after a lost
///   connection) until the last clone of the store is dropped.
/// - Redis down or slow: L1 keeps answering, misses go to the origin, and
///   [`stats`](Self::stats) count the errors and timeouts; the circuit
///   breaker keeps requests from waiting on a Redis known to be down.
///
/// Purges converge after an outage. A purge that cannot reach Redis drops
/// this replica's copies, returns an error saying so
/// ([`StoreError::purged_here`]), and is replayed (to Redis, then to the
/// other replicas) as soon as Redis answers; until then this replica does
/// not serve or copy what Redis still holds of it. A replica whose
/// subscription was interrupted, or stopped answering its once-a-second
/// ping, empties its L1 when it subscribes again. So once Redis is back,
/// no replica serves what was purged during the outage (the replay follows
/// within the breaker's window plus 250 ms). At most 1,024 purges (and
/// 256 KiB of URLs, prefixes and tags) wait for replay (clients fill it
/// too: each successful unsafe request queues its URL); past that they collapse into one purge of everything. Purges
/// still waiting when the last clone of the store is dropped are lost,
/// with a warning logged (`tracing`).
#[derive(Clone)]
pub struct TieredStore {
    l1: MemoryStore,
    broadcast: Broadcast,
    _alive: Arc<Alive>,
}

impl std::fmt::Debug for TieredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredStore")
            .field("l1", &self.l1)
            .field("l2", &self.broadcast.l2)
            .finish_non_exhaustive()
    }
}

/// Stops the store's background tasks when the last clone of it goes.
#[derive(Debug)]
struct Alive(tokio::sync::watch::Sender<bool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

impl TieredStore {
    /// `l1` in front of `l2`. Starts the subscriber and replay tasks and
    /// waits (at most one second) for the subscription, so invalidations
    /// from other replicas are seen from the start; if Redis is down it
    /// keeps trying in the background. Must be called inside a Tokio
    /// runtime.
    pub async fn new(l1: MemoryStore, l2: RedisCacheStore) -> Self {
        let channel: Arc<str> = format!("{}:invalidate", l2.prefix).into();
        let id = crate::redis_conn::random_u64();
        let (alive, stop) = tokio::sync::watch::channel(false);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let subscriber = invalidation::Subscriber {
            id,
            l1: l1.clone(),
            stats: l2.stats.clone(),
            ready: Some(ready_tx),
        };
        let (listeners, listened, stopped) =
            (l2.listeners.clone(), Arc::clone(&channel), stop.clone());
        tokio::spawn(async move {
            crate::redis_conn::subscribe(listeners, &listened, subscriber, stopped).await;
        });
        let broadcast = Broadcast {
            l1: l1.clone(),
            l2,
            channel,
            id,
            outbox: Arc::new(Outbox::default()),
        };
        tokio::spawn(broadcast.clone().replay(stop));
        let _ = tokio::time::timeout(Duration::from_secs(1), ready_rx).await;
        Self {
            l1,
            broadcast,
            _alive: Arc::new(Alive(alive)),
        }
    }

    /// The counters of the Redis tier and of the invalidations.
    pub fn stats(&self) -> RedisCacheStats {
        self.broadcast.l2.stats()
    }
}

impl CacheStore for TieredStore {
    fn get(&self, key: &CacheKey) -> StoreFuture<Option<Variants>> {
        if let Some(Ok(Some(v))) = self.l1.get(key).take_ready() {
            self.broadcast.l2.stats.inner.l1_hits.fetch_add(1, Relaxed);
            return StoreFuture::ready(Ok(Some(v)));
        }
        let before = self.broadcast.l2.stats.generation();
        let mut l2 = self.broadcast.l2.get(key);
        let broadcast = self.broadcast.clone();
        let key = key.clone();
        StoreFuture::new(async move {
            let mut found = (&mut l2).await?;
            let stats = &broadcast.l2.stats;
            if found.as_ref().is_some_and(|vs| {
                // A purge ran while Redis answered (what was read may be
                // what it took), or one made here while Redis was away
                // selects it (Redis's copy goes when the purge is
                // replayed): a miss.
                stats.generation() != before
                    || (stats.has_pending() && broadcast.pending_purge_of(&key, vs))
            }) {
                found = None;
            }
            let l1 = &broadcast.l1;
            if let Some(vs) = &found {
                // Copy into L1 for as long as the longest-lived variant
                // may be used (its age is counted from its own times).
                let now = std::time::SystemTime::now();
                let ttl = vs
                    .iter()
                    .map(|v| {
                        v.retention(
                            now,
                            Duration::from_secs(3600),
                            crate::cache::DEFAULT_STALE_IF_UNREACHABLE,
                        )
                    })
                    .max()
                    .unwrap_or_default();
                // All of them in one insert: refills racing for one URL
                // can't leave part of its variants.
                l1.fill(key.clone(), vs, ttl);
                // A purge that ran since the check above must not leave
                // the copy in memory (checked after the copy is put, as a
                // purge bumps the generation before it empties memory).
                if stats.generation() != before {
                    let _ = l1.remove(&key).take_ready();
                }
            }
            Ok(found)
        })
    }

    fn put(&self, key: CacheKey, response: Arc<CachedResponse>, ttl: Duration) -> StoreFuture<()> {
        let _ = self
            .l1
            .put(key.clone(), Arc::clone(&response), ttl)
            .take_ready();
        let l2 = self.broadcast.l2.put(key, response, ttl);
        // L1 has it: the L2 write finishes in the background (the cache
        // layer spawns what isn't ready).
        StoreFuture::new(l2)
    }

    fn remove(&self, key: &CacheKey) -> StoreFuture<bool> {
        self.broadcast.l2.stats.bump_generation();
        let local = matches!(self.l1.remove(key).take_ready(), Some(Ok(true)));
        let purge = Purge::Key(key.clone());
        let l2 = self.broadcast.l2.remove(key);
        let (broadcast, key) = (self.broadcast.clone(), key.clone());
        StoreFuture::new(async move {
            match l2.await {
                Ok(removed) => {
                    // A lookup may have copied Redis's copy back meanwhile.
                    broadcast.l2.stats.bump_generation();
                    let _ = broadcast.l1.remove(&key).take_ready();
                    // The other replicas learn in the background: an
                    // invalidating request waits for one round trip, not two.
                    if let Ok(rt) = tokio::runtime::Handle::try_current() {
                        rt.spawn(async move {
                            if broadcast.publish(&purge).await.is_err() {
                                broadcast.outbox.push(purge, &broadcast.l2.stats);
                            }
                        });
                    }
                    Ok(removed || local)
                }
                Err(_) => {
                    broadcast.outbox.push(purge, &broadcast.l2.stats);
                    Ok(local)
                }
            }
        })
    }

    fn purge(&self, purge: &Purge) -> StoreFuture<u64> {
        self.broadcast.l2.stats.bump_generation();
        let local = match self.l1.purge(purge).take_ready() {
            Some(Ok(n)) => n,
            _ => 0,
        };
        let (broadcast, purge) = (self.broadcast.clone(), purge.clone());
        StoreFuture::new(async move {
            match broadcast.purge_shared(&purge).await {
                Ok(n) => Ok(n.max(local)),
                Err(e) => Err(StoreError::partial_purge(
                    local,
                    format!(
                        "{}; purged {local} URLs in this process's memory; Redis and the \
                         other replicas get the purge when Redis answers again",
                        e.message()
                    ),
                )),
            }
        })
    }

    fn max_entry_weight(&self) -> Option<usize> {
        self.l1.max_entry_weight()
    }

    fn usage(&self) -> StoreUsage {
        self.l1.usage()
    }
}
