//! The brotli encoder of `dcb` (RFC 9842 §4): the `brotli` crate's
//! streaming state with the dictionary set as a raw prefix, driven like
//! every other encoder (input in, output appended, flush on demand).
//!
//! `brotli::CompressorWriter` (the plain `br` encoder) has no way to set
//! a dictionary, so this drives the encoder state itself.

use brotli::enc::StandardAlloc;
use brotli::enc::encode::{
    BrotliEncoderOperation, BrotliEncoderParameter, BrotliEncoderStateStruct,
};

use super::encoder::{EncodeError, Flush};

/// Output room added per round: the encoder writes into initialized
/// bytes, so a round zeroes this much, and a frame keeps what it did not
/// use as spare capacity.
const ROOM: usize = 8 * 1024;

/// One response's `dcb` stream (the hash header is the caller's).
pub(crate) struct DcbEncoder {
    state: Box<BrotliEncoderStateStruct<StandardAlloc>>,
    finished: bool,
}

impl DcbEncoder {
    /// A stream at `quality` (2–11: qualities 0 and 1 ignore a dictionary)
    /// with `dictionary` as a raw prefix, in a window of `2^lgwin` bytes
    /// (16–24, no large window: RFC 9842 §4), for a body of about
    /// `size_hint` bytes. `None` if brotli refuses a parameter.
    pub(crate) fn new(
        dictionary: &[u8],
        quality: u32,
        lgwin: u32,
        size_hint: Option<u64>,
    ) -> Option<Self> {
        let mut state = Box::new(BrotliEncoderStateStruct::new(StandardAlloc::default()));
        let quality = quality.clamp(2, 11);
        let ok = state.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_QUALITY, quality)
            && state.set_parameter(
                BrotliEncoderParameter::BROTLI_PARAM_LGWIN,
                lgwin.clamp(16, 24),
            )
            && size_hint.is_none_or(|n| {
                let n = u32::try_from(n).unwrap_or(u32::MAX);
                state.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_SIZE_HINT, n)
            });
        if !ok {
            return None;
        }
        state.set_custom_dictionary(dictionary.len(), dictionary);
        Some(Self {
            state,
            finished: false,
        })
    }

    /// Compresses all of `input`, appending to `out`, then flushes as
    /// asked; after `Finish` nothing more goes in.
    pub(crate) fn encode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        flush: Flush,
    ) -> Result<(), EncodeError> {
        if self.finished {
            return Err(EncodeError);
        }
        let op = match flush {
            Flush::None => BrotliEncoderOperation::BROTLI_OPERATION_PROCESS,
            Flush::Sync => BrotliEncoderOperation::BROTLI_OPERATION_FLUSH,
            Flush::Finish => BrotliEncoderOperation::BROTLI_OPERATION_FINISH,
        };
        let (mut avail_in, mut in_off) = (input.len(), 0usize);
        let mut total = None;
        loop {
            // The encoder writes into initialized bytes: give it room
            // after what `out` holds, and cut back to what it wrote.
            let mut out_off = out.len();
            out.resize(out_off + ROOM, 0);
            let mut avail_out = out.len() - out_off;
            let ok = self.state.compress_stream(
                op,
                &mut avail_in,
                input,
                &mut in_off,
                &mut avail_out,
                out,
                &mut out_off,
                &mut total,
                &mut |_, _, _, _| (),
            );
            out.truncate(out_off);
            if !ok {
                return Err(EncodeError);
            }
            let done = match flush {
                Flush::None => avail_in == 0,
                Flush::Sync => avail_in == 0 && !self.state.has_more_output(),
                Flush::Finish => self.state.is_finished(),
            };
            if done {
                break;
            }
        }
        self.finished = flush == Flush::Finish;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::test_util::{sample, undictionary, undictionary_prefix};

    /// Streamed in pieces with flushes, the output decodes (with the
    /// dictionary) to the input, a flushed prefix on its own; the
    /// dictionary makes a near copy of it tiny; nothing goes in after the
    /// end.
    #[test]
    fn streams_flushes_and_uses_the_dictionary() {
        let dictionary = sample(40_000);
        let mut data = dictionary.clone();
        data.extend_from_slice(b"a new line at the end");
        let hash = [7u8; 32];
        let mut out = vec![0xff, 0x44, 0x43, 0x42];
        out.extend_from_slice(&hash);
        let mut e = DcbEncoder::new(&dictionary, 3, 17, None).unwrap();
        e.encode(&data[..1_000], &mut out, Flush::Sync).unwrap();
        let head = undictionary_prefix("dcb", &out, &dictionary, &hash);
        assert_eq!(head, &data[..1_000]);
        for chunk in data[1_000..].chunks(7_000) {
            e.encode(chunk, &mut out, Flush::None).unwrap();
        }
        e.encode(&[], &mut out, Flush::Finish).unwrap();
        assert_eq!(undictionary("dcb", &out, &dictionary, &hash), data);
        assert!(out.len() < 36 + 200, "{} bytes", out.len());
        assert!(e.encode(b"x", &mut out, Flush::None).is_err());
    }
}
