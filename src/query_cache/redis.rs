//! The query cache's Redis tier (feature `redis`): values serialized
//! (JSON), one circuit breaker, and an invalidation broadcast (with the
//! outbox the response cache's tiered store uses), so an invalidation on
//! one replica reaches all.
//!
//! Keys, under the tier's prefix `P` (a segment of their own, `q…`, so a
//! response cache given the same prefix never meets them). `S` is the
//! namespace's Redis Cluster hash tag, `{q:NS}` (the namespace with `%`,
//! `{` and `}` percent-escaped): everything one lookup, write or
//! invalidation of a namespace touches lives in one slot, so each stays
//! atomic (a script or a transaction) on a cluster too, and namespaces
//! spread over the masters.
//!
//! | key | holds |
//! |---|---|
//! | `P:qv:S:KEY` | a value: `NS-GEN:ALL-GEN:` then the stored bytes |
//! | `P:qn:S` | the namespace's generation (an invalidation of the namespace bumps it: values written under an older one read as missing) |
//! | `P:qa:S` | the namespace's copy of the generation of everything (bumped by `All`) |
//! | `P:qk:S:KEY` | the key's own counter (bumped when it is invalidated; an hour) |
//! | `P:qf:S` | the namespace's fence, moved by the invalidations that select by tag, prefix, pattern or all |
//! | `P:qt:S:TAG` | the namespace's keys stored with a tag |
//! | `P:qns` | the namespaces that have been looked up or written (the registry `All`, a tag, a prefix or a pattern goes through) |
//! | `P:query-invalidate` | the channel |
//!
//! A lookup reads the value and the four counters in one script call
//! (setting a missing namespace, all or fence counter to a random value:
//! a counter evicted or lost with a restart never vouches for a value
//! written under its old self); a load
//! is written only if none of them moved since (a Lua script checks), so
//! a load that an invalidation overtakes is never stored, and an
//! invalidation of one namespace does not hold back the others' writes.
//! A replica adds a namespace to the registry before its first lookup or
//! insert in it and again whenever it finds a counter missing (Redis lost
//! it), waiting for it; and in the background after any failed operation
//! (a failover may have lost the registry's last write) and every 30
//! seconds while it uses it (the registry evicted alone). So an
//! invalidation that reads the registry reaches every namespace a load
//! could be written to.
//! Invalidating a namespace is one `INCR`; everything moves two counters
//! per namespace (the values left behind expire with their TTL); a key is
//! deleted; a tag's keys go in two steps (read the sets, then unlink); a
//! prefix or a pattern by `SCAN` (a prefix that names its namespace scans
//! only that namespace's node). On a server each step over namespaces is
//! one pipeline per thousand namespaces; on a cluster one per namespace,
//! sixteen at once. Those invalidations wait up to 2 s (or the tier's
//! timeout, if longer) for each call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

use super::invalidate::Invalidate;
use super::key::QueryKey;
use super::registry::{Need, Registered};
use super::wire::{encode_message, split_generations};
use crate::breaker::{BreakerConfig, BreakerSnapshot, CircuitBreaker};
use crate::cache::StoreError;
use crate::outbox::{Pending, PendingGauge};
use crate::redis_conn::{Conn, Listeners};

mod invalidate;

/// Stores a value (`KEYS[1]`) if the key's counter, the namespace's and
/// all-generations and the fence (`KEYS[2..5]`) still read what the
/// lookup saw (`ARGV[3..6]`; `ARGV[3]` empty: store anyway), prefixed with
/// the generations it is valid under, and adds the key's text (`ARGV[7]`)
/// to its tags' sets (`KEYS[6..]`), whose lifetime covers the value's.
///
/// A counter gone since the lookup (evicted, or lost with a restart) is
/// set again to a random value (`ARGV[8]`) and a checked write refused
/// (0); an unchecked write then returns 2 (stored, but Redis had lost
/// the namespace's counters, maybe its registry entry too), else 1.
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
if missing then
  return 2
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

/// A namespace's hash tag, `{q:NS}`, with `%`, `{` and `}` escaped so the
/// tag is exactly this text whatever the namespace holds.
fn slot_tag(ns: &str) -> String {
    let mut out = String::with_capacity(ns.len() + 4);
    out.push_str("{q:");
    for c in ns.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out.push('}');
    out
}

/// The key text of a value key, `P:qv:{q:NS}:KEY` with `values` the
/// `P:qv:` part.
fn key_text<'a>(values: &str, key: &'a str) -> Option<&'a str> {
    let rest = key.strip_prefix(values)?;
    let close = rest.find('}')?;
    rest[close + 1..].strip_prefix(':')
}

/// The Redis tier of a [`QueryCache`](super::QueryCache): give it to
/// [`QueryCacheBuilder::redis`](super::QueryCacheBuilder::redis).
///
/// Every replica pointed at the same Redis and prefix shares the values
/// (a miss in memory looks in Redis before loading; a load is written
/// there in the background, unless an invalidation ran while it loaded)
/// and hears the others' invalidations. Invalidating a namespace costs
/// one `INCR` whatever Redis holds, everything one per namespace in use
/// (the values left behind read as missing and expire with their TTL); a
/// tag deletes its
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
    pub(super) listeners: Listeners,
    conn: Conn,
    prefix: Arc<str>,
    timeout: Duration,
    breaker: CircuitBreaker,
    pub(super) counters: Arc<TierCounters>,
    /// Namespaces this replica has put in the registry (`P:qns`).
    registered: Arc<Registered>,
    store: Arc<redis::Script>,
    lookup: Arc<redis::Script>,
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
    pub(super) errors: AtomicU64,
    timeouts: AtomicU64,
    pub(super) undecodable: AtomicU64,
    fenced: AtomicU64,
    published: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) replayed: AtomicU64,
    pub(super) pending: AtomicU64,
    pub(super) l1_dropped: AtomicU64,
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
    /// A tier on the Redis at `target` (a URL, or a cluster's seed nodes,
    /// see [`RedisTarget`](crate::RedisTarget)), its keys under `prefix`.
    /// Does not connect yet; fails on a malformed URL, and on a prefix
    /// holding a brace (the keys' hash tags must be the namespaces').
    /// Must be called inside a Tokio runtime.
    pub fn new(target: impl Into<crate::RedisTarget>, prefix: &str) -> Result<Self, StoreError> {
        if prefix.contains(['{', '}']) {
            return Err(StoreError::new(format!(
                "RedisTier prefix {prefix:?}: no braces (each namespace's keys carry a Redis Cluster hash tag)"
            )));
        }
        let (listeners, conn) =
            crate::redis_conn::connect(&target.into()).map_err(StoreError::new)?;
        Ok(Self {
            listeners,
            conn,
            prefix: prefix.into(),
            timeout: Duration::from_millis(50),
            breaker: CircuitBreaker::new("redis query cache", BreakerConfig::default()),
            counters: Arc::default(),
            registered: Arc::default(),
            store: Arc::new(redis::Script::new(STORE)),
            lookup: Arc::new(redis::Script::new(LOOKUP)),
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

    /// `P:qv:S:` for `ns`: where its values' keys start.
    fn values_of(&self, ns: &str) -> String {
        format!("{}:qv:{}:", self.prefix, slot_tag(ns))
    }

    fn value_key(&self, key: &QueryKey) -> String {
        format!("{}{}", self.values_of(key.namespace()), key.as_str())
    }

    /// The keys of the counters a write checks, in [`Fence`]'s order.
    fn fence_keys(&self, key: &QueryKey) -> [String; 4] {
        let slot = slot_tag(key.namespace());
        [
            format!("{}:qk:{slot}:{}", self.prefix, key.as_str()),
            format!("{}:qn:{slot}", self.prefix),
            format!("{}:qa:{slot}", self.prefix),
            format!("{}:qf:{slot}", self.prefix),
        ]
    }

    fn namespace_key(&self, ns: &str) -> String {
        format!("{}:qn:{}", self.prefix, slot_tag(ns))
    }

    fn all_key(&self, ns: &str) -> String {
        format!("{}:qa:{}", self.prefix, slot_tag(ns))
    }

    fn fence_key(&self, ns: &str) -> String {
        format!("{}:qf:{}", self.prefix, slot_tag(ns))
    }

    fn tag_key(&self, ns: &str, tag: &str) -> String {
        format!("{}:qt:{}:{tag}", self.prefix, slot_tag(ns))
    }

    fn registry_key(&self) -> String {
        format!("{}:qns", self.prefix)
    }

    pub(super) fn channel(&self) -> String {
        format!("{}:query-invalidate", self.prefix)
    }

    async fn run<T>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        self.run_for(self.timeout, op).await
    }

    /// [`run`](Self::run) waiting at most `timeout`; a failure makes
    /// every registration due again (Redis may have lost the registry's
    /// last writes in a failover).
    async fn run_for<T>(
        &self,
        timeout: Duration,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        let c = &self.counters;
        let out =
            crate::redis_conn::through(&self.breaker, timeout, op, &c.errors, &c.timeouts).await;
        if out.is_err() {
            self.registered.stale();
        }
        out
    }

    /// The stored bytes of `key`, if they are valid under the current
    /// generations, and the fence a write of it must find unchanged, in
    /// one round trip.
    pub(super) async fn lookup(&self, key: &QueryKey) -> Result<(Option<Vec<u8>>, Fence), String> {
        let ns = key.namespace();
        let registered_now = self.register(ns, false).await?;
        let mut conn = self.conn.clone();
        let mut inv = self.lookup.prepare_invoke();
        inv.key(self.value_key(key));
        for k in self.fence_keys(key) {
            inv.key(k);
        }
        inv.arg(random_base());
        let (value, k, ns_gen, all, fence, known): (Option<Vec<u8>>, u64, u64, u64, u64, i64) =
            self.run(inv.invoke_async(&mut conn)).await?;
        if known != 1 && !registered_now {
            // A counter was missing (Redis lost it, maybe the registry
            // too): register again before loading.
            self.register(ns, true).await?;
        }
        let fence = Fence([k, ns_gen, all, fence], std::time::Instant::now());
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

    /// Puts `ns` in the registry if this replica never did (or `again`),
    /// waiting for it; whether it was sent now. A registration due again
    /// (old, or sent before a failed call) is sent in the background.
    async fn register(&self, ns: &str, again: bool) -> Result<bool, String> {
        let need = if again {
            Need::Now
        } else {
            self.registered.need(ns)
        };
        match need {
            Need::Nothing => Ok(false),
            Need::Refresh => {
                let (this, ns) = (self.clone(), ns.to_owned());
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move { this.send_registration(&ns).await });
                }
                Ok(false)
            }
            Need::Now => self.send_registration(ns).await.map(|()| true),
        }
    }

    async fn send_registration(&self, ns: &str) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .run(
                redis::cmd("SADD")
                    .arg(self.registry_key())
                    .arg(ns)
                    .query_async(&mut conn),
            )
            .await?;
        self.registered.sent(ns);
        Ok(())
    }

    /// Stores `bytes` for `ttl` (at least a millisecond), unless an
    /// invalidation moved `fence` since (none: store anyway). Whether it
    /// was stored.
    pub(super) async fn put(
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
        // A write with no lookup before it (an insert) may be the
        // namespace's first.
        let registered_now = fence.is_none() && self.register(key.namespace(), false).await?;
        let mut conn = self.conn.clone();
        let mut inv = self.store.prepare_invoke();
        inv.key(self.value_key(key));
        for k in self.fence_keys(key) {
            inv.key(k);
        }
        for t in tags {
            inv.key(self.tag_key(key.namespace(), t));
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
        if stored == 2 && !registered_now {
            // Redis had lost the namespace's counters, maybe its
            // registry entry too.
            self.register(key.namespace(), true).await?;
        }
        Ok(stored != 0)
    }

    pub(super) async fn publish(&self, id: u64, what: &Invalidate) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let _: u64 = self
            .run(conn.publish(&self.channel(), &encode_message(id, what)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_exactly_its_hash_tag_whatever_it_holds() {
        assert_eq!(slot_tag("user"), "{q:user}");
        assert_eq!(slot_tag(""), "{q:}");
        // A brace would end the tag early (or start another): escaped,
        // as is `%`, so two namespaces never share one tag text.
        assert_eq!(slot_tag("a}b{c%"), "{q:a%7Db%7Bc%25}");
        assert_ne!(slot_tag("a%7D"), slot_tag("a}"));
    }

    #[test]
    fn a_value_key_gives_back_its_key_text() {
        let values = "p:qv:";
        assert_eq!(
            key_text(values, "p:qv:{q:user}:user:42:orders"),
            Some("user:42:orders")
        );
        assert_eq!(key_text(values, "p:qv:{q:a%7Db}:a}b:1"), Some("a}b:1"));
        assert_eq!(key_text(values, "p:qk:{q:user}:user:1"), None);
        assert_eq!(key_text(values, "p:qv:{q:user}"), None);
    }
}
