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

/// The size of a body made of `buffered` chunks already read, followed by
/// what is left of an inner body (`None` when that has ended).
#[allow(dead_code)]
pub(crate) fn size_hint_after<'a>(
    buffered: impl IntoIterator<Item = &'a Bytes>,
    rest: Option<http_body::SizeHint>,
) -> http_body::SizeHint {
    let buffered: u64 = buffered.into_iter().map(|c| c.len() as u64).sum();
    let Some(rest) = rest else {
        return http_body::SizeHint::with_exact(buffered);
    };
    let mut hint = http_body::SizeHint::new();
    hint.set_lower(rest.lower().saturating_add(buffered));
    if let Some(upper) = rest.upper() {
        hint.set_upper(upper.saturating_add(buffered));
    }
    hint
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_hints_add_up() {
        let chunks = [Bytes::from_static(b"abc"), Bytes::from_static(b"de")];
        assert_eq!(size_hint_after(&chunks, None).exact(), Some(5));
        let rest = http_body::SizeHint::with_exact(10);
        assert_eq!(size_hint_after(&chunks, Some(rest)).exact(), Some(15));
        let open = size_hint_after(&chunks, Some(http_body::SizeHint::new()));
        assert_eq!((open.lower(), open.upper()), (5, None));
    }
}
