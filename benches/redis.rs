//! The Redis stores against the local Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`): rate-limit checks through `RedisStore`
//! beside a plain `EVAL` of the same script (the floor: what any client
//! pays for the script), one at a time and 32 in flight; and a cache
//! lookup answered by Redis (an L2 hit of a 10 KiB entry), one at a time
//! and 32 in flight; and the query cache's `Invalidate::All` over 100
//! namespaces. With `REDIS_CLUSTER_URL` (seed URLs, comma-separated)
//! the store benchmarks run against that Redis Cluster too, in the same
//! run ("cluster" beside "server").
//!
//! Run: `cargo bench --bench redis --features redis`, or beside a local
//! cluster: `REDIS_CLUSTER_URL=$(examples/redis-cluster.sh start) cargo
//! bench --bench redis --features redis; examples/redis-cluster.sh stop`.
#![allow(missing_docs)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use tower_perf::RedisTarget;
use tower_perf::cache::{CacheKey, CacheStore, RedisCacheStore};
use tower_perf::query_cache::{Invalidate, QueryCache, QueryKey, RedisTier};
use tower_perf::rate_limit::{Key, PolicyRef, Quota, RateLimitStore, RedisStore};

const IN_FLIGHT: usize = 32;

/// Namespaces in the query cache's registry when `All` is invalidated.
const NAMESPACES: usize = 100;

fn url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let prefix = format!("tower-perf-bench:{}", std::process::id());
    let store = rt.block_on(async {
        RedisStore::new(url(), &prefix)
            .unwrap()
            .timeout(Duration::from_secs(1))
    });
    let policy = PolicyRef {
        index: 0,
        name: "bench".into(),
        quota: Quota::per_second(1_000_000_000),
    };
    let key = Key::Ip(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
    let client = redis::Client::open(url()).unwrap();
    let conn = rt
        .block_on(client.get_multiplexed_async_connection())
        .unwrap();
    // Check both work before measuring.
    rt.block_on(async {
        assert!(store.check(&policy, &key, 1).await.unwrap().allowed);
        let mut c = conn.clone();
        let r: (i64, i64, i64, i64) = eval(&mut c, &prefix).await;
        assert_eq!(r.0, 1);
    });

    let mut group = c.benchmark_group("redis-rate-limit");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    group.bench_function("server: RedisStore::check, sequential", |b| {
        b.to_async(&rt)
            .iter(|| async { store.check(&policy, &key, 1).await.unwrap() })
    });
    group.bench_function("plain EVAL, sequential", |b| {
        b.to_async(&rt).iter(|| {
            let mut c = conn.clone();
            let p = prefix.clone();
            async move { eval(&mut c, &p).await }
        })
    });
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    group.bench_function("server: RedisStore::check, 32 in flight", |b| {
        b.to_async(&rt).iter(|| {
            join_all((0..IN_FLIGHT).map(|i| {
                let k = Key::Ip(IpAddr::V4(Ipv4Addr::new(10, 1, 3, i as u8)));
                let (s, p) = (&store, &policy);
                async move { s.check(p, &k, 1).await.unwrap() }
            }))
        })
    });
    group.bench_function("plain EVAL, 32 in flight", |b| {
        b.to_async(&rt).iter(|| {
            join_all((0..IN_FLIGHT).map(|_| {
                let mut c = conn.clone();
                let p = prefix.clone();
                async move { eval(&mut c, &p).await }
            }))
        })
    });
    group.finish();

    // L2 hit: a 10 KiB response read back from Redis.
    let entry = rt.block_on(stored_entry());
    l2_hits(
        c,
        &rt,
        "server",
        &RedisTarget::server(url()),
        &prefix,
        &entry,
    );
    invalidate_all(c, &rt, "server", &RedisTarget::server(url()), &prefix);

    // The same stores on a cluster, in the same run.
    if let Ok(cluster) = std::env::var("REDIS_CLUSTER_URL") {
        let cluster = RedisTarget::from(cluster);
        let store = rt.block_on(async {
            RedisStore::new(&cluster, &prefix)
                .unwrap()
                .timeout(Duration::from_secs(1))
        });
        rt.block_on(async { assert!(store.check(&policy, &key, 1).await.unwrap().allowed) });
        let mut group = c.benchmark_group("redis-rate-limit");
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        group.throughput(Throughput::Elements(1));
        group.bench_function("cluster: RedisStore::check, sequential", |b| {
            b.to_async(&rt)
                .iter(|| async { store.check(&policy, &key, 1).await.unwrap() })
        });
        group.throughput(Throughput::Elements(IN_FLIGHT as u64));
        group.bench_function("cluster: RedisStore::check, 32 in flight", |b| {
            b.to_async(&rt).iter(|| {
                join_all((0..IN_FLIGHT).map(|i| {
                    let k = Key::Ip(IpAddr::V4(Ipv4Addr::new(10, 1, 3, i as u8)));
                    let (s, p) = (&store, &policy);
                    async move { s.check(p, &k, 1).await.unwrap() }
                }))
            })
        });
        group.finish();
        l2_hits(c, &rt, "cluster", &cluster, &prefix, &entry);
        invalidate_all(c, &rt, "cluster", &cluster, &prefix);
        clean(&rt, &cluster, &prefix);
    }
    rt.block_on(async {
        let mut c = conn.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut c)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<u64, _> = redis::cmd("DEL").arg(keys).query_async(&mut c).await;
        }
    });
}

/// L2 hits of a 10 KiB entry on `target`: one at a time, and 32 in flight
/// (32 URLs, over the slots on a cluster).
fn l2_hits(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    label: &str,
    target: &RedisTarget,
    prefix: &str,
    entry: &tower_perf::cache::CachedResponse,
) {
    let l2 = rt.block_on(async {
        RedisCacheStore::new(target, &format!("{prefix}:cache"))
            .unwrap()
            .timeout(Duration::from_secs(1))
    });
    let keys: Vec<CacheKey> = (0..IN_FLIGHT)
        .map(|i| CacheKey::from_text(&format!("bench.test/api/v1/items/{i}")))
        .collect();
    rt.block_on(async {
        for k in &keys {
            l2.put(k.clone(), Arc::new(entry.clone()), Duration::from_secs(600))
                .await
                .unwrap();
        }
        let found = l2.get(&keys[0]).await.unwrap().expect("stored");
        assert_eq!(found[0].body().len(), 10 * 1024);
    });
    let mut group = c.benchmark_group("redis-cache");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("{label}: L2 hit, 10 KiB, sequential"), |b| {
        b.to_async(rt)
            .iter(|| async { l2.get(&keys[0]).await.unwrap().expect("a hit") })
    });
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    group.bench_function(format!("{label}: L2 hit, 10 KiB, 32 in flight"), |b| {
        b.to_async(rt).iter(|| {
            join_all(
                keys.iter()
                    .map(|k| async { l2.get(k).await.unwrap().expect("a hit") }),
            )
        })
    });
    group.finish();
}

/// `QueryCache::invalidate(Invalidate::All)` with [`NAMESPACES`]
/// namespaces in use: the registry read, two counters moved in each
/// namespace (one pipeline on a server; on a cluster a pipeline per
/// namespace, 16 at once), and the broadcast to the other replicas.
fn invalidate_all(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    label: &str,
    target: &RedisTarget,
    prefix: &str,
) {
    let cache = rt.block_on(async {
        let tier = RedisTier::new(target, &format!("{prefix}:queries"))
            .unwrap()
            .timeout(Duration::from_secs(1));
        let cache = QueryCache::builder().redis(tier).build();
        for i in 0..NAMESPACES {
            let key = QueryKey::new(format!("ns{i}:1"));
            cache.insert(key, i, Duration::from_secs(600)).await;
        }
        let ns = QueryKey::new(format!("ns{}:1", NAMESPACES - 1));
        assert_eq!(
            cache.get::<usize>(&ns).await.as_deref(),
            Some(&(NAMESPACES - 1))
        );
        cache
    });
    let mut group = c.benchmark_group("redis-query-cache");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.bench_function(
        format!("{label}: invalidate All, {NAMESPACES} namespaces"),
        |b| {
            b.to_async(rt)
                .iter(|| async { cache.invalidate(Invalidate::All).await.unwrap() })
        },
    );
    group.finish();
}

/// Deletes what the benchmark wrote under `prefix` on a cluster (every
/// master).
fn clean(rt: &tokio::runtime::Runtime, target: &RedisTarget, prefix: &str) {
    let RedisTarget::Cluster(seeds) = target else {
        return;
    };
    rt.block_on(async {
        let client = redis::cluster::ClusterClient::new(seeds.clone()).unwrap();
        let mut conn = client.get_async_connection().await.unwrap();
        // KEYS goes to every master and combines the answers.
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        for k in keys {
            let _: Result<u64, _> = redis::cmd("DEL").arg(k).query_async(&mut conn).await;
        }
    });
}

/// The same script, sent whole with EVAL each time, as a plain client would.
async fn eval(c: &mut redis::aio::MultiplexedConnection, prefix: &str) -> (i64, i64, i64, i64) {
    redis::cmd("EVAL")
        .arg(include_str!("../src/rate_limit/gcra.lua"))
        .arg(1)
        .arg(format!("{prefix}:eval"))
        .arg(1)
        .arg(1)
        .arg(1)
        .arg(0)
        .query_async(c)
        .await
        .unwrap()
}

/// A 10 KiB response as the cache stores it, obtained through the layer.
async fn stored_entry() -> tower_perf::cache::CachedResponse {
    use http::{Request, Response};
    use http_body_util::Full;
    use tower::{ServiceBuilder, ServiceExt, service_fn};
    let layer = tower_perf::cache::CacheLayer::new().max_entry_size(256 << 10);
    let handle_store = tower_perf::cache::MemoryStore::new(1 << 20);
    let layer = layer.store(handle_store.clone());
    let body = common::json(10 * 1024);
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        move |_r: Request<Full<bytes::Bytes>>| {
            let body = body.clone();
            async move {
                Ok::<_, std::convert::Infallible>(
                    Response::builder()
                        .header("cache-control", "max-age=600")
                        .body(Full::new(body))
                        .unwrap(),
                )
            }
        },
    ));
    let req = Request::get("/api/v1/items")
        .header("host", "bench.test")
        .body(Full::default())
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
    let key = CacheKey::from_text("bench.test/api/v1/items");
    let found = handle_store
        .get(&key)
        .await
        .unwrap()
        .expect("stored by the layer");
    (*found[0]).clone()
}

criterion_group!(benches, bench);
criterion_main!(benches);
