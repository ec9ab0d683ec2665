//! The query cache's Redis tier against a real Redis: two replicas sharing
//! values, invalidations (key, namespace, prefix, pattern, tag) reaching
//! the other replica and Redis, a load an invalidation overtakes not
//! written, and a Redis that goes away (memory keeps serving, counted;
//! invalidations replayed when it is back).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::cluster::{admin, cluster_url};
use support::redis::{OwnRedis, free_port, prefix, redis_url};
use tower_perf::breaker::BreakerConfig;
use tower_perf::query_cache::{
    EntryOptions, Invalidate, InvalidateError, QueryCache, QueryKey, RedisTier,
};

async fn replica(url: &str, prefix: &str) -> QueryCache {
    let tier = RedisTier::new(url, prefix)
        .unwrap()
        .timeout(Duration::from_secs(2));
    let cache = QueryCache::builder().redis(tier).build();
    assert!(cache.subscribed(Duration::from_secs(5)).await, "subscribed");
    cache
}

/// Loads `value` under `key` on `cache`, counting loader runs in `loads`.
async fn load(cache: &QueryCache, key: &QueryKey, value: &str, loads: &Arc<AtomicUsize>) -> String {
    let (loads, value) = (Arc::clone(loads), value.to_owned());
    let v = cache
        .get_or_insert_with(
            key,
            EntryOptions::ttl(Duration::from_secs(60)).tag("catalogue"),
            move || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(value)
            },
        )
        .await
        .unwrap();
    (*v).clone()
}

/// Whether Redis holds a value under `key`, valid or not (the tier's
/// layout: see `src/query_cache/redis.rs`).
async fn in_redis(url: &str, prefix: &str, key: &QueryKey) -> bool {
    let mut conn = admin(url).await;
    redis::cmd("EXISTS")
        .arg(format!(
            "{prefix}:qv:{{q:{}}}:{}",
            key.namespace(),
            key.as_str()
        ))
        .query_async::<u64>(&mut conn)
        .await
        .unwrap()
        == 1
}

async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_values_through_redis() {
    replicas_share_values(&redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_values_through_a_cluster() {
    replicas_share_values(&cluster_url()).await;
}

async fn replicas_share_values(url: &str) {
    let (url, p) = (url.to_owned(), prefix("queries-share"));
    let (a, b) = (replica(&url, &p).await, replica(&url, &p).await);
    let loads = Arc::new(AtomicUsize::new(0));
    let key = QueryKey::with_params("quotes", &[("symbol", "AAPL")]);
    assert_eq!(load(&a, &key, "189.5", &loads).await, "189.5");
    until("written to Redis", async || in_redis(&url, &p, &key).await).await;
    // B has nothing in memory: Redis answers, no load.
    assert_eq!(load(&b, &key, "never", &loads).await, "189.5");
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let s = b.stats();
    let q = s.namespace("quotes").unwrap();
    assert_eq!(
        (q.misses, q.redis_hits, q.loads, q.hit_rate),
        (1, 1, 0, 1.0)
    );
    // And now from B's memory.
    assert_eq!(
        b.get::<String>(&key).await.as_deref().map(String::as_str),
        Some("189.5")
    );
    assert_eq!(b.stats().namespace("quotes").unwrap().hits, 1);
    // A plain insert is written through; a get on the other replica reads it.
    let k2 = QueryKey::new("quotes:index");
    a.insert(k2.clone(), vec![1u32, 2, 3], Duration::from_secs(60))
        .await;
    assert_eq!(
        b.get::<Vec<u32>>(&k2).await.as_deref(),
        Some(&vec![1u32, 2, 3])
    );
    // Another type under the key reads as missing, counted.
    let c = replica(&url, &p).await;
    assert!(c.get::<u64>(&k2).await.is_none());
    assert_eq!(c.stats().redis.unwrap().undecodable, 1);
    let snap = a.stats().redis.unwrap();
    assert_eq!((snap.errors, snap.timeouts, snap.writes_fenced), (0, 0, 0));
    // The report shows the tier: its breaker, its operations, in text
    // promtool accepts.
    let report = tower_perf::report::Report::builder()
        .query_cache(&b)
        .build();
    let text = report.prometheus();
    assert!(
        text.contains(r#"tower_perf_redis_breaker_open{store="query_cache"} 0"#),
        "{text}"
    );
    for (result, n) in [("hit", 1), ("redis_hit", 2), ("miss", 0)] {
        let line = format!(
            r#"tower_perf_query_cache_lookups_total{{namespace="quotes",result="{result}"}} {n}"#
        );
        assert!(text.contains(&line), "{line}\n{text}");
    }
    support::promtool(&text);
    let summary = serde_json::to_value(report.summary()).unwrap();
    assert_eq!(
        summary["redis"]["queries"]["breaker"]["state"], "closed",
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_on_one_replica_reaches_the_other_and_redis() {
    invalidations_reach_the_other_replica(&redis_url()).await;
}

/// On a cluster the namespaces' keys live in different slots (and
/// masters): `All`, a tag, a pattern and a prefix go through each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_on_one_replica_reaches_the_other_and_a_cluster() {
    invalidations_reach_the_other_replica(&cluster_url()).await;
}

async fn invalidations_reach_the_other_replica(url: &str) {
    let url = url.to_owned();
    let loads = Arc::new(AtomicUsize::new(0));
    let keys = [
        QueryKey::new("user:42:orders"),
        QueryKey::new("user:42:profile"),
        QueryKey::new("user:7:orders"),
        QueryKey::with_params("items", &1),
    ];
    // The invalidation, and which of the keys it leaves.
    let cases = [
        (
            "key",
            Invalidate::Key(QueryKey::new("user:7:orders")),
            [true, true, false, true],
        ),
        (
            "namespace",
            Invalidate::Namespace("user".into()),
            [false, false, false, true],
        ),
        (
            "prefix",
            Invalidate::Prefix("user:42:".into()),
            [false, false, true, true],
        ),
        (
            "pattern",
            Invalidate::pattern("user:*:orders").unwrap(),
            [false, true, false, true],
        ),
        (
            "tag",
            Invalidate::Tag("catalogue".into()),
            [false, false, false, false],
        ),
        (
            "prefix without a namespace",
            Invalidate::Prefix("us".into()),
            [false, false, false, true],
        ),
        ("all", Invalidate::All, [false, false, false, false]),
    ];
    for (name, what, kept) in cases {
        // Replicas and keys of the case's own.
        let p = prefix(&format!("queries-invalidate-{name}"));
        let (a, b) = (replica(&url, &p).await, replica(&url, &p).await);
        for k in &keys {
            load(&a, k, k.as_str(), &loads).await;
            until("written", async || in_redis(&url, &p, k).await).await;
            // B copies it from Redis into its memory.
            assert!(b.get::<String>(k).await.is_some(), "{name}: {k}");
        }
        let n = a.invalidate(what).await.unwrap();
        assert_eq!(n as usize, kept.iter().filter(|k| !**k).count(), "{name}");
        // A replica that had nothing in memory reads Redis: it finds
        // exactly what the invalidation left.
        let fresh = replica(&url, &p).await;
        for (k, kept) in keys.iter().zip(kept) {
            assert_eq!(
                fresh.get::<String>(k).await.is_some(),
                kept,
                "{name}: Redis, {k}"
            );
            assert_eq!(a.get::<String>(k).await.is_some(), kept, "{name}: A, {k}");
            // B's memory hears of it (then Redis has nothing either).
            until(&format!("{name}: B drops {k}"), async || {
                b.get::<String>(k).await.is_some() == kept
            })
            .await;
        }
        assert!(
            b.stats().redis.unwrap().invalidations_received >= 1,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_an_invalidation_overtakes_is_not_written_to_redis() {
    let (url, p) = (redis_url(), prefix("queries-overtaken"));
    let (a, b) = (replica(&url, &p).await, replica(&url, &p).await);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(tokio::sync::Notify::new());
    let key = QueryKey::new("user:42:orders");
    let (c, k, g, s) = (a.clone(), key.clone(), gate.clone(), started.clone());
    let loading = tokio::spawn(async move {
        c.get_or_insert_with(&k, Duration::from_secs(60), move || async move {
            s.notify_one();
            let _ = g.acquire().await;
            Ok::<_, String>("read before the write".to_owned())
        })
        .await
    });
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the load started");
    // The other replica writes and invalidates while A's read is in flight.
    b.invalidate_namespace("user").await.unwrap();
    gate.add_permits(1);
    assert_eq!(*loading.await.unwrap().unwrap(), "read before the write");
    // A hears of the invalidation (its memory drops the value, if it had
    // stored it before the message came) …
    until("A's memory drops it", async || {
        a.get::<String>(&key).await.is_none()
    })
    .await;
    // … and no replica reads it from Redis: either A's write was refused
    // (the namespace's generation moved) or it is under the old one.
    let fresh = replica(&url, &p).await;
    assert!(
        fresh.get::<String>(&key).await.is_none(),
        "not readable from Redis"
    );
}

/// The fence itself: an invalidation this replica never hears of (one of
/// the four counters a write checks, moved straight in Redis) while its
/// load runs keeps the load out of Redis, though its memory, which could
/// not know, keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_older_than_the_redis_generation_is_not_written() {
    for counter in [
        "qk:{q:items}:items:1",
        "qn:{q:items}",
        "qa:{q:items}",
        "qf:{q:items}",
    ] {
        a_load_older_than_a_counter_is_not_written(&redis_url(), counter).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_older_than_a_cluster_counter_is_not_written() {
    for counter in [
        "qk:{q:items}:items:1",
        "qn:{q:items}",
        "qa:{q:items}",
        "qf:{q:items}",
    ] {
        a_load_older_than_a_counter_is_not_written(&cluster_url(), counter).await;
    }
}

/// The namespace registry (`P:qns`) that `All` goes through: a replica
/// that registered a namespace, then finds its counters gone (Redis lost
/// them, and the registry with them), registers it again before it
/// loads, so `All` from another replica still reaches what it writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_redis_forgot_is_registered_again() {
    let (url, p) = (redis_url(), prefix("queries-registry"));
    let a = replica(&url, &p).await;
    let loads = Arc::new(AtomicUsize::new(0));
    load(&a, &QueryKey::new("reg:1"), "one", &loads).await;
    let mut conn = admin(&url).await;
    let _: u64 = redis::cmd("DEL")
        .arg(format!("{p}:qns"))
        .arg(format!("{p}:qn:{{q:reg}}"))
        .arg(format!("{p}:qa:{{q:reg}}"))
        .arg(format!("{p}:qf:{{q:reg}}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let key = QueryKey::new("reg:2");
    load(&a, &key, "two", &loads).await;
    until("written", async || in_redis(&url, &p, &key).await).await;
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{p}:qns"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(members, ["reg"]);
    replica(&url, &p)
        .await
        .invalidate(Invalidate::All)
        .await
        .unwrap();
    assert!(replica(&url, &p).await.get::<String>(&key).await.is_none());
}

/// A value only ever inserted (no lookup in its namespace before) is
/// reached by a tag and by `All` from another replica: the insert puts
/// its namespace in the registry, again after Redis lost the registry
/// and the namespace's counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inserted_namespace_is_reached_by_tags_and_all() {
    inserted_namespace_is_reached(&redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inserted_namespace_is_reached_by_tags_and_all_on_a_cluster() {
    inserted_namespace_is_reached(&cluster_url()).await;
}

async fn inserted_namespace_is_reached(url: &str) {
    let (url, p) = (url.to_owned(), prefix("queries-insert"));
    let (a, b) = (replica(&url, &p).await, replica(&url, &p).await);
    let key = QueryKey::new("fresh:1");
    let options = || EntryOptions::ttl(Duration::from_secs(60)).tag("stock");
    let mut conn = admin(&url).await;
    let registry = format!("{p}:qns");
    // Only Redis is asked here: a lookup by another replica would
    // register the namespace itself.
    a.insert(key.clone(), "one".to_owned(), options()).await;
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&registry)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(members, ["fresh"], "the insert registered its namespace");
    assert!(in_redis(&url, &p, &key).await);
    assert_eq!(
        b.invalidate(Invalidate::Tag("stock".into())).await.unwrap(),
        1
    );
    assert!(
        !in_redis(&url, &p, &key).await,
        "the tag reached the insert"
    );

    // Redis loses the registry and the namespace's counters; A still
    // believes it registered the namespace, but the insert finds the
    // counters gone and registers it again.
    for gone in [
        registry.clone(),
        format!("{p}:qn:{{q:fresh}}"),
        format!("{p}:qa:{{q:fresh}}"),
        format!("{p}:qf:{{q:fresh}}"),
    ] {
        let _: u64 = redis::cmd("DEL")
            .arg(gone)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    a.insert(key.clone(), "two".to_owned(), options()).await;
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&registry)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(members, ["fresh"], "registered again");
    b.invalidate(Invalidate::All).await.unwrap();
    assert!(in_redis(&url, &p, &key).await, "All only moves generations");
    assert_eq!(b.get::<String>(&key).await, None, "All reached the insert");
}

/// A failed call makes the replica send its registrations again (in the
/// background, within moments, not after the 30 s refresh): a failover may
/// have lost the registry's last write while the counters survived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_makes_registrations_due_again() {
    let port = free_port();
    let server = OwnRedis::start(port).await;
    let (url, p) = (format!("redis://127.0.0.1:{port}"), prefix("queries-stale"));
    let tier = RedisTier::new(url.as_str(), &p)
        .unwrap()
        .timeout(Duration::from_millis(100));
    let a = QueryCache::builder().redis(tier).build();
    let loads = Arc::new(AtomicUsize::new(0));
    load(&a, &QueryKey::new("stock:1"), "one", &loads).await;
    let mut conn = admin(&url).await;
    let registry = format!("{p}:qns");
    let _: u64 = redis::cmd("DEL")
        .arg(&registry)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Still registered as far as A knows: nothing sent.
    load(&a, &QueryKey::new("stock:2"), "two", &loads).await;
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&registry)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(members.is_empty(), "{members:?}");
    // Redis stops answering: A's lookup times out.
    server.signal("-STOP");
    load(&a, &QueryKey::new("stock:3"), "three", &loads).await;
    server.signal("-CONT");
    assert!(a.stats().redis.unwrap().timeouts >= 1);
    // Back: the next lookups send the registration again.
    until("registered again", async || {
        // Not in memory: asks Redis.
        let _ = a.get::<String>(&QueryKey::new("stock:absent")).await;
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&registry)
            .query_async(&mut conn)
            .await
            .unwrap();
        members == ["stock"]
    })
    .await;
}

async fn a_load_older_than_a_counter_is_not_written(url: &str, counter: &str) {
    let (url, p) = (url.to_owned(), prefix("queries-generation"));
    let a = replica(&url, &p).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(tokio::sync::Notify::new());
    let key = QueryKey::new("items:1");
    let (c, k, g, s) = (a.clone(), key.clone(), gate.clone(), started.clone());
    let loading = tokio::spawn(async move {
        c.get_or_insert_with(&k, Duration::from_secs(60), move || async move {
            s.notify_one();
            let _ = g.acquire().await;
            Ok::<_, String>("old".to_owned())
        })
        .await
    });
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the load started");
    let mut conn = admin(&url).await;
    let _: u64 = redis::cmd("INCR")
        .arg(format!("{p}:{counter}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    gate.add_permits(1);
    loading.await.unwrap().unwrap();
    assert!(
        a.get::<String>(&key).await.is_some(),
        "{counter}: memory keeps it"
    );
    until(&format!("{counter}: the write refused"), async || {
        a.stats().redis.unwrap().writes_fenced == 1
    })
    .await;
    assert!(
        !in_redis(&url, &p, &key).await,
        "{counter}: Redis refused it"
    );
    // A load after it is written.
    a.invalidate(Invalidate::Key(key.clone())).await.unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    load(&a, &key, "new", &loads).await;
    until("written", async || in_redis(&url, &p, &key).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_memory_keeps_serving_and_invalidations_are_replayed() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut server = Some(OwnRedis::start(port).await);
    let p = prefix("queries-outage");
    let tier = |url: &str| {
        RedisTier::new(url, &p)
            .unwrap()
            .timeout(Duration::from_millis(100))
            .breaker(BreakerConfig::default())
    };
    let a = QueryCache::builder().redis(tier(&url)).build();
    assert!(a.subscribed(Duration::from_secs(5)).await);
    let loads = Arc::new(AtomicUsize::new(0));
    let held = QueryKey::new("items:1");
    load(&a, &held, "one", &loads).await;
    until("written", async || in_redis(&url, &p, &held).await).await;

    drop(server.take());
    // Memory answers what it holds, at once.
    assert_eq!(load(&a, &held, "again", &loads).await, "one");
    // A new key loads without Redis: the breaker soon skips it, so the
    // lookups don't wait for it.
    let started = Instant::now();
    for i in 2..40 {
        load(&a, &QueryKey::with_params("items", &i), "x", &loads).await;
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1 + 38);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let s = a.stats();
    assert!(s.namespace("items").unwrap().redis_errors >= 38, "{s:?}");
    let r = s.redis.unwrap();
    assert!(r.breaker.opened >= 1, "{r:?}");
    // An invalidation applies here and says the rest waits.
    let err = a.invalidate_namespace("items").await.unwrap_err();
    assert!(
        matches!(err, InvalidateError::Deferred { local: 39, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("when Redis answers"), "{err}");
    assert!(a.get::<String>(&held).await.is_none());
    assert_eq!(a.stats().redis.unwrap().invalidations_pending, 1);

    // Back (empty, as after a restart): the invalidation is replayed.
    server = Some(OwnRedis::start(port).await);
    until("replayed", async || {
        let r = a.stats().redis.unwrap();
        r.invalidations_pending == 0 && r.invalidations_replayed >= 1
    })
    .await;
    // Subscribed again (which empties memory: messages were missed).
    until("subscribed again", async || {
        a.stats().redis.unwrap().l1_dropped >= 1
    })
    .await;
    // And the tier is used again.
    let key = QueryKey::new("items:after");
    load(&a, &key, "after", &loads).await;
    until("written after", async || in_redis(&url, &p, &key).await).await;
    drop(server);
}
