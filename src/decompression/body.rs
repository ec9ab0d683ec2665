//! The request body the inner service reads (decoded on the fly, with the
//! decoded size bounded) and the response body the layer returns.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{LengthLimitError, Limited};
use pin_project_lite::pin_project;

use super::decoder::{Decoder, DecompressionError, Fault};
use super::stats::DecompressionStats;
use crate::BoxError;
use crate::body_util::poll_bytes_frame;
use crate::headers::ContentCoding;

/// Decoded bytes handed on in one frame, at most.
const CHUNK: usize = 32 * 1024;
/// The smallest output buffer tried for a frame of input.
const MIN_CHUNK: usize = 4 * 1024;
/// Input bytes given to the decoder in one call: a decoder that writes
/// nothing (a stream of empty blocks) would otherwise read a whole frame,
/// however large, in one go.
const INPUT_STEP: usize = 64 * 1024;
/// Input bytes one poll may decode without any output before it yields
/// to the executor.
const INPUT_BUDGET: usize = 256 * 1024;

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
        let decoding = Decoding {
            inner: body,
            decoder,
            coding,
            stats,
            pending: Bytes::new(),
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
    /// An encoded body, decoded as it is read.
    struct Decoding<B> {
        #[pin]
        inner: B,
        decoder: Decoder,
        coding: ContentCoding,
        stats: DecompressionStats,
        // Input taken from `inner` and not decoded yet.
        pending: Bytes,
        // The last call filled its buffer: the decoder may hold more.
        more_output: bool,
        input_ended: bool,
        // Decoded bytes still allowed; the decoder is given one more, so
        // `Limited` sees the limit passed without the whole excess being
        // decoded.
        remaining: u64,
        trailers: Option<HeaderMap>,
        done: bool,
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
        let mut consumed = 0usize;
        loop {
            if *this.done {
                return Poll::Ready(None);
            }
            if !this.pending.is_empty() || *this.more_output {
                let want = if *this.more_output {
                    CHUNK
                } else {
                    this.pending.len().saturating_mul(4).clamp(MIN_CHUNK, CHUNK)
                };
                let cap = want.min(
                    usize::try_from(*this.remaining)
                        .unwrap_or(usize::MAX)
                        .saturating_add(1),
                );
                let mut buf = BytesMut::zeroed(cap);
                let input = &this.pending[..this.pending.len().min(INPUT_STEP)];
                let progress = match this.decoder.decode(input, &mut buf) {
                    Ok(p) => p,
                    Err(e) => {
                        *this.done = true;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                };
                this.pending.advance(progress.read);
                consumed += progress.read;
                *this.more_output = progress.written == cap;
                this.stats.record_bytes(
                    *this.coding,
                    progress.read as u64,
                    progress.written as u64,
                );
                if progress.written > 0 {
                    *this.remaining = this.remaining.saturating_sub(progress.written as u64);
                    buf.truncate(progress.written);
                    return Poll::Ready(Some(Ok(Frame::data(buf.freeze()))));
                }
                if progress.read == 0 && !this.pending.is_empty() {
                    // Room to write and input to read, and no progress: no
                    // valid stream stalls like this.
                    *this.done = true;
                    let e = DecompressionError::new(*this.coding, Fault::Corrupt);
                    return Poll::Ready(Some(Err(e.into())));
                }
                if consumed >= INPUT_BUDGET {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                continue;
            }
            if *this.input_ended {
                *this.done = true;
                if let Err(e) = this.decoder.finish() {
                    return Poll::Ready(Some(Err(e.into())));
                }
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match ready!(poll_bytes_frame(this.inner.as_mut(), cx)) {
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

pin_project! {
    /// The response body of
    /// [`RequestDecompression`](super::RequestDecompression): the inner
    /// service's body, or the text of an answer the layer made itself (a
    /// 400, 413 or 415).
    pub struct ResponseBody<B> {
        #[pin]
        inner: Option<B>,
        text: Option<Bytes>,
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            inner: Some(body),
            text: None,
        }
    }

    pub(crate) fn text(text: &'static str) -> Self {
        Self {
            inner: None,
            text: Some(Bytes::from_static(text.as_bytes())),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for ResponseBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        if let Some(t) = this.text.take() {
            return Poll::Ready(Some(Ok(Frame::data(t))));
        }
        match this.inner.as_pin_mut() {
            Some(b) => b.poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.text.is_none() && self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.text, &self.inner) {
            (Some(t), _) => SizeHint::with_exact(t.len() as u64),
            (None, Some(b)) => b.size_hint(),
            (None, None) => SizeHint::with_exact(0),
        }
    }
}
