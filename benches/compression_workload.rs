//! A fixed compression workload, for instruction counting under callgrind:
//! on a shared, noisy machine, instructions are repeatable where wall-clock
//! time is not. `benches/callgrind.sh` runs it and prints the table of
//! BENCHMARKS.md.
//!
//! ```text
//! cargo bench --bench compression_workload --no-run
//! valgrind --tool=callgrind target/release/deps/compression_workload-* ours 2048 2 2000
//! ```
//!
//! Arguments: contender (`none`, `ours`, `tower-http`, `flate2`, `zlib-reset`), body size in
//! bytes, gzip level, iterations. `none` runs the same loop without any
//! compression, to subtract the setup.
//!
//! `interleaved` instead prints wall-clock times by body size and kind
//! (JSON, text) for bodies compressed whole: tower-perf, tower-http and a
//! reused raw zlib stream (flate2's `Compress` with `reset()`, the best a
//! pool of zlib streams does), taking turns in 15 rounds of about 400 KB of
//! input each, so the machine's drift hits all three alike; medians of the
//! rounds. The measurement behind the one-shot encoder's size limits:
//!
//! ```text
//! cargo bench --bench compression_workload -- interleaved
//! ```
#![allow(missing_docs)]

mod common;

use std::time::Instant;

use bytes::Bytes;
use common::{contenders, gunzip, gzip_fresh, json, prose, run};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().is_some_and(|a| a == "interleaved") {
        return interleaved();
    }
    let [who, size, level, iters] = args.as_slice() else {
        // `cargo bench` runs every bench target without arguments: nothing to do.
        eprintln!(
            "usage: compression_workload none|ours|tower-http|flate2|zlib-reset SIZE LEVEL ITERS"
        );
        return;
    };
    let (size, level, iters): (usize, u32, usize) = (
        size.parse().unwrap(),
        level.parse().unwrap(),
        iters.parse().unwrap(),
    );
    let data = json(size);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (bare, ours, theirs) = contenders(&data, level);
    let mut out = 0;
    let mut reused = flate2::Compress::new_gzip(flate2::Compression::new(level), 15);
    let mut buf = Vec::with_capacity(size + 64);
    rt.block_on(async {
        for _ in 0..iters {
            out += match who.as_str() {
                "none" => run(&bare).await.len(),
                "ours" => run(&ours).await.len(),
                "tower-http" => run(&theirs).await.len(),
                "flate2" => gzip_fresh(&data, level).len(),
                "zlib-reset" => {
                    reused.reset();
                    buf.clear();
                    reused
                        .compress_vec(&data, &mut buf, flate2::FlushCompress::Finish)
                        .unwrap();
                    buf.len()
                }
                other => panic!("unknown contender {other}"),
            };
        }
    });
    println!(
        "{who} {size} B L{level} x{iters}: {} B out per response",
        out / iters.max(1)
    );
}

/// Median of `rounds` timings of `iters` calls of each contender in turn,
/// per call: microseconds, in the order given.
fn medians(rounds: usize, iters: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut times = vec![Vec::with_capacity(rounds); fs.len()];
    for _ in 0..rounds {
        for (f, t) in fs.iter_mut().zip(&mut times) {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.push(start.elapsed().as_secs_f64() * 1e6 / iters as f64);
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect()
}

fn interleaved() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    println!(
        "| body | level | tower-perf | tower-http | zlib-reset | tower-http / tower-perf | zlib-reset / tower-perf | size tower-perf / zlib |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for level in [2, 6] {
        for n in [2048, 4096, 8192, 16_384, 32_768, 1 << 20] {
            for (kind, data) in [("json", json(n)), ("text", prose(n))] {
                let (_, ours, theirs) = contenders(&data, level);
                let ours_out: Bytes = rt.block_on(run(&ours));
                assert_eq!(gunzip(&ours_out), data);
                let zlib_len = gzip_fresh(&data, level).len();
                let mut compress = flate2::Compress::new_gzip(flate2::Compression::new(level), 15);
                let mut out = Vec::with_capacity(n + 64);
                let m = medians(
                    15,
                    (400_000 / n).max(3),
                    &mut [
                        &mut || {
                            std::hint::black_box(rt.block_on(run(&ours)));
                        },
                        &mut || {
                            std::hint::black_box(rt.block_on(run(&theirs)));
                        },
                        &mut || {
                            compress.reset();
                            out.clear();
                            compress
                                .compress_vec(&data, &mut out, flate2::FlushCompress::Finish)
                                .unwrap();
                            std::hint::black_box(out.len());
                        },
                    ],
                );
                let size = if n < 1 << 20 {
                    format!("{} KiB", n / 1024)
                } else {
                    "1 MiB".to_owned()
                };
                println!(
                    "| {kind} {size} | {level} | {:.1} µs | {:.1} µs | {:.1} µs | {:.2}x | {:.2}x | {:.3} |",
                    m[0],
                    m[1],
                    m[2],
                    m[1] / m[0],
                    m[2] / m[0],
                    ours_out.len() as f64 / zlib_len as f64
                );
            }
        }
    }
}
