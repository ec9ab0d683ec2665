//! One request body's decoder, whatever the coding: gzip and deflate over
//! zlib-rs, `br` over the `brotli` crate's decoder and `zstd` over libzstd,
//! each with its output bounded by the caller's buffer, so one call never
//! expands more than that buffer holds, however small the input.
//!
//! Memory per decoder is bounded by the format, never by the sender's
//! choice beyond it: zlib's window is 32 KiB; brotli is read as RFC 7932
//! defines it (windows up to 16 MiB; the "large window" extension, up to
//! 1 GiB, is refused); zstd windows are capped at 8 MiB, the limit RFC
//! 9659 sets for the `zstd` content coding (libzstd would accept 128 MiB).

use std::fmt;

use zlib_rs::{Inflate, InflateFlush, Status};

use crate::headers::ContentCoding;

/// gzip members one body may hold. Each starts a fresh inflate stream
/// (about 40 KiB set up for a member of perhaps 20 bytes), so members
/// are bounded apart from bytes.
pub(crate) const MAX_GZIP_MEMBERS: u32 = 1_000;

/// Why a request body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The bytes are not a valid stream of the coding.
    Corrupt,
    /// The body ended inside the stream.
    Truncated,
    /// Data followed the end of the stream.
    TrailingData,
    /// More gzip members than [`MAX_GZIP_MEMBERS`].
    TooManyMembers,
}

/// A request body's bytes are not what its `Content-Encoding` says.
///
/// The inner service sees it as its request body's error;
/// [`RequestDecompression`](super::RequestDecompression) answers the
/// request with `400 Bad Request` when the inner service fails because of
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecompressionError {
    coding: ContentCoding,
    fault: Fault,
}

impl DecompressionError {
    pub(crate) const fn new(coding: ContentCoding, fault: Fault) -> Self {
        Self { coding, fault }
    }

    /// The coding the body claimed.
    pub const fn coding(&self) -> ContentCoding {
        self.coding
    }
}

impl fmt::Display for DecompressionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.fault {
            Fault::Corrupt => "is not valid",
            Fault::Truncated => "ends inside the stream",
            Fault::TrailingData => "has data after the end of the stream",
            Fault::TooManyMembers => "has more gzip members than the 1,000 allowed",
        };
        write!(f, "the {} request body {what}", self.coding.as_str())
    }
}

impl std::error::Error for DecompressionError {}

/// What one [`Decoder::decode`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Input bytes consumed.
    pub(crate) read: usize,
    /// Output bytes written.
    pub(crate) written: usize,
}

enum Kind {
    Zlib(Box<Inflate>),
    #[cfg(feature = "compression-br")]
    Br(Box<brotli::BrotliState<BrAlloc, BrAlloc, BrAlloc>>),
    #[cfg(feature = "compression-zstd")]
    Zstd(super::zstd::ZstdDecoder),
}

#[cfg(feature = "compression-br")]
type BrAlloc = brotli::enc::StandardAlloc;

/// One request body's decoder.
pub(crate) struct Decoder {
    coding: ContentCoding,
    kind: Kind,
    /// Some input was given.
    started: bool,
    /// gzip members begun.
    members: u32,
    /// The stream (for gzip the member, for zstd the frame) is complete:
    /// the input may end here.
    at_end: bool,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("coding", &self.coding)
            .field("at_end", &self.at_end)
            .finish_non_exhaustive()
    }
}

fn inflate(gzip: bool) -> Box<Inflate> {
    // 15 + 16: zlib reads and checks the gzip header and trailer itself.
    Box::new(Inflate::new(true, if gzip { 31 } else { 15 }))
}

impl Decoder {
    /// A decoder for `coding`, or `None` when the build cannot decode it
    /// (or it is identity).
    pub(crate) fn new(coding: ContentCoding) -> Option<Self> {
        let kind = match coding {
            ContentCoding::Gzip => Kind::Zlib(inflate(true)),
            ContentCoding::Deflate => Kind::Zlib(inflate(false)),
            #[cfg(feature = "compression-br")]
            ContentCoding::Br => Kind::Br(Box::new(brotli::BrotliState::new_strict(
                BrAlloc::default(),
                BrAlloc::default(),
                BrAlloc::default(),
            ))),
            #[cfg(feature = "compression-zstd")]
            ContentCoding::Zstd => Kind::Zstd(super::zstd::ZstdDecoder::new()?),
            _ => return None,
        };
        Some(Self {
            coding,
            kind,
            started: false,
            members: 1,
            at_end: false,
        })
    }

    fn fail(&self, fault: Fault) -> DecompressionError {
        DecompressionError::new(self.coding, fault)
    }

    /// Decodes from `input` into `out`. Writes at most `out.len()` bytes;
    /// when it fills `out`, the decoder may hold more output for the same
    /// input, which the next call (with empty input, if need be) returns.
    ///
    /// gzip members and zstd frames may follow one another (RFC 1952 §2.2,
    /// RFC 8878 §3); data after the end of a deflate or brotli stream is an
    /// error.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        out: &mut [u8],
    ) -> Result<Progress, DecompressionError> {
        let mut progress = Progress {
            read: 0,
            written: 0,
        };
        if input.is_empty() && out.is_empty() {
            return Ok(progress);
        }
        if !input.is_empty() {
            self.started = true;
        }
        match &mut self.kind {
            Kind::Zlib(z) => {
                if self.at_end && !input.is_empty() {
                    if self.coding != ContentCoding::Gzip {
                        return Err(self.fail(Fault::TrailingData));
                    }
                    // The next gzip member: a fresh stream (zlib-rs's reset
                    // would forget the gzip mode).
                    if self.members >= MAX_GZIP_MEMBERS {
                        return Err(self.fail(Fault::TooManyMembers));
                    }
                    self.members += 1;
                    *z = inflate(true);
                    self.at_end = false;
                }
                let (in0, out0) = (z.total_in(), z.total_out());
                let status = z.decompress(input, out, InflateFlush::NoFlush);
                progress.read = usize::try_from(z.total_in() - in0).unwrap_or(input.len());
                progress.written = usize::try_from(z.total_out() - out0).unwrap_or(0);
                match status {
                    Ok(Status::StreamEnd) => self.at_end = true,
                    Ok(Status::Ok | Status::BufError) => {}
                    Err(_) => return Err(self.fail(Fault::Corrupt)),
                }
            }
            #[cfg(feature = "compression-br")]
            Kind::Br(state) => {
                if self.at_end {
                    if input.is_empty() {
                        return Ok(progress);
                    }
                    return Err(self.fail(Fault::TrailingData));
                }
                let (mut avail_in, mut in_off) = (input.len(), 0usize);
                let (mut avail_out, mut out_off, mut total) = (out.len(), 0usize, 0usize);
                let result = brotli::BrotliDecompressStream(
                    &mut avail_in,
                    &mut in_off,
                    input,
                    &mut avail_out,
                    &mut out_off,
                    out,
                    &mut total,
                    state,
                );
                progress.read = in_off;
                progress.written = out_off;
                match result {
                    brotli::BrotliResult::ResultSuccess => self.at_end = true,
                    brotli::BrotliResult::NeedsMoreInput
                    | brotli::BrotliResult::NeedsMoreOutput => {}
                    brotli::BrotliResult::ResultFailure => return Err(self.fail(Fault::Corrupt)),
                }
            }
            #[cfg(feature = "compression-zstd")]
            Kind::Zstd(d) => {
                // Frames follow one another: run until the input is used up
                // or the output is full (a frame's end stops libzstd).
                let mut input = input;
                loop {
                    let step = d
                        .decode(input, &mut out[progress.written..])
                        .map_err(|()| {
                            DecompressionError::new(ContentCoding::Zstd, Fault::Corrupt)
                        })?;
                    progress.read += step.read;
                    progress.written += step.written;
                    input = &input[step.read..];
                    if step.hint == 0 {
                        self.at_end = true;
                    } else if step.read > 0 || step.written > 0 {
                        self.at_end = false;
                    }
                    if input.is_empty() || progress.written == out.len() || step.read == 0 {
                        break;
                    }
                }
            }
        }
        Ok(progress)
    }

    /// The input ended: `Ok` when the stream is complete (or there was no
    /// input at all: an empty body stays empty).
    pub(crate) fn finish(&self) -> Result<(), DecompressionError> {
        if self.at_end || !self.started {
            Ok(())
        } else {
            Err(self.fail(Fault::Truncated))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::encoder::{Encoder, Flush};

    fn built() -> Vec<ContentCoding> {
        [
            ContentCoding::Gzip,
            ContentCoding::Deflate,
            ContentCoding::Br,
            ContentCoding::Zstd,
        ]
        .into_iter()
        .filter(|c| crate::compression::encoder::supported(*c))
        .collect()
    }

    fn encode(coding: ContentCoding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = Encoder::new(coding, 3, None).unwrap();
        e.encode(data, &mut out, Flush::Finish).unwrap();
        out
    }

    fn sample(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| (i * 7 % 251) as u8 ^ (i / 4093) as u8)
            .collect()
    }

    /// Feeds `input` in pieces of `step` bytes through output buffers of
    /// `room` bytes, as the body does.
    fn run(
        coding: ContentCoding,
        input: &[u8],
        step: usize,
        room: usize,
    ) -> Result<Vec<u8>, DecompressionError> {
        let mut d = Decoder::new(coding).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; room];
        for mut piece in input.chunks(step) {
            loop {
                let p = d.decode(piece, &mut buf)?;
                out.extend_from_slice(&buf[..p.written]);
                piece = &piece[p.read..];
                if piece.is_empty() && p.written < room {
                    break;
                }
                assert!(p.read > 0 || p.written > 0, "no progress");
            }
        }
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn decodes_every_coding_whatever_the_pieces() {
        let data = sample(200_000);
        for coding in built() {
            let encoded = encode(coding, &data);
            for (step, room) in [(encoded.len(), 1 << 16), (1, 7), (13, 1), (4096, 32 * 1024)] {
                let out = run(coding, &encoded, step, room).unwrap();
                assert!(out == data, "{coding:?} step {step} room {room}");
            }
        }
    }

    #[test]
    fn gzip_members_and_zstd_frames_follow_one_another() {
        for coding in [ContentCoding::Gzip, ContentCoding::Zstd] {
            if !built().contains(&coding) {
                continue;
            }
            let mut two = encode(coding, b"first,");
            two.extend(encode(coding, b"second"));
            assert_eq!(run(coding, &two, 3, 5).unwrap(), b"first,second");
        }
    }

    #[test]
    fn trailing_data_truncation_and_garbage_are_errors() {
        for coding in built() {
            let encoded = encode(coding, &sample(5000));
            let truncated = &encoded[..encoded.len() - 3];
            let err = run(coding, truncated, 100, 4096).unwrap_err();
            assert_eq!(err.fault, Fault::Truncated, "{coding:?}");
            assert_eq!(err.coding(), coding);

            let garbage = vec![0xA5u8; 64];
            assert!(run(coding, &garbage, 64, 4096).is_err(), "{coding:?}");

            let mut trailing = encoded.clone();
            trailing.extend_from_slice(b"xyz");
            let err = run(coding, &trailing, 100, 4096).unwrap_err();
            if matches!(coding, ContentCoding::Deflate | ContentCoding::Br) {
                assert_eq!(err.fault, Fault::TrailingData, "{coding:?}");
            } else {
                // A gzip member or zstd frame would start there: not one.
                assert_ne!(err.fault, Fault::TrailingData, "{coding:?}");
            }
        }
    }

    #[test]
    fn gzip_members_are_bounded() {
        let one = encode(ContentCoding::Gzip, b"");
        let many = |n: usize| one.repeat(n);
        let max = MAX_GZIP_MEMBERS as usize;
        assert_eq!(
            run(ContentCoding::Gzip, &many(max), 4096, 4096).unwrap(),
            b""
        );
        let err = run(ContentCoding::Gzip, &many(max + 1), 4096, 4096).unwrap_err();
        assert_eq!(err.fault, Fault::TooManyMembers);
    }

    #[test]
    fn empty_input_is_an_empty_body() {
        for coding in built() {
            assert_eq!(run(coding, b"", 1, 16).unwrap(), b"");
        }
    }

    #[cfg(feature = "compression-zstd")]
    #[test]
    fn zstd_windows_past_8_mib_are_refused() {
        use std::io::Write;
        let data = sample(100_000);
        let frame = |log: u32| {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            e.window_log(log).unwrap();
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        assert_eq!(
            run(ContentCoding::Zstd, &frame(23), 4096, 4096).unwrap(),
            data
        );
        let err = run(ContentCoding::Zstd, &frame(24), 4096, 4096).unwrap_err();
        assert_eq!(err.fault, Fault::Corrupt);
    }

    #[cfg(feature = "compression-br")]
    #[test]
    fn brotli_large_windows_are_refused() {
        let data = sample(100_000);
        let stream = |large_window: bool, lgwin: i32| {
            let params = brotli::enc::BrotliEncoderParams {
                large_window,
                lgwin,
                quality: 3,
                ..Default::default()
            };
            let mut out = Vec::new();
            brotli::BrotliCompress(&mut &data[..], &mut out, &params).unwrap();
            out
        };
        assert_eq!(
            run(ContentCoding::Br, &stream(false, 24), 4096, 4096).unwrap(),
            data
        );
        let large = stream(true, 26);
        // A valid stream (the library's permissive decoder reads it)...
        let mut plain = Vec::new();
        brotli::BrotliDecompress(&mut &large[..], &mut plain).unwrap();
        assert_eq!(plain, data);
        // ...that the layer refuses: its window may be up to 1 GiB.
        let err = run(ContentCoding::Br, &large, 4096, 4096).unwrap_err();
        assert_eq!(err.fault, Fault::Corrupt);
    }

    #[test]
    fn a_bomb_is_decoded_only_as_far_as_the_output_room() {
        // 10 MB of zeros: one call with 1 KiB of room writes 1 KiB.
        let zeros = vec![0u8; 10_000_000];
        for coding in built() {
            let bomb = encode(coding, &zeros);
            let mut d = Decoder::new(coding).unwrap();
            let mut buf = [0u8; 1024];
            let p = d.decode(&bomb, &mut buf).unwrap();
            assert_eq!(p.written, 1024, "{coding:?}");
        }
    }
}
