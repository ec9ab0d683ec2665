//! The one-shot deflate encoder the compression layer uses for small
//! bodies held whole (`src/compression/oneshot/`, ours) beside libdeflate
//! (the `libdeflater` crate: the fastest well-kept whole-buffer deflate),
//! interleaved in one run: gzip of JSON and of text at 2, 4, 8, 16 and
//! 32 KiB, ours at the layer's levels 2 (default) and 6 beside libdeflate
//! at levels 1, 2, 3 and 6, with output sizes.
//!
//! Each figure is the median of five rounds that alternate the
//! contenders, each round the best mean over batches
//! (`common/best_of.rs`). Both sides reuse their working memory (ours per
//! thread, libdeflate's compressor kept per level) and their output
//! buffer, as the layer would.
//!
//! The bench compiles `src/compression/oneshot/` itself (the module is
//! private to the crate).
//!
//! Run: `cargo bench --bench deflate_oneshot --features compression`
//! (BENCHMARKS.md, section Compression II, "Keep the small-body lead
//! honest").

#![allow(missing_docs)]

#[path = "common/best_of.rs"]
mod best_of;
mod common;

/// What `oneshot` takes from the crate.
mod headers {
    pub(crate) use tower_perf::headers::ContentCoding;
}

/// What `oneshot`'s unit tests take from the crate (`cargo bench` and
/// `clippy --all-targets` build this with `cfg(test)`).
#[cfg(test)]
mod compression {
    pub(crate) mod test_util {
        pub(crate) fn gunzip(b: &[u8]) -> Vec<u8> {
            super::super::gunzip(b)
        }
        pub(crate) fn inflate(b: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(b), &mut out).unwrap();
            out
        }
    }
}

#[path = "../src/compression/oneshot/mod.rs"]
#[allow(dead_code, unused_imports, unreachable_pub)]
mod oneshot;

use std::io::Read;

use best_of::time_per_call;
use bytes::Bytes;
use common::{json, prose};
use libdeflater::{CompressionLvl, Compressor};
use tower_perf::headers::ContentCoding;

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Median of five alternating rounds for each contender.
fn race(contenders: &mut [(&str, Box<dyn FnMut() -> usize + '_>)]) -> Vec<(f64, usize)> {
    let mut times = vec![Vec::new(); contenders.len()];
    let sizes: Vec<usize> = contenders.iter_mut().map(|(_, f)| f()).collect();
    for _ in 0..5 {
        for (i, (_, f)) in contenders.iter_mut().enumerate() {
            times[i].push(time_per_call(|| {
                std::hint::black_box(f());
            }));
        }
    }
    times
        .into_iter()
        .zip(sizes)
        .map(|(mut t, size)| {
            t.sort();
            (t[2].as_secs_f64() * 1e6, size)
        })
        .collect()
}

fn main() {
    println!(
        "| payload | body | ours L2 µs (B) | ours L6 µs (B) | libdeflate L1 µs (B) | libdeflate L2 µs (B) | libdeflate L3 µs (B) | libdeflate L6 µs (B) | libdeflate L2 / ours L2 | libdeflate L6 / ours L6 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut compressors: Vec<Compressor> = [1, 2, 3, 6]
        .into_iter()
        .map(|l| Compressor::new(CompressionLvl::new(l).unwrap()))
        .collect();
    for (payload, make) in [("json", json as fn(usize) -> Bytes), ("text", prose)] {
        for kib in [2usize, 4, 8, 16, 32] {
            let data = make(kib << 10);
            let mut ours_out = Vec::with_capacity(data.len() + 64);
            let bound = compressors[0].gzip_compress_bound(data.len());
            let mut theirs_out = vec![0u8; bound];
            // Both decode to the input.
            for level in [2, 6] {
                ours_out.clear();
                assert!(oneshot::compress(
                    ContentCoding::Gzip,
                    level,
                    &data,
                    &mut ours_out
                ));
                assert_eq!(gunzip(&ours_out), data);
            }
            for c in compressors.iter_mut() {
                let n = c.gzip_compress(&data, &mut theirs_out).unwrap();
                assert_eq!(gunzip(&theirs_out[..n]), data);
            }
            let (ours_buf, theirs_buf) = (&mut ours_out, &mut theirs_out);
            let [c1, c2, c3, c6] = &mut compressors[..] else {
                unreachable!()
            };
            let ours_buf = std::cell::RefCell::new(ours_buf);
            let theirs_buf = std::cell::RefCell::new(theirs_buf);
            let ours = |level: u32| {
                let buf = &ours_buf;
                let data = &data;
                move || {
                    let mut b = buf.borrow_mut();
                    b.clear();
                    oneshot::compress(ContentCoding::Gzip, level, data, &mut b);
                    b.len()
                }
            };
            let (tb, d) = (&theirs_buf, &data);
            let r = race(&mut [
                ("ours L2", Box::new(ours(2))),
                ("ours L6", Box::new(ours(6))),
                (
                    "libdeflate L1",
                    Box::new(|| c1.gzip_compress(d, &mut tb.borrow_mut()).unwrap()),
                ),
                (
                    "libdeflate L2",
                    Box::new(|| c2.gzip_compress(d, &mut tb.borrow_mut()).unwrap()),
                ),
                (
                    "libdeflate L3",
                    Box::new(|| c3.gzip_compress(d, &mut tb.borrow_mut()).unwrap()),
                ),
                (
                    "libdeflate L6",
                    Box::new(|| c6.gzip_compress(d, &mut tb.borrow_mut()).unwrap()),
                ),
            ]);
            let cells: Vec<String> = r.iter().map(|(t, b)| format!("{t:.2} ({b})")).collect();
            println!(
                "| {payload} | {kib} KiB | {} | {:.2}x | {:.2}x |",
                cells.join(" | "),
                r[3].0 / r[0].0,
                r[5].0 / r[1].0
            );
        }
    }
}
