//! The query cache's Redis tier (feature `redis`): values serialized
//! (JSON) under `PREFIX:v:KEY`, tags as sets, one circuit breaker, and the
//! invalidation broadcast (with its outbox) the response cache's tiered
//! store uses, so an invalidation on one replica reaches all.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use serde::Serialize;

use super::QueryValue;
use super::entry::EntryOptions;
use super::inner::Inner;
use super::invalidate::Invalidate;
use super::key::QueryKey;
use super::stats::Counters;
use super::wire::{
    decode_message, decode_value, encode_message, encode_value, escape, redis_glob, unix_ms,
};
use crate::breaker::{BreakerConfig, BreakerSnapshot, CircuitBreaker};
use crate::cache::StoreError;
use crate::outbox::{Outbox, Pending, PendingGauge};

/// Stores a value if no invalidation ran since the loader read the
/// generation (`ARGV[3]`, empty: store anyway), and adds its key to its
/// tags' sets, whose lifetime covers the value's.
const STORE: &str = r"
if ARGV[3] ~= '' and (redis.call('GET', KEYS[2]) or '0') ~= ARGV[3] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
end
return 1
";

/// Drops every value a tag's set names, then the set.
const PURGE_TAG: &str = r"
local n = 0
for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  n = n + redis.call('UNLINK', k)
end
redis.call('DEL', KEYS[1])
return n
";

/// Keys a `SCAN` step asks for.
const SCAN_COUNT: usize = 1000;

/// The Redis tier of a [`QueryCache`](super::QueryCache): give it to
/// [`QueryCacheBuilder::redis`](super::QueryCacheBuilder::redis).
///
/// Every replica pointed at the same Redis and prefix shares the values
/// (a miss in memory looks in Redis before loading; a load is written
/// there in the background) and hears the others' invalidations. Each
/// operation waits at most [`timeout`](Self::timeout) (50 ms by default)
/// and goes through a circuit breaker: while Redis is down, lookups go
/// straight to the loader and memory keeps serving, counted in
/// `redis_errors` per namespace. An invalidation Redis cannot take is
/// applied to this replica's memory at once, reported as
/// [`InvalidateError::Deferred`](super::InvalidateError), and replayed
/// (to Redis, then to the other replicas) when it answers; a replica
/// whose subscription broke empties its memory when it subscribes again.
#[derive(Clone)]
pub struct RedisTier {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
    breaker: CircuitBreaker,
    counters: Arc<TierCounters>,
    store: Arc<redis::Script>,
    purge_tag: Arc<redis::Script>,
}

impl std::fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTier")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
pub(crate) struct TierCounters {
    errors: AtomicU64,
    timeouts: AtomicU64,
    undecodable: AtomicU64,
    published: AtomicU64,
    received: AtomicU64,
    replayed: AtomicU64,
    pending: AtomicU64,
    l1_dropped: AtomicU64,
}

impl PendingGauge for TierCounters {
    fn set_pending(&self, n: usize) {
        self.pending
            .store(u64::try_from(n).unwrap_or(u64::MAX), Relaxed);
    }
}

/// The Redis tier's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RedisTierSnapshot {
    /// Redis errors (connection refused or lost, error replies, or
    /// refused at once by the open breaker).
    pub errors: u64,
    /// Operations Redis did not answer within the timeout.
    pub timeouts: u64,
    /// Stored values that could not be read back as the type asked for
    /// (treated as missing).
    pub undecodable: u64,
    /// Invalidations published to the other replicas.
    pub invalidations_published: u64,
    /// Invalidations received from the other replicas.
    pub invalidations_received: u64,
    /// Invalidations made here that Redis has not taken yet.
    pub invalidations_pending: u64,
    /// Invalidations replayed after an outage.
    pub invalidations_replayed: u64,
    /// Times memory was emptied because the subscription had broken.
    pub l1_dropped: u64,
    /// The circuit breaker in front of Redis.
    pub breaker: BreakerSnapshot,
}

impl RedisTier {
    /// A tier on the Redis at `url`, its keys under `prefix`. Does not
    /// connect yet; fails only on a malformed URL. Must be called inside a
    /// Tokio runtime.
    pub fn new(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let (client, conn) = crate::redis_conn::connect(url).map_err(StoreError::new)?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.into(),
            timeout: Duration::from_millis(50),
            breaker: CircuitBreaker::new("redis query cache", BreakerConfig::default()),
            counters: Arc::default(),
            store: Arc::new(redis::Script::new(STORE)),
            purge_tag: Arc::new(redis::Script::new(PURGE_TAG)),
        })
    }

    /// The circuit breaker's settings (default: open after 3 consecutive
    /// failures or timeouts, for 100 ms doubling up to 500 ms).
    ///
    /// # Panics
    ///
    /// On a configuration that cannot work, with a message naming it.
    pub fn breaker(self, config: BreakerConfig) -> Self {
        self.breaker.configure(config);
        self
    }

    /// The longest an operation waits for Redis (default 50 ms).
    ///
    /// # Panics
    /// If `timeout` is zero: every operation would time out.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        assert!(!timeout.is_zero(), "RedisTier::timeout must be above zero");
        self.timeout = timeout;
        self
    }

    pub(crate) fn snapshot(&self) -> RedisTierSnapshot {
        let c = &self.counters;
        RedisTierSnapshot {
            errors: c.errors.load(Relaxed),
            timeouts: c.timeouts.load(Relaxed),
            undecodable: c.undecodable.load(Relaxed),
            invalidations_published: c.published.load(Relaxed),
            invalidations_received: c.received.load(Relaxed),
            invalidations_pending: c.pending.load(Relaxed),
            invalidations_replayed: c.replayed.load(Relaxed),
            l1_dropped: c.l1_dropped.load(Relaxed),
            breaker: self.breaker.snapshot(),
        }
    }

    fn value_key(&self, text: &str) -> String {
        format!("{}:v:{text}", self.prefix)
    }

    fn generation_key(&self) -> String {
        format!("{}:generation", self.prefix)
    }

    fn tag_key(&self, tag: &str) -> String {
        format!("{}:t:{tag}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}:invalidate", self.prefix)
    }

    async fn run<T>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        let c = &self.counters;
        crate::redis_conn::through(&self.breaker, self.timeout, op, &c.errors, &c.timeouts).await
    }

    /// The stored bytes of `key` and the invalidation generation, in one
    /// round trip.
    async fn lookup(&self, key: &QueryKey) -> Result<(Option<Vec<u8>>, u64), String> {
        let mut conn = self.conn.clone();
        let (value, generation): (Option<Vec<u8>>, Option<u64>) = self
            .run(
                redis::cmd("MGET")
                    .arg(self.value_key(key.as_str()))
                    .arg(self.generation_key())
                    .query_async(&mut conn),
            )
            .await?;
        Ok((value, generation.unwrap_or(0)))
    }

    /// Stores `bytes` for `ttl` (at least a millisecond), unless an
    /// invalidation ran since `generation`. Whether it was stored.
    async fn put(
        &self,
        key: &QueryKey,
        bytes: Vec<u8>,
        ttl: Duration,
        tags: &[Box<str>],
        generation: Option<u64>,
    ) -> Result<bool, String> {
        let mut conn = self.conn.clone();
        let mut inv = self.store.prepare_invoke();
        inv.key(self.value_key(key.as_str()))
            .key(self.generation_key());
        for t in tags {
            inv.key(self.tag_key(t));
        }
        inv.arg(bytes)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
            .arg(generation.map(|g| g.to_string()).unwrap_or_default());
        let stored: i64 = self.run(inv.invoke_async(&mut conn)).await?;
        Ok(stored == 1)
    }

    /// Drops from Redis what `what` selects, after bumping the generation
    /// (a load that read an older one stores nothing). How many values
    /// went.
    async fn invalidate(&self, what: &Invalidate) -> Result<u64, String> {
        let mut conn = self.conn.clone();
        let _: u64 = self
            .run(
                redis::cmd("INCR")
                    .arg(self.generation_key())
                    .query_async(&mut conn),
            )
            .await?;
        let values = format!("{}:v:", escape(&self.prefix));
        match what {
            Invalidate::Key(k) => {
                self.run(
                    redis::cmd("UNLINK")
                        .arg(self.value_key(k.as_str()))
                        .query_async(&mut conn),
                )
                .await
            }
            Invalidate::Tag(t) => {
                self.run(self.purge_tag.key(self.tag_key(t)).invoke_async(&mut conn))
                    .await
            }
            Invalidate::Namespace(ns) => {
                let exact: u64 = self
                    .run(
                        redis::cmd("UNLINK")
                            .arg(self.value_key(ns))
                            .query_async(&mut conn),
                    )
                    .await?;
                let ns = escape(ns);
                Ok(exact
                    + self.scan_unlink(&format!("{values}{ns}:*")).await?
                    + self.scan_unlink(&format!("{values}{ns}#*")).await?)
            }
            Invalidate::Prefix(p) => self.scan_unlink(&format!("{values}{}*", escape(p))).await,
            Invalidate::Pattern(g) => {
                self.scan_unlink(&format!("{values}{}", redis_glob(g)))
                    .await
            }
            Invalidate::All => {
                let n = self.scan_unlink(&format!("{values}*")).await?;
                self.scan_unlink(&format!("{}:t:*", escape(&self.prefix)))
                    .await?;
                Ok(n)
            }
        }
    }

    /// Unlinks every key matching `pattern`, a `SCAN` step at a time.
    async fn scan_unlink(&self, pattern: &str) -> Result<u64, String> {
        let mut conn = self.conn.clone();
        let (mut cursor, mut n) = (0u64, 0u64);
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = self
                .run(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query_async(&mut conn),
                )
                .await?;
            if !keys.is_empty() {
                let gone: u64 = self
                    .run(redis::cmd("UNLINK").arg(&keys).query_async(&mut conn))
                    .await?;
                n += gone;
            }
            if next == 0 {
                return Ok(n);
            }
            cursor = next;
        }
    }

    async fn publish(&self, id: u64, what: &Invalidate) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .run(
                redis::cmd("PUBLISH")
                    .arg(self.channel())
                    .arg(encode_message(id, what))
                    .query_async(&mut conn),
            )
            .await?;
        self.counters.published.fetch_add(1, Relaxed);
        Ok(())
    }
}

impl Pending for Invalidate {
    const ALL: Self = Invalidate::All;
    const OWNER: &'static str = "query cache";

    fn weight(&self) -> usize {
        match self {
            Invalidate::Key(k) => k.as_str().len(),
            Invalidate::Namespace(s) | Invalidate::Prefix(s) | Invalidate::Tag(s) => s.len(),
            Invalidate::Pattern(g) => g.as_str().len(),
            Invalidate::All => 0,
        }
    }
}

/// What a replica shares with its background tasks: the tier, its id on
/// the channel, and the invalidations waiting for Redis.
pub(crate) struct Shared {
    pub(crate) tier: RedisTier,
    id: u64,
    outbox: Arc<Outbox<Invalidate>>,
    /// Stops the tasks when the cache goes.
    alive: tokio::sync::watch::Sender<bool>,
    subscribed: tokio::sync::watch::Receiver<bool>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.alive.send_replace(true);
    }
}

/// What a lookup in Redis found.
pub(crate) enum Found<V> {
    /// A fresh value, copied to memory.
    Hit(Arc<V>),
    /// Nothing usable; the generation to store a load under, if Redis
    /// answered.
    Miss(Option<u64>),
}

impl Shared {
    /// Starts the subscriber and replay tasks for `inner`'s memory.
    pub(crate) fn start(tier: RedisTier, inner: &Weak<Inner>) -> Arc<Self> {
        let rt = tokio::runtime::Handle::try_current().unwrap_or_else(|_| {
            panic!(
                "QueryCacheBuilder::build with a Redis tier must run inside a Tokio runtime \
                 (it starts the invalidation subscriber)"
            )
        });
        let id = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.finish()
        };
        let (alive, stop) = tokio::sync::watch::channel(false);
        let (subscribed_tx, subscribed) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Self {
            tier,
            id,
            outbox: Arc::default(),
            alive,
            subscribed,
        });
        let listener = Subscriber {
            id,
            inner: inner.clone(),
            counters: Arc::clone(&shared.tier.counters),
            subscribed: subscribed_tx,
        };
        let (client, channel, stopped) = (
            shared.tier.client.clone(),
            shared.tier.channel(),
            stop.clone(),
        );
        rt.spawn(async move {
            crate::redis_conn::subscribe(client, &channel, listener, stopped).await;
        });
        // The replay task holds the outbox, and the rest only weakly: it
        // must not keep the cache alive.
        let (replayer, inner) = (Arc::downgrade(&shared), inner.clone());
        let (outbox, counters) = (
            Arc::clone(&shared.outbox),
            Arc::clone(&shared.tier.counters),
        );
        rt.spawn(async move {
            outbox
                .replay(
                    &*counters,
                    |what| {
                        let (shared, inner) = (replayer.clone(), inner.clone());
                        async move {
                            match shared.upgrade() {
                                Some(shared) => shared.apply(&what, &inner).await.map(|_| ()),
                                // Stopping: what waits is reported lost.
                                None => Err("the query cache was dropped".to_owned()),
                            }
                        }
                    },
                    || {
                        counters.replayed.fetch_add(1, Relaxed);
                    },
                    stop,
                )
                .await;
        });
        shared
    }

    /// Waits until the subscription is up, at most `timeout`; whether it
    /// is.
    pub(crate) async fn subscribed(&self, timeout: Duration) -> bool {
        let mut rx = self.subscribed.clone();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s))
            .await
            .is_ok()
    }

    /// The shared part of an invalidation whose memory part is done: Redis,
    /// this replica's memory again (a lookup may have copied a Redis copy
    /// back meanwhile), then the other replicas.
    async fn apply(&self, what: &Invalidate, inner: &Weak<Inner>) -> Result<u64, String> {
        let n = self.tier.invalidate(what).await?;
        if let Some(inner) = inner.upgrade() {
            inner.invalidate_memory(what.clone());
        }
        self.tier.publish(self.id, what).await?;
        Ok(n)
    }

    /// [`apply`](Self::apply), kept for replay when it fails.
    pub(crate) async fn invalidate(
        &self,
        what: &Invalidate,
        inner: &Weak<Inner>,
    ) -> Result<u64, String> {
        let result = self.apply(what, inner).await;
        if result.is_err() {
            self.outbox.push(what.clone(), &*self.tier.counters);
        }
        result
    }

    /// Looks `key` up in Redis; a fresh value of type `V` is copied to
    /// memory (unless an invalidation since `epoch`, or one waiting for
    /// Redis, selects it).
    pub(crate) async fn get<V: QueryValue>(
        &self,
        inner: &Inner,
        key: &QueryKey,
        ns: &Arc<Counters>,
        epoch: u64,
    ) -> Found<V> {
        let (bytes, generation) = match self.tier.lookup(key).await {
            Ok(found) => found,
            Err(_) => {
                ns.l2_errors.fetch_add(1, Relaxed);
                return Found::Miss(None);
            }
        };
        let Some(bytes) = bytes else {
            return Found::Miss(Some(generation));
        };
        let now = unix_ms(inner.clock.system_time());
        let Some(stored) = decode_value(&bytes).filter(|s| s.fresh_ms > now) else {
            return Found::Miss(Some(generation));
        };
        if self.tier.counters.pending.load(Relaxed) > 0
            && self.outbox.any(|w| w.selects(key, &stored.tags))
        {
            return Found::Miss(None);
        }
        let Ok(value) = serde_json::from_slice::<V>(stored.json) else {
            self.tier.counters.undecodable.fetch_add(1, Relaxed);
            return Found::Miss(Some(generation));
        };
        let value = Arc::new(value);
        let options = EntryOptions {
            ttl: Some(Duration::from_millis(stored.fresh_ms - now)),
            stale: Duration::from_millis(stored.stale_ms.saturating_sub(stored.fresh_ms)),
            tags: stored.tags,
        };
        inner.store(key, &value, &options, Arc::clone(ns), Some(epoch));
        ns.l2_hits.fetch_add(1, Relaxed);
        Found::Hit(value)
    }

    /// Writes `value` to Redis in the background (under `generation`, or
    /// unconditionally with `None` for a plain insert), if it serializes.
    pub(crate) fn put<V: QueryValue>(
        self: &Arc<Self>,
        inner: &Inner,
        key: &QueryKey,
        value: &Arc<V>,
        options: &EntryOptions,
        generation: Option<u64>,
        ns: &Arc<Counters>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let ttl = options.ttl.unwrap_or(inner.default_ttl);
        let fresh_ms = unix_ms(inner.clock.system_time())
            .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let stale_ms =
            fresh_ms.saturating_add(u64::try_from(options.stale.as_millis()).unwrap_or(u64::MAX));
        let json = match serde_json::to_vec(&**value) {
            Ok(json) => json,
            Err(e) => {
                tracing::debug!(key = %key, error = %e, "tower-perf query cache: value not serializable, kept in memory only");
                return None;
            }
        };
        let bytes = encode_value(fresh_ms, stale_ms, &options.tags, &json)?;
        let (shared, key, tags, ns) = (
            Arc::clone(self),
            key.clone(),
            options.tags.clone(),
            Arc::clone(ns),
        );
        let keep = ttl.saturating_add(options.stale);
        let rt = tokio::runtime::Handle::try_current().ok()?;
        Some(rt.spawn(async move {
            if shared
                .tier
                .put(&key, bytes, keep, &tags, generation)
                .await
                .is_err()
            {
                ns.l2_errors.fetch_add(1, Relaxed);
            }
        }))
    }
}

/// A replica's subscriber: drops from memory what other replicas
/// invalidate; empties it after a broken subscription.
struct Subscriber {
    id: u64,
    inner: Weak<Inner>,
    counters: Arc<TierCounters>,
    subscribed: tokio::sync::watch::Sender<bool>,
}

impl crate::redis_conn::Listener for Subscriber {
    fn subscribed(&mut self, again: bool) {
        self.subscribed.send_replace(true);
        if again {
            if let Some(inner) = self.inner.upgrade() {
                inner.invalidate_memory(Invalidate::All);
            }
            self.counters.l1_dropped.fetch_add(1, Relaxed);
        }
    }

    fn message(&mut self, payload: &[u8]) {
        let Some((from, what)) = std::str::from_utf8(payload).ok().and_then(decode_message) else {
            return;
        };
        if from == self.id {
            return;
        }
        self.counters.received.fetch_add(1, Relaxed);
        if let Some(inner) = self.inner.upgrade() {
            inner.invalidate_memory(what);
        }
    }

    fn failed(&mut self) {
        self.counters.errors.fetch_add(1, Relaxed);
    }
}
