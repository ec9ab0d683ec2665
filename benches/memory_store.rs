//! The memory cache store's map: moka (the store until issue 21's fourth
//! part) beside quick_cache (the store now, with std's `RwLock`, as the
//! crate builds it), holding entries shaped as
//! `MemoryStore` holds them (an `Arc` of variants, an expiry, a weight)
//! under keys hashed as `CacheKey` is (foldhash, hash computed once),
//! bounded by the same 64 MiB weight budget:
//!
//! - an insert into a full store (a lookup that misses, then the insert,
//!   which evicts): every cache miss of distinct URLs once the budget is
//!   spent;
//! - a hit on one key, from one thread and from two at once (time per
//!   lookup per thread).
//!
//! These are the maps' own operations, the floor of the store's: its put
//! goes through quick_cache's `entry` (a placeholder, a second write lock)
//! to merge a URL's variants in one step, and reads the clock. The stack's
//! instruction counts (`benches/callgrind.sh`) measure the store as used.
//!
//! Run: `cargo bench --bench memory_store`.
#![allow(missing_docs)]

mod common;

use std::hash::{BuildHasher, Hash, Hasher};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

const BUDGET: u64 = 64 * 1024 * 1024;
/// What a small JSON item weighs in the store (body, fields, bookkeeping).
const WEIGHT: u32 = 1200;

#[derive(Clone, PartialEq, Eq)]
struct Key {
    text: Box<str>,
    hash: u64,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash);
    }
}

/// Held, never read: the entry's shape as the store holds it.
#[allow(dead_code)]
#[derive(Clone)]
struct Slot {
    variants: Arc<[Arc<Vec<u8>>]>,
    expires_at: Instant,
    weight: u32,
}

#[derive(Clone)]
struct SlotWeight;

impl quick_cache::Weighter<Key, Slot> for SlotWeight {
    fn weight(&self, _: &Key, s: &Slot) -> u64 {
        u64::from(s.weight)
    }
}

type Moka = moka::sync::Cache<Key, Slot, foldhash::fast::RandomState>;
type Quick = quick_cache::sync::Cache<Key, Slot, SlotWeight, foldhash::fast::RandomState>;

struct Keys {
    seed: foldhash::fast::RandomState,
    next: u64,
}

impl Keys {
    fn take(&mut self, n: u64) -> Vec<Key> {
        let keys = (self.next..self.next + n)
            .map(|i| {
                let text: Box<str> = format!("bench.test/api/v1/items/{}?r={i}", i % 55 + 1).into();
                let hash = self.seed.hash_one(&*text);
                Key { text, hash }
            })
            .collect();
        self.next += n;
        keys
    }
}

fn slot() -> Slot {
    Slot {
        variants: Arc::from([Arc::new(vec![b'x'; 300])]),
        expires_at: Instant::now() + Duration::from_secs(600),
        weight: WEIGHT,
    }
}

fn moka() -> Moka {
    moka::sync::Cache::builder()
        .max_capacity(BUDGET)
        .weigher(|_: &Key, s: &Slot| s.weight)
        .build_with_hasher(foldhash::fast::RandomState::default())
}

fn quick() -> Quick {
    let mut options = quick_cache::OptionsBuilder::new();
    options
        .shards(8)
        .estimated_items_capacity((BUDGET / 4096) as usize)
        .weight_capacity(BUDGET);
    Quick::with_options(
        options.build().unwrap(),
        SlotWeight,
        foldhash::fast::RandomState::default(),
        Default::default(),
    )
}

/// Both stores still hold the hot key.
fn resident(m: &Moka, q: &Quick, hot: &Key) {
    assert!(m.contains_key(hot), "moka dropped the hot key");
    assert!(q.contains_key(hot), "quick_cache dropped the hot key");
}

fn bench(c: &mut Criterion) {
    let mut keys = Keys {
        seed: foldhash::fast::RandomState::default(),
        next: 0,
    };
    let full = BUDGET / u64::from(WEIGHT) * 2;
    let (m, q) = (moka(), quick());
    for k in keys.take(full) {
        m.insert(k.clone(), slot());
        q.insert(k, slot());
    }
    m.run_pending_tasks();
    assert!(m.weighted_size() <= BUDGET && q.weight() <= BUDGET);
    let hot = keys.take(1).remove(0);
    // moka admits a new key into a full store only once it has been
    // asked for more often than what it would evict (TinyLFU).
    for _ in 0..16 {
        m.get(&hot);
    }
    m.run_pending_tasks();
    m.insert(hot.clone(), slot());
    q.insert(hot.clone(), slot());
    m.run_pending_tasks();
    resident(&m, &q, &hot);

    let mut group = c.benchmark_group("memory-store");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    // Hits first: the insert benches push millions of new keys through
    // both stores, after which the hot key may be gone.
    group.bench_function("moka hit", |b| b.iter(|| black_box(m.get(&hot))));
    group.bench_function("quick_cache hit", |b| b.iter(|| black_box(q.get(&hot))));
    resident(&m, &q, &hot);
    group.bench_function("moka hit, 2 threads", |b| {
        b.iter_custom(|iters| {
            common::parallel(2, |_| {
                let (m, hot) = (&m, &hot);
                move || {
                    for _ in 0..iters {
                        black_box(m.get(hot));
                    }
                }
            })
        })
    });
    group.bench_function("quick_cache hit, 2 threads", |b| {
        b.iter_custom(|iters| {
            common::parallel(2, |_| {
                let (q, hot) = (&q, &hot);
                move || {
                    for _ in 0..iters {
                        black_box(q.get(hot));
                    }
                }
            })
        })
    });
    // The hits above must have been hits.
    resident(&m, &q, &hot);
    group.bench_function("moka insert into a full store", |b| {
        b.iter_custom(|iters| {
            let batch = keys.take(iters);
            let start = Instant::now();
            for k in batch {
                if m.get(&k).is_none() {
                    m.insert(k, slot());
                }
            }
            start.elapsed()
        })
    });
    group.bench_function("quick_cache insert into a full store", |b| {
        b.iter_custom(|iters| {
            let batch = keys.take(iters);
            let start = Instant::now();
            for k in batch {
                if q.get(&k).is_none() {
                    q.insert(k, slot());
                }
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
