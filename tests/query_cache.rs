//! The query cache: single flight, TTLs on a controllable clock,
//! stale-while-revalidate, invalidation by key, namespace, prefix, glob
//! and tag, the byte bound, loader errors and sub-timings.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tower_perf::clock::ManualClock;
use tower_perf::query_cache::{EntryOptions, Invalidate, QueryCache, QueryKey};

async fn counted(loads: Arc<AtomicUsize>, value: u64) -> Result<u64, String> {
    loads.fetch_add(1, Ordering::SeqCst);
    Ok(value)
}

/// `callers` concurrent misses of `key`, each with a loader that counts
/// itself in `loads` and answers `outcome` once let through: their
/// answers, once every caller has missed (and the leader is loading).
async fn concurrent_misses<T: tower_perf::query_cache::QueryValue + Clone>(
    cache: &QueryCache,
    key: &QueryKey,
    callers: u64,
    loads: &Arc<AtomicUsize>,
    outcome: Result<T, String>,
) -> Vec<Result<Arc<T>, Arc<String>>> {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (cache, loads, gate, key) = (cache.clone(), loads.clone(), gate.clone(), key.clone());
        let outcome = outcome.clone();
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_insert_with(&key, Duration::from_secs(60), move || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    let _ = gate.acquire().await;
                    outcome
                })
                .await
        }));
    }
    // Every caller has missed and joined the flight (or leads it).
    let ns = key.namespace().to_owned();
    tokio::time::timeout(Duration::from_secs(10), async {
        while cache.stats().namespace(&ns).map_or(0, |n| n.misses) < callers
            || loads.load(Ordering::SeqCst) == 0
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("every caller missed");
    // Enough for every loader that might run: the callers count them.
    gate.add_permits(callers as usize);
    let mut answers = Vec::new();
    for t in tasks {
        let answer = tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("answered");
        answers.push(answer.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_misses_run_one_load() {
    let cache = QueryCache::new();
    let loads = Arc::new(AtomicUsize::new(0));
    let key = QueryKey::with_params("quotes", &[("symbol", "AAPL")]);
    for answer in concurrent_misses(&cache, &key, 50, &loads, Ok(vec![1u8, 2, 3])).await {
        assert_eq!(*answer.unwrap(), vec![1u8, 2, 3]);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let stats = cache.stats();
    let q = stats.namespace("quotes").unwrap();
    assert_eq!((q.loads, q.hits + q.misses), (1, 50));
    assert_eq!(q.entries, 1);
    // And now a plain hit.
    let hit: Option<Arc<Vec<u8>>> = cache.get(&key).await;
    assert_eq!(hit.as_deref(), Some(&vec![1u8, 2, 3]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_loader_caches_nothing_and_every_waiter_sees_the_error() {
    let cache = QueryCache::new();
    let loads = Arc::new(AtomicUsize::new(0));
    let key = QueryKey::new("orders:7");
    let down = Err::<u64, _>("database down".to_owned());
    for answer in concurrent_misses(&cache, &key, 10, &loads, down).await {
        assert_eq!(*answer.unwrap_err(), "database down");
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let s = cache.stats();
    let o = s.namespace("orders").unwrap();
    assert_eq!((o.loads, o.load_errors, o.entries), (1, 1, 0));
    // Nothing was stored: the next lookup loads again.
    let v = cache
        .get_or_insert_with(&key, Duration::from_secs(60), {
            let loads = loads.clone();
            move || counted(loads, 5)
        })
        .await
        .unwrap();
    assert_eq!((*v, loads.load(Ordering::SeqCst)), (5, 2));
}

#[tokio::test]
async fn a_leader_that_goes_away_hands_the_load_to_a_waiter() {
    let cache = QueryCache::new();
    let key = QueryKey::new("slow");
    let never = cache.clone();
    let k = key.clone();
    let leader = tokio::spawn(async move {
        never
            .get_or_insert_with(&k, Duration::from_secs(60), || async {
                std::future::pending::<Result<u64, String>>().await
            })
            .await
    });
    tokio::task::yield_now().await;
    let (c, k) = (cache.clone(), key.clone());
    let waiter = tokio::spawn(async move {
        c.get_or_insert_with(&k, Duration::from_secs(60), || async {
            Ok::<_, String>(9u64)
        })
        .await
    });
    tokio::task::yield_now().await;
    leader.abort();
    let v = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter took over")
        .unwrap()
        .unwrap();
    assert_eq!(*v, 9);
    // A panicking loader hands over too.
    let k = QueryKey::new("panics");
    let c = cache.clone();
    let kk = k.clone();
    let started = Arc::new(tokio::sync::Notify::new());
    let s = started.clone();
    let panicked = tokio::spawn(async move {
        c.get_or_insert_with(&kk, Duration::from_secs(60), move || async move {
            s.notify_one();
            tokio::task::yield_now().await;
            panic!("loader bug");
            #[allow(unreachable_code)]
            Ok::<u64, String>(0)
        })
        .await
    });
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the loader started");
    let v = tokio::time::timeout(
        Duration::from_secs(10),
        cache.get_or_insert_with(&k, Duration::from_secs(60), || async {
            Ok::<_, String>(3u64)
        }),
    )
    .await
    .expect("the waiter took over")
    .unwrap();
    assert_eq!(*v, 3);
    assert!(panicked.await.is_err());
}

#[tokio::test]
async fn entries_expire_after_their_ttl_on_the_cache_clock() {
    let clock = ManualClock::new();
    let cache = QueryCache::builder().clock(clock.clone()).build();
    let loads = Arc::new(AtomicUsize::new(0));
    let key = QueryKey::new("rates");
    let get = |n| {
        let (cache, loads, key) = (cache.clone(), loads.clone(), key.clone());
        async move {
            *cache
                .get_or_insert_with(&key, Duration::from_secs(10), move || counted(loads, n))
                .await
                .unwrap()
        }
    };
    assert_eq!(get(1).await, 1);
    clock.advance(Duration::from_secs(9));
    assert_eq!(get(2).await, 1, "fresh for 10 s");
    clock.advance(Duration::from_secs(1));
    assert_eq!(get(3).await, 3, "expired at 10 s");
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    // The default TTL is 300 s.
    cache
        .insert(QueryKey::new("d"), 1u8, EntryOptions::default())
        .await;
    clock.advance(Duration::from_secs(299));
    assert!(cache.get::<u8>(&QueryKey::new("d")).await.is_some());
    clock.advance(Duration::from_secs(1));
    assert!(cache.get::<u8>(&QueryKey::new("d")).await.is_none());
    // A TTL of zero stores nothing.
    cache.insert(QueryKey::new("z"), 1u8, Duration::ZERO).await;
    assert!(cache.get::<u8>(&QueryKey::new("z")).await.is_none());
}

#[tokio::test]
async fn a_stale_entry_is_served_while_one_background_load_refreshes_it() {
    let clock = ManualClock::new();
    let cache = QueryCache::builder().clock(clock.clone()).build();
    let loads = Arc::new(AtomicUsize::new(0));
    let key = QueryKey::new("feed");
    let opts =
        EntryOptions::ttl(Duration::from_secs(10)).stale_while_revalidate(Duration::from_secs(30));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let get = |n: u64| {
        let (cache, loads, key, opts, gate) = (
            cache.clone(),
            loads.clone(),
            key.clone(),
            opts.clone(),
            gate.clone(),
        );
        async move {
            *cache
                .get_or_insert_with(&key, opts, move || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    if n > 1 {
                        let _ = gate.acquire().await;
                    }
                    Ok::<_, String>(n)
                })
                .await
                .unwrap()
        }
    };
    assert_eq!(get(1).await, 1);
    clock.advance(Duration::from_secs(15));
    // Stale: answered at once with the old value, twice, one refresh.
    assert_eq!(get(2).await, 1);
    assert_eq!(get(3).await, 1);
    while loads.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(10);
    for _ in 0..1000 {
        if cache.get::<u64>(&key).await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(cache.get::<u64>(&key).await.as_deref(), Some(&2));
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    let s = cache.stats();
    assert_eq!(s.namespace("feed").unwrap().stale_hits, 2);
    // Past the stale window: a miss that waits for its load.
    clock.advance(Duration::from_secs(41));
    assert_eq!(get(4).await, 4);
}

async fn fill(cache: &QueryCache) {
    for key in [
        "user:42:orders",
        "user:42:profile",
        "user:7:orders",
        "items:all",
    ] {
        cache
            .insert(QueryKey::new(key), key.to_owned(), EntryOptions::default())
            .await;
    }
    cache
        .insert(
            QueryKey::with_params("items", &[("page", 2)]),
            "page 2".to_owned(),
            EntryOptions::default().tag("catalogue"),
        )
        .await;
    cache
        .insert(
            QueryKey::new("prices:eu"),
            "eu".to_owned(),
            EntryOptions::default().tag("catalogue"),
        )
        .await;
}

async fn held(cache: &QueryCache) -> Vec<&'static str> {
    let mut out = Vec::new();
    for key in [
        "user:42:orders",
        "user:42:profile",
        "user:7:orders",
        "items:all",
        "prices:eu",
    ] {
        if cache.get::<String>(&QueryKey::new(key)).await.is_some() {
            out.push(key);
        }
    }
    if cache
        .get::<String>(&QueryKey::with_params("items", &[("page", 2)]))
        .await
        .is_some()
    {
        out.push("items#page2");
    }
    out
}

#[tokio::test]
async fn invalidation_by_key_namespace_prefix_pattern_and_tag() {
    let cache = QueryCache::new();
    fill(&cache).await;
    assert_eq!(held(&cache).await.len(), 6);
    assert_eq!(cache.invalidate_prefix("user:42:").await, Ok(2));
    assert_eq!(
        held(&cache).await,
        ["user:7:orders", "items:all", "prices:eu", "items#page2"]
    );

    fill(&cache).await;
    assert_eq!(cache.invalidate_pattern("user:*:orders").await.unwrap(), 2);
    assert_eq!(
        held(&cache).await,
        ["user:42:profile", "items:all", "prices:eu", "items#page2"]
    );

    fill(&cache).await;
    assert_eq!(cache.invalidate_namespace("items").await, Ok(2));
    assert_eq!(
        held(&cache).await,
        [
            "user:42:orders",
            "user:42:profile",
            "user:7:orders",
            "prices:eu"
        ]
    );

    fill(&cache).await;
    assert_eq!(cache.invalidate_tag("catalogue").await, Ok(2));
    assert_eq!(
        held(&cache).await,
        [
            "user:42:orders",
            "user:42:profile",
            "user:7:orders",
            "items:all"
        ]
    );

    assert_eq!(cache.remove(&QueryKey::new("items:all")).await, Ok(true));
    assert_eq!(cache.remove(&QueryKey::new("items:all")).await, Ok(false));
    assert_eq!(cache.clear().await, Ok(3));
    assert!(held(&cache).await.is_empty());
    assert!(cache.invalidate_pattern(&"*".repeat(2000)).await.is_err());

    cache.run_pending_tasks();
    let s = cache.stats();
    assert_eq!((s.entries, s.bytes), (0, 0));
    assert_eq!(s.namespace("user").unwrap().invalidated, 2 + 2 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_an_invalidation_overtakes_is_returned_but_not_stored() {
    let cache = QueryCache::new();
    let key = QueryKey::new("user:42:orders");
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let (c, k, g, s) = (cache.clone(), key.clone(), gate.clone(), started.clone());
    let load = tokio::spawn(async move {
        c.get_or_insert_with(&k, Duration::from_secs(60), move || async move {
            s.fetch_add(1, Ordering::SeqCst);
            let _ = g.acquire().await;
            Ok::<_, String>("old orders".to_owned())
        })
        .await
    });
    while started.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    // The write lands and invalidates while the read is in flight.
    cache.invalidate_namespace("user").await.unwrap();
    gate.add_permits(1);
    assert_eq!(*load.await.unwrap().unwrap(), "old orders");
    assert!(cache.get::<String>(&key).await.is_none(), "not stored");
    assert_eq!(cache.stats().namespace("user").unwrap().not_stored, 1);
    // An unrelated invalidation does not stop a load from being stored.
    let (c, k, g, s) = (cache.clone(), key.clone(), gate.clone(), started.clone());
    let load = tokio::spawn(async move {
        c.get_or_insert_with(&k, Duration::from_secs(60), move || async move {
            s.fetch_add(1, Ordering::SeqCst);
            let _ = g.acquire().await;
            Ok::<_, String>("new orders".to_owned())
        })
        .await
    });
    while started.load(Ordering::SeqCst) == 1 {
        tokio::task::yield_now().await;
    }
    cache.invalidate_namespace("items").await.unwrap();
    gate.add_permits(1);
    load.await.unwrap().unwrap();
    assert_eq!(
        cache
            .get::<String>(&key)
            .await
            .as_deref()
            .map(String::as_str),
        Some("new orders")
    );
}

#[tokio::test]
async fn memory_stays_within_its_byte_bound_and_counts_evictions() {
    let max = 256 * 1024;
    let cache = QueryCache::builder().max_bytes(max).build();
    let value = "v".repeat(1000);
    for i in 0..2000 {
        cache
            .insert(
                QueryKey::new(format!("rows:{i}")),
                value.clone(),
                Duration::from_secs(60),
            )
            .await;
        if i % 100 == 0 {
            cache.run_pending_tasks();
            assert!(
                cache.stats().bytes <= max,
                "{} > {max}",
                cache.stats().bytes
            );
        }
    }
    cache.run_pending_tasks();
    let s = cache.stats();
    let rows = s.namespace("rows").unwrap();
    // An entry weighs its key, 1,002 bytes of JSON and the overhead.
    assert!(s.bytes <= max && s.bytes > max / 2, "{}", s.bytes);
    assert_eq!(rows.entries, s.entries);
    assert!(rows.evictions >= 2000 - max / 1000, "{}", rows.evictions);
    assert_eq!(rows.evictions + rows.entries, 2000);
    // The most recent entries are the ones kept (least recently used out).
    assert!(
        cache
            .get::<String>(&QueryKey::new("rows:1999"))
            .await
            .is_some()
    );
    assert!(
        cache
            .get::<String>(&QueryKey::new("rows:0"))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_value_of_another_type_is_a_miss_and_is_replaced() {
    let cache = QueryCache::new();
    let key = QueryKey::new("mixed");
    cache
        .insert(key.clone(), 1u32, Duration::from_secs(60))
        .await;
    assert!(cache.get::<String>(&key).await.is_none());
    let v = cache
        .get_or_insert_with(&key, Duration::from_secs(60), || async {
            Ok::<_, String>("s".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(*v, "s");
    assert!(cache.get::<u32>(&key).await.is_none());
}

#[tokio::test]
async fn namespaces_past_the_cap_are_counted_together() {
    let cache = QueryCache::new();
    for i in 0..300 {
        let _ = cache.get::<u8>(&QueryKey::new(format!("ns{i}:x"))).await;
    }
    let s = cache.stats();
    assert_eq!(
        s.namespaces.len(),
        tower_perf::query_cache::MAX_NAMESPACES + 1
    );
    assert_eq!(
        s.namespace(tower_perf::query_cache::OTHER).unwrap().misses,
        300 - 256
    );
}

#[test]
fn invalidate_selects_by_text_and_tags() {
    let key = QueryKey::new("user:42:orders");
    assert!(Invalidate::All.selects(&key, &[]));
    assert!(Invalidate::Key(key.clone()).selects(&key, &[]));
    assert!(!Invalidate::Namespace("use".into()).selects(&key, &[]));
    assert!(!Invalidate::Tag("a".into()).selects(&key, &["b".into()]));
}
