//! The rate limiter's store beside governor's keyed limiter, same quota:
//! cost per check with one key and with 100,000 keys, on one and two
//! threads, and memory per tracked key; and the whole layer beside
//! tower_governor's, per request, around the same handler.
//!
//! Run: `cargo bench --bench rate_limit`.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use governor::{Quota as GQuota, RateLimiter};
use tower_perf::rate_limit::{Key, MemoryStore, PolicyRef, Quota};

const KEYS: u32 = 100_000;

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i))
}

/// A quota no benchmark loop exhausts, so every check takes the
/// "allowed" path in both.
fn quotas() -> (PolicyRef, GQuota) {
    let n = 1_000_000_000;
    let ours = PolicyRef {
        index: 0,
        name: "bench".into(),
        quota: Quota::per_second(n),
    };
    let theirs = GQuota::per_second(NonZeroU32::new(n).unwrap());
    (ours, theirs)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn bytes_per_key() {
    const N: u32 = 1_000_000;
    let (policy, gq) = quotas();
    let before = rss_bytes();
    let ours = MemoryStore::with_max_keys(N as usize);
    for i in 0..N {
        ours.check_now(&policy, &Key::Ip(ip(i)), 1);
    }
    let mid = rss_bytes();
    let theirs = RateLimiter::keyed(gq);
    for i in 0..N {
        let _ = theirs.check_key(&ip(i));
    }
    let after = rss_bytes();
    eprintln!(
        "bytes per tracked key (RSS growth over {N} IPv4 keys): tower-perf {:.1}, governor {:.1}",
        (mid - before) as f64 / f64::from(N),
        (after - mid) as f64 / f64::from(N)
    );
    drop((ours, theirs));
}

fn bench(c: &mut Criterion) {
    bytes_per_key();
    let (policy, gq) = quotas();
    let policy = Arc::new(policy);
    let mut group = c.benchmark_group("rate-limit");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for keys in [1u32, KEYS] {
        let ours = Arc::new(MemoryStore::with_max_keys(KEYS as usize * 2));
        let theirs = Arc::new(RateLimiter::keyed(gq));
        for i in 0..keys {
            ours.check_now(&policy, &Key::Ip(ip(i)), 1);
            let _ = theirs.check_key(&ip(i));
        }
        let name = if keys == 1 { "1-key" } else { "100k-keys" };
        {
            let (ours, policy) = (ours.clone(), policy.clone());
            let mut i = 0u32;
            group.bench_function(BenchmarkId::new("tower-perf", name), |b| {
                b.iter(|| {
                    i = (i + 1) % keys;
                    black_box(ours.check_now(&policy, &Key::Ip(ip(i)), 1))
                })
            });
        }
        {
            let theirs = theirs.clone();
            let mut i = 0u32;
            group.bench_function(BenchmarkId::new("governor", name), |b| {
                b.iter(|| {
                    i = (i + 1) % keys;
                    black_box(theirs.check_key(&ip(i)).is_ok())
                })
            });
        }
        {
            let (ours, policy) = (ours.clone(), policy.clone());
            group.bench_function(BenchmarkId::new("tower-perf-2-threads", name), |b| {
                b.iter_custom(|iters| {
                    common::parallel(2, |t| {
                        let (ours, policy) = (ours.clone(), policy.clone());
                        move || {
                            for i in 0..iters {
                                let i = i + t as u64 * 7919;
                                let key = Key::Ip(ip((i % u64::from(keys)) as u32));
                                black_box(ours.check_now(&policy, &key, 1));
                            }
                        }
                    })
                })
            });
        }
        {
            let theirs = theirs.clone();
            group.bench_function(BenchmarkId::new("governor-2-threads", name), |b| {
                b.iter_custom(|iters| {
                    common::parallel(2, |t| {
                        let theirs = theirs.clone();
                        move || {
                            for i in 0..iters {
                                let i = i + t as u64 * 7919;
                                black_box(
                                    theirs.check_key(&ip((i % u64::from(keys)) as u32)).is_ok(),
                                );
                            }
                        }
                    })
                })
            });
        }
    }
    group.finish();
}

fn layers(c: &mut Criterion) {
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use http::{Request, Response};
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

    fn handler()
    -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone
    {
        service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::from("ok")))
        })
    }
    fn request(i: u32) -> Request<Body> {
        let mut req = Request::get("/api/items").body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip(i % 1000), 4000)));
        req
    }
    async fn run<S>(svc: &S, i: u32) -> u16
    where
        S: Service<Request<Body>, Error = Infallible> + Clone,
        S::Response: Into<Response<Body>>,
    {
        let res: Response<Body> = svc.clone().oneshot(request(i)).await.unwrap().into();
        res.status().as_u16()
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ours = ServiceBuilder::new()
        .layer(tower_perf::rate_limit::RateLimitLayer::new().rule(
            tower_perf::rate_limit::RateRule::new("api", Quota::per_second(1_000_000_000)),
        ))
        .service(handler())
        .map_response(|r: Response<tower_perf::rate_limit::ResponseBody<Body>>| r.map(Body::new));
    let quiet = ServiceBuilder::new()
        .layer(
            tower_perf::rate_limit::RateLimitLayer::new()
                .rule(tower_perf::rate_limit::RateRule::new(
                    "api",
                    Quota::per_second(1_000_000_000),
                ))
                .headers(false),
        )
        .service(handler())
        .map_response(|r: Response<tower_perf::rate_limit::ResponseBody<Body>>| r.map(Body::new));
    let config = common::governor_quota().finish().unwrap();
    let theirs = ServiceBuilder::new()
        .layer(tower_governor::GovernorLayer::new(config))
        .service(handler());
    // Its `x-ratelimit-limit`/`-remaining` fields on: the peer of ours with
    // the RateLimit fields.
    let config = common::governor_quota().use_headers().finish().unwrap();
    let theirs_headers = ServiceBuilder::new()
        .layer(tower_governor::GovernorLayer::new(config))
        .service(handler());
    let bare = handler();
    // Both let every request through with this quota.
    assert_eq!(rt.block_on(run(&ours, 1)), 200);
    assert_eq!(rt.block_on(run(&theirs, 1)), 200);
    assert_eq!(rt.block_on(run(&theirs_headers, 1)), 200);

    let mut group = c.benchmark_group("rate-limit-layer");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let mut i = 0u32;
    group.bench_function("bare", |b| {
        b.to_async(&rt).iter(|| {
            i = i.wrapping_add(1);
            let n = i;
            let svc = &bare;
            async move { black_box(run(svc, n).await) }
        })
    });
    group.bench_function("tower-perf", |b| {
        b.to_async(&rt).iter(|| {
            i = i.wrapping_add(1);
            let n = i;
            let svc = &ours;
            async move { black_box(run(svc, n).await) }
        })
    });
    // tower_governor sends no fields by default: compare with ours off too.
    group.bench_function("tower-perf-no-fields", |b| {
        b.to_async(&rt).iter(|| {
            i = i.wrapping_add(1);
            let n = i;
            let svc = &quiet;
            async move { black_box(run(svc, n).await) }
        })
    });
    group.bench_function("tower_governor", |b| {
        b.to_async(&rt).iter(|| {
            i = i.wrapping_add(1);
            let n = i;
            let svc = &theirs;
            async move { black_box(run(svc, n).await) }
        })
    });
    group.bench_function("tower_governor-headers", |b| {
        b.to_async(&rt).iter(|| {
            i = i.wrapping_add(1);
            let n = i;
            let svc = &theirs_headers;
            async move { black_box(run(svc, n).await) }
        })
    });
    group.finish();
}

criterion_group!(benches, bench, layers);
criterion_main!(benches);
