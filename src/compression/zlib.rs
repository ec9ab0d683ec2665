//! The pooled gzip / deflate encoder over zlib-rs (the library flate2's
//! `zlib-rs` backend is), driven through its own safe API.
//!
//! Creating a zlib stream costs about as much as compressing a 2 KiB body
//! (BENCHMARKS.md, section Compression), so finished encoders go back to a small
//! per-thread pool and are reset, not rebuilt. A thread-local pool needs no
//! lock and is never contended.
//!
//! A reset clears state whose size is set when the stream is made: the
//! symbol buffer (`mem_level`, 48 KiB at zlib's default, cleared twice per
//! stream) and the window. For a body of known length that state is sized
//! to the body: a buffer that holds all of its symbols and a window that
//! holds all of it, so the output is byte for byte what the default
//! configuration writes (one block, every match in reach; for the zlib
//! format the header's window field says the smaller window), with a fifth
//! of the clearing. Bodies of unknown or large size get zlib's defaults.
//!
//! Bodies compressed whole don't come here at all: libdeflate
//! (`whole.rs`) has no fixed per-stream state to clear.

use std::cell::RefCell;

use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Status};

use super::encoder::{EncodeError, Flush};
use super::pool::Pool;
use crate::headers::ContentCoding;

/// Encoders kept per thread, over all codings, levels and sizes. A default
/// one holds about 270 KiB of zlib state, so the pool stays small.
const POOL_CAP: usize = 8;

thread_local! {
    static POOL: Pool<(Key, Deflate)> = const { RefCell::new(Vec::new()) };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    gzip: bool,
    level: u32,
    /// zlib's `memLevel`: the symbol buffer holds `2^(mem_level + 6)`.
    mem_level: u8,
    /// log2 of the window.
    window_bits: u8,
}

impl Key {
    /// State sized for a body of `len` bytes, when known: the smallest
    /// symbol buffer that takes every symbol of it (at most one a byte)
    /// and the smallest window that keeps all of it in reach (zlib keeps
    /// 262 bytes of lookahead out of the window). zlib's defaults (8, 15)
    /// otherwise.
    fn sized(gzip: bool, level: u32, len: Option<u64>) -> Self {
        let (mut mem_level, mut window_bits) = (8u8, 15u8);
        if let Some(len) = len {
            while mem_level > 1 && (1u64 << (mem_level - 1 + 6)) > len {
                mem_level -= 1;
            }
            while window_bits > 9 && (1u64 << (window_bits - 1)) >= len + 262 {
                window_bits -= 1;
            }
        }
        Self {
            gzip,
            level: level.min(9),
            mem_level,
            window_bits,
        }
    }

    fn config(self) -> DeflateConfig {
        let bits = i32::from(self.window_bits);
        DeflateConfig {
            level: i32::try_from(self.level).unwrap_or(6),
            // 16 + bits: zlib writes the gzip header and trailer itself.
            window_bits: if self.gzip { 16 + bits } else { bits },
            mem_level: i32::from(self.mem_level),
            ..DeflateConfig::default()
        }
    }
}

/// One response's gzip or deflate compressor.
pub(crate) struct ZlibEncoder {
    key: Key,
    deflate: Option<Deflate>,
}

impl std::fmt::Debug for ZlibEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZlibEncoder")
            .field("gzip", &self.key.gzip)
            .field("level", &self.key.level)
            .field("mem_level", &self.key.mem_level)
            .field("window_bits", &self.key.window_bits)
            .finish()
    }
}

impl ZlibEncoder {
    /// An encoder for `coding` (gzip or deflate) at `level` (0–9) for a
    /// body of `len` bytes (`None`: unknown), from the pool when one fits.
    pub(crate) fn new(coding: ContentCoding, level: u32, len: Option<u64>) -> Self {
        let key = Key::sized(coding == ContentCoding::Gzip, level, len);
        let deflate = super::pool::take(&POOL, |(k, _)| *k == key)
            .map_or_else(|| Deflate::new_with_config(key.config()), |(_, d)| d);
        Self {
            key,
            deflate: Some(deflate),
        }
    }

    /// Compresses all of `input` into `out` (growing it as needed), then
    /// flushes as asked.
    pub(crate) fn encode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        flush: Flush,
    ) -> Result<(), EncodeError> {
        let Some(d) = self.deflate.as_mut() else {
            return Err(EncodeError);
        };
        // zlib writes into initialized memory (no `unsafe` here to hand it
        // a `Vec`'s spare capacity): the thread's scratch buffer, zeroed
        // once, then copied out, which costs the compressed bytes instead
        // of zeroing room for them on every call.
        let done = SCRATCH.try_with(|scratch| {
            let mut scratch = scratch.try_borrow_mut().ok()?;
            if scratch.is_empty() {
                scratch.resize(SCRATCH_LEN, 0);
            }
            Some(deflate_into(d, input, &mut scratch, out, flush))
        });
        match done {
            Ok(Some(result)) => result,
            // The thread is going away (or, impossibly, the scratch is in
            // use): a buffer of its own.
            _ => deflate_into(d, input, &mut vec![0; SCRATCH_LEN], out, flush),
        }
    }
}

/// Size of the per-thread output scratch buffer.
const SCRATCH_LEN: usize = 16 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Compresses all of `input` through `scratch` onto `out`, then flushes as
/// asked.
fn deflate_into(
    d: &mut Deflate,
    mut input: &[u8],
    scratch: &mut [u8],
    out: &mut Vec<u8>,
    flush: Flush,
) -> Result<(), EncodeError> {
    let mode = match flush {
        Flush::None => DeflateFlush::NoFlush,
        Flush::Sync => DeflateFlush::SyncFlush,
        Flush::Finish => DeflateFlush::Finish,
    };
    loop {
        let (in_before, out_before) = (d.total_in(), d.total_out());
        let status = d.compress(input, scratch, mode);
        let produced = usize::try_from(d.total_out() - out_before).map_err(|_| EncodeError)?;
        out.extend_from_slice(scratch.get(..produced).ok_or(EncodeError)?);
        let status = status.map_err(|_| EncodeError)?;
        let consumed = usize::try_from(d.total_in() - in_before).map_err(|_| EncodeError)?;
        let progressed = consumed > 0 || produced > 0;
        input = input.get(consumed..).ok_or(EncodeError)?;
        let room_left = produced < scratch.len();
        match (flush, status) {
            (_, Status::StreamEnd) => return Ok(()),
            (Flush::None, _) if input.is_empty() => return Ok(()),
            // zlib has flushed everything once it stops with room to spare.
            (Flush::Sync, _) if input.is_empty() && room_left => return Ok(()),
            _ if !progressed && room_left => return Err(EncodeError),
            _ => {}
        }
    }
}

impl Drop for ZlibEncoder {
    fn drop(&mut self) {
        if let Some(mut d) = self.deflate.take() {
            d.reset();
            super::pool::give_back(&POOL, (self.key, d), POOL_CAP);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::test_util::{gunzip, inflate, sample};
    use std::io::Read;

    #[test]
    fn gzip_and_deflate_round_trip() {
        let data = sample(200_000);
        for level in [1, 6, 9] {
            let mut out = Vec::new();
            let mut e = ZlibEncoder::new(ContentCoding::Gzip, level, None);
            e.encode(&data, &mut out, Flush::Finish).unwrap();
            assert_eq!(gunzip(&out), data);
            let mut out = Vec::new();
            let mut e = ZlibEncoder::new(ContentCoding::Deflate, level, None);
            e.encode(&data, &mut out, Flush::Finish).unwrap();
            assert_eq!(inflate(&out), data);
        }
    }

    #[test]
    fn empty_input_is_a_valid_stream() {
        let mut out = Vec::new();
        ZlibEncoder::new(ContentCoding::Gzip, 1, None)
            .encode(b"", &mut out, Flush::Finish)
            .unwrap();
        assert_eq!(gunzip(&out), b"");
    }

    #[test]
    fn sync_flush_makes_everything_so_far_decodable() {
        let mut out = Vec::new();
        let mut e = ZlibEncoder::new(ContentCoding::Gzip, 6, None);
        e.encode(b"first line\n", &mut out, Flush::Sync).unwrap();
        let mut partial = Vec::new();
        let mut d = flate2::read::GzDecoder::new(&out[..]);
        let mut buf = [0u8; 64];
        // Reading a truncated stream yields the flushed bytes before the error.
        if let Ok(n) = d.read(&mut buf) {
            partial.extend_from_slice(&buf[..n]);
        }
        assert_eq!(partial, b"first line\n");
        e.encode(b"second\n", &mut out, Flush::Finish).unwrap();
        assert_eq!(gunzip(&out), b"first line\nsecond\n");
    }

    #[test]
    fn pooled_encoders_are_reset() {
        // Leave a half-used encoder in the pool, then reuse it.
        {
            let mut out = Vec::new();
            let mut e = ZlibEncoder::new(ContentCoding::Gzip, 3, None);
            e.encode(b"abandoned midway", &mut out, Flush::None)
                .unwrap();
        }
        let mut out = Vec::new();
        let mut e = ZlibEncoder::new(ContentCoding::Gzip, 3, None);
        e.encode(b"fresh", &mut out, Flush::Finish).unwrap();
        assert_eq!(gunzip(&out), b"fresh");
        // The pool is bounded.
        for len in [Some(10u64), Some(5_000), None] {
            drop(ZlibEncoder::new(ContentCoding::Gzip, 4, len));
        }
        let many: Vec<ZlibEncoder> = (0..POOL_CAP + 4)
            .map(|_| ZlibEncoder::new(ContentCoding::Deflate, 2, None))
            .collect();
        drop(many);
        assert!(super::super::pool::len(&POOL) <= POOL_CAP);
    }

    #[test]
    fn sized_state_writes_the_same_gzip_bytes() {
        // State sized to the body changes nothing in the output: same
        // blocks, same matches, at every level.
        for len in [
            0usize, 1, 100, 1_000, 2_048, 4_000, 4_096, 10_000, 16_383, 40_000,
        ] {
            let data = sample(len);
            for level in 1..=9 {
                let mut sized = Vec::new();
                ZlibEncoder::new(ContentCoding::Gzip, level, Some(len as u64))
                    .encode(&data, &mut sized, Flush::Finish)
                    .unwrap();
                let mut default = Vec::new();
                ZlibEncoder::new(ContentCoding::Gzip, level, None)
                    .encode(&data, &mut default, Flush::Finish)
                    .unwrap();
                assert_eq!(sized, default, "{len} bytes at level {level}");
                let mut zlib = Vec::new();
                ZlibEncoder::new(ContentCoding::Deflate, level, Some(len as u64))
                    .encode(&data, &mut zlib, Flush::Finish)
                    .unwrap();
                assert_eq!(inflate(&zlib), data);
            }
        }
        // Sizes pick the state: small bodies small buffers, unknown the
        // default; and the encoder a body gets is built (and pooled) with it.
        let e = ZlibEncoder::new(ContentCoding::Gzip, 2, Some(2_048));
        assert_eq!((e.key.mem_level, e.key.window_bits), (6, 12));
        drop(e);
        assert!(POOL.with(|p| {
            p.borrow()
                .iter()
                .any(|(k, _)| (k.mem_level, k.window_bits) == (6, 12))
        }));
        let k = Key::sized(true, 2, Some(2_048));
        assert_eq!((k.mem_level, k.window_bits), (6, 12));
        let k = Key::sized(true, 2, None);
        assert_eq!((k.mem_level, k.window_bits), (8, 15));
        let k = Key::sized(true, 2, Some(1 << 20));
        assert_eq!((k.mem_level, k.window_bits), (8, 15));
    }

    #[test]
    fn a_body_longer_than_announced_still_compresses() {
        // A size hint that lies (more bytes than said) costs ratio, not
        // correctness.
        let data = sample(100_000);
        let mut out = Vec::new();
        let mut e = ZlibEncoder::new(ContentCoding::Gzip, 6, Some(10));
        for chunk in data.chunks(7_000) {
            e.encode(chunk, &mut out, Flush::None).unwrap();
        }
        e.encode(&[], &mut out, Flush::Finish).unwrap();
        assert_eq!(gunzip(&out), data);
    }
}
