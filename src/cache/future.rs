//! [`ResponseFuture`]: the future of [`Cache`](super::Cache).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;

use super::body::ResponseBody;

pub(super) type Resp<B> = Response<ResponseBody<B>>;
pub(super) type BoxFut<B, E> = Pin<Box<dyn Future<Output = Result<Resp<B>, E>> + Send>>;

/// The future of [`Cache`](super::Cache): a response at hand (a hit never
/// allocates a future), or the boxed origin path (whose network I/O
/// dwarfs one allocation).
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<B, E> {
    kind: FutKind<B, E>,
}

// The response stays inline: boxing it would put an allocation back on
// the hit path this variant exists to keep free of one.
#[allow(clippy::large_enum_variant)]
enum FutKind<B, E> {
    Ready(Option<Resp<B>>),
    Boxed(BoxFut<B, E>),
}

impl<B, E> std::fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            FutKind::Ready(_) => "ResponseFuture::Ready",
            FutKind::Boxed(_) => "ResponseFuture::Origin",
        })
    }
}

impl<B, E> ResponseFuture<B, E> {
    pub(super) fn ready(r: Resp<B>) -> Self {
        Self {
            kind: FutKind::Ready(Some(r)),
        }
    }
    pub(super) fn boxed(f: impl Future<Output = Result<Resp<B>, E>> + Send + 'static) -> Self {
        Self {
            kind: FutKind::Boxed(Box::pin(f)),
        }
    }
}

impl<B, E> Unpin for ResponseFuture<B, E> {}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Resp<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.kind {
            FutKind::Ready(r) => match r.take() {
                Some(r) => Poll::Ready(Ok(r)),
                // Polled after completion: never ready again.
                None => Poll::Pending,
            },
            FutKind::Boxed(f) => f.as_mut().poll(cx),
        }
    }
}
