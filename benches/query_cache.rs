//! The query cache's memory hit beside a bare `moka::future::Cache::get`
//! of the same value under the same key text (the bound: at most
//! 1.5x), and `moka::sync::Cache::get` as the floor; a hit on a large value
//! (no serialization on a hit: the same time as a small one); the glob
//! matcher's time against key length (linear); an invalidation's scan per
//! entry held.
//!
//! Run: `cargo bench --bench query_cache`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tower_perf::query_cache::{EntryOptions, Invalidate, QueryCache, QueryKey};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn hits(c: &mut Criterion) {
    let rt = rt();
    let key = QueryKey::with_params("quotes", &[("symbol", "AAPL")]);
    let small: Vec<u64> = (0..16).collect();
    let large: Vec<u64> = (0..8192).collect();
    let mut g = c.benchmark_group("query_cache_hit");

    let moka_future: moka::future::Cache<String, Arc<Vec<u64>>> = moka::future::Cache::builder()
        .max_capacity(64 << 20)
        .weigher(|_, v: &Arc<Vec<u64>>| (v.len() * 8) as u32)
        .build();
    let text = key.as_str().to_owned();
    rt.block_on(moka_future.insert(text.clone(), Arc::new(small.clone())));
    g.bench_function("moka_future_get", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(moka_future.get(black_box(&text)).await) })
    });

    let moka_sync: moka::sync::Cache<String, Arc<Vec<u64>>> = moka::sync::Cache::builder()
        .max_capacity(64 << 20)
        .weigher(|_, v: &Arc<Vec<u64>>| (v.len() * 8) as u32)
        .build();
    moka_sync.insert(text.clone(), Arc::new(small.clone()));
    g.bench_function("moka_sync_get", |b| {
        b.iter(|| black_box(moka_sync.get(black_box(&text))))
    });

    let cache = QueryCache::new();
    rt.block_on(cache.insert(key.clone(), small.clone(), Duration::from_secs(3600)));
    g.bench_function("ours_get", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cache.get::<Vec<u64>>(black_box(&key)).await) })
    });
    g.bench_function("ours_get_or_insert_with", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                cache
                    .get_or_insert_with(black_box(&key), EntryOptions::default(), || async {
                        Ok::<Vec<u64>, ()>(Vec::new())
                    })
                    .await,
            )
        })
    });
    let big = QueryKey::new("quotes:history");
    rt.block_on(cache.insert(big.clone(), large.clone(), Duration::from_secs(3600)));
    g.bench_function("ours_get_64KiB_value", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cache.get::<Vec<u64>>(black_box(&big)).await) })
    });
    let timings = tower_perf::timing::Timings::default();
    let timed = cache.with_timings(&timings);
    g.bench_function("ours_get_with_sub_timing", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(timed.get::<Vec<u64>>(black_box(&key)).await) })
    });
    g.finish();
}

/// A pattern that makes a naive backtracking matcher exponential, over
/// keys of growing length: time per byte stays flat.
fn glob_scaling(c: &mut Criterion) {
    let pattern = Invalidate::pattern("*a*a*a*a*a*a*a*b").expect("pattern");
    let mut g = c.benchmark_group("query_cache_glob");
    for len in [1usize << 10, 1 << 14, 1 << 18] {
        let key = QueryKey::new("a".repeat(len));
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::from_parameter(len), &key, |b, key| {
            b.iter(|| black_box(pattern.selects(black_box(key), &[])))
        });
    }
    g.finish();
}

/// An invalidation by namespace scans every entry: its cost per entry.
fn invalidation_scan(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("query_cache_invalidate_scan");
    g.sample_size(10);
    for n in [10_000u64, 100_000] {
        let cache = QueryCache::new();
        rt.block_on(async {
            for i in 0..n {
                cache
                    .insert(
                        QueryKey::with_params("rows", &i),
                        i,
                        Duration::from_secs(3600),
                    )
                    .await;
            }
        });
        cache.run_pending_tasks();
        g.throughput(Throughput::Elements(n));
        // Selects nothing: the scan alone, the entries stay.
        g.bench_with_input(BenchmarkId::from_parameter(n), &cache, |b, cache| {
            b.to_async(&rt)
                .iter(|| async { black_box(cache.invalidate_namespace("other").await) })
        });
    }
    g.finish();
}

criterion_group!(benches, hits, glob_scaling, invalidation_scan);
criterion_main!(benches);
