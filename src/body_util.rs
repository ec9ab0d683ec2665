//! Helpers the layers' bodies share.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame};

use crate::BoxError;

/// Polls `body` for its next frame, with the data as `Bytes` and the error
/// boxed (zero-copy when the data already is `Bytes`).
#[allow(dead_code)]
pub(crate) fn poll_bytes_frame<B>(
    body: Pin<&mut B>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
where
    B: Body + ?Sized,
    B::Error: Into<BoxError>,
{
    Poll::Ready(match ready!(body.poll_frame(cx)) {
        Some(Ok(frame)) => Some(Ok(frame.map_data(|mut d| d.copy_to_bytes(d.remaining())))),
        Some(Err(e)) => Some(Err(e.into())),
        None => None,
    })
}
