use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::BoxError;
use crate::body_util::poll_bytes_frame;

/// A body the layer read whole (to hash it), replayed as it was.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub(crate) chunks: VecDeque<Bytes>,
    pub(crate) trailers: Option<HeaderMap>,
    pub(crate) error: Option<BoxError>,
    pub(crate) len: u64,
}

impl Collected {
    /// Reads `body` to its end; `Pending` while it waits, `Ready(true)` at
    /// the end or on error, `Ready(false)` once more than `limit` bytes came
    /// (the rest is then left in the body).
    pub(crate) fn poll_collect<B>(
        &mut self,
        body: &mut Pin<Box<B>>,
        limit: u64,
        cx: &mut Context<'_>,
    ) -> Poll<bool>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        loop {
            match ready!(body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let bytes = data.copy_to_bytes(data.remaining());
                        self.len += bytes.len() as u64;
                        if !bytes.is_empty() {
                            self.chunks.push_back(bytes);
                        }
                        if self.len > limit {
                            return Poll::Ready(false);
                        }
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            self.trailers = Some(t);
                            return Poll::Ready(true);
                        }
                    }
                },
                Some(Err(e)) => {
                    self.error = Some(e.into());
                    return Poll::Ready(true);
                }
                None => return Poll::Ready(true),
            }
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Plain { #[pin] body: B },
        // What was read to hash the body, then whatever is left of it.
        Collected { collected: Collected, rest: Option<Pin<Box<B>>> },
        Empty,
    }
}

pin_project! {
    /// The response body of [`CacheControl`](super::CacheControl).
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl<B: Default> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::plain(B::default())
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn plain(body: B) -> Self {
        Self {
            kind: Kind::Plain { body },
        }
    }

    pub(crate) fn collected(collected: Collected, rest: Option<Pin<Box<B>>>) -> Self {
        Self {
            kind: Kind::Collected { collected, rest },
        }
    }

    pub(crate) fn empty() -> Self {
        Self { kind: Kind::Empty }
    }

    pub(crate) fn text(text: &'static str) -> Self {
        let mut collected = Collected {
            len: text.len() as u64,
            ..Collected::default()
        };
        collected
            .chunks
            .push_back(Bytes::from_static(text.as_bytes()));
        Self::collected(collected, None)
    }
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
        match self.project().kind.project() {
            KindProj::Plain { body } => poll_bytes_frame(body, cx),
            KindProj::Collected { collected, rest } => {
                if let Some(chunk) = collected.chunks.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                if let Some(e) = collected.error.take() {
                    *rest = None;
                    return Poll::Ready(Some(Err(e)));
                }
                if let Some(t) = collected.trailers.take() {
                    *rest = None;
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
                let Some(body) = rest.as_mut() else {
                    return Poll::Ready(None);
                };
                let next = ready!(poll_bytes_frame(body.as_mut(), cx));
                if !matches!(next, Some(Ok(_))) {
                    *rest = None;
                }
                Poll::Ready(next)
            }
            KindProj::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Plain { body } => body.is_end_stream(),
            Kind::Collected { collected, rest } => {
                collected.chunks.is_empty()
                    && collected.error.is_none()
                    && collected.trailers.is_none()
                    && rest.as_ref().is_none_or(|b| b.is_end_stream())
            }
            Kind::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Plain { body } => body.size_hint(),
            Kind::Collected { collected, rest } => crate::body_util::size_hint_after(
                &collected.chunks,
                rest.as_ref().map(|b| b.size_hint()),
            ),
            Kind::Empty => SizeHint::with_exact(0),
        }
    }
}
