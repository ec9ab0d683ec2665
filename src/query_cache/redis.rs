//! The query cache's Redis tier (feature `redis`): values serialized
//! (JSON), one circuit breaker, and an invalidation broadcast (with the
//! outbox the response cache's tiered store uses), so an invalidation on
//! one replica reaches all.
//!
//! Keys, under the tier's prefix `P` (a segment of their own, `q…`, so a
//! response cache given the same prefix never meets them):
//!
//! | key | holds |
//! |---|---|
//! | `P:qv:KEY` | a value: `NS-GEN:ALL-GEN:` then the stored bytes |
//! | `P:qn:NS` | the namespace's generation (an invalidation of the namespace bumps it: values written under an older one read as missing) |
//! | `P:qa` | the generation of everything (bumped by `All`) |
//! | `P:qk:KEY` | the key's own counter (bumped when it is invalidated; an hour) |
//! | `P:qf` | the fence of the invalidations that select by tag, prefix, pattern or all |
//! | `P:qt:TAG` | the keys stored with a tag |
//! | `P:query-invalidate` | the channel |
//!
//! A lookup reads the value and the four counters in one script call
//! (setting a missing namespace, all or fence counter to a random value:
//! a counter evicted or lost with a restart never vouches for a value
//! written under its old self); a load
//! is written only if none of them moved since (a Lua script checks), so
//! a load that an invalidation overtakes is never stored, and an
//! invalidation of one namespace does not hold back the others' writes.
//! Invalidating a namespace or everything is one `INCR` (the values it
//! leaves behind expire with their TTL); a key, a tag's keys, a prefix or
//! a pattern are deleted (the last two by `SCAN`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::Serialize;

use super::QueryValue;
use super::entry::EntryOptions;
use super::inner::Inner;
use super::invalidate::Invalidate;
use super::key::QueryKey;
use super::stats::Counters;
use super::wire::{
    decode_message, decode_value, encode_message, encode_value, escape, redis_glob,
    split_generations, unix_ms,
};
use crate::breaker::{BreakerConfig, BreakerSnapshot, CircuitBreaker};
use crate::cache::StoreError;
use crate::outbox::{Outbox, Pending, PendingGauge};

/// Stores a value (`KEYS[1]`) if the key's counter, the namespace's and
/// all-generations and the fence (`KEYS[2..5]`) still read what the
/// lookup saw (`ARGV[3..6]`; `ARGV[3]` empty: store anyway), prefixed with
/// the generations it is valid under, and adds the key's text (`ARGV[7]`)
/// to its tags' sets (`KEYS[6..]`), whose lifetime covers the value's.
///
/// A counter gone since the lookup (evicted, or lost with a restart) is
/// set again to a random value (`ARGV[8]`) and a checked write refused.
const STORE: &str = r"
local missing = false
for i = 3, 5 do
  if not redis.call('GET', KEYS[i]) then
    redis.call('SET', KEYS[i], ARGV[8], 'NX')
    missing = true
  end
end
if missing and ARGV[3] ~= '' then
  return 0
end
if ARGV[3] ~= '' then
  for i = 2, 5 do
    if (redis.call('GET', KEYS[i]) or '0') ~= ARGV[i + 1] then
      return 0
    end
  end
end
local ns = redis.call('GET', KEYS[3])
local all = redis.call('GET', KEYS[4])
redis.call('SET', KEYS[1], ns .. ':' .. all .. ':' .. ARGV[1], 'PX', ARGV[2])
for i = 6, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[7])
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
end
return 1
";

/// Reads a value (`KEYS[1]`) and the counters a write of it must find
/// unchanged (`KEYS[2..5]`). The namespace's, everything's and the fence's
/// counters start at a random value (`ARGV[1]`), set here when missing
/// (never set, evicted, or lost with a restart): such a counter can't
/// vouch for a value, so the last element says whether all were there.
const LOOKUP: &str = r"
local out = {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]) or '0'}
local known = 1
for i = 3, 5 do
  local v = redis.call('GET', KEYS[i])
  if not v then
    redis.call('SET', KEYS[i], ARGV[1], 'NX')
    v = redis.call('GET', KEYS[i])
    known = 0
  end
  out[i] = v
end
out[6] = known
return out
";

/// Drops the value of every key a tag's set names (`ARGV[1]` is the value
/// keys' prefix), then the set, and moves the fence.
const PURGE_TAG: &str = r"
redis.call('INCR', KEYS[2])
local n = 0
for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  n = n + redis.call('UNLINK', ARGV[1] .. k)
end
redis.call('DEL', KEYS[1])
return n
";

/// The longest a value is kept in Redis (ten years; Redis refuses an
/// expiry past its clock's range).
const MAX_PX: u64 = 10 * 365 * 24 * 3_600_000;

/// How long a key's invalidation counter lives.
const KEY_COUNTER_MS: u64 = 3_600_000;

/// A load whose lookup is older than this is not written: the key's
/// counter it was checked against may have expired since.
const LOOKUP_VALID: Duration = Duration::from_millis(KEY_COUNTER_MS / 2);

/// The counters a write must find unchanged (the key's, its namespace's,
/// everything's, and the fence), and when they were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fence([u64; 4], std::time::Instant);

/// Keys a `SCAN` step asks for.
const SCAN_COUNT: usize = 1000;

/// The Redis tier of a [`QueryCache`](super::QueryCache): give it to
/// [`QueryCacheBuilder::redis`](super::QueryCacheBuilder::redis).
///
/// Every replica pointed at the same Redis and prefix shares the values
/// (a miss in memory looks in Redis before loading; a load is written
/// there in the background, unless an invalidation ran while it loaded)
/// and hears the others' invalidations. Invalidating a namespace or
/// everything costs one `INCR` whatever Redis holds (the values left
/// behind read as missing and expire with their TTL); a tag deletes its
/// keys; a prefix or pattern scans the keys (`SCAN`) in the background of
/// no request but the invalidating one. The keys live under
/// `PREFIX:q…`, apart from a response cache's given the same prefix.
///
/// Give Redis room, or `maxmemory-policy noeviction`: the counters
/// survive eviction safely (a missing one vouches for nothing), but a tag's
/// set evicted before its tag is invalidated leaves that tag's values in
/// Redis until their TTL. A tag's set keeps every key stored with the tag
/// until the tag is invalidated or the set expires (with its longest
/// value), so tag what a write invalidates (`user-42`), not whole
/// catalogues. Each
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
    lookup: Arc<redis::Script>,
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
    fenced: AtomicU64,
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
    /// Loads not written because an invalidation ran while they loaded.
    pub writes_fenced: u64,
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
            lookup: Arc::new(redis::Script::new(LOOKUP)),
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
            writes_fenced: c.fenced.load(Relaxed),
            invalidations_published: c.published.load(Relaxed),
            invalidations_received: c.received.load(Relaxed),
            invalidations_pending: c.pending.load(Relaxed),
            invalidations_replayed: c.replayed.load(Relaxed),
            l1_dropped: c.l1_dropped.load(Relaxed),
            breaker: self.breaker.snapshot(),
        }
    }

    fn value_key(&self, text: &str) -> String {
        format!("{}:qv:{text}", self.prefix)
    }

    /// The keys of the counters a write checks, in [`Fence`]'s order.
    fn fence_keys(&self, key: &QueryKey) -> [String; 4] {
        [
            format!("{}:qk:{}", self.prefix, key.as_str()),
            self.namespace_key(key.namespace()),
            format!("{}:qa", self.prefix),
            format!("{}:qf", self.prefix),
        ]
    }

    fn namespace_key(&self, ns: &str) -> String {
        format!("{}:qn:{ns}", self.prefix)
    }

    fn tag_key(&self, tag: &str) -> String {
        format!("{}:qt:{tag}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}:query-invalidate", self.prefix)
    }

    async fn run<T>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        let c = &self.counters;
        crate::redis_conn::through(&self.breaker, self.timeout, op, &c.errors, &c.timeouts).await
    }

    /// The stored bytes of `key`, if they are valid under the current
    /// generations, and the fence a write of it must find unchanged, in
    /// one round trip.
    async fn lookup(&self, key: &QueryKey) -> Result<(Option<Vec<u8>>, Fence), String> {
        let mut conn = self.conn.clone();
        let mut inv = self.lookup.prepare_invoke();
        inv.key(self.value_key(key.as_str()));
        for k in self.fence_keys(key) {
            inv.key(k);
        }
        inv.arg(random_base());
        let (value, k, ns, all, fence, known): (Option<Vec<u8>>, u64, u64, u64, u64, i64) =
            self.run(inv.invoke_async(&mut conn)).await?;
        let fence = Fence([k, ns, all, fence], std::time::Instant::now());
        // Written under older generations (invalidated since), or a
        // generation was missing: not valid.
        let value = value
            .filter(|_| known == 1)
            .and_then(|v| match split_generations(&v) {
                Some((n, a, _)) if n == fence.0[1] && a == fence.0[2] => Some(v),
                _ => None,
            });
        Ok((value, fence))
    }

    /// Stores `bytes` for `ttl` (at least a millisecond), unless an
    /// invalidation moved `fence` since (none: store anyway). Whether it
    /// was stored.
    async fn put(
        &self,
        key: &QueryKey,
        bytes: Vec<u8>,
        ttl: Duration,
        tags: &[Box<str>],
        fence: Option<Fence>,
    ) -> Result<bool, String> {
        if fence.is_some_and(|f| f.1.elapsed() > LOOKUP_VALID) {
            self.counters.fenced.fetch_add(1, Relaxed);
            return Ok(false);
        }
        let mut conn = self.conn.clone();
        let mut inv = self.store.prepare_invoke();
        inv.key(self.value_key(key.as_str()));
        for k in self.fence_keys(key) {
            inv.key(k);
        }
        for t in tags {
            inv.key(self.tag_key(t));
        }
        inv.arg(bytes).arg(
            u64::try_from(ttl.as_millis())
                .unwrap_or(u64::MAX)
                .clamp(1, MAX_PX),
        );
        match fence {
            Some(Fence(f, _)) => {
                for v in f {
                    inv.arg(v.to_string());
                }
            }
            None => {
                for _ in 0..4 {
                    inv.arg("");
                }
            }
        }
        inv.arg(key.as_str()).arg(random_base());
        let stored: i64 = self.run(inv.invoke_async(&mut conn)).await?;
        if stored == 0 {
            self.counters.fenced.fetch_add(1, Relaxed);
        }
        Ok(stored == 1)
    }

    /// Drops from Redis what `what` selects, moving the counters a load
    /// in flight must find unchanged to be written. How many values went
    /// (for a namespace or everything, which only move a generation: 0).
    async fn invalidate(&self, what: &Invalidate) -> Result<u64, String> {
        let mut conn = self.conn.clone();
        let values = format!("{}:qv:", escape(&self.prefix));
        let fence = format!("{}:qf", self.prefix);
        match what {
            Invalidate::Key(k) => {
                let [counter, ..] = self.fence_keys(k);
                let (_, _, gone): (u64, i64, u64) = self
                    .run(
                        redis::pipe()
                            .atomic()
                            .cmd("INCR")
                            .arg(&counter)
                            .cmd("PEXPIRE")
                            .arg(&counter)
                            .arg(KEY_COUNTER_MS)
                            .cmd("UNLINK")
                            .arg(self.value_key(k.as_str()))
                            .query_async(&mut conn),
                    )
                    .await?;
                Ok(gone)
            }
            Invalidate::Namespace(ns) => {
                let _: u64 = self
                    .run(
                        redis::cmd("INCR")
                            .arg(self.namespace_key(ns))
                            .query_async(&mut conn),
                    )
                    .await?;
                Ok(0)
            }
            Invalidate::All => {
                let _: (u64, u64) = self
                    .run(
                        redis::pipe()
                            .cmd("INCR")
                            .arg(format!("{}:qa", self.prefix))
                            .cmd("INCR")
                            .arg(&fence)
                            .query_async(&mut conn),
                    )
                    .await?;
                Ok(0)
            }
            Invalidate::Tag(t) => {
                self.run(
                    self.purge_tag
                        .key(self.tag_key(t))
                        .key(&fence)
                        .arg(format!("{}:qv:", self.prefix))
                        .invoke_async(&mut conn),
                )
                .await
            }
            Invalidate::Prefix(_) | Invalidate::Pattern(_) => {
                let _: u64 = self
                    .run(redis::cmd("INCR").arg(&fence).query_async(&mut conn))
                    .await?;
                let pattern = match what {
                    Invalidate::Prefix(p) => format!("{values}{}*", escape(p)),
                    Invalidate::Pattern(g) => format!("{values}{}", redis_glob(g)),
                    _ => unreachable!("matched above"),
                };
                self.scan_unlink(&pattern).await
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

/// A counter's first value: random, so a counter lost and set again
/// never reads as one a value was written under. Below 2^53, where Redis's
/// `INCR` and Lua's numbers agree.
fn random_base() -> u64 {
    crate::redis_conn::random_u64() >> 11
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
    /// Nothing usable; the fence to write a load under, if Redis
    /// answered.
    Miss(Option<Fence>),
}

impl Shared {
    /// Starts the subscriber and replay tasks for `inner`'s memory.
    pub(crate) fn start(mut tier: RedisTier, inner: &Weak<Inner>) -> Arc<Self> {
        // This cache's own counters (a tier cloned into two caches must
        // not share the count of invalidations waiting).
        tier.counters = Arc::default();
        let rt = tokio::runtime::Handle::try_current().unwrap_or_else(|_| {
            panic!(
                "QueryCacheBuilder::build with a Redis tier must run inside a Tokio runtime \
                 (it starts the invalidation subscriber)"
            )
        });
        let id = crate::redis_conn::random_u64();
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
            inner.invalidate_local(what.clone()).await;
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

    /// Keeps `what` for replay (its task failed before it could say).
    pub(crate) fn keep_for_replay(&self, what: Invalidate) {
        self.outbox.push(what, &*self.tier.counters);
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
        let (bytes, fence) = match self.tier.lookup(key).await {
            Ok(found) => found,
            Err(_) => {
                ns.l2_errors.fetch_add(1, Relaxed);
                return Found::Miss(None);
            }
        };
        let Some(bytes) = bytes else {
            return Found::Miss(Some(fence));
        };
        let now = unix_ms(inner.clock.system_time());
        let Some(stored) = split_generations(&bytes)
            .and_then(|(_, _, rest)| decode_value(rest))
            .filter(|s| s.fresh_ms > now)
        else {
            return Found::Miss(Some(fence));
        };
        if self.tier.counters.pending.load(Relaxed) > 0
            && self.outbox.any(|w| w.selects(key, &stored.tags))
        {
            return Found::Miss(None);
        }
        let Ok(value) = serde_json::from_slice::<V>(stored.json) else {
            self.tier.counters.undecodable.fetch_add(1, Relaxed);
            return Found::Miss(Some(fence));
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

    /// Writes `value` to Redis in the background (if `fence` still holds,
    /// or unconditionally with `None` for a plain insert). A value that
    /// can't be serialized, or tags the format can't hold, stay in memory
    /// only, with a warning; without a Tokio runtime nothing is written.
    pub(crate) fn put<V: QueryValue>(
        self: &Arc<Self>,
        inner: &Inner,
        key: &QueryKey,
        value: &Arc<V>,
        options: &EntryOptions,
        fence: Option<Fence>,
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
                tracing::warn!(key = %key, error = %e, "tower-perf query cache: a value that can't be serialized is kept in this replica's memory only");
                self.tier.counters.undecodable.fetch_add(1, Relaxed);
                return None;
            }
        };
        let Some(bytes) = encode_value(fresh_ms, stale_ms, &options.tags, &json) else {
            tracing::warn!(key = %key, "tower-perf query cache: more than 65,535 tags, or one over 64 KiB: kept in this replica's memory only");
            self.tier.counters.undecodable.fetch_add(1, Relaxed);
            return None;
        };
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
                .put(&key, bytes, keep, &tags, fence)
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
                inner.invalidate_soon(Invalidate::All);
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
            inner.invalidate_soon(what);
        }
    }

    fn failed(&mut self) {
        self.counters.errors.fetch_add(1, Relaxed);
    }
}
