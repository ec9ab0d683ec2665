//! The bodies: what the inner service receives (the client's body as it
//! streams, or a deferred request's body read whole), and what the client
//! receives (the inner body, or an answer of the layer's own).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

crate::macros::define_text_or_inner_body! {
    /// The response body of [`Async`](super::Async): the inner body, or
    /// the JSON or text of an answer the layer made itself (a `202`, a
    /// `503`).
}

pin_project_lite::pin_project! {
    /// The request body the inner service of [`Async`](super::Async)
    /// receives: the client's own body, streaming, for a request answered
    /// inline; for one run as a task, the body read whole before the
    /// `202` went out (the client's connection may be gone by the time
    /// the task runs).
    pub struct TaskBody<B> {
        #[pin]
        inner: Option<B>,
        whole: Option<Bytes>,
    }
}

impl<B> std::fmt::Debug for TaskBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskBody")
            .field("deferred", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}

impl<B> TaskBody<B> {
    pub(super) fn inline(body: B) -> Self {
        Self {
            inner: Some(body),
            whole: None,
        }
    }

    pub(super) fn whole(body: Bytes) -> Self {
        Self {
            inner: None,
            whole: (!body.is_empty()).then_some(body),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for TaskBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        match this.inner.as_pin_mut() {
            Some(b) => b.poll_frame(cx),
            None => Poll::Ready(this.whole.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(b) => b.is_end_stream(),
            None => self.whole.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(b) => b.size_hint(),
            None => SizeHint::with_exact(self.whole.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
