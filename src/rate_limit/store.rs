//! Where quotas are counted: the store trait and the in-memory store.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use hashbrown::HashTable;

use super::key::Key;
use super::quota::{Decision, Quota, admit, allowed, denied, gcra};
use crate::clock::{Clock, Elapsed};

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

/// A store failed (a Redis store, say); the layer then lets the request
/// through (fails open). A store with a policy of its own answers instead
/// of failing: `RedisStore` applies its `FailurePolicy`.
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

    /// Counts at once, for a store that can answer without waiting (the
    /// memory store always can): the layer then decides inside `call`,
    /// with no future of its own to keep. `None` (the default) sends it
    /// through [`check`](Self::check).
    fn check_at_once(
        &self,
        policy: &PolicyRef,
        key: &Key,
        cost: u32,
    ) -> Option<Result<Decision, StoreError>> {
        let _ = (policy, key, cost);
        None
    }
}

/// Shards of the key table: enough that two threads rarely meet.
const SHARDS: usize = 16;

/// Default cap on tracked keys.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// One of 2^64's odd constants with well-spread bits (the golden ratio's).
const MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// Multiplies and folds the 128-bit product: every input bit reaches every
/// output bit, low and high, in one multiply.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

/// A key as the tables store it: addresses as integers (IPv6 in two
/// words, so an entry stays 8-byte aligned), text borrowed.
#[derive(Clone, Copy)]
enum Slot<'k> {
    V4(u32),
    V6(u64, u64),
    Text(&'k str),
    Global,
}

impl<'k> Slot<'k> {
    fn of(key: &'k Key) -> Self {
        match key {
            Key::Ip(IpAddr::V4(v4)) => Self::V4(u32::from(*v4)),
            Key::Ip(IpAddr::V6(v6)) => {
                let b = u128::from(*v6);
                Self::V6((b >> 64) as u64, b as u64)
            }
            Key::Text(t) => Self::Text(t),
            Key::Global => Self::Global,
        }
    }
}

/// The hashes of one store: a seeded multiply-fold for addresses (a client
/// can't pick its address freely, and IPv6 is grouped by /64), SipHash
/// under a random key for text (API keys, which a client does pick), as
/// `HashMap` does by default. Each policy hashes under its own seed.
struct Hashing {
    seed: u64,
    sip: RandomState,
}

impl Hashing {
    fn new() -> Self {
        let sip = RandomState::new();
        Self {
            seed: sip.hash_one(0xfeed_u64),
            sip,
        }
    }

    #[inline]
    fn seed(&self, policy: u16) -> u64 {
        self.seed ^ u64::from(policy).wrapping_mul(MUL)
    }

    #[inline]
    fn v4(seed: u64, ip: u32) -> u64 {
        fold(u64::from(ip) ^ seed, MUL)
    }

    #[inline]
    fn v6(seed: u64, hi: u64, lo: u64) -> u64 {
        fold(fold(hi ^ seed, MUL) ^ lo, MUL ^ seed)
    }

    fn text(&self, seed: u64, text: &str) -> u64 {
        self.sip.hash_one(text) ^ seed
    }

    fn hash(&self, seed: u64, slot: Slot<'_>) -> u64 {
        match slot {
            Slot::V4(ip) => Self::v4(seed, ip),
            Slot::V6(hi, lo) => Self::v6(seed, hi, lo),
            Slot::Text(t) => self.text(seed, t),
            Slot::Global => seed,
        }
    }
}

/// Which shard a hash lives in: bits the tables don't use (they take the
/// low bits for the position, the top seven for the tag).
#[inline]
fn shard_index(hash: u64) -> usize {
    (hash >> 52) as usize % SHARDS
}

/// One policy's keys in one shard. IPv4 entries take 16 bytes (plus one
/// control byte), IPv6 24, text 24 plus the text.
#[derive(Default)]
struct Tables {
    v4: HashTable<(u32, AtomicU64)>,
    v6: HashTable<(u64, u64, AtomicU64)>,
    text: HashTable<(Box<str>, AtomicU64)>,
    /// The `Global` key's TAT (0: not tracked).
    global: AtomicU64,
}

impl Tables {
    fn len(&self) -> usize {
        self.v4.len()
            + self.v6.len()
            + self.text.len()
            + usize::from(self.global.load(Ordering::Relaxed) != 0)
    }

    #[inline]
    fn find(&self, hash: u64, slot: Slot<'_>) -> Option<&AtomicU64> {
        match slot {
            Slot::V4(ip) => self.v4.find(hash, |e| e.0 == ip).map(|e| &e.1),
            Slot::V6(hi, lo) => self.v6.find(hash, |e| e.0 == hi && e.1 == lo).map(|e| &e.2),
            Slot::Text(t) => self.text.find(hash, |e| &*e.0 == t).map(|e| &e.1),
            Slot::Global => Some(&self.global),
        }
    }

    /// The key's cell, made (TAT 0) if new.
    fn get_or_insert(
        &mut self,
        hashing: &Hashing,
        seed: u64,
        hash: u64,
        slot: Slot<'_>,
    ) -> &AtomicU64 {
        match slot {
            Slot::V4(ip) => {
                let e = self
                    .v4
                    .entry(hash, |e| e.0 == ip, |e| Hashing::v4(seed, e.0))
                    .or_insert_with(|| (ip, AtomicU64::new(0)));
                &e.into_mut().1
            }
            Slot::V6(hi, lo) => {
                let e = self
                    .v6
                    .entry(
                        hash,
                        |e| e.0 == hi && e.1 == lo,
                        |e| Hashing::v6(seed, e.0, e.1),
                    )
                    .or_insert_with(|| (hi, lo, AtomicU64::new(0)));
                &e.into_mut().2
            }
            Slot::Text(t) => {
                let e = self
                    .text
                    .entry(hash, |e| &*e.0 == t, |e| hashing.text(seed, &e.0))
                    .or_insert_with(|| (t.into(), AtomicU64::new(0)));
                &e.into_mut().1
            }
            Slot::Global => &self.global,
        }
    }

    /// Drops the keys whose TAT is below `threshold`, and up to `ties` of
    /// those whose TAT equals it (counted down as they go).
    fn forget(&mut self, threshold: u64, ties: &mut usize) {
        let mut keep = |tat: &AtomicU64| {
            let tat = tat.load(Ordering::Relaxed);
            if tat == threshold && *ties > 0 {
                *ties -= 1;
                return false;
            }
            tat > threshold || (tat == threshold && tat != 0)
        };
        self.v4.retain(|e| keep(&e.1));
        self.v6.retain(|e| keep(&e.2));
        self.text.retain(|e| keep(&e.1));
        if !keep(&self.global) {
            self.global.store(0, Ordering::Relaxed);
        }
    }

    fn tats(&self, into: &mut Vec<u64>) {
        let tat = |t: &AtomicU64| t.load(Ordering::Relaxed);
        into.extend(self.v4.iter().map(|e| tat(&e.1)));
        into.extend(self.v6.iter().map(|e| tat(&e.2)));
        into.extend(self.text.iter().map(|e| tat(&e.1)));
        let g = tat(&self.global);
        if g != 0 {
            into.push(g);
        }
    }
}

/// A shard: a lock over its policies' tables, alone on its cache lines so
/// threads working in two shards don't slow each other down.
#[repr(align(128))]
struct Shard {
    tables: RwLock<Vec<Tables>>,
}

/// GCRA in memory: one atomic word (the theoretical arrival time) per key,
/// in sharded tables. Checking an existing key takes a shared read lock and
/// one compare-and-swap; only a new key takes its shard's write lock. An
/// IPv4 key costs about 40 bytes (benches/rate_limit.rs measures it).
///
/// At most `max_keys` keys are tracked. When a shard is full, keys whose
/// quota is whole again are dropped (with GCRA such a key is exactly a key
/// never seen, so nothing is lost); if that frees too little, the least
/// constrained sixteenth of the shard goes, so a flood of new keys costs a
/// scan per sixteenth of a shard, not per key. No cleanup call to remember.
pub struct MemoryStore {
    shards: Box<[Shard]>,
    hashing: Hashing,
    per_shard: usize,
    time: Elapsed,
    /// Times a full shard was scanned to make room.
    #[cfg(test)]
    scans: std::sync::atomic::AtomicUsize,
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
        Self::with_max_keys(DEFAULT_MAX_KEYS)
    }

    /// A store for at most `max_keys` keys (rounded up to a whole number
    /// per shard).
    ///
    /// # Panics
    ///
    /// If `max_keys` is 0: such a store could track no client.
    pub fn with_max_keys(max_keys: usize) -> Self {
        Self::build(max_keys, Elapsed::counter())
    }

    /// A store on `clock` (tests move time with it).
    ///
    /// # Panics
    ///
    /// If `max_keys` is 0.
    pub fn with_clock<C: Clock>(max_keys: usize, clock: C) -> Self {
        Self::build(max_keys, Elapsed::given(Some(Arc::new(clock))))
    }

    fn build(max_keys: usize, time: Elapsed) -> Self {
        assert!(
            max_keys > 0,
            "rate_limit::MemoryStore: max_keys is 0, so no client could be tracked; give the \
             number of keys to keep (the default is {DEFAULT_MAX_KEYS})"
        );
        Self {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    tables: RwLock::new(Vec::new()),
                })
                .collect(),
            hashing: Hashing::new(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            time,
            #[cfg(test)]
            scans: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.tables
                    .read()
                    .map_or(0, |t| t.iter().map(Tables::len).sum::<usize>())
            })
            .sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Nanoseconds on the store's clock; never 0, which means "new key".
    #[inline]
    fn now(&self) -> u64 {
        self.time.now().saturating_add(1)
    }

    #[cfg(test)]
    fn shard_of(&self, policy: u16, key: &Key) -> usize {
        shard_index(self.hashing.hash(self.hashing.seed(policy), Slot::of(key)))
    }

    /// Peeks synchronously (what [`RateLimitStore::peek`] does).
    pub fn peek_now(&self, policy: &PolicyRef, key: &Key, cost: u32) -> Decision {
        let slot = Slot::of(key);
        let hash = self.hashing.hash(self.hashing.seed(policy.index), slot);
        let now = self.now();
        let tat = self.shards[shard_index(hash)]
            .tables
            .read()
            .ok()
            .and_then(|t| {
                t.get(usize::from(policy.index))
                    .and_then(|t| t.find(hash, slot))
                    .map(|c| c.load(Ordering::Acquire))
            })
            .unwrap_or(0);
        gcra(tat, now, &policy.quota, cost).0
    }

    /// Checks synchronously (what [`RateLimitStore::check`] does).
    #[inline]
    pub fn check_now(&self, policy: &PolicyRef, key: &Key, cost: u32) -> Decision {
        let slot = Slot::of(key);
        let seed = self.hashing.seed(policy.index);
        let hash = self.hashing.hash(seed, slot);
        let shard = &self.shards[shard_index(hash)];
        let p = usize::from(policy.index);
        let now = self.now();
        if let Ok(tables) = shard.tables.read() {
            if let Some(cell) = tables.get(p).and_then(|t| t.find(hash, slot)) {
                return step(cell, now, &policy.quota, cost);
            }
        }
        self.check_new(shard, p, seed, hash, slot, now, policy, cost)
    }

    /// The slow path of [`check_now`](Self::check_now): the key is new to
    /// its shard (or the policy to the store).
    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn check_new(
        &self,
        shard: &Shard,
        p: usize,
        seed: u64,
        hash: u64,
        slot: Slot<'_>,
        now: u64,
        policy: &PolicyRef,
        cost: u32,
    ) -> Decision {
        let Ok(mut tables) = shard.tables.write() else {
            // A poisoned shard: judge as a new key rather than fail.
            return gcra(0, now, &policy.quota, cost).0;
        };
        if tables.len() <= p {
            tables.resize_with(p + 1, Tables::default);
        }
        if tables[p].find(hash, slot).is_none() {
            let total: usize = tables.iter().map(Tables::len).sum();
            if total >= self.per_shard {
                #[cfg(test)]
                self.scans.fetch_add(1, Ordering::Relaxed);
                make_room(&mut tables, now, self.per_shard);
            }
        }
        let cell = tables[p].get_or_insert(&self.hashing, seed, hash, slot);
        step(cell, now, &policy.quota, cost)
    }
}

/// One GCRA step on an atomic TAT (compare-and-swap until it sticks).
#[inline]
fn step(cell: &AtomicU64, now: u64, quota: &Quota, cost: u32) -> Decision {
    let mut tat = cell.load(Ordering::Acquire);
    loop {
        let Some(new_tat) = admit(tat, now, quota, cost) else {
            return denied(tat, now, quota, cost);
        };
        match cell.compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return allowed(new_tat, now, quota),
            Err(actual) => tat = actual,
        }
    }
}

/// Frees a full shard down to 15/16 of `cap`: keys whose quota is whole
/// first (forgetting them changes nothing), then the least constrained.
fn make_room(tables: &mut [Tables], now: u64, cap: usize) {
    let target = cap - cap / 16 - 1;
    for t in tables.iter_mut() {
        // TAT at most `now`: whole again.
        t.forget(now.saturating_add(1), &mut 0);
    }
    let total: usize = tables.iter().map(Tables::len).sum();
    if total <= target {
        return;
    }
    let mut tats = Vec::with_capacity(total);
    for t in tables.iter() {
        t.tats(&mut tats);
    }
    // Exactly the surplus goes: every key below the surplus-th smallest
    // TAT, and as many keys at that TAT as it takes.
    let surplus = total - target;
    let (below, threshold, _) = tats.select_nth_unstable(surplus - 1);
    let threshold = *threshold;
    let mut ties = surplus - below.iter().filter(|t| **t < threshold).count();
    for t in tables.iter_mut() {
        t.forget(threshold, &mut ties);
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

    #[inline]
    fn check_at_once(
        &self,
        policy: &PolicyRef,
        key: &Key,
        cost: u32,
    ) -> Option<Result<Decision, StoreError>> {
        Some(Ok(self.check_now(policy, key, cost)))
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

    #[inline]
    fn check_at_once(
        &self,
        policy: &PolicyRef,
        key: &Key,
        cost: u32,
    ) -> Option<Result<Decision, StoreError>> {
        (**self).check_at_once(policy, key, cost)
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

    #[test]
    fn address_families_global_and_text_are_apart() {
        let store = MemoryStore::with_clock(1000, ManualClock::new());
        let p = policy(Quota::per_minute(1));
        let keys = [
            Key::Ip("10.0.0.1".parse().unwrap()),
            Key::Ip("::a00:1".parse().unwrap()),
            Key::Ip("2001:db8::1".parse().unwrap()),
            Key::Ip("2001:db8::2".parse().unwrap()),
            Key::Text("10.0.0.1".into()),
            Key::Global,
        ];
        for k in &keys {
            assert!(store.check_now(&p, k, 1).allowed, "{k} is new");
        }
        for k in &keys {
            assert!(!store.check_now(&p, k, 1).allowed, "{k} is spent");
        }
        assert_eq!(store.len(), keys.len());
    }

    #[test]
    fn the_counter_clock_moves() {
        // The default store reads the counter clock: a spent quota comes
        // back after its interval, not before.
        let store = MemoryStore::new();
        let p = policy(Quota::per_second(20).with_burst(1));
        assert!(store.check_now(&p, &Key::Global, 1).allowed);
        let d = store.check_now(&p, &Key::Global, 1);
        assert!(!d.allowed);
        assert!(d.retry_after > Duration::ZERO && d.retry_after <= Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(60));
        assert!(store.check_now(&p, &Key::Global, 1).allowed);
    }

    #[test]
    fn a_flood_of_limited_keys_stays_bounded_and_cheap() {
        // Every key is still constrained (frozen clock), so nothing is
        // whole: the least constrained go, a sixteenth of a shard at a time.
        let store = MemoryStore::with_clock(1600, ManualClock::new());
        let p = policy(Quota::per_hour(10));
        for i in 0..200_000u32 {
            let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::from(i));
            store.check_now(&p, &Key::Ip(ip), 1);
        }
        assert!(store.len() <= 1600, "bounded: {}", store.len());
        assert!(store.len() >= 1200, "not emptied: {}", store.len());
        // Each scan frees a sixteenth of a shard (100 keys here): about
        // 200,000 / 7 scans, not one per new key.
        let scans = store.scans.load(Ordering::Relaxed);
        assert!(scans < 30_000, "{scans} scans");
        // The most constrained key survives the flood.
        let hot = Key::Text("hot".into());
        for _ in 0..10 {
            store.check_now(&p, &hot, 1);
        }
        for i in 0..10_000u32 {
            let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::from(1_000_000 + i));
            store.check_now(&p, &Key::Ip(ip), 1);
        }
        assert!(!store.check_now(&p, &hot, 1).allowed, "still limited");
    }
}
