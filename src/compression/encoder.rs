//! One response's compressor, whatever the coding: gzip and deflate over
//! zlib-rs (`zlib.rs`, pooled), `br` over the `brotli` crate and `zstd`
//! over the `zstd` crate (libzstd), each behind its own feature.
//!
//! Every coding is driven the same way: input in, output appended to the
//! caller's buffer, and a flush that makes everything so far decodable
//! (a streamed response reaches the client while the origin waits).

use super::zlib::ZlibEncoder;
use crate::headers::ContentCoding;

/// The codings this build can produce.
pub(crate) const fn supported(coding: ContentCoding) -> bool {
    match coding {
        ContentCoding::Gzip | ContentCoding::Deflate => true,
        ContentCoding::Br => cfg!(feature = "compression-br"),
        ContentCoding::Zstd => cfg!(feature = "compression-zstd"),
        ContentCoding::Identity => false,
    }
}

/// Panics, naming the feature to turn on, when `coding` is identity or
/// not in this build: `who` (a builder method) was configured for a coding
/// it could never use, a mistake rather than a preference.
pub(crate) fn assert_buildable(who: &str, coding: ContentCoding) {
    assert!(
        supported(coding),
        "{who}: {} {}",
        coding.as_str(),
        match coding {
            ContentCoding::Br => "needs the `compression-br` feature of tower-perf",
            ContentCoding::Zstd => "needs the `compression-zstd` feature of tower-perf",
            _ => "is not a compression coding; leave it out (identity is always possible)",
        }
    );
}

/// The highest level of `coding` (levels above it are lowered to it).
/// zstd stops at 19: its "ultra" levels 20–22 exist for windows larger
/// than the 8 MB RFC 9659 allows the `zstd` content coding.
pub(crate) const fn max_level(coding: ContentCoding) -> u32 {
    match coding {
        ContentCoding::Br => 11,
        ContentCoding::Zstd => 19,
        _ => 9,
    }
}

/// The zstd window, at most 1 MiB (`windowLog` 20; libzstd's own is 2–8
/// MiB from level 3 up): what one zstd response can hold, whatever its
/// length and level, and well under the 8 MB RFC 9659 allows decoders to
/// refuse beyond.
#[cfg(feature = "compression-zstd")]
const ZSTD_WINDOW_LOG: u32 = 20;

/// How much to flush after the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Keep whatever the compressor holds back.
    None,
    /// Emit everything so far, byte-aligned, so the peer can decode it now.
    Sync,
    /// End the stream (and write the format's trailer).
    Finish,
}

/// A compressor failed; only a bug in the encoder state machine can cause it.
#[derive(Debug)]
pub(crate) struct EncodeError;

/// One response's compressor.
pub(crate) enum Encoder {
    Zlib(ZlibEncoder),
    #[cfg(feature = "compression-br")]
    Br(Option<Box<brotli::CompressorWriter<Vec<u8>>>>),
    #[cfg(feature = "compression-zstd")]
    Zstd(super::zstd::ZstdEncoder),
    /// brotli against a dictionary (RFC 9842's `dcb`; `dcz` is a `Zstd`
    /// with the dictionary loaded).
    #[cfg(feature = "compression-br")]
    Dcb(super::dcb::DcbEncoder),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Zlib(z) => z.fmt(f),
            #[cfg(feature = "compression-br")]
            Self::Br(_) => f.write_str("Encoder::Br"),
            #[cfg(feature = "compression-zstd")]
            Self::Zstd(_) => f.write_str("Encoder::Zstd"),
            #[cfg(feature = "compression-br")]
            Self::Dcb(_) => f.write_str("Encoder::Dcb"),
        }
    }
}

/// The brotli window for a body of `len` bytes at `quality`, at most 1 MiB
/// (`lgwin` 20, as zstd's; the format's default, 4 MiB, costs an 8 MiB
/// ring buffer per streamed response, and 256 KiB made 1 MiB of JSON 5%
/// larger than 4 MiB did). Up to quality 4, a body of known length gets the
/// smallest window that holds it, at least 64 KiB (`lgwin` 16); qualities 5
/// and above keep 1 MiB, as a smaller window there picks hash tables that
/// made an 8 KiB body 50 times slower (BENCHMARKS.md, section Compression
/// II).
#[cfg(feature = "compression-br")]
fn brotli_lgwin(len: Option<u64>, quality: u32) -> u32 {
    const MAX: u32 = 20;
    match len {
        Some(n) if quality <= 4 && n < (1 << MAX) => {
            (u64::BITS - (n + 16).leading_zeros()).clamp(16, MAX)
        }
        _ => MAX,
    }
}

/// What the brotli writer gathers before handing output on.
#[cfg(feature = "compression-br")]
const BROTLI_BUFFER: usize = 16 * 1024;

impl Encoder {
    /// An encoder for `coding` at `level` (lowered to the coding's
    /// highest) for a body of about `len` bytes (`None`: unknown; a hint
    /// that sizes the state, never trusted to be exact). `None` for a
    /// coding this build does not produce, or if libzstd cannot make a
    /// context.
    pub(crate) fn new(coding: ContentCoding, level: u32, len: Option<u64>) -> Option<Self> {
        Self::with_size(coding, level, len, false)
    }

    /// An encoder for a body of exactly `len` bytes, held whole: zstd
    /// writes the size in its frame header.
    pub(crate) fn for_whole(coding: ContentCoding, level: u32, len: u64) -> Option<Self> {
        Self::with_size(coding, level, Some(len), true)
    }

    fn with_size(
        coding: ContentCoding,
        level: u32,
        len: Option<u64>,
        #[allow(unused_variables)] exact: bool,
    ) -> Option<Self> {
        let level = level.min(max_level(coding));
        match coding {
            ContentCoding::Gzip | ContentCoding::Deflate => {
                Some(Self::Zlib(ZlibEncoder::new(coding, level, len)))
            }
            #[cfg(feature = "compression-br")]
            ContentCoding::Br => {
                let cap = len.map_or(BROTLI_BUFFER, |n| {
                    usize::try_from(n).map_or(BROTLI_BUFFER, |n| n.clamp(64, BROTLI_BUFFER))
                });
                Some(Self::Br(Some(Box::new(brotli::CompressorWriter::new(
                    Vec::with_capacity(cap),
                    cap,
                    level,
                    brotli_lgwin(len, level),
                )))))
            }
            #[cfg(feature = "compression-zstd")]
            ContentCoding::Zstd => {
                let level = i32::try_from(level.max(1)).unwrap_or(3);
                // Pledged only when exact: a body longer or shorter than
                // its pledge fails the frame.
                let pledged = if exact { len } else { None };
                super::zstd::ZstdEncoder::new(level, ZSTD_WINDOW_LOG, pledged).map(Self::Zstd)
            }
            _ => None,
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
        match self {
            Self::Zlib(z) => z.encode(input, out, flush),
            #[cfg(feature = "compression-br")]
            Self::Br(w) => {
                use std::io::Write;
                let Some(writer) = w.as_mut() else {
                    return Err(EncodeError);
                };
                writer.write_all(input).map_err(|_| EncodeError)?;
                match flush {
                    Flush::None => out.append(writer.get_mut()),
                    Flush::Sync => {
                        writer.flush().map_err(|_| EncodeError)?;
                        out.append(writer.get_mut());
                    }
                    Flush::Finish => {
                        let Some(writer) = w.take() else {
                            return Err(EncodeError);
                        };
                        let mut rest = writer.into_inner();
                        out.append(&mut rest);
                    }
                }
                Ok(())
            }
            #[cfg(feature = "compression-zstd")]
            Self::Zstd(e) => e.encode(input, out, flush),
            #[cfg(feature = "compression-br")]
            Self::Dcb(e) => e.encode(input, out, flush),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::test_util::sample;

    /// Each coding this build has, whole and in flushed pieces, decodes to
    /// the input; what was flushed decodes before the end.
    #[test]
    fn every_coding_round_trips_and_flushes() {
        let data = sample(300_000);
        for coding in ContentCoding::ALL.into_iter().filter(|c| supported(*c)) {
            for (level, len) in [(1, None), (4, Some(data.len() as u64)), (9, None)] {
                let mut out = Vec::new();
                let mut e = Encoder::new(coding, level, len).unwrap();
                e.encode(&data, &mut out, Flush::Finish).unwrap();
                assert!(out.len() < data.len() / 4, "{coding:?} {level}");
                assert_eq!(crate::compression::test_util::decode(coding, &out), data);
                // Pieces with a sync flush in the middle: the part before
                // it decodes on its own.
                let mut out = Vec::new();
                let mut e = Encoder::new(coding, level, None).unwrap();
                e.encode(&data[..1000], &mut out, Flush::Sync).unwrap();
                let head = crate::compression::test_util::decode_prefix(coding, &out);
                assert_eq!(head, &data[..1000], "{coding:?} {level}");
                for chunk in data[1000..].chunks(7_000) {
                    e.encode(chunk, &mut out, Flush::None).unwrap();
                }
                e.encode(&[], &mut out, Flush::Finish).unwrap();
                assert_eq!(crate::compression::test_util::decode(coding, &out), data);
            }
        }
        assert!(Encoder::new(ContentCoding::Identity, 1, None).is_none());
    }

    /// A size hint that lies (more bytes than said) costs ratio, never
    /// correctness, in every coding; a sync flush after plain writes, and
    /// twice, leaves everything so far decodable.
    #[test]
    fn a_wrong_hint_and_repeated_flushes_still_decode() {
        let data = sample(100_000);
        for coding in ContentCoding::ALL.into_iter().filter(|c| supported(*c)) {
            let mut out = Vec::new();
            let mut e = Encoder::new(coding, 3, Some(10)).unwrap();
            e.encode(&data[..5_000], &mut out, Flush::None).unwrap();
            e.encode(&data[5_000..6_000], &mut out, Flush::Sync)
                .unwrap();
            e.encode(&[], &mut out, Flush::Sync).unwrap();
            let head = crate::compression::test_util::decode_prefix(coding, &out);
            assert_eq!(head, &data[..6_000], "{coding:?}");
            for chunk in data[6_000..].chunks(9_000) {
                e.encode(chunk, &mut out, Flush::None).unwrap();
            }
            e.encode(&[], &mut out, Flush::Finish).unwrap();
            assert_eq!(
                crate::compression::test_util::decode(coding, &out),
                data,
                "{coding:?}"
            );
        }
    }

    /// Every window stays bounded, whatever the level and length.
    #[test]
    fn windows_are_bounded() {
        #[cfg(feature = "compression-br")]
        {
            assert_eq!(brotli_lgwin(None, 11), 20);
            assert_eq!(brotli_lgwin(Some(1 << 30), 3), 20);
            assert_eq!(brotli_lgwin(Some(2_048), 3), 16);
            assert_eq!(brotli_lgwin(Some(100_000), 4), 17);
            assert_eq!(brotli_lgwin(Some(2_048), 5), 20);
        }
        assert_eq!(max_level(ContentCoding::Zstd), 19);
    }

    #[test]
    fn empty_input_is_a_valid_stream() {
        for coding in ContentCoding::ALL.into_iter().filter(|c| supported(*c)) {
            let mut out = Vec::new();
            Encoder::new(coding, 1, Some(0))
                .unwrap()
                .encode(b"", &mut out, Flush::Finish)
                .unwrap();
            assert_eq!(crate::compression::test_util::decode(coding, &out), b"");
        }
    }
}
