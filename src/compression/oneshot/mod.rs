//! A one-shot deflate encoder for small bodies held whole in memory.
//!
//! zlib (and zlib-rs, which the streaming path drives) clears a 128 KiB
//! hash table for every stream, whatever the stream's size: about a fifth
//! of the time a 2 KiB JSON body takes to compress on this project's
//! machines (`benches/compression.rs`). A small body the layer holds whole
//! (up to [`max_input`] for its level, where this measured faster) is
//! compressed here instead, with tables sized to it: a hash head of about
//! one slot per input byte, chains as long as the input, all kept per
//! thread and cleared only as far as the input reaches.
//!
//! Inputs fit in deflate's 32 KiB window ([`MAX_INPUT`] at most), so there
//! is no sliding and every earlier position is in reach. Matches are found
//! through hash chains over 4-byte prefixes, greedily at levels 1–2 and
//! with zlib's lazy evaluation from level 3, with zlib's chain lengths and
//! thresholds per level. The whole body becomes one block: stored, fixed
//! or dynamic Huffman, whichever is smallest. Code lengths come from the
//! in-place minimum-redundancy algorithm of Moffat and Katajainen, limited
//! to 15 bits (7 for the code-length code) by moving leaves up, as miniz
//! does.
//!
//! Every output is checked in the tests by decoding it with zlib-rs's
//! inflate (through flate2), over levels 0–9 and many shapes of input.
//!
//! The parts: `lz77.rs` finds the matches, `alphabet.rs` holds deflate's
//! length and distance codes and the symbol counts, `huffman.rs` builds the
//! code lengths and codes, and `block.rs` writes the block; this file frames
//! it as gzip or zlib.

mod alphabet;
mod block;
mod huffman;
mod lz77;
#[cfg(test)]
mod tests;

use std::cell::RefCell;

use crate::headers::ContentCoding;

use self::alphabet::Freqs;
use self::block::write_block;
use self::lz77::{Scratch, lz77, params};

/// The largest input this encoder takes: deflate's window, so every match
/// is in reach without sliding.
pub(crate) const MAX_INPUT: usize = 32 * 1024;

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The largest body this encoder takes at `level`: where the layer is
/// faster with it than with its pooled zlib-rs stream, on both JSON and
/// text, measured in the same run (`cargo bench --bench compression_workload
/// -- interleaved` with either limit; BENCHMARKS.md). Below these sizes
/// zlib-rs's fixed per-stream cost (the 128 KiB hash clear)
/// outweighs its faster matching; above them (level 2 past 16 KiB, level 6
/// past 4 KiB, where its longer chain searches dominate) it doesn't.
/// zlib-rs's level 1 is a single-probe, fixed-code compressor this one
/// doesn't beat in speed (it compresses about 18% smaller, but slower), so
/// level 1 is left to it.
pub(crate) const fn max_input(level: u32) -> usize {
    match level {
        0 | 1 => 0,
        2 | 3 => 16 * 1024,
        _ => 4 * 1024,
    }
}

/// Compresses `input` (at most [`MAX_INPUT`] bytes) at `level` as one gzip
/// (`Gzip`) or zlib (`Deflate`) stream, appended to `out`. `false` (and
/// `out` untouched) when the input is too large or the coding isn't one of
/// those two. Whether this encoder is the faster choice for a body is the
/// caller's to ask ([`max_input`]).
pub(crate) fn compress(coding: ContentCoding, level: u32, input: &[u8], out: &mut Vec<u8>) -> bool {
    if input.len() > MAX_INPUT || !matches!(coding, ContentCoding::Gzip | ContentCoding::Deflate) {
        return false;
    }
    let level = level.min(9);
    let done = SCRATCH.try_with(|s| {
        let mut s = s.try_borrow_mut().ok()?;
        encode(coding, level, input, &mut s, out);
        Some(())
    });
    if !matches!(done, Ok(Some(()))) {
        // The thread is going away: working memory of its own.
        encode(coding, level, input, &mut Scratch::default(), out);
    }
    true
}

fn encode(coding: ContentCoding, level: u32, input: &[u8], s: &mut Scratch, out: &mut Vec<u8>) {
    let gzip = coding == ContentCoding::Gzip;
    if gzip {
        // No name, no time; XFL as zlib sets it; OS "unknown".
        let xfl = match level {
            9 => 2,
            0 | 1 => 4,
            _ => 0,
        };
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]);
    } else {
        // CINFO: the smallest window that holds the input.
        let mut cinfo = 0u8;
        while cinfo < 7 && (256usize << cinfo) < input.len() {
            cinfo += 1;
        }
        let cmf = (cinfo << 4) | 8;
        let flevel: u8 = match level {
            0 | 1 => 0,
            2..=5 => 1,
            6 => 2,
            _ => 3,
        };
        let flg = flevel << 6;
        let check = 31 - ((u16::from(cmf) * 256 + u16::from(flg)) % 31) as u8;
        out.extend_from_slice(&[cmf, flg | (check % 31)]);
    }
    let mut freqs = Freqs::new();
    if level > 0 {
        lz77(input, params(level), s, &mut freqs);
    }
    write_block(input, level, &s.syms, &mut freqs, out);
    if gzip {
        let crc = zlib_rs::crc32::crc32(0, input);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    } else {
        let adler = zlib_rs::adler32::adler32(1, input);
        out.extend_from_slice(&adler.to_be_bytes());
    }
}
