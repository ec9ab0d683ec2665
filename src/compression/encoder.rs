//! A pooled gzip / deflate encoder over flate2's low-level `Compress`
//! (zlib-rs backend).
//!
//! Creating a zlib stream costs about as much as compressing a 2 KiB body
//! (see `../shared/anchors.md`), so finished encoders go back to a small
//! per-thread pool and are reset, not rebuilt. A thread-local pool needs no
//! lock and is never contended.

use std::cell::RefCell;

use flate2::{Compress, Compression, FlushCompress, Status};

use crate::headers::ContentCoding;

/// Encoders kept per thread, over all codings and levels. Each holds about
/// 270 KiB of zlib state, so the pool stays small.
const POOL_CAP: usize = 8;

thread_local! {
    static POOL: RefCell<Vec<(Key, Compress)>> = const { RefCell::new(Vec::new()) };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    gzip: bool,
    level: u32,
}

/// The codings this encoder can produce.
pub(crate) const fn supported(coding: ContentCoding) -> bool {
    matches!(coding, ContentCoding::Gzip | ContentCoding::Deflate)
}

/// One response's compressor.
pub(crate) struct Encoder {
    key: Key,
    compress: Option<Compress>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("gzip", &self.key.gzip)
            .field("level", &self.key.level)
            .finish()
    }
}

/// How much to flush after the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Keep whatever the compressor holds back.
    None,
    /// Emit everything so far, byte-aligned, so the peer can decode it now.
    Sync,
    /// End the stream (and write the gzip trailer).
    Finish,
}

/// A compressor failed; only a bug in the encoder state machine can cause it.
#[derive(Debug)]
pub(crate) struct EncodeError;

impl Encoder {
    /// An encoder for `coding` (gzip or deflate) at `level` (0–9), from the
    /// pool when one is free.
    pub(crate) fn new(coding: ContentCoding, level: u32) -> Self {
        let key = Key {
            gzip: coding == ContentCoding::Gzip,
            level: level.min(9),
        };
        let pooled = POOL.with(|p| {
            let mut p = p.borrow_mut();
            let i = p.iter().position(|(k, _)| *k == key)?;
            Some(p.swap_remove(i).1)
        });
        let compress = pooled.unwrap_or_else(|| {
            let level = Compression::new(key.level);
            if key.gzip {
                Compress::new_gzip(level, 15)
            } else {
                Compress::new(level, true)
            }
        });
        Self {
            key,
            compress: Some(compress),
        }
    }

    /// Compresses all of `input` into `out` (growing it as needed), then
    /// flushes as asked.
    pub(crate) fn encode(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        flush: Flush,
    ) -> Result<(), EncodeError> {
        let Some(c) = self.compress.as_mut() else {
            return Err(EncodeError);
        };
        let mode = match flush {
            Flush::None => FlushCompress::None,
            Flush::Sync => FlushCompress::Sync,
            Flush::Finish => FlushCompress::Finish,
        };
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve((input.len() / 2).clamp(4096, 64 * 1024));
            }
            let (in_before, out_before) = (c.total_in(), c.total_out());
            let status = c.compress_vec(input, out, mode).map_err(|_| EncodeError)?;
            let consumed = usize::try_from(c.total_in() - in_before).map_err(|_| EncodeError)?;
            let progressed = consumed > 0 || c.total_out() > out_before;
            input = input.get(consumed..).ok_or(EncodeError)?;
            let room_left = out.capacity() > out.len();
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
}

impl Drop for Encoder {
    fn drop(&mut self) {
        if let Some(mut c) = self.compress.take() {
            c.reset();
            let key = self.key;
            // `try_with`: during thread teardown the pool may be gone.
            let _ = POOL.try_with(|p| {
                if let Ok(mut p) = p.try_borrow_mut() {
                    if p.len() < POOL_CAP {
                        p.push((key, c));
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn inflate(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(b)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn sample(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| b"{\"id\":1,\"name\":\"alpha\"},"[i % 24] ^ (i / 997) as u8)
            .collect()
    }

    #[test]
    fn gzip_and_deflate_round_trip() {
        let data = sample(200_000);
        for level in [1, 6, 9] {
            let mut out = Vec::new();
            let mut e = Encoder::new(ContentCoding::Gzip, level);
            e.encode(&data, &mut out, Flush::Finish).unwrap();
            assert_eq!(gunzip(&out), data);
            let mut out = Vec::new();
            let mut e = Encoder::new(ContentCoding::Deflate, level);
            e.encode(&data, &mut out, Flush::Finish).unwrap();
            assert_eq!(inflate(&out), data);
        }
    }

    #[test]
    fn empty_input_is_a_valid_stream() {
        let mut out = Vec::new();
        Encoder::new(ContentCoding::Gzip, 1)
            .encode(b"", &mut out, Flush::Finish)
            .unwrap();
        assert_eq!(gunzip(&out), b"");
    }

    #[test]
    fn sync_flush_makes_everything_so_far_decodable() {
        let mut out = Vec::new();
        let mut e = Encoder::new(ContentCoding::Gzip, 6);
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
            let mut e = Encoder::new(ContentCoding::Gzip, 3);
            e.encode(b"abandoned midway", &mut out, Flush::None)
                .unwrap();
        }
        let mut out = Vec::new();
        let mut e = Encoder::new(ContentCoding::Gzip, 3);
        e.encode(b"fresh", &mut out, Flush::Finish).unwrap();
        assert_eq!(gunzip(&out), b"fresh");
        // The pool is bounded.
        let many: Vec<Encoder> = (0..POOL_CAP + 4)
            .map(|_| Encoder::new(ContentCoding::Deflate, 2))
            .collect();
        drop(many);
        assert!(POOL.with(|p| p.borrow().len()) <= POOL_CAP);
    }
}
