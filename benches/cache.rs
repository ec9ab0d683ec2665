//! Serving a cache hit of a 10 KiB entry, beside calling a trivial inner
//! service directly (the bare cost of a tower call and a body), beside the
//! harness's floor (a response with no fields) and beside a quick_cache
//! lookup alone (the memory store's map: its floor).
//!
//! Run: `cargo bench --bench cache`.
#![allow(missing_docs)]

mod common;

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_perf::cache::CacheLayer;

async fn get<S, B>(svc: &S) -> Bytes
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let req = Request::get("/api/v1/items")
        .header(header::HOST, "example.com")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Full::default())
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    res.into_body().collect().await.unwrap().to_bytes()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = common::json(10 * 1024);
    let bare = common::cacheable_origin(body.clone());
    let cached = ServiceBuilder::new()
        .layer(CacheLayer::new())
        .service(common::cacheable_origin(body.clone()));
    // Fill the cache, and check the hit serves the very bytes stored.
    let first = rt.block_on(get(&cached));
    let hit = rt.block_on(get(&cached));
    assert_eq!(first.as_ptr(), hit.as_ptr(), "a hit must not copy the body");

    let map: quick_cache::sync::Cache<
        String,
        Bytes,
        quick_cache::UnitWeighter,
        foldhash::fast::RandomState,
    > = quick_cache::sync::Cache::with(
        1024,
        1024,
        quick_cache::UnitWeighter,
        foldhash::fast::RandomState::default(),
        Default::default(),
    );
    map.insert("example.com/api/v1/items".to_owned(), body.clone());

    let mut group = c.benchmark_group("cache-hit-10KiB");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    // The floor of any service in this harness: a response with no
    // fields around the same body (request building, `oneshot`, body
    // collection). A hit's own cost is the hit minus this.
    let floor_body = body.clone();
    let floor = service_fn(move |_req: Request<Full<Bytes>>| {
        let body = floor_body.clone();
        async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
    });
    group.bench_function("floor (no fields)", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(get(&floor).await) })
    });
    group.bench_function("bare inner service", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(get(&bare).await) })
    });
    group.bench_function("tower-perf hit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(get(&cached).await) })
    });
    // Two threads at once, each on its own runtime (time per request per
    // thread): shared counters or locks on the hit path show up here.
    for (name, svc) in [
        ("bare inner service, 2 threads", None),
        ("tower-perf hit, 2 threads", Some(&cached)),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                common::parallel(2, |_| {
                    let bare = bare.clone();
                    let cached = svc.cloned();
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    move || {
                        rt.block_on(async {
                            for _ in 0..iters {
                                match &cached {
                                    Some(c) => black_box(get(c).await),
                                    None => black_box(get(&bare).await),
                                };
                            }
                        })
                    }
                })
            })
        });
    }
    group.bench_function("quick_cache get alone", |b| {
        b.iter(|| black_box(map.get(black_box("example.com/api/v1/items"))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
