//! The measurement behind the ETag hash, and the cost of the
//! cache-control layer per response.
//!
//! - `hash/*`: candidate hashes over the same bytes (1 KiB, 32 KiB, 1 MiB):
//!   std's SipHash-1-3 (`DefaultHasher`), FNV-1a 64, XXH3-64, XXH3-128.
//! - `layer/*`: a 8 KiB JSON response through `CacheControlLayer` (ETag
//!   generated, no precondition; and a matching If-None-Match answered with
//!   304) beside the bare service.
//!
//! Run: `cargo bench --bench etag`.
#![allow(missing_docs)]

mod common;

use std::hash::Hasher;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use common::{handler, json};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_perf::cache_control::CacheControlLayer;

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn hashes(c: &mut Criterion) {
    let mut group = c.benchmark_group("hash");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, data) in [
        ("1KiB", json(1024)),
        ("32KiB", json(32 * 1024)),
        ("1MiB", json(1024 * 1024)),
    ] {
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(BenchmarkId::new("siphash13", name), |b| {
            b.iter(|| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                h.write(black_box(&data));
                h.finish()
            })
        });
        group.bench_function(BenchmarkId::new("fnv1a64", name), |b| {
            b.iter(|| fnv1a(black_box(&data)))
        });
        group.bench_function(BenchmarkId::new("xxh3-64", name), |b| {
            b.iter(|| xxhash_rust::xxh3::xxh3_64(black_box(&data)))
        });
        group.bench_function(BenchmarkId::new("xxh3-128", name), |b| {
            b.iter(|| xxhash_rust::xxh3::xxh3_128(black_box(&data)))
        });
    }
    group.finish();
}

async fn get<S, B>(svc: &S, inm: Option<&str>) -> Bytes
where
    S: Service<
            Request<Full<Bytes>>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let mut req = Request::get("/items");
    if let Some(tag) = inm {
        req = req.header(header::IF_NONE_MATCH, tag);
    }
    let res = svc
        .clone()
        .oneshot(req.body(Full::default()).unwrap())
        .await
        .unwrap();
    res.into_body().collect().await.unwrap().to_bytes()
}

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let data = json(8 * 1024);
    let bare = handler(data.clone());
    let layered = ServiceBuilder::new()
        .layer(CacheControlLayer::new())
        .service(handler(data.clone()));
    let tag = rt.block_on(async {
        let res = layered
            .clone()
            .oneshot(Request::get("/items").body(Full::default()).unwrap())
            .await
            .unwrap();
        res.headers()[header::ETAG].to_str().unwrap().to_owned()
    });
    // The 304 path really answers 304 with no body.
    assert!(rt.block_on(get(&layered, Some(&tag))).is_empty());
    let mut group = c.benchmark_group("layer");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("bare/8KiB", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(get(&bare, None).await) })
    });
    group.bench_function("cache-control-etag/8KiB", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(get(&layered, None).await) })
    });
    group.bench_function("cache-control-304/8KiB", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(get(&layered, Some(&tag)).await) })
    });
    group.finish();
}

criterion_group!(benches, hashes, layer);
criterion_main!(benches);
