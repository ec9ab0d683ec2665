//! The response body, timed until its end.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::guard::Guard;

pin_project! {
    /// The response body of [`Timing`](super::Timing): the inner body,
    /// timed until its end.
    pub struct ResponseBody<B> {
        #[pin]
        pub(super) inner: B,
        pub(super) guard: Option<Guard>,
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            None => {
                if let Some(g) = this.guard.as_mut() {
                    g.finish();
                }
            }
            Some(Err(_)) => {
                // The server failed to send what it started: a server
                // error (OpenTelemetry sets `error.type`), not a client
                // abort.
                if let Some(g) = this.guard.as_mut() {
                    g.fail();
                }
            }
            Some(Ok(f)) => {
                if let (Some(g), Some(d)) = (this.guard.as_mut(), f.data_ref()) {
                    g.sizes.response = g.sizes.response.saturating_add(d.remaining() as u64);
                }
                if this.inner.is_end_stream() {
                    if let Some(g) = this.guard.as_mut() {
                        g.finish();
                    }
                }
            }
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
