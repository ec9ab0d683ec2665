//! The pooled zstd encoder: libzstd's streaming API (through `zstd-safe`)
//! on compression contexts kept per thread and reused.
//!
//! Making a context costs more than compressing a 2 KiB body with it: a
//! reused one skips the allocation and keeps its tables, which libzstd
//! then continues rather than clears (2.1x–2.4x faster on 2 KiB of JSON
//! at level 1, the same bytes out; BENCHMARKS.md, section Compression
//! II). A
//! finished or abandoned encoder resets its context's session and
//! parameters (a dictionary with them) and puts it back; level, window and
//! size pledge are set anew for every response.

use std::cell::RefCell;

use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective;
use zstd::zstd_safe::{CCtx, CParameter, InBuffer, OutBuffer, ResetDirective};

use super::encoder::{EncodeError, Flush};
use super::pool::Pool;

/// Contexts kept per thread.
const POOL_CAP: usize = 4;
/// A context larger than this (high levels) is freed, not kept.
const POOL_MAX_BYTES: usize = 8 << 20;

thread_local! {
    static POOL: Pool<CCtx<'static>> = const { RefCell::new(Vec::new()) };
}

/// One response's zstd stream.
pub(crate) struct ZstdEncoder {
    cctx: Option<CCtx<'static>>,
}

impl std::fmt::Debug for ZstdEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ZstdEncoder")
    }
}

impl ZstdEncoder {
    /// A stream at `level` with a window of `2^window_log` bytes. With
    /// `pledged`, the frame header says the size and libzstd sizes its
    /// tables to it: the body must be exactly that long.
    pub(crate) fn new(level: i32, window_log: u32, pledged: Option<u64>) -> Option<Self> {
        Self::start(level, window_log, pledged, None)
    }

    /// As [`new`](Self::new), compressing against `dictionary` as raw
    /// content (RFC 9842's `dcz`; the caller writes the hash frame first
    /// and checks the dictionary is not in zstd's own format).
    pub(crate) fn with_dictionary(
        level: i32,
        window_log: u32,
        pledged: Option<u64>,
        dictionary: &[u8],
    ) -> Option<Self> {
        Self::start(level, window_log, pledged, Some(dictionary))
    }

    fn start(
        level: i32,
        window_log: u32,
        pledged: Option<u64>,
        dictionary: Option<&[u8]>,
    ) -> Option<Self> {
        // Held by `Self` from here on, so an early return gives it back.
        let mut this = Self {
            cctx: Some(take()?),
        };
        let cctx = this.cctx.as_mut()?;
        cctx.set_parameter(CParameter::CompressionLevel(level))
            .ok()?;
        cctx.set_parameter(CParameter::WindowLog(window_log)).ok()?;
        cctx.set_pledged_src_size(pledged).ok()?;
        if let Some(d) = dictionary {
            load_dictionary(cctx, level, d)?;
        }
        Some(this)
    }

    /// Compresses all of `input`, appending to `out`, then flushes as
    /// asked; `Finish` ends the frame and gives the context back.
    pub(crate) fn encode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        flush: Flush,
    ) -> Result<(), EncodeError> {
        let cctx = self.cctx.as_mut().ok_or(EncodeError)?;
        let directive = match flush {
            Flush::None => ZSTD_EndDirective::ZSTD_e_continue,
            Flush::Sync => ZSTD_EndDirective::ZSTD_e_flush,
            Flush::Finish => ZSTD_EndDirective::ZSTD_e_end,
        };
        let mut src = InBuffer::around(input);
        loop {
            // Room for what this round may write: at least libzstd's
            // recommended output block, more for a large input.
            out.reserve(CCtx::out_size().max(input.len() - src.pos()));
            let pos = out.len();
            let mut dst = OutBuffer::around_pos(out, pos);
            let left = cctx
                .compress_stream2(&mut dst, &mut src, directive)
                .map_err(|_| EncodeError)?;
            let consumed = src.pos() == input.len();
            if consumed && (flush == Flush::None || left == 0) {
                break;
            }
        }
        if flush == Flush::Finish {
            self.release();
        }
        Ok(())
    }

    fn release(&mut self) {
        if let Some(cctx) = self.cctx.take() {
            put_back(cctx);
        }
    }
}

/// Loads `dictionary` (raw content) into a context set to `level`. At
/// levels 1 and 2 (the `fast` strategy) the hash table also grows to about
/// one slot per two bytes of the dictionary (2^14 to 2^18 slots): with
/// the level's own 2^14 most of a large dictionary can't be found again (a
/// streamed 256 KiB bundle came out 39,582 bytes against a 256 KiB
/// previous version, 259 with 2^17; BENCHMARKS.md). Levels from 3 on
/// have tables that large already.
fn load_dictionary(cctx: &mut CCtx<'static>, level: i32, dictionary: &[u8]) -> Option<()> {
    if level < 3 {
        let bits = usize::BITS - dictionary.len().saturating_sub(1).leading_zeros();
        let hash_log = bits.saturating_sub(1).clamp(14, 18);
        cctx.set_parameter(CParameter::HashLog(hash_log)).ok()?;
    }
    cctx.load_dictionary(dictionary).ok()?;
    Some(())
}

/// A pooled context, or a new one (`None` if libzstd cannot make one).
/// Its user sets every parameter it needs.
fn take() -> Option<CCtx<'static>> {
    super::pool::take(&POOL, |_| true).or_else(CCtx::try_create)
}

/// Resets a context's session and parameters (a loaded dictionary with
/// them) and keeps it, unless it grew too large.
fn put_back(mut cctx: CCtx<'static>) {
    if cctx.reset(ResetDirective::SessionAndParameters).is_ok() && cctx.sizeof() <= POOL_MAX_BYTES {
        super::pool::give_back(&POOL, cctx, POOL_CAP);
    }
}

/// `input` compressed as one zstd frame with `dictionary` as raw content
/// (RFC 9842's `dcz`), appended to `out`, on a pooled context that gives
/// the dictionary up afterwards. `None` for a dictionary in zstd's own
/// format (libzstd would read it as such, not as raw content) or one that,
/// with the body, needs a window over 8 MiB.
pub(crate) fn compress_with_dictionary(
    level: u32,
    dictionary: &[u8],
    input: &[u8],
    mut out: Vec<u8>,
) -> Option<Vec<u8>> {
    if dictionary.starts_with(&super::dictionary::ZSTD_DICTIONARY_MAGIC) {
        return None;
    }
    let need = dictionary.len() + input.len();
    let mut window_log = 10u32;
    while (1usize << window_log) < need {
        if window_log == 23 {
            return None;
        }
        window_log += 1;
    }
    let mut cctx = take()?;
    let level = i32::try_from(level.clamp(1, 19)).unwrap_or(3);
    let done = (|| {
        cctx.set_parameter(CParameter::CompressionLevel(level))
            .ok()?;
        cctx.set_parameter(CParameter::WindowLog(window_log)).ok()?;
        cctx.set_pledged_src_size(Some(input.len() as u64)).ok()?;
        load_dictionary(&mut cctx, level, dictionary)?;
        // One-shot, into the room after the header: the streaming call
        // would make the context set up stream buffers it does not need.
        let pos = out.len();
        out.resize(pos + zstd::zstd_safe::compress_bound(input.len()), 0);
        let written = cctx.compress2(&mut out[pos..], input).ok()?;
        out.truncate(pos + written);
        Some(())
    })();
    // The dictionary sticks to the context until `put_back` resets it.
    put_back(cctx);
    done?;
    out.shrink_to_fit();
    Some(out)
}

impl Drop for ZstdEncoder {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::test_util::{decode, sample};
    use crate::headers::ContentCoding;

    fn pooled() -> usize {
        crate::compression::pool::len(&POOL)
    }

    /// A context comes back after a finished stream and after an abandoned
    /// one (mid-frame, with a pledge it never met), and the next stream on
    /// it is whole and correct, whatever its level and pledge.
    #[test]
    fn a_reused_context_starts_clean() {
        let data = sample(50_000);
        POOL.with(|p| p.borrow_mut().clear());
        let mut e = ZstdEncoder::new(3, 20, Some(data.len() as u64)).unwrap();
        let mut out = Vec::new();
        e.encode(&data[..1000], &mut out, Flush::Sync).unwrap();
        drop(e);
        assert_eq!(pooled(), 1);
        for (level, pledge) in [(1, None), (19, Some(data.len() as u64)), (1, None)] {
            let mut e = ZstdEncoder::new(level, 20, pledge).unwrap();
            assert_eq!(pooled(), 0, "the context was taken again");
            let mut out = Vec::new();
            for chunk in data.chunks(7_000) {
                e.encode(chunk, &mut out, Flush::None).unwrap();
            }
            e.encode(&[], &mut out, Flush::Finish).unwrap();
            assert_eq!(decode(ContentCoding::Zstd, &out), data, "level {level}");
            assert_eq!(pooled(), 1);
            // Finished: nothing more goes in.
            assert!(e.encode(b"x", &mut out, Flush::None).is_err());
        }
    }

    #[test]
    fn the_pool_is_bounded() {
        let encoders: Vec<_> = (0..POOL_CAP + 3)
            .map(|_| ZstdEncoder::new(1, 20, None).unwrap())
            .collect();
        drop(encoders);
        assert_eq!(pooled(), POOL_CAP);
    }
}
