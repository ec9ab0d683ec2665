//! gzip and deflate for bodies held whole: one call to libdeflate (the
//! `libdeflater` crate), the fastest well-kept whole-buffer deflate, on
//! compressors kept per thread.
//!
//! It replaced the crate's own one-shot encoder (issue 19): in the same
//! run, at about the same output size, libdeflate was 8% slower on 2 KiB
//! of JSON, 1.1x–1.2x faster on 8–32 KiB of JSON and 1.3x–1.6x faster on
//! text (BENCHMARKS.md, section "The small-body encoder").
//! Streams, and bodies too large to hold, go through zlib-rs (`zlib.rs`).

use std::cell::RefCell;

use libdeflater::{CompressionLvl, Compressor};

use super::pool::Pool;

use crate::headers::ContentCoding;

/// Compressors kept per thread, over all levels (a few hundred KiB each).
const POOL_CAP: usize = 4;

thread_local! {
    static POOL: Pool<(i32, Compressor)> = const { RefCell::new(Vec::new()) };
}

/// libdeflate's level for the layer's (zlib's) `level`: zlib's 1 and 2
/// become libdeflate's 1, whose output is within 1% of zlib's level 2
/// (its own level 2 is 3–6% smaller and costs up to 1.5x more); 3–5 keep
/// their number; 6–9 become libdeflate's 6, already smaller than zlib's 9
/// on JSON (969 against 1,087 bytes at 8 KiB), while its 7–9 cost 1.7x–8x
/// its 6 for nothing smaller (BENCHMARKS.md); 0 stores.
fn libdeflate_level(level: u32) -> i32 {
    match level {
        0 => 0,
        1 | 2 => 1,
        3 => 3,
        4 => 4,
        5 => 5,
        _ => 6,
    }
}

/// `input` compressed as one gzip (`Gzip`) or zlib (`Deflate`) stream,
/// without spare capacity; `None` for another coding.
pub(crate) fn compress(coding: ContentCoding, level: u32, input: &[u8]) -> Option<Vec<u8>> {
    let gzip = match coding {
        ContentCoding::Gzip => true,
        ContentCoding::Deflate => false,
        _ => return None,
    };
    let lvl = libdeflate_level(level);
    let mut c = match super::pool::take(&POOL, |(l, _)| *l == lvl) {
        Some((_, c)) => c,
        None => Compressor::new(CompressionLvl::new(lvl).expect("levels 0-9 are libdeflate's")),
    };
    let bound = if gzip {
        c.gzip_compress_bound(input.len())
    } else {
        c.zlib_compress_bound(input.len())
    };
    let mut out = vec![0u8; bound];
    let written = if gzip {
        c.gzip_compress(input, &mut out)
    } else {
        c.zlib_compress(input, &mut out)
    };
    super::pool::give_back(&POOL, (lvl, c), POOL_CAP);
    // The bound always suffices: an error here is libdeflate's bug, and the
    // caller falls back to zlib-rs.
    let n = written.ok()?;
    out.truncate(n);
    out.shrink_to_fit();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::test_util::{gunzip, inflate, sample};

    #[test]
    fn every_level_and_size_decodes() {
        for n in [0, 1, 100, 2_048, 20_000, 40_000] {
            let data = sample(n);
            for level in 0..=9 {
                let gz = compress(ContentCoding::Gzip, level, &data).unwrap();
                assert_eq!(gunzip(&gz), data, "gzip {level} {n}");
                assert_eq!(gz.len(), gz.capacity());
                let z = compress(ContentCoding::Deflate, level, &data).unwrap();
                assert_eq!(inflate(&z), data, "deflate {level} {n}");
            }
        }
        assert!(compress(ContentCoding::Br, 3, b"x").is_none());
    }

    #[test]
    fn compressors_are_pooled_per_level_and_bounded() {
        POOL.with(|p| p.borrow_mut().clear());
        let levels = || {
            let mut l: Vec<i32> = POOL.with(|p| p.borrow().iter().map(|(l, _)| *l).collect());
            l.sort();
            l
        };
        // zlib's 1 and 2 share libdeflate's 1, and 6, 8 and 9 its 6.
        for level in [1, 2, 3, 6, 8, 3, 9, 4] {
            compress(ContentCoding::Gzip, level, b"hello hello hello").unwrap();
        }
        assert_eq!(levels(), [1, 3, 4, 6]);
        // Full: the oldest goes (1, then 3: taken again, 6 came back newer).
        compress(ContentCoding::Gzip, 5, b"hello hello hello").unwrap();
        assert_eq!(levels(), [3, 4, 5, 6]);
        compress(ContentCoding::Gzip, 0, b"hello hello hello").unwrap();
        assert_eq!(levels(), [0, 4, 5, 6]);
    }
}
