use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::BoxError;
use crate::body_util::{ReadAhead, poll_bytes_frame};

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Plain { #[pin] body: B },
        // What was read to hash the body, then whatever is left of it.
        Collected { collected: ReadAhead, rest: Option<Pin<Box<B>>> },
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

    pub(crate) fn collected(collected: ReadAhead, rest: Option<Pin<Box<B>>>) -> Self {
        Self {
            kind: Kind::Collected { collected, rest },
        }
    }

    pub(crate) fn empty() -> Self {
        Self { kind: Kind::Empty }
    }

    pub(crate) fn text(text: &'static str) -> Self {
        Self::collected(ReadAhead::whole(Bytes::from_static(text.as_bytes())), None)
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
                let next = ready!(collected.poll_next(rest.as_mut().map(Pin::as_mut), cx));
                if collected.ended {
                    // Drop the body as soon as it has nothing more to give.
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
                collected.is_end_stream(|| rest.as_ref().is_none_or(|b| b.is_end_stream()))
            }
            Kind::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Plain { body } => body.size_hint(),
            Kind::Collected { collected, rest } => collected.size_hint(|| {
                rest.as_ref()
                    .map_or(SizeHint::with_exact(0), |b| b.size_hint())
            }),
            Kind::Empty => SizeHint::with_exact(0),
        }
    }
}
