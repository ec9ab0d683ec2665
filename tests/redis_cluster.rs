//! The Redis stores on a Redis Cluster (six `redis-server`s, three masters
//! and three replicas, started by `support::cluster`): keys spread over
//! every master, purges that scan reach every master, a master killed
//! mid-test (its replica takes over; no request fails meanwhile, and the
//! stores use the new master within seconds), and a slot migrated
//! mid-test (`ASK` and `MOVED` followed).
//!
//! The tests that share a store with another replica on a cluster sit
//! beside their single-server versions (tests/redis.rs, redis_cache.rs,
//! redis_tasks.rs, query_cache_redis.rs).

mod support;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use support::cluster::{OwnCluster, SHARED_NODE_TIMEOUT_MS, cluster_url, node};
use support::redis::prefix;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_perf::RedisTarget;
use tower_perf::cache::{CacheHandle, CacheKey, CacheLayer, CacheStore, Purge, RedisCacheStore};
use tower_perf::query_cache::{EntryOptions, Invalidate, QueryCache, QueryKey, RedisTier};
use tower_perf::rate_limit::{
    Key, KeySource, MissingKey, PolicyRef, Quota, RateLimitLayer, RateLimitStore, RateRule,
    RedisStore,
};

use support::cache::CountingSvc as CacheSvc;

/// A cache in front of an origin whose calls `calls` counts, storing in
/// `store`; every response is tagged `all`.
fn cached(store: RedisCacheStore, calls: Arc<AtomicUsize>) -> (CacheSvc, CacheHandle) {
    support::cache::counting(CacheLayer::new().store(store), calls, "all")
}

type LimitedSvc = tower::util::BoxCloneService<
    Request<Full<Bytes>>,
    Response<tower_perf::rate_limit::ResponseBody<Full<Bytes>>>,
    Infallible,
>;

/// A rate limit keyed by the `x-api-key` header, counted in `store`.
fn limited(store: RedisStore, quota: Quota) -> LimitedSvc {
    let layer = RateLimitLayer::with_store(store).rule(
        RateRule::new("api", quota)
            .key(KeySource::Header(http::HeaderName::from_static(
                "x-api-key",
            )))
            .on_missing_key(MissingKey::Deny),
    );
    tower::util::BoxCloneService::new(ServiceBuilder::new().layer(layer).service(service_fn(
        |_req: Request<Full<Bytes>>| async { Ok::<_, Infallible>(Response::new(Full::from("ok"))) },
    )))
}

async fn call_limited(svc: &LimitedSvc, api_key: &str) -> StatusCode {
    let req = Request::get("/api/items")
        .header("x-api-key", api_key)
        .body(Full::default())
        .unwrap();
    svc.clone().oneshot(req).await.unwrap().status()
}

async fn fetch(svc: &CacheSvc, path: &str) -> (StatusCode, String) {
    let req = Request::get(path)
        .header("host", "shop.test")
        .body(Full::default())
        .unwrap();
    let resp = svc.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = support::body_bytes(resp.into_body()).await;
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// Waits until `store` holds `path`.
async fn until_stored(store: &RedisCacheStore, path: &str) {
    let key = CacheKey::from_text(&format!("shop.test{path}"));
    let deadline = Instant::now() + support::gate::DEADLINE;
    while store.get(&key).await.ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "{path} never stored");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Ports of the nodes in a comma-separated cluster URL.
fn ports(url: &str) -> Vec<u16> {
    url.split(',')
        .filter_map(|u| u.rsplit(':').next()?.trim_end_matches('/').parse().ok())
        .collect()
}

/// Keys matching `pattern` on each master of the cluster at `url`.
async fn keys_per_master(url: &str, pattern: &str) -> Vec<usize> {
    let mut counts = Vec::new();
    for port in ports(url) {
        let mut conn = node(port).await;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await.unwrap();
        if !matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
            continue;
        }
        let mut n = 0;
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .unwrap();
            n += keys.len();
            if next == 0 {
                break;
            }
            cursor = next;
        }
        counts.push(n);
    }
    counts
}

fn policy(quota: Quota) -> PolicyRef {
    PolicyRef {
        index: 0,
        name: "api".into(),
        quota,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_over_every_master_and_scanning_purges_reach_each() {
    let url = cluster_url();
    let p = prefix("cluster-spread");

    // Rate limits: a quota per key, the keys over every master.
    let limits = RedisStore::new(&url, &p).unwrap();
    let api = policy(Quota::per_minute(10));
    for i in 0..60 {
        let key = Key::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)));
        assert!(limits.check(&api, &key, 1).await.unwrap().allowed);
    }
    let limit_keys = keys_per_master(&url, &format!("{p}:api:*")).await;
    assert_eq!(limit_keys.len(), 3, "three masters");
    assert!(limit_keys.iter().all(|n| *n > 0), "{limit_keys:?}");
    assert_eq!(limit_keys.iter().sum::<usize>(), 60);
    assert_eq!(limits.stats().snapshot().fallbacks, 0);

    // Response cache: entries over every master; a tag purge reaches
    // them all, so do the purges that scan.
    let store = RedisCacheStore::new(&url, &p)
        .unwrap()
        .timeout(Duration::from_secs(2));
    let calls = Arc::new(AtomicUsize::new(0));
    let (svc, handle) = cached(store.clone(), calls.clone());
    let fill = async || {
        for i in 0..30 {
            assert_eq!(fetch(&svc, &format!("/p/{i}")).await.0, StatusCode::OK);
        }
        for i in 0..30 {
            until_stored(&store, &format!("/p/{i}")).await;
        }
    };
    fill().await;
    let entries = format!("{p}:e:*");
    let spread = keys_per_master(&url, &entries).await;
    assert!(spread.iter().all(|n| *n > 0), "{spread:?}");
    assert_eq!(handle.purge_tag("all").await.unwrap(), 30);
    assert_eq!(keys_per_master(&url, &entries).await, [0, 0, 0]);
    fill().await;
    // /p/1 and /p/10 to /p/19.
    assert_eq!(handle.purge_prefix("/p/1").await.unwrap(), 11);
    assert_eq!(
        keys_per_master(&url, &entries).await.iter().sum::<usize>(),
        19
    );
    assert_eq!(handle.purge(Purge::All).await.unwrap(), 19);
    assert_eq!(keys_per_master(&url, &entries).await, [0, 0, 0]);
    let (_, body) = fetch(&svc, "/p/3").await;
    assert_eq!(body, "/p/3 #61", "answered by the origin again");

    // Query cache: each namespace in its own slot, namespaces over every
    // master.
    let tier = RedisTier::new(&url, &p)
        .unwrap()
        .timeout(Duration::from_secs(2));
    let queries = QueryCache::builder().redis(tier).build();
    assert!(queries.subscribed(Duration::from_secs(5)).await);
    for i in 0..30 {
        let key = QueryKey::new(format!("ns{i}:rows"));
        queries
            .get_or_insert_with(
                &key,
                EntryOptions::ttl(Duration::from_secs(60)),
                move || async move { Ok::<_, String>(i) },
            )
            .await
            .unwrap();
    }
    let values = format!("{p}:qv:*");
    let deadline = Instant::now() + support::gate::DEADLINE;
    let spread = loop {
        let spread = keys_per_master(&url, &values).await;
        if spread.iter().sum::<usize>() == 30 {
            break spread;
        }
        assert!(Instant::now() < deadline, "values written: {spread:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(spread.iter().all(|n| *n > 0), "{spread:?}");
    // A pattern over every namespace scans every master.
    assert_eq!(
        queries
            .invalidate(Invalidate::pattern("ns1*:rows").unwrap())
            .await
            .unwrap(),
        11
    );
    assert_eq!(
        keys_per_master(&url, &values).await.iter().sum::<usize>(),
        19
    );
    let redis = queries.stats().redis.unwrap();
    assert_eq!((redis.errors, redis.timeouts), (0, 0));
}

/// On a cluster that has it, invalidations travel by sharded pub/sub: the
/// query cache's subscriber is a shard-channel subscriber (on the node
/// serving the channel's slot), none listens by classic pub/sub, and an
/// invalidation reaches the other replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_go_by_sharded_pub_sub() {
    let url = cluster_url();
    let p = support::redis::prefix("sharded");
    let replica = async || {
        let tier = RedisTier::new(&url, &p)
            .unwrap()
            .timeout(Duration::from_secs(1));
        let cache = QueryCache::builder().redis(tier).build();
        assert!(cache.subscribed(Duration::from_secs(5)).await);
        cache
    };
    let (a, b) = (replica().await, replica().await);
    let channel = format!("{p}:query-invalidate");
    let mut admin = support::cluster::admin(&url).await;
    // Both ask every node and add up the answers.
    let count = async |admin: &mut support::cluster::Admin, kind: &str| {
        let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
            .arg(kind)
            .arg(&channel)
            .query_async(admin)
            .await
            .unwrap();
        counts.iter().map(|(_, n)| n).sum::<u64>()
    };
    assert_eq!(count(&mut admin, "SHARDNUMSUB").await, 2);
    assert_eq!(count(&mut admin, "NUMSUB").await, 0);
    let key = QueryKey::new("sharded:1");
    b.insert(key.clone(), 1u32, Duration::from_secs(60)).await;
    assert_eq!(b.get::<u32>(&key).await.as_deref(), Some(&1));
    a.invalidate(Invalidate::Key(key.clone())).await.unwrap();
    let deadline = Instant::now() + support::gate::DEADLINE;
    while b.get::<u32>(&key).await.is_some() {
        assert!(Instant::now() < deadline, "B never heard A");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = b.stats().redis.unwrap();
    assert!(r.invalidations_received >= 1, "{r:?}");
}

/// A master is killed while the three stores are in use: its replica is
/// promoted (after the cluster's one-second node timeout). Meanwhile no
/// request fails (the breaker and the failure policies answer); then
/// the stores use the new master by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_test_is_replaced_without_failed_requests() {
    let mut cluster = OwnCluster::start(1000).await;
    let url = cluster.url();
    let p = "failover";
    let limits = RedisStore::new(&url, p)
        .unwrap()
        .timeout(Duration::from_millis(200));
    let store = RedisCacheStore::new(&url, p)
        .unwrap()
        .timeout(Duration::from_millis(200));
    let calls = Arc::new(AtomicUsize::new(0));
    let (svc, _) = cached(store.clone(), calls.clone());
    // The victim: the master of the slot a rate-limit key, a cached URL
    // and the query cache's invalidation channel share (the channel's
    // name as hash tag): with sharded pub/sub, the query-cache replicas
    // listen there.
    let tag = format!("{{{p}:query-invalidate}}");
    let path = &format!("/{tag}/item");
    let slot = cluster.slot_of(&format!("{p}:query-invalidate")).await;
    assert_eq!(cluster.slot_of(&tag).await, slot);
    let victim = cluster.master_of_slot(slot).await;
    assert_eq!(fetch(&svc, path).await.0, StatusCode::OK);
    until_stored(&store, path).await;
    let api = limited(limits.clone(), Quota::per_minute(1_000_000));
    assert_eq!(call_limited(&api, &tag).await, StatusCode::OK);
    assert_eq!(limits.stats().snapshot().fallbacks, 0);
    // Two query-cache replicas whose first seed is the victim (which
    // serves their channel's slot too): their subscribers listen there,
    // and must move to another node.
    let seeds: Vec<String> = std::iter::once(format!("redis://127.0.0.1:{victim}"))
        .chain(
            cluster
                .seeds()
                .into_iter()
                .filter(|s| !s.ends_with(&format!(":{victim}"))),
        )
        .collect();
    let query_replica = async || {
        let tier = RedisTier::new(RedisTarget::cluster(seeds.clone()), p)
            .unwrap()
            .timeout(Duration::from_millis(200));
        let cache = QueryCache::builder().redis(tier).build();
        assert!(cache.subscribed(Duration::from_secs(5)).await);
        cache
    };
    let (qa, qb) = (query_replica().await, query_replica().await);
    let qkey = QueryKey::new("stock:1");
    let value = async |cache: &QueryCache, v: u32| {
        *cache
            .get_or_insert_with(
                &qkey,
                EntryOptions::ttl(Duration::from_secs(600)),
                move || async move { Ok::<_, String>(v) },
            )
            .await
            .unwrap()
    };
    assert_eq!(value(&qb, 1).await, 1);

    cluster.kill(victim);
    let killed = Instant::now();
    let survivor = cluster.ports()[0];
    // Requests go on all the while: each answered (the rate limit fails
    // open, the cache asks the origin), until Redis decides again.
    let mut answered = 0;
    let recovered = loop {
        let before = limits.stats().snapshot().fallbacks;
        assert_eq!(
            call_limited(&api, &tag).await,
            StatusCode::OK,
            "a rate-limited request failed during the failover"
        );
        let redis_decided = limits.stats().snapshot().fallbacks == before;
        let (status, _) = fetch(&svc, path).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a cached request failed during the failover"
        );
        answered += 1;
        if redis_decided && answered > 1 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the stores did not use the new master within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cluster.wait_ok(survivor, Duration::from_secs(30)).await;
    // B's subscription broke with its node: B emptied its memory when it
    // subscribed again through the next seed, and hears A from there.
    let deadline = Instant::now() + Duration::from_secs(20);
    while qb.stats().redis.unwrap().l1_dropped == 0 {
        assert!(Instant::now() < deadline, "B never subscribed again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // With the value gone from Redis too, B loads again: its memory no
    // longer holds 1.
    let stored = format!("{p}:qv:{{q:stock}}:stock:1");
    let mut admin = support::cluster::admin(&url).await;
    let _: u64 = redis::cmd("DEL")
        .arg(&stored)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(value(&qb, 2).await, 2, "loaded again after the memory drop");
    // And B hears A's invalidations on the new master (sent again until
    // one is heard: one sent while B's subscription settles may be
    // missed, which B's memory drop covers).
    let heard = qb.stats().redis.unwrap().invalidations_received;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let _ = qa.invalidate(Invalidate::Key(qkey.clone())).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if qb.stats().redis.unwrap().invalidations_received > heard {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B never heard A after the failover"
        );
    }
    assert!(qb.get::<u32>(&qkey).await.is_none());
    let took = recovered;
    eprintln!(
        "failover: Redis decided again {took:?} after the kill ({answered} requests answered meanwhile, {} by the failure policy)",
        limits.stats().snapshot().fallbacks
    );
    // The new master decides: a small quota is refused past its size,
    // which the fail-open policy never does.
    let small = policy(Quota::per_minute(2));
    let fresh = Key::Text(format!("{tag}:small").into());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut denied = false;
        for _ in 0..3 {
            denied |= !limits.check(&small, &fresh, 1).await.unwrap().allowed;
        }
        if denied {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no Redis decision after the failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And the cache stores and finds entries on it again.
    let later = &format!("/{tag}/later");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert_eq!(fetch(&svc, later).await.0, StatusCode::OK);
        let found = store
            .get(&CacheKey::from_text(&format!("shop.test{later}")))
            .await;
        if found.is_ok_and(|f| f.is_some()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache never wrote to the new master"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A slot is moved to another master while the stores read and write
/// it: the keys moved answer `ASK` on the old master, then `MOVED`; the
/// single-key stores follow both without a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrated_mid_test_is_followed() {
    let cluster = OwnCluster::start(SHARED_NODE_TIMEOUT_MS).await;
    let url = cluster.url();
    let p = "migrate";
    // One slot for everything: the query cache's namespace `orders` hash
    // tag, which the URLs and the rate-limit key borrow.
    let tag = "{q:orders}";
    let slot = cluster.slot_of(tag).await;
    let store = RedisCacheStore::new(&url, p)
        .unwrap()
        .timeout(Duration::from_secs(2));
    let calls = Arc::new(AtomicUsize::new(0));
    let (svc, _) = cached(store.clone(), calls.clone());
    let paths: Vec<String> = (0..20).map(|i| format!("/{tag}/{i}")).collect();
    for path in &paths {
        fetch(&svc, path).await;
        until_stored(&store, path).await;
    }
    let limits = RedisStore::new(RedisTarget::from(url.as_str()), p)
        .unwrap()
        .timeout(Duration::from_secs(2));
    let api = policy(Quota::per_minute(1_000_000));
    let key = Key::Text(tag.into());
    assert!(limits.check(&api, &key, 1).await.unwrap().allowed);
    let tier = RedisTier::new(&url, p)
        .unwrap()
        .timeout(Duration::from_secs(2));
    let queries = QueryCache::builder().redis(tier).build();
    let loads = Arc::new(AtomicUsize::new(0));
    let load = async |i: u32| {
        let loads = Arc::clone(&loads);
        *queries
            .get_or_insert_with(
                &QueryKey::new(format!("orders:{i}")),
                EntryOptions::ttl(Duration::from_secs(60)),
                move || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, String>(i)
                },
            )
            .await
            .unwrap()
    };
    for i in 0..5 {
        assert_eq!(load(i).await, i);
    }
    let masters = cluster.masters().await;
    let from = cluster.master_of_slot(slot).await;
    let to = *masters.keys().find(|p| **p != from).unwrap();

    // Half the keys moved: those answer ASK on the old master.
    cluster.begin_migration(slot, to, 12).await;
    let check_all = async |when: &str| {
        for path in &paths {
            let found = store
                .get(&CacheKey::from_text(&format!("shop.test{path}")))
                .await;
            assert!(
                found.as_ref().is_ok_and(Option::is_some),
                "{when}: {path}: {found:?}"
            );
        }
        let fallbacks = limits.stats().snapshot().fallbacks;
        assert!(limits.check(&api, &key, 1).await.unwrap().allowed);
        assert_eq!(
            limits.stats().snapshot().fallbacks,
            fallbacks,
            "{when}: Redis decided"
        );
        // A new key in the slot is written where the slot is going.
        let new = format!("/{tag}/new-{when}");
        fetch(&svc, &new).await;
        until_stored(&store, &new).await;
    };
    check_all("migrating").await;
    // The query cache's script touches five keys of the slot: while they
    // are split between two masters Redis says TRYAGAIN, and the cache
    // loads instead (counted), never failing the caller.
    for i in 0..5 {
        assert_eq!(load(i + 100).await, i + 100);
    }
    cluster.finish_migration(slot, from, to).await;
    assert_eq!(cluster.master_of_slot(slot).await, to);
    check_all("moved").await;
    assert_eq!(store.stats().snapshot().errors, 0);
    // After the move, fresh replicas read the query cache's values from
    // the new master: no load.
    let before = loads.load(Ordering::SeqCst);
    let tier = RedisTier::new(&url, p)
        .unwrap()
        .timeout(Duration::from_secs(2));
    let fresh = QueryCache::builder().redis(tier).build();
    for i in 0..5 {
        let v = fresh
            .get_or_insert_with(
                &QueryKey::new(format!("orders:{i}")),
                EntryOptions::ttl(Duration::from_secs(60)),
                || async { Ok::<_, String>(u32::MAX) },
            )
            .await
            .unwrap();
        assert_eq!(*v, i, "orders:{i} from Redis");
    }
    assert_eq!(loads.load(Ordering::SeqCst), before);
    let keys = keys_per_master(&url, &format!("{p}:*{tag}*")).await;
    assert_eq!(keys.iter().filter(|n| **n > 0).count(), 1, "{keys:?}");

    // The query cache's channel's slot moves: its node unsubscribes the
    // replica, which subscribes again on the new node (emptying its
    // memory: messages may have been missed) and hears invalidations
    // there.
    assert!(queries.subscribed(Duration::from_secs(5)).await);
    let dropped = queries.stats().redis.unwrap().l1_dropped;
    let channel_slot = cluster.slot_of(&format!("{p}:query-invalidate")).await;
    let from = cluster.master_of_slot(channel_slot).await;
    let masters = cluster.masters().await;
    let to = *masters.keys().find(|p| **p != from).unwrap();
    cluster.begin_migration(channel_slot, to, 0).await;
    cluster.finish_migration(channel_slot, from, to).await;
    let deadline = Instant::now() + support::gate::DEADLINE;
    while queries.stats().redis.unwrap().l1_dropped == dropped {
        assert!(Instant::now() < deadline, "never subscribed again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(load(7).await, 7);
    let received = queries.stats().redis.unwrap().invalidations_received;
    fresh
        .invalidate(Invalidate::Key(QueryKey::new("orders:7")))
        .await
        .unwrap();
    let deadline = Instant::now() + support::gate::DEADLINE;
    while queries.stats().redis.unwrap().invalidations_received == received {
        assert!(Instant::now() < deadline, "no invalidation after the move");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
