//! The cost of TimingLayer per request: the layer around a `service_fn`
//! beside the same service alone, on one thread and on two threads at once
//! (where shared counters would show up as contention).
//!
//! Run: `cargo bench --bench timing`.
#![allow(missing_docs)]

mod common;

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_perf::timing::TimingLayer;

fn inner()
-> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::from(Bytes::from_static(b"ok"))))
    })
}

async fn one<S, B>(svc: &S) -> Bytes
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let req = Request::get("/api/v1/items").body(Full::default()).unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    res.into_body().collect().await.unwrap().to_bytes()
}

/// Runs `iters` requests on each of `threads` threads at once; returns the
/// slowest thread's time (time per request per thread, once divided).
fn parallel<S, B>(svc: &S, threads: usize, iters: u64) -> Duration
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: std::fmt::Debug,
{
    common::parallel(threads, |_| {
        let svc = svc.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        move || {
            rt.block_on(async {
                for _ in 0..iters {
                    black_box(one(&svc).await);
                }
            })
        }
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bare = inner();
    let layer = TimingLayer::new().classifier(|_, _, _| Some("/api/v1/items".to_owned()));
    let timed = ServiceBuilder::new().layer(layer.clone()).service(inner());
    // It must really record.
    rt.block_on(one(&timed));
    assert_eq!(layer.stats().snapshot().overall.count, 1);

    // With a `&'static`-free classifier that allocates, and with the
    // constant `unmatched` label (what MatchedPath costs is a lookup).
    let unmatched = ServiceBuilder::new()
        .layer(TimingLayer::new().sub_timings(true))
        .service(inner());
    let lean = ServiceBuilder::new()
        .layer(TimingLayer::new().sub_timings(false))
        .service(inner());

    let mut group = c.benchmark_group("timing");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(one(&bare).await) })
    });
    group.bench_function("timed-sub-timings", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(one(&unmatched).await) })
    });
    group.bench_function("timed", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(one(&lean).await) })
    });
    group.bench_function("timed-classifier", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(one(&timed).await) })
    });
    group.bench_function("bare-2-threads", |b| {
        b.iter_custom(|iters| parallel(&bare, 2, iters))
    });
    group.bench_function("timed-sub-timings-2-threads", |b| {
        b.iter_custom(|iters| parallel(&unmatched, 2, iters))
    });
    group.bench_function("timed-2-threads", |b| {
        b.iter_custom(|iters| parallel(&lean, 2, iters))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
