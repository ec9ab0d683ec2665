//! Compression, side by side on the same bytes and level:
//!
//! - `bare`: the inner service alone (no compression), the floor;
//! - `tower-perf`: our `CompressionLayer`;
//! - `tower-http`: tower-http's `CompressionLayer` (same flate2 backend);
//! - `flate2`: raw `GzEncoder` with no service around it (fresh encoder);
//! - `flate2-reset`: raw `Compress` reused with `reset()`.
//!
//! Plus the measurements behind the defaults: time and size per gzip level
//! on the demo server's payloads, and per body size at the default level.
//!
//! Run: `cargo bench --bench compression` (see BENCHMARKS.md).

#![allow(missing_docs)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use common::{contenders, gunzip, gzip_fresh, json, run};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tower_perf::compression::DEFAULT_LEVEL;

#[allow(dead_code)]
#[path = "../examples/server.rs"]
mod server;

fn peers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("compression");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for level in [DEFAULT_LEVEL, 6] {
        for (size, data) in [("2KiB", json(2 * 1024)), ("1MiB", json(1024 * 1024))] {
            let name = format!("{size}-L{level}");
            group.throughput(Throughput::Bytes(data.len() as u64));
            group.sample_size(if data.len() > 100_000 { 20 } else { 100 });
            let (bare, ours, theirs) = contenders(&data, level);

            // Each contender must really compress, to the same bytes.
            let (o, t) = rt.block_on(async { (run(&ours).await, run(&theirs).await) });
            assert_eq!(gunzip(&o), data);
            assert_eq!(gunzip(&t), data);
            let f = gzip_fresh(&data, level);
            eprintln!(
                "{name}: {} B in; out: tower-perf {} B, tower-http {} B, flate2 {} B",
                data.len(),
                o.len(),
                t.len(),
                f.len()
            );

            group.bench_function(BenchmarkId::new("bare", &name), |b| {
                b.to_async(&rt)
                    .iter(|| async { black_box(run(&bare).await) })
            });
            group.bench_function(BenchmarkId::new("tower-perf", &name), |b| {
                b.to_async(&rt)
                    .iter(|| async { black_box(run(&ours).await) })
            });
            group.bench_function(BenchmarkId::new("tower-http", &name), |b| {
                b.to_async(&rt)
                    .iter(|| async { black_box(run(&theirs).await) })
            });
            group.bench_function(BenchmarkId::new("flate2", &name), |b| {
                b.iter(|| black_box(gzip_fresh(black_box(&data), level)))
            });
            let mut compress = flate2::Compress::new_gzip(flate2::Compression::new(level), 15);
            group.bench_function(BenchmarkId::new("flate2-reset", &name), |b| {
                b.iter(|| {
                    compress.reset();
                    let mut out = Vec::with_capacity(data.len() / 2 + 64);
                    loop {
                        let before = compress.total_in() as usize;
                        let st = compress
                            .compress_vec(&data[before..], &mut out, flate2::FlushCompress::Finish)
                            .unwrap();
                        if st == flate2::Status::StreamEnd {
                            break;
                        }
                        out.reserve(out.capacity());
                    }
                    black_box(out)
                })
            });
        }
    }
    group.finish();
}

/// Time and size per gzip level on the demo server's payloads: the
/// measurement behind `DEFAULT_LEVEL`.
fn levels(c: &mut Criterion) {
    let items = Bytes::from(serde_json::to_vec(&server::seed_items()).unwrap());
    let js = server::APP_JS.clone();
    let mut group = c.benchmark_group("gzip-level");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, data) in [
        ("items-json", items),
        ("app-js", js),
        ("json-64KiB", json(64 * 1024)),
    ] {
        group.throughput(Throughput::Bytes(data.len() as u64));
        for level in [1, 2, 3, 4, 5, 6, 9] {
            eprintln!(
                "{name} ({} B) gzip-{level}: {} B",
                data.len(),
                gzip_fresh(&data, level).len()
            );
            group.bench_function(BenchmarkId::new(name, level), |b| {
                b.iter(|| black_box(gzip_fresh(black_box(&data), level)))
            });
        }
    }
    group.finish();
}

/// Size and cost by body size at the default level: the measurement behind
/// `DEFAULT_MIN_SIZE`.
fn sizes(c: &mut Criterion) {
    let mut group = c.benchmark_group("gzip-size");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [128, 256, 512, 1024, 1460, 2048, 4096] {
        let data = json(n);
        eprintln!(
            "{n} B at gzip-{DEFAULT_LEVEL}: {} B",
            gzip_fresh(&data, DEFAULT_LEVEL).len()
        );
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| black_box(gzip_fresh(black_box(&data), DEFAULT_LEVEL)))
        });
    }
    group.finish();
}

criterion_group!(benches, peers, levels, sizes);
criterion_main!(benches);
