use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::Dictionaries;
use super::dictionary::DictionaryCoding;
use super::encoder::{EncodeError, Encoder, Flush};
use super::stats::CompressionStats;
use crate::BoxError;
use crate::body_util::{Next, ReadAhead};
use crate::headers::ContentCoding;

/// Input taken in one poll at most, so that a large body never holds the
/// executor for long (BENCHMARKS.md, section Compression, measures a
/// poll): for gzip and deflate 32 KiB up to level 4, 16 KiB up to level 6,
/// 8 KiB above, and the work follows the input. brotli and zstd compress
/// in blocks (brotli 16 KiB at qualities 2–3, 64 KiB at 4–8, 256 KiB at
/// 9–11; zstd 128 KiB), so at their default levels a poll that completes a
/// block does about a block's work (well under a millisecond), and at high
/// levels one poll in many does a slow block's (BENCHMARKS.md, section
/// Compression II: brotli 7 spends ~12 ms on 64 KiB): keep high levels for
/// bodies compressed ahead of time. After that the body yields (returns the output so far, or
/// wakes itself and returns `Pending`).
pub(crate) const fn work_per_poll(coding: ContentCoding, level: u32) -> usize {
    // Input per poll shrinks with the level; the codec's own block size
    // bounds the work of the poll that completes a block (see above).
    let tier = match coding {
        ContentCoding::Br => match level {
            0..=4 => 0,
            5..=7 => 1,
            8..=9 => 2,
            _ => 3,
        },
        ContentCoding::Zstd => match level {
            0..=6 => 0,
            7..=12 => 1,
            13..=18 => 2,
            _ => 3,
        },
        _ => match level {
            0..=4 => 0,
            5..=6 => 1,
            _ => 2,
        },
    };
    match tier {
        0 => 32 * 1024,
        1 => 16 * 1024,
        2 => 8 * 1024,
        _ => 1024,
    }
}

/// Output is handed on once this much is ready, without waiting for more
/// input.
const FRAME_TARGET: usize = 16 * 1024;

pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        Plain { #[pin] body: B },
        // Bodies the response future had to poll before answering (to see
        // whether a body of unknown length reaches the minimum size) are
        // pinned on the heap: they can't move once polled.
        Boxed { body: Pin<Box<B>> },
        Empty,
    }
}

impl<B: Body> Body for Inner<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        match self.project() {
            InnerProj::Plain { body } => body.poll_frame(cx),
            InnerProj::Boxed { body } => body.as_mut().poll_frame(cx),
            InnerProj::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Plain { body } => body.is_end_stream(),
            Self::Boxed { body } => body.is_end_stream(),
            Self::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Plain { body } => body.size_hint(),
            Self::Boxed { body } => body.size_hint(),
            Self::Empty => SizeHint::with_exact(0),
        }
    }
}

/// How a body is compressed as it streams.
pub(crate) struct Encoding {
    /// `None` for a coding this build cannot produce (never negotiated)
    /// or when libzstd could not make a context: the body then fails at
    /// its first poll, loudly (an error the server sees, a truncated
    /// stream the client sees).
    pub(crate) encoder: Option<Encoder>,
    /// What the body starts with: a dictionary coding's header.
    pub(crate) header: Vec<u8>,
    /// The coding the encoder runs (for a dictionary coding, the one it
    /// compresses with), which sets the work per poll.
    pub(crate) coding: ContentCoding,
    pub(crate) level: u32,
    /// The dictionary coding, when the body is compressed against one.
    pub(crate) dictionary: Option<DictionaryCoding>,
    /// Where to keep the body as a dictionary once it has ended, when the
    /// response said `Use-As-Dictionary` and may be learned.
    pub(crate) learn: Option<Dictionaries>,
}

impl Encoding {
    /// `coding` at `level`, for a body of about `len` bytes.
    pub(crate) fn plain(coding: ContentCoding, level: u32, len: Option<u64>) -> Self {
        Self {
            encoder: Encoder::new(coding, level, len),
            header: Vec::new(),
            coding,
            level,
            dictionary: None,
            learn: None,
        }
    }
}

struct EncodeState {
    encoder: Option<Encoder>,
    coding: ContentCoding,
    dictionary: Option<DictionaryCoding>,
    level: u32,
    input: Bytes,
    out: Vec<u8>,
    unflushed: bool,
    finished: bool,
    failed: bool,
    bytes_in: u64,
    bytes_out: u64,
    /// The store and the body so far, while it may still become a
    /// dictionary (dropped once it outgrows [`MAX_DICTIONARY_SIZE`]).
    ///
    /// [`MAX_DICTIONARY_SIZE`]: super::MAX_DICTIONARY_SIZE
    learn: Option<(Dictionaries, Vec<u8>)>,
    stats: CompressionStats,
    /// The request's span when the response head went out: the bytes are
    /// recorded on it when the body is dropped, outside any span.
    span: tracing::Span,
}

impl EncodeState {
    /// Compresses `input` onto `out`, then flushes as asked.
    fn encode(&mut self, input: &[u8], flush: Flush) -> Result<(), EncodeError> {
        match self.encoder.as_mut() {
            Some(e) => e.encode(input, &mut self.out, flush),
            None => Err(EncodeError),
        }
    }

    /// Keeps `input` for the dictionary the body may become.
    fn keep(&mut self, input: &[u8]) {
        if let Some((_, kept)) = &mut self.learn {
            if kept.len() + input.len() > super::MAX_DICTIONARY_SIZE {
                self.learn = None;
            } else {
                kept.extend_from_slice(input);
            }
        }
    }

    /// The body ended whole: keep it as a dictionary if it may be one.
    fn learn(&mut self) {
        if let Some((store, kept)) = self.learn.take() {
            store.insert(&kept);
        }
    }

    fn take_frame(&mut self) -> Frame<Bytes> {
        self.bytes_out += self.out.len() as u64;
        Frame::data(Bytes::from(std::mem::take(&mut self.out)))
    }
}

impl Drop for EncodeState {
    fn drop(&mut self) {
        // Counted on drop, so aborted responses count what was sent.
        if !self.span.is_disabled() {
            use crate::trace::field::{COMPRESSION_BYTES_IN, COMPRESSION_BYTES_OUT};
            self.span.record(COMPRESSION_BYTES_IN, self.bytes_in);
            self.span.record(COMPRESSION_BYTES_OUT, self.bytes_out);
        }
        match self.dictionary {
            Some(d) => self
                .stats
                .record_dictionary_bytes(d, self.bytes_in, self.bytes_out),
            None => self
                .stats
                .record_bytes(self.coding, self.bytes_in, self.bytes_out),
        }
    }
}

pin_project! {
    /// The response body of [`Compression`](super::Compression): the inner
    /// body as it is, or compressed as it streams.
    pub struct ResponseBody<B> {
        #[pin]
        inner: Inner<B>,
        buffered: ReadAhead,
        encode: Option<Box<EncodeState>>,
        // A HEAD response that says it is compressed: its (empty) body must
        // not advertise the identity length, or a server would put it in
        // Content-Length.
        hide_size: bool,
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("compressed", &self.encode.as_ref().map(|e| e.coding))
            .finish_non_exhaustive()
    }
}

impl<B: Body + Default> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::identity(B::default())
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn identity(body: B) -> Self {
        Self {
            inner: Inner::Plain { body },
            buffered: ReadAhead::default(),
            encode: None,
            hide_size: false,
        }
    }

    /// The body of a HEAD response that says it is compressed: none (the
    /// inner body, identity bytes, is dropped).
    pub(crate) fn head_compressed() -> Self {
        Self {
            inner: Inner::Empty,
            buffered: ReadAhead::default(),
            encode: None,
            hide_size: true,
        }
    }

    pub(crate) fn empty_with(text: &'static str) -> Self {
        Self {
            inner: Inner::Empty,
            buffered: ReadAhead::whole(Bytes::from_static(text.as_bytes())),
            encode: None,
            hide_size: false,
        }
    }

    pub(crate) fn identity_boxed(body: Pin<Box<B>>, buffered: ReadAhead) -> Self {
        Self {
            inner: Inner::Boxed { body },
            buffered,
            encode: None,
            hide_size: false,
        }
    }

    pub(crate) fn encoded(body: B, encoding: Encoding, stats: CompressionStats) -> Self {
        Self {
            inner: Inner::Plain { body },
            buffered: ReadAhead::default(),
            encode: Some(encode_state(encoding, stats)),
            hide_size: false,
        }
    }

    pub(crate) fn encoded_boxed(
        body: Pin<Box<B>>,
        buffered: ReadAhead,
        encoding: Encoding,
        stats: CompressionStats,
    ) -> Self {
        Self {
            inner: Inner::Boxed { body },
            buffered,
            encode: Some(encode_state(encoding, stats)),
            hide_size: false,
        }
    }
}

fn encode_state(encoding: Encoding, stats: CompressionStats) -> Box<EncodeState> {
    let learn = encoding.learn.map(|store| (store, Vec::new()));
    Box::new(EncodeState {
        encoder: encoding.encoder,
        coding: encoding.coding,
        dictionary: encoding.dictionary,
        level: encoding.level,
        input: Bytes::new(),
        out: encoding.header,
        unflushed: false,
        finished: false,
        failed: false,
        bytes_in: 0,
        bytes_out: 0,
        learn,
        stats,
        span: crate::trace::current_span(),
    })
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.encode.as_deref_mut() {
            None => this.buffered.poll_next(Some(this.inner), cx),
            Some(enc) => poll_encoded(this.inner, this.buffered, enc, cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.encode {
            None => self.buffered.is_end_stream(|| self.inner.is_end_stream()),
            Some(enc) => {
                enc.failed
                    || (enc.finished && enc.out.is_empty() && self.buffered.trailers.is_none())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.encode.is_some() || self.hide_size {
            return SizeHint::new();
        }
        self.buffered.size_hint(|| self.inner.size_hint())
    }
}

fn poll_encoded<B>(
    mut inner: Pin<&mut Inner<B>>,
    st: &mut ReadAhead,
    enc: &mut EncodeState,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    if enc.failed {
        return Poll::Ready(None);
    }
    let mut budget = work_per_poll(enc.coding, enc.level);
    loop {
        if enc.finished {
            if !enc.out.is_empty() {
                return Poll::Ready(Some(Ok(enc.take_frame())));
            }
            return Poll::Ready(st.trailers.take().map(|t| Ok(Frame::trailers(t))));
        }
        if enc.out.len() >= FRAME_TARGET {
            return Poll::Ready(Some(Ok(enc.take_frame())));
        }
        if enc.input.is_empty() {
            if let Some(b) = st.chunks.pop_front() {
                enc.input = b;
                continue;
            }
            if let Some(e) = st.error.take() {
                return fail(enc, e);
            }
            if st.ended {
                if enc.encode(&[], Flush::Finish).is_err() {
                    return fail(enc, encode_error());
                }
                enc.finished = true;
                enc.learn();
                continue;
            }
            // One more frame: data to compress, or the end (trailers, sent
            // after the compressed data, or an error, failed above).
            match st.next_data(inner.as_mut(), cx) {
                Next::Data(data) => enc.input = data,
                Next::Ended => {}
                Next::Waiting => {
                    // The inner body is waiting: send what we have now, so
                    // streams reach the client without waiting for the end.
                    if enc.unflushed {
                        if enc.encode(&[], Flush::Sync).is_err() {
                            return fail(enc, encode_error());
                        }
                        enc.unflushed = false;
                    }
                    if !enc.out.is_empty() {
                        return Poll::Ready(Some(Ok(enc.take_frame())));
                    }
                    return Poll::Pending;
                }
            }
            continue;
        }
        if budget == 0 {
            if !enc.out.is_empty() {
                return Poll::Ready(Some(Ok(enc.take_frame())));
            }
            // Yield to the executor; we have more to do right away.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = enc.input.len().min(budget);
        let chunk = enc.input.split_to(n);
        if enc.encode(&chunk, Flush::None).is_err() {
            return fail(enc, encode_error());
        }
        enc.keep(&chunk);
        enc.bytes_in += n as u64;
        enc.unflushed = true;
        budget -= n;
    }
}

/// The inner body failed (or, by a bug, the encoder did): report the error
/// and never finish the stream, so the client sees a truncated body rather
/// than a well-formed but incomplete one.
fn fail(enc: &mut EncodeState, e: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    enc.failed = true;
    enc.out.clear();
    enc.input.clear();
    Poll::Ready(Some(Err(e)))
}

fn encode_error() -> BoxError {
    Box::new(CompressionError(()))
}

/// The compressor failed: an internal error (or libzstd out of memory),
/// never caused by the body's bytes.
#[derive(Debug)]
pub struct CompressionError(pub(super) ());

impl std::fmt::Display for CompressionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response compression failed")
    }
}

impl std::error::Error for CompressionError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body is kept for the store only up to `MAX_DICTIONARY_SIZE`, and
    /// learned only when it ends.
    #[test]
    fn a_body_is_kept_up_to_the_largest_dictionary() {
        let store = Dictionaries::new();
        let state = |store: &Dictionaries| {
            let mut encoding = Encoding::plain(ContentCoding::Gzip, 1, None);
            encoding.learn = Some(store.clone());
            encode_state(encoding, CompressionStats::new())
        };
        let half = vec![b'a'; super::super::MAX_DICTIONARY_SIZE / 2];
        let mut large = state(&store);
        large.keep(&half);
        large.keep(&half);
        assert!(large.learn.is_some(), "exactly the largest");
        large.keep(b"x");
        assert!(large.learn.is_none(), "one byte over");
        large.learn();
        assert!(store.is_empty());
        let mut small = state(&store);
        small.keep(b"a dictionary");
        drop(small);
        assert!(store.is_empty(), "not ended: not learned");
        let mut small = state(&store);
        small.keep(b"a dictionary");
        small.learn();
        assert_eq!(store.len(), 1);
    }
}
