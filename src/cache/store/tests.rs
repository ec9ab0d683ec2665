//! The memory store: expiry, the budget, heavy entries, purges, and
//! variants merged in one step under concurrent puts.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

use super::*;
use crate::cache::entry::tests::headers as req;
use crate::cache::vary::{Encodings, RequestVary, VaryKey};

/// A stored response of `body_len` bytes, varying on `Accept-Encoding`,
/// fetched with `accept_encoding`, tagged `tag` when given.
fn response(body_len: usize, accept_encoding: &str, tag: Option<&str>) -> Arc<CachedResponse> {
    let mut h = HeaderMap::new();
    h.insert("cache-control", HeaderValue::from_static("max-age=60"));
    h.insert("vary", HeaderValue::from_static("accept-encoding"));
    let request = req(&[("accept-encoding", accept_encoding)]);
    let vary = VaryKey::build(&h, &RequestVary::new(&request, &Encodings::Origin), &[])
        .expect("a plain Vary");
    let now = std::time::SystemTime::now();
    Arc::new(CachedResponse::new(
        StatusCode::OK,
        h,
        Bytes::from(vec![b'x'; body_len]),
        None,
        (now, now),
        vary,
        tag.map(|t| vec![t.into()]).unwrap_or_default(),
        &Default::default(),
    ))
}

fn get(store: &MemoryStore, key: &CacheKey) -> Option<Variants> {
    store
        .get(key)
        .take_ready()
        .expect("the memory store answers at once")
        .expect("no error")
}

fn put(store: &MemoryStore, key: &CacheKey, r: &Arc<CachedResponse>, ttl: Duration) {
    let _ = store.put(key.clone(), Arc::clone(r), ttl).take_ready();
}

const MINUTE: Duration = Duration::from_secs(60);

/// Stores `r` under `key` for 1 ms, and lets that pass.
fn put_expired(store: &MemoryStore, key: &CacheKey, r: &Arc<CachedResponse>) {
    put(store, key, r, Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(20));
}

#[test]
fn an_entry_whose_time_is_up_is_not_returned_and_goes() {
    let store = MemoryStore::new(1 << 20);
    let key = CacheKey::from_text("example.com/a");
    put_expired(&store, &key, &response(10, "gzip", None));
    assert!(get(&store, &key).is_none());
    assert_eq!(store.usage().entries, 0, "the lookup dropped it");
}

#[test]
fn sync_drops_what_is_past_its_time_and_keeps_the_rest() {
    let store = MemoryStore::new(1 << 20);
    let (old, live) = (
        CacheKey::from_text("example.com/old"),
        CacheKey::from_text("example.com/live"),
    );
    put(&store, &live, &response(10, "gzip", None), MINUTE);
    put_expired(&store, &old, &response(10, "gzip", None));
    assert_eq!(store.usage().entries, 2, "counted until dropped");
    store.sync();
    assert_eq!(store.usage().entries, 1);
    assert!(get(&store, &live).is_some());
}

#[test]
fn a_put_over_an_expired_entry_keeps_none_of_its_variants() {
    let store = MemoryStore::new(1 << 20);
    let key = CacheKey::from_text("example.com/v");
    put_expired(&store, &key, &response(10, "gzip", None));
    let plain = response(10, "identity", None);
    put(&store, &key, &plain, MINUTE);
    let now = get(&store, &key).expect("stored");
    assert_eq!(now.len(), 1);
    assert!(Arc::ptr_eq(&now[0], &plain));
}

#[test]
fn the_budget_holds_and_evictions_are_counted() {
    let budget = 256 * 1024;
    let store = MemoryStore::new(budget);
    for i in 0..200 {
        let key = CacheKey::from_text(&format!("example.com/{i}"));
        put(&store, &key, &response(10_000, "gzip", None), MINUTE);
    }
    let usage = store.usage();
    assert!(usage.bytes <= budget, "{usage:?}");
    assert!(usage.entries > 5 && usage.entries < 30, "{usage:?}");
    assert_eq!(usage.evictions, 200 - usage.entries, "{usage:?}");
}

/// A response too heavy for a shard is refused out loud (the put fails,
/// saying why), and the copy it would have replaced goes with it.
#[test]
fn a_response_too_heavy_for_the_store_is_refused_with_an_error() {
    let store = MemoryStore::new(64 * 1024);
    let key = CacheKey::from_text("example.com/big");
    put(&store, &key, &response(10, "gzip", None), MINUTE);
    let refused = store
        .put(key.clone(), response(100_000, "gzip", None), MINUTE)
        .take_ready()
        .expect("at once");
    let message = refused.expect_err("too heavy").to_string();
    assert!(message.contains("max_entry_size"), "{message}");
    assert!(get(&store, &key).is_none(), "the old copy went too");
    let usage = store.usage();
    assert_eq!((usage.entries, usage.evictions), (0, 0), "{usage:?}");
}

/// The key counts in an entry's weight: a client asking for long URLs
/// can't hold more than the budget in small responses.
#[test]
fn long_keys_count_against_the_budget() {
    let budget = 256 * 1024;
    let store = MemoryStore::new(budget);
    let long = "q".repeat(10_000);
    for i in 0..100 {
        let key = CacheKey::from_text(&format!("example.com/{i}?{long}"));
        put(&store, &key, &response(10, "gzip", None), MINUTE);
    }
    let usage = store.usage();
    assert!(usage.bytes <= budget, "{usage:?}");
    assert!(usage.entries * 10_000 <= budget, "{usage:?}");
}

/// Shards hold at least 8 MiB, whatever the machine's core count (four a
/// core would leave 256 KiB shards of a 64 MiB store on 64 cores, too
/// small for a 1 MiB response).
#[test]
fn shards_hold_at_least_eight_mebibytes() {
    const MIB: u64 = 1 << 20;
    assert_eq!(shard_count(64 * MIB, 64), 8);
    assert_eq!(shard_count(64 * MIB, 1), 4);
    assert_eq!(shard_count(24 * MIB, 64), 2, "a power of two, rounded down");
    assert_eq!(shard_count(MIB, 64), 1);
    assert_eq!(shard_count(1024 * MIB, 2), 8);
    assert_eq!(shard_count(1024 * MIB, 64), 128);
}

/// And the default store keeps an entry of 7 MiB, just below 97% of one.
#[test]
fn the_default_store_keeps_a_seven_mebibyte_entry() {
    let store = MemoryStore::default();
    let key = CacheKey::from_text("example.com/large");
    put(&store, &key, &response(7 << 20, "gzip", None), MINUTE);
    assert!(get(&store, &key).is_some(), "{:?}", store.usage());
}

/// Variants added to URLs already stored grow their entries: those go
/// through the insert path, which keeps the shard within its budget (a
/// merge in place would not evict anything).
#[test]
fn growing_entries_keep_the_budget() {
    let budget = 256 * 1024;
    let store = MemoryStore::new(budget);
    let keys: Vec<CacheKey> = (0..20)
        .map(|i| CacheKey::from_text(&format!("example.com/{i}")))
        .collect();
    for key in &keys {
        put(&store, key, &response(10_000, "gzip", None), MINUTE);
    }
    assert_eq!(store.usage().evictions, 0);
    for key in &keys {
        put(&store, key, &response(10_000, "identity", None), MINUTE);
    }
    let usage = store.usage();
    assert!(usage.bytes <= budget, "{usage:?}");
    assert!(usage.evictions > 0, "{usage:?}");
}

/// A URL whose variants together outweigh what a shard admits keeps its
/// newest ones.
#[test]
fn a_url_too_heavy_with_all_its_variants_keeps_the_newest() {
    let budget = 256 * 1024;
    let store = MemoryStore::new(budget);
    let key = CacheKey::from_text("example.com/v");
    let (gzip, plain, br) = (
        response(100_000, "gzip", None),
        response(100_000, "identity", None),
        response(100_000, "br", None),
    );
    for r in [&gzip, &plain, &br] {
        put(&store, &key, r, MINUTE);
    }
    let now = get(&store, &key).expect("stored");
    assert_eq!(now.len(), 2);
    assert!(Arc::ptr_eq(&now[0], &br) && Arc::ptr_eq(&now[1], &plain));
    assert!(store.usage().bytes <= budget, "{:?}", store.usage());
}

/// A newer copy of a variant replaces the old one in place: not an
/// eviction.
#[test]
fn a_replaced_variant_is_not_an_eviction() {
    let store = MemoryStore::new(1 << 20);
    let key = CacheKey::from_text("example.com/r");
    for _ in 0..3 {
        put(&store, &key, &response(10, "gzip", None), MINUTE);
    }
    assert_eq!(store.usage().evictions, 0);
    assert_eq!(get(&store, &key).expect("stored").len(), 1);
}

/// A refill over what a URL holds is not an eviction either.
#[cfg(feature = "redis")]
#[test]
fn a_refill_is_not_an_eviction() {
    let store = MemoryStore::new(1 << 20);
    let key = CacheKey::from_text("example.com/f");
    let given: Variants = vec![response(10, "gzip", None)].into();
    store.fill(key.clone(), &given, MINUTE);
    store.fill(key.clone(), &given, MINUTE);
    assert_eq!(store.usage().evictions, 0);
    assert_eq!(store.usage().entries, 1);
}

#[test]
fn purges_count_what_they_drop() {
    let store = MemoryStore::new(1 << 20);
    for (path, tag) in [
        ("/a/1", Some("t")),
        ("/a/2", None),
        ("/b/1", Some("t")),
        ("/b/2", None),
    ] {
        let key = CacheKey::from_text(&format!("example.com{path}"));
        put(&store, &key, &response(10, "gzip", tag), MINUTE);
    }
    let n = |p: Purge| {
        store
            .purge(&p)
            .take_ready()
            .expect("at once")
            .expect("no error")
    };
    assert_eq!(n(Purge::Prefix("/a/".into())), 2);
    assert_eq!(n(Purge::Tag("t".into())), 1, "/b/1 is left with the tag");
    assert_eq!(n(Purge::Key(CacheKey::from_text("example.com/b/2"))), 1);
    assert_eq!(store.usage().entries, 0);
    assert_eq!(n(Purge::All), 0);
}

/// Two threads storing two variants of one URL at the same moment: the
/// merge is one step under the shard's lock, so both stay (a check, then
/// an insert, could lose one).
#[test]
fn concurrent_puts_of_two_variants_keep_both() {
    let store = MemoryStore::new(64 << 20);
    let (gzip, plain) = (response(10, "gzip", None), response(10, "identity", None));
    let barrier = Barrier::new(2);
    let keys: Vec<CacheKey> = (0..2_000)
        .map(|i| CacheKey::from_text(&format!("example.com/{i}")))
        .collect();
    std::thread::scope(|s| {
        for r in [&gzip, &plain] {
            let (store, barrier, keys) = (&store, &barrier, &keys);
            s.spawn(move || {
                for key in keys {
                    barrier.wait();
                    put(store, key, r, MINUTE);
                }
            });
        }
    });
    for key in &keys {
        assert_eq!(get(&store, key).expect("stored").len(), 2, "{key:?}");
    }
}

/// A purge that runs while a put holds its placeholder (the entry grows)
/// can't see the variants the put carries over: the put must not bring
/// them back.
#[test]
fn a_purge_during_a_growing_put_is_not_undone() {
    let store = MemoryStore::new(64 << 20);
    let key = CacheKey::from_text("example.com/p");
    put(&store, &key, &response(10, "gzip", Some("t")), MINUTE);
    let purger = store.clone();
    *store.while_growing.lock().unwrap() = Some(Box::new(move || {
        let _ = purger.purge(&Purge::Tag("t".into())).take_ready();
    }));
    // A heavier variant: the entry grows, through a placeholder.
    put(&store, &key, &response(10_000, "identity", None), MINUTE);
    let kept = get(&store, &key);
    assert!(
        kept.is_none_or(|v| v.iter().all(|r| r.tags().next().is_none())),
        "the purged variant came back"
    );
}
