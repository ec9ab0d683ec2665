//! The request body the inner service reads (decoded on the fly, with the
//! decoded size bounded) and the response body the layer returns.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{LengthLimitError, Limited};
use pin_project_lite::pin_project;

use super::decoder::{Decoder, DecompressionError, Fault};
use super::stats::DecompressionStats;
use crate::BoxError;
use crate::body_util::poll_bytes_frame;
use crate::headers::ContentCoding;

/// Decoded bytes handed on in one frame, at most: the size of the one
/// buffer each body decodes into.
const CHUNK: usize = 32 * 1024;
/// The buffer a body starts with (it grows to [`CHUNK`] as it fills).
const MIN_BUFFER: usize = 4 * 1024;
/// Input bytes given to the decoder in one call: a decoder that writes
/// nothing (a stream of empty blocks) would otherwise read a whole frame,
/// however large, in one go.
const INPUT_STEP: usize = 64 * 1024;
/// Input one poll may decode before it hands on what it has or yields to
/// the executor. Each frame taken from the inner body counts at least
/// [`FRAME_COST`], so a run of empty frames is bounded too.
const INPUT_BUDGET: usize = 256 * 1024;
const FRAME_COST: usize = 1024;

/// The most encoded bytes a body may have for a decoded limit of `limit`:
/// the limit, plus what stored (uncompressed) blocks add to incompressible
/// data (well under 1/64) and the formats' headers.
pub(crate) fn encoded_limit(limit: u64) -> u64 {
    limit.saturating_add(limit / 64).saturating_add(1024)
}

/// How a decoded request body ended, as far as the layer's answer goes:
/// shared by the body the inner service reads and the response future.
#[derive(Debug, Default)]
pub(crate) struct Outcome(AtomicU8);

const OK: u8 = 0;
const TOO_LARGE: u8 = 1;
const MALFORMED: u8 = 2;

/// What the layer answers instead of the inner service's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The inner service's response stands.
    Ok,
    /// The decoded body passed the limit: 413.
    TooLarge,
    /// The body was not valid for its coding: 400.
    Malformed,
}

impl Outcome {
    fn record(&self, error: &BoxError) {
        let state = if error.is::<LengthLimitError>() {
            TOO_LARGE
        } else if error.is::<DecompressionError>() {
            MALFORMED
        } else {
            return;
        };
        // The first failure is the one the inner service saw.
        let _ = self
            .0
            .compare_exchange(OK, state, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub(crate) fn verdict(&self) -> Verdict {
        match self.0.load(Ordering::Relaxed) {
            TOO_LARGE => Verdict::TooLarge,
            MALFORMED => Verdict::Malformed,
            _ => Verdict::Ok,
        }
    }
}

pin_project! {
    /// The request body the inner service of
    /// [`RequestDecompression`](super::RequestDecompression) reads: the
    /// original body when it came without a `Content-Encoding`, otherwise
    /// its decoded bytes.
    ///
    /// A decoded body fails with [`http_body_util::LengthLimitError`] once
    /// it passes the layer's limit (axum's extractors answer that with
    /// 413), and with [`DecompressionError`] when the bytes are not valid
    /// for their coding.
    pub struct DecompressionBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Plain {
            #[pin]
            body: B,
        },
        Decoding {
            #[pin]
            body: Limited<Decoding<B>>,
            outcome: Arc<Outcome>,
        },
    }
}

impl<B> std::fmt::Debug for DecompressionBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Plain { .. } => "plain",
            Kind::Decoding { .. } => "decoding",
        };
        f.debug_struct("DecompressionBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl<B> DecompressionBody<B> {
    pub(crate) fn plain(body: B) -> Self {
        Self {
            kind: Kind::Plain { body },
        }
    }

    pub(crate) fn decoding(
        body: B,
        decoder: Decoder,
        coding: ContentCoding,
        limit: u64,
        stats: DecompressionStats,
        outcome: Arc<Outcome>,
    ) -> Self {
        let encoded = usize::try_from(encoded_limit(limit)).unwrap_or(usize::MAX);
        let decoding = Decoding {
            inner: Limited::new(body, encoded),
            decoder,
            coding,
            stats,
            pending: Bytes::new(),
            out: Vec::new(),
            filled: 0,
            more_output: false,
            input_ended: false,
            remaining: limit,
            trailers: None,
            done: false,
        };
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Self {
            kind: Kind::Decoding {
                body: Limited::new(decoding, limit),
                outcome,
            },
        }
    }
}

impl<B> Body for DecompressionBody<B>
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
        match self.project().kind.project() {
            KindProj::Plain { body } => poll_bytes_frame(body, cx),
            KindProj::Decoding { body, outcome } => {
                let frame = ready!(body.poll_frame(cx));
                if let Some(Err(e)) = &frame {
                    outcome.record(e);
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Plain { body } => body.is_end_stream(),
            Kind::Decoding { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Plain { body } => body.size_hint(),
            Kind::Decoding { body, .. } => body.size_hint(),
        }
    }
}

pin_project! {
    /// An encoded body, decoded as it is read, into one buffer per body:
    /// decoded bytes are gathered until the buffer is full, the inner body
    /// waits or ends, so many tiny input frames make few output frames.
    struct Decoding<B> {
        // The encoded body, limited (`encoded_limit`): a body that decodes
        // to little cannot be sent forever.
        #[pin]
        inner: Limited<B>,
        decoder: Decoder,
        coding: ContentCoding,
        stats: DecompressionStats,
        // Input taken from `inner` and not decoded yet.
        pending: Bytes,
        // The output buffer (4 KiB to CHUNK bytes) and how much of it holds
        // decoded bytes not yet handed on.
        out: Vec<u8>,
        filled: usize,
        // The last call filled the room it had: the decoder may hold more.
        more_output: bool,
        input_ended: bool,
        // Decoded bytes still allowed; the decoder is given room for one
        // more, so `Limited` sees the limit passed without the whole excess
        // being handed on.
        remaining: u64,
        trailers: Option<HeaderMap>,
        // Nothing more comes: the stream ended, failed or passed the limit.
        done: bool,
    }
}

impl<B> Decoding<B> {
    /// Hands on what the buffer holds.
    fn take(
        out: &[u8],
        filled: &mut usize,
        remaining: &mut u64,
        done: &mut bool,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = Bytes::copy_from_slice(&out[..*filled]);
        let n = *filled as u64;
        *filled = 0;
        if n > *remaining {
            // Past the limit: `Limited` fails on this frame, and nothing
            // more is decoded (the body is fused).
            *done = true;
        }
        *remaining = remaining.saturating_sub(n);
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }
}

impl<B> Body for Decoding<B>
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
        let mut this = self.project();
        let mut spent = 0usize;
        loop {
            if *this.done {
                return Poll::Ready(None);
            }
            if spent >= INPUT_BUDGET {
                if *this.filled > 0 {
                    return Self::take(this.out, this.filled, this.remaining, this.done);
                }
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if this.out.is_empty() {
                // Sized to the first input (a small body needs little),
                // grown as it fills.
                let first = this
                    .pending
                    .len()
                    .saturating_mul(4)
                    .clamp(MIN_BUFFER, CHUNK);
                this.out.resize(first, 0);
            }
            // Room this frame may still take: up to one byte past the limit.
            let limit_room = usize::try_from(*this.remaining)
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            let allowed = limit_room.min(this.out.len());
            if *this.filled >= allowed {
                if allowed == this.out.len() && allowed < CHUNK && allowed < limit_room {
                    let grown = (allowed * 2).min(CHUNK);
                    this.out.resize(grown, 0);
                    continue;
                }
                return Self::take(this.out, this.filled, this.remaining, this.done);
            }
            if !this.pending.is_empty() || *this.more_output {
                let input = &this.pending[..this.pending.len().min(INPUT_STEP)];
                let room = &mut this.out[*this.filled..allowed];
                let progress = match this.decoder.decode(input, room) {
                    Ok(p) => p,
                    Err(e) => {
                        *this.done = true;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                };
                this.stats.record_bytes(
                    *this.coding,
                    progress.read as u64,
                    progress.written as u64,
                );
                *this.more_output = progress.written == allowed - *this.filled;
                *this.filled += progress.written;
                this.pending.advance(progress.read);
                spent += progress.read;
                if progress.read == 0 && progress.written == 0 && !this.pending.is_empty() {
                    // Room to write and input to read, and no progress: no
                    // valid stream stalls like this.
                    *this.done = true;
                    let e = DecompressionError::new(*this.coding, Fault::Corrupt);
                    return Poll::Ready(Some(Err(e.into())));
                }
                continue;
            }
            if *this.input_ended {
                if *this.filled > 0 {
                    return Self::take(this.out, this.filled, this.remaining, this.done);
                }
                *this.done = true;
                if let Err(e) = this.decoder.finish() {
                    return Poll::Ready(Some(Err(e.into())));
                }
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let polled = poll_bytes_frame(this.inner.as_mut(), cx);
            let Poll::Ready(next) = polled else {
                // The client is slow: hand on what is decoded so far.
                if *this.filled > 0 {
                    return Self::take(this.out, this.filled, this.remaining, this.done);
                }
                return Poll::Pending;
            };
            spent += FRAME_COST;
            match next {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => *this.pending = data,
                    Err(frame) => {
                        *this.trailers = frame.into_trailers().ok();
                        *this.input_ended = true;
                    }
                },
                Some(Err(e)) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => *this.input_ended = true,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

crate::macros::define_text_or_inner_body! {
    /// The response body of
    /// [`RequestDecompression`](super::RequestDecompression): the inner
    /// service's body, or the text of an answer the layer made itself (a
    /// 400, 413, 415 or 500).
}
