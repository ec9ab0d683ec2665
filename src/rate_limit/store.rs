//! Where quotas are counted: the store trait and the in-memory store.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use super::key::Key;
use super::quota::{Decision, Quota, gcra};
use crate::clock::{Clock, SystemClock};

/// A policy as a store sees it.
#[derive(Debug, Clone)]
pub struct PolicyRef {
    /// Index of the policy in its layer (stable for the layer's life).
    pub index: u16,
    /// The policy's name (`RateLimit-Policy`'s key).
    pub name: Arc<str>,
    /// Its quota.
    pub quota: Quota,
}

/// A store failed (a Redis store, say); the layer applies its failure
/// policy.
#[derive(Debug)]
pub struct StoreError(pub(crate) String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rate-limit store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Counts requests against quotas. The memory store answers at once; a
/// shared store (Redis) answers asynchronously.
pub trait RateLimitStore: Send + Sync + 'static {
    /// What [`check`](Self::check) returns.
    type Future: Future<Output = Result<Decision, StoreError>> + Send + 'static;

    /// Counts `cost` requests of `key` under `policy` and says whether they
    /// may go on.
    fn check(&self, policy: &PolicyRef, key: &Key, cost: u32) -> Self::Future;

    /// Says whether `cost` requests would go on, without counting them.
    fn peek(&self, policy: &PolicyRef, key: &Key, cost: u32) -> Self::Future;
}

/// Shards of the key table: enough that two threads rarely meet.
const SHARDS: usize = 16;

/// Default cap on tracked keys.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

type Table = HashMap<Key, AtomicU64, KeyHasherBuilder>;

/// Hashes keys for the tables: addresses with a seeded multiply-mix (a
/// client can't pick its address freely, and IPv6 is grouped by /64), text
/// keys (API keys, which a client does pick) with SipHash under a random
/// key, as `HashMap` does by default.
#[derive(Clone)]
struct KeyHasherBuilder {
    sip: RandomState,
    seed: u64,
}

impl BuildHasher for KeyHasherBuilder {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            sip: None,
            builder: self.sip.clone(),
            acc: self.seed,
        }
    }
}

struct KeyHasher {
    sip: Option<std::collections::hash_map::DefaultHasher>,
    builder: RandomState,
    acc: u64,
}

impl KeyHasher {
    #[inline]
    fn mix(&mut self, w: u64) {
        let x = (self.acc ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.acc = x ^ (x >> 29);
    }
}

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let builder = &self.builder;
        self.sip
            .get_or_insert_with(|| builder.build_hasher())
            .write(bytes);
    }
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    fn write_u128(&mut self, i: u128) {
        self.mix(i as u64);
        self.mix((i >> 64) as u64);
    }
    fn finish(&self) -> u64 {
        match &self.sip {
            Some(s) => s.finish() ^ self.acc,
            None => self.acc,
        }
    }
}

/// One shard: a table per policy (by policy index), so a lookup borrows the
/// key instead of building a (policy, key) pair.
type Shard = Vec<Table>;

/// GCRA in memory: one atomic word (the theoretical arrival time) per key,
/// in sharded tables. Checking an existing key takes a shared read lock and
/// one compare-and-swap; only a new key takes its shard's write lock.
///
/// At most `max_keys` keys are tracked. When a shard is full, keys whose
/// quota is whole again are dropped (with GCRA such a key is exactly a key
/// never seen, so nothing is lost); if none is, the least constrained key
/// goes. No cleanup call to remember.
pub struct MemoryStore {
    shards: Box<[RwLock<Shard>]>,
    table_hasher: KeyHasherBuilder,
    per_shard: usize,
    clock: Arc<dyn Clock>,
    start: Instant,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store for at most [`DEFAULT_MAX_KEYS`] keys.
    pub fn new() -> Self {
        Self::with_clock(DEFAULT_MAX_KEYS, SystemClock)
    }

    /// A store for at most `max_keys` keys.
    pub fn with_max_keys(max_keys: usize) -> Self {
        Self::with_clock(max_keys, SystemClock)
    }

    /// A store on `clock` (tests move time with it).
    pub fn with_clock<C: Clock>(max_keys: usize, clock: C) -> Self {
        let start = clock.now();
        let sip = RandomState::new();
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(Vec::new())).collect(),
            table_hasher: KeyHasherBuilder {
                seed: sip.hash_one(0xfeed_u64),
                sip,
            },
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            clock: Arc::new(clock),
            start,
        }
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().map_or(0, |t| t.len()))
            .sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Nanoseconds on the store's clock; never 0, which means "new key".
    fn now(&self) -> u64 {
        let ns = self
            .clock
            .now()
            .saturating_duration_since(self.start)
            .as_nanos();
        u64::try_from(ns).unwrap_or(u64::MAX - 1).saturating_add(1)
    }

    /// Which shard a key lives in: a seeded multiply over the address bits
    /// for IP keys (cheaper than going through the hasher), the table's own
    /// hash for text keys.
    fn shard_of(&self, policy: u16, key: &Key) -> usize {
        let bits = match key {
            Key::Ip(IpAddr::V4(v4)) => u64::from(u32::from(*v4)),
            Key::Ip(IpAddr::V6(v6)) => {
                let b = u128::from(*v6);
                (b as u64) ^ ((b >> 64) as u64)
            }
            Key::Text(_) => self.table_hasher.hash_one(key),
            Key::Global => 0,
        };
        let h = (bits ^ u64::from(policy).rotate_left(32)).wrapping_mul(self.table_hasher.seed | 1);
        (h >> 59) as usize % SHARDS
    }

    /// Peeks synchronously (what [`RateLimitStore::peek`] does).
    pub fn peek_now(&self, policy: &PolicyRef, key: &Key, cost: u32) -> Decision {
        let shard = &self.shards[self.shard_of(policy.index, key)];
        let now = self.now();
        let tat = shard
            .read()
            .ok()
            .and_then(|t| {
                t.get(usize::from(policy.index))
                    .and_then(|t| t.get(key))
                    .map(|c| c.load(Ordering::Acquire))
            })
            .unwrap_or(0);
        gcra(tat, now, &policy.quota, cost).0
    }

    /// Checks synchronously (what [`RateLimitStore::check`] does).
    pub fn check_now(&self, policy: &PolicyRef, key: &Key, cost: u32) -> Decision {
        let shard = &self.shards[self.shard_of(policy.index, key)];
        let p = usize::from(policy.index);
        let now = self.now();
        if let Ok(tables) = shard.read() {
            if let Some(cell) = tables.get(p).and_then(|t| t.get(key)) {
                return step(cell, now, &policy.quota, cost);
            }
        }
        let Ok(mut tables) = shard.write() else {
            // A poisoned shard: judge as a new key rather than fail.
            return gcra(0, now, &policy.quota, cost).0;
        };
        if tables.len() <= p {
            let builder = &self.table_hasher;
            tables.resize_with(p + 1, || HashMap::with_hasher(builder.clone()));
        }
        let total: usize = tables.iter().map(HashMap::len).sum();
        let table = &mut tables[p];
        if !table.contains_key(key) && total >= self.per_shard {
            evict(
                table,
                now,
                self.per_shard.saturating_sub(total - table.len()).max(1),
            );
        }
        let cell = table
            .entry(key.clone())
            .or_insert_with(|| AtomicU64::new(0));
        step(cell, now, &policy.quota, cost)
    }
}

/// One GCRA step on an atomic TAT (compare-and-swap until it sticks).
fn step(cell: &AtomicU64, now: u64, quota: &Quota, cost: u32) -> Decision {
    let mut tat = cell.load(Ordering::Acquire);
    loop {
        let (decision, new_tat) = gcra(tat, now, quota, cost);
        if !decision.allowed {
            return decision;
        }
        match cell.compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return decision,
            Err(actual) => tat = actual,
        }
    }
}

fn evict(table: &mut Table, now: u64, cap: usize) {
    // Whole quotas are free to forget.
    table.retain(|_, tat| tat.load(Ordering::Relaxed) > now);
    if table.len() < cap {
        return;
    }
    // Still full: forget the key closest to whole.
    if let Some(k) = table
        .iter()
        .min_by_key(|(_, t)| t.load(Ordering::Relaxed))
        .map(|(k, _)| k.clone())
    {
        table.remove(&k);
    }
}

impl RateLimitStore for MemoryStore {
    type Future = std::future::Ready<Result<Decision, StoreError>>;

    fn check(&self, policy: &PolicyRef, key: &Key, cost: u32) -> Self::Future {
        std::future::ready(Ok(self.check_now(policy, key, cost)))
    }

    fn peek(&self, policy: &PolicyRef, key: &Key, cost: u32) -> Self::Future {
        std::future::ready(Ok(self.peek_now(policy, key, cost)))
    }
}

impl<S: RateLimitStore> RateLimitStore for Arc<S> {
    type Future = S::Future;

    fn check(&self, policy: &PolicyRef, key: &Key, cost: u32) -> Self::Future {
        (**self).check(policy, key, cost)
    }

    fn peek(&self, policy: &PolicyRef, key: &Key, cost: u32) -> Self::Future {
        (**self).peek(policy, key, cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::clock::ManualClock;

    fn policy(q: Quota) -> PolicyRef {
        PolicyRef {
            index: 0,
            name: "p".into(),
            quota: q,
        }
    }

    #[test]
    fn keys_and_policies_are_separate() {
        let store = MemoryStore::new();
        let p = policy(Quota::per_minute(2));
        let p2 = PolicyRef {
            index: 1,
            ..policy(Quota::per_minute(2))
        };
        let a = Key::Text("a".into());
        assert!(store.check_now(&p, &a, 1).allowed);
        assert!(store.check_now(&p, &a, 1).allowed);
        assert!(!store.check_now(&p, &a, 1).allowed);
        assert!(store.check_now(&p, &Key::Text("b".into()), 1).allowed);
        assert!(
            store.check_now(&p2, &a, 1).allowed,
            "another policy has its own count"
        );
    }

    #[test]
    fn keys_spread_over_the_shards() {
        let store = MemoryStore::new();
        let mut per_shard = [0usize; SHARDS];
        for i in 0..1600u32 {
            let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0A00_0000 + i));
            per_shard[store.shard_of(0, &Key::Ip(ip))] += 1;
            per_shard[store.shard_of(1, &Key::Text(i.to_string().into()))] += 1;
        }
        // 3,200 keys over 16 shards: 200 each on average; none starved or flooded.
        assert!(
            per_shard.iter().all(|n| (100..=300).contains(n)),
            "{per_shard:?}"
        );
    }

    #[test]
    fn peeking_does_not_count() {
        let store = MemoryStore::new();
        let p = policy(Quota::per_minute(1));
        for _ in 0..5 {
            assert!(store.peek_now(&p, &Key::Global, 1).allowed);
        }
        assert!(store.check_now(&p, &Key::Global, 1).allowed);
        assert!(!store.peek_now(&p, &Key::Global, 1).allowed);
        assert!(!store.check_now(&p, &Key::Global, 1).allowed);
    }

    #[test]
    fn the_key_cap_evicts_idle_keys_first() {
        let clock = ManualClock::new();
        let store = MemoryStore::with_clock(64, clock.clone());
        let p = policy(Quota::per_second(1));
        for i in 0..10_000u32 {
            store.check_now(&p, &Key::Text(i.to_string().into()), 1);
            if i % 100 == 0 {
                clock.advance(Duration::from_millis(300));
            }
        }
        assert!(store.len() <= 64 + SHARDS, "bounded: {}", store.len());
        // A key that is still limited survives while idle ones go.
        let hot = Key::Text("hot".into());
        assert!(store.check_now(&p, &hot, 1).allowed);
        assert!(!store.check_now(&p, &hot, 1).allowed);
    }

    #[test]
    fn threads_share_one_count() {
        // A frozen clock: no token comes back while the threads run.
        let store = Arc::new(MemoryStore::with_clock(1000, ManualClock::new()));
        let p = policy(Quota::per_minute(1000));
        let allowed: usize = (0..4)
            .map(|_| {
                let (store, p) = (store.clone(), p.clone());
                std::thread::spawn(move || {
                    (0..500)
                        .filter(|_| store.check_now(&p, &Key::Global, 1).allowed)
                        .count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(allowed, 1000, "exactly the burst, no lost updates");
    }
}
