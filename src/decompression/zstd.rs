//! zstd decompression contexts kept per thread and reused: making one
//! costs more than decoding a small body with it (9.9 µs against 2.5 µs
//! for 2 KiB of JSON, measured with libzstd 1.5.7 in a scratch program).
//!
//! A context is reset (its session, not its parameters) when a body is
//! done with it, and kept only while it is small: after a frame with a
//! large window it holds that window, and is freed instead.

use std::cell::RefCell;

use zstd::zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer, ResetDirective};

use crate::compression::pool::{self, Pool};

/// log2 of the largest zstd window accepted: 8 MiB (RFC 9659 §3).
const WINDOW_LOG_MAX: u32 = 23;
/// Contexts kept per thread.
const POOL_CAP: usize = 2;
/// A context larger than this (it decoded a frame with a large window) is
/// freed, not kept. A streaming context holds about 2.5 MiB once used
/// (libzstd 1.5.7), so a thread keeps at most about 6 MiB.
const POOL_MAX_BYTES: usize = 3 << 20;

thread_local! {
    static POOL: Pool<DCtx<'static>> = const { RefCell::new(Vec::new()) };
}

/// One body's zstd decoder.
pub(crate) struct ZstdDecoder {
    dctx: Option<DCtx<'static>>,
}

/// What one [`ZstdDecoder::decode`] call did.
pub(crate) struct Step {
    pub(crate) read: usize,
    pub(crate) written: usize,
    /// libzstd's hint: 0 when a frame was completely decoded and flushed.
    pub(crate) hint: usize,
}

impl ZstdDecoder {
    /// A decoder that refuses windows over 8 MiB; `None` if libzstd cannot
    /// make a context.
    pub(crate) fn new() -> Option<Self> {
        let dctx = match pool::take(&POOL, |_| true) {
            Some(d) => d,
            None => {
                let mut d = DCtx::try_create()?;
                d.set_parameter(DParameter::WindowLogMax(WINDOW_LOG_MAX))
                    .ok()?;
                d
            }
        };
        Some(Self { dctx: Some(dctx) })
    }

    /// Decodes from `input` into `out`, as far as either goes; `Err` when
    /// the bytes are not a valid zstd stream.
    pub(crate) fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Result<Step, ()> {
        let dctx = self.dctx.as_mut().ok_or(())?;
        let mut src = InBuffer::around(input);
        let mut dst = OutBuffer::around(out);
        let hint = dctx.decompress_stream(&mut dst, &mut src).map_err(|_| ())?;
        Ok(Step {
            read: src.pos(),
            written: dst.pos(),
            hint,
        })
    }
}

impl Drop for ZstdDecoder {
    fn drop(&mut self) {
        let Some(mut dctx) = self.dctx.take() else {
            return;
        };
        if dctx.reset(ResetDirective::SessionOnly).is_err() || dctx.sizeof() > POOL_MAX_BYTES {
            return;
        }
        pool::give_back(&POOL, dctx, POOL_CAP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pooled() -> usize {
        pool::len(&POOL)
    }

    /// A context comes back after a body, even one abandoned mid-frame, and
    /// the next body on it decodes from a clean state.
    #[test]
    fn a_reused_context_starts_clean() {
        POOL.with(|p| p.borrow_mut().clear());
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 97) as u8).collect();
        let frame = zstd::encode_all(&data[..], 3).unwrap();
        let mut d = ZstdDecoder::new().unwrap();
        let mut out = vec![0u8; 1000];
        d.decode(&frame[..frame.len() / 2], &mut out).unwrap();
        drop(d);
        assert_eq!(pooled(), 1);
        let mut d = ZstdDecoder::new().unwrap();
        assert_eq!(pooled(), 0);
        let mut out = vec![0u8; 60_000];
        let step = d.decode(&frame, &mut out).unwrap();
        assert_eq!((step.read, step.hint), (frame.len(), 0));
        assert_eq!(&out[..step.written], &data[..]);
        drop(d);
        let many: Vec<_> = (0..POOL_CAP + 2)
            .map(|_| ZstdDecoder::new().unwrap())
            .collect();
        drop(many);
        assert!(pooled() <= POOL_CAP);
    }
}
