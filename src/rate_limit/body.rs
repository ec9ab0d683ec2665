//! The response body of the rate limiter: the inner body, or the text of
//! an answer the layer made itself (a 429, a 500).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The response body of [`RateLimit`](super::RateLimit): the inner body, or the 429 text.
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
    pub(super) fn inner(b: B) -> Self {
        Self {
            inner: Some(b),
            text: None,
        }
    }
    pub(super) fn text(t: &'static str) -> Self {
        Self {
            inner: None,
            text: Some(Bytes::from_static(t.as_bytes())),
        }
    }
    pub(super) fn bytes(b: Bytes) -> Self {
        Self {
            inner: None,
            text: Some(b),
        }
    }
}

impl ResponseBody<()> {
    pub(super) fn retype<B>(self) -> ResponseBody<B> {
        ResponseBody {
            inner: None,
            text: self.text,
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
