//! Helpers the layers' bodies share.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::BoxError;

/// Polls `body` for its next frame, with the data as `Bytes` and the error
/// boxed (zero-copy when the data already is `Bytes`).
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

/// What a layer read from a body before handing it on (compression, to
/// decide on the size; cache-control, to hash it), replayed in order before
/// whatever the body still holds.
#[derive(Debug, Default)]
pub(crate) struct ReadAhead {
    /// Data read, in order (empty chunks left out).
    pub(crate) chunks: VecDeque<Bytes>,
    /// The body's trailers, when it sent them while being read.
    pub(crate) trailers: Option<HeaderMap>,
    /// The body's error, when it failed while being read.
    pub(crate) error: Option<BoxError>,
    /// Data bytes read.
    pub(crate) len: u64,
    /// The body has nothing more to give: it ended, sent its trailers or
    /// failed.
    pub(crate) ended: bool,
}

/// What [`ReadAhead::next_data`] found.
#[derive(Debug)]
pub(crate) enum Next {
    /// A data frame (possibly empty).
    Data(Bytes),
    /// The body ended (or failed, or sent trailers).
    Ended,
    /// The body has nothing ready; it wakes the task when it has.
    Waiting,
}

/// Why [`ReadAhead::fill`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    /// The body ended (or failed, or sent trailers).
    Ended,
    /// `enough` said so; the rest is still in the body.
    Enough,
    /// The body has nothing ready; it wakes the task when it has.
    Waiting,
}

impl ReadAhead {
    /// A whole body of `data`, nothing left to read.
    pub(crate) fn whole(data: Bytes) -> Self {
        let mut chunks = VecDeque::new();
        let len = data.len() as u64;
        if !data.is_empty() {
            chunks.push_back(data);
        }
        Self {
            chunks,
            len,
            ended: true,
            ..Self::default()
        }
    }

    /// Reads what `body` has ready until it ends, or `enough` (given the
    /// bytes read so far, after each data frame) says stop.
    pub(crate) fn fill<B>(
        &mut self,
        mut body: Pin<&mut B>,
        cx: &mut Context<'_>,
        enough: impl Fn(u64) -> bool,
    ) -> Fill
    where
        B: Body + ?Sized,
        B::Error: Into<BoxError>,
    {
        loop {
            match self.next_data(body.as_mut(), cx) {
                Next::Data(bytes) => {
                    if !bytes.is_empty() {
                        self.chunks.push_back(bytes);
                    }
                    if enough(self.len) {
                        return Fill::Enough;
                    }
                }
                Next::Ended => return Fill::Ended,
                Next::Waiting => return Fill::Waiting,
            }
        }
    }

    /// The body's next data, handed out rather than kept (a consumer that
    /// takes frames one by one, such as the streaming compressor, needs
    /// no queue); trailers and errors are kept and end the body, as
    /// [`fill`](Self::fill) does. `len` counts the data handed out.
    pub(crate) fn next_data<B>(&mut self, mut body: Pin<&mut B>, cx: &mut Context<'_>) -> Next
    where
        B: Body + ?Sized,
        B::Error: Into<BoxError>,
    {
        loop {
            match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(mut data) => {
                        let bytes = data.copy_to_bytes(data.remaining());
                        self.len += bytes.len() as u64;
                        return Next::Data(bytes);
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            self.trailers = Some(t);
                            self.ended = true;
                            return Next::Ended;
                        }
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    self.error = Some(e.into());
                    self.ended = true;
                    return Next::Ended;
                }
                Poll::Ready(None) => {
                    self.ended = true;
                    return Next::Ended;
                }
                Poll::Pending => return Next::Waiting,
            }
        }
    }

    /// The next frame: what was read first, then the trailers or error it
    /// ended with, then `rest` (the body it was read from; `None` once
    /// dropped).
    pub(crate) fn poll_next<B>(
        &mut self,
        rest: Option<Pin<&mut B>>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
    where
        B: Body + ?Sized,
        B::Error: Into<BoxError>,
    {
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(e) = self.error.take() {
            self.ended = true;
            return Poll::Ready(Some(Err(e)));
        }
        let rest = match rest {
            Some(rest) if !self.ended => rest,
            _ => {
                self.ended = true;
                return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
        };
        let next = ready!(poll_bytes_frame(rest, cx));
        if !matches!(next, Some(Ok(_))) {
            self.ended = true;
        }
        Poll::Ready(next)
    }

    /// Whether nothing is left, given whether `rest` (the body it was read
    /// from) has ended.
    pub(crate) fn is_end_stream(&self, rest: impl FnOnce() -> bool) -> bool {
        self.chunks.is_empty()
            && self.error.is_none()
            && if self.ended {
                self.trailers.is_none()
            } else {
                rest()
            }
    }

    /// What is left: the chunks read plus `rest`'s hint while it has not
    /// ended.
    pub(crate) fn size_hint(&self, rest: impl FnOnce() -> SizeHint) -> SizeHint {
        size_hint_after(&self.chunks, (!self.ended).then(rest))
    }
}

/// The size of a body made of `buffered` chunks already read, followed by
/// what is left of an inner body (`None` when that has ended).
fn size_hint_after<'a>(
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

    use http_body_util::StreamBody;

    fn frames(
        items: Vec<Result<Frame<Bytes>, BoxError>>,
    ) -> StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, BoxError>>>>
    {
        StreamBody::new(futures_util::stream::iter(items))
    }

    fn data(s: &'static str) -> Result<Frame<Bytes>, BoxError> {
        Ok(Frame::data(Bytes::from_static(s.as_bytes())))
    }

    /// Reads ahead until `enough`, then replays the read chunks before the
    /// rest of the body, ending with its trailers.
    #[tokio::test]
    async fn replays_what_was_read_then_the_rest() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", http::HeaderValue::from_static("1"));
        let mut body = Box::pin(frames(vec![
            data("ab"),
            data(""),
            data("cd"),
            data("ef"),
            Ok(Frame::trailers(trailers)),
        ]));
        let mut ra = ReadAhead::default();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(ra.fill(body.as_mut(), &mut cx, |n| n >= 4), Fill::Enough);
        assert_eq!((ra.len, ra.chunks.len(), ra.ended), (4, 2, false));
        assert_eq!(ra.size_hint(|| body.size_hint()).lower(), 4);
        let mut out = Vec::new();
        let mut got_trailers = false;
        while let Some(frame) =
            std::future::poll_fn(|cx| ra.poll_next(Some(body.as_mut()), cx)).await
        {
            let frame = frame.unwrap();
            if frame.is_trailers() {
                got_trailers = true;
            } else if let Ok(d) = frame.into_data() {
                out.extend_from_slice(&d);
            }
        }
        assert_eq!(out, b"abcdef");
        assert!(got_trailers);
        assert!(ra.ended && ra.is_end_stream(|| false));
    }

    /// A body that fails while read ahead replays its data, then the
    /// error, then nothing: the rest is never polled again.
    #[tokio::test]
    async fn an_error_read_ahead_ends_the_replay() {
        let mut body = Box::pin(frames(vec![data("ab"), Err("boom".into()), data("never")]));
        let mut ra = ReadAhead::default();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(ra.fill(body.as_mut(), &mut cx, |_| false), Fill::Ended);
        assert!(ra.ended && ra.error.is_some());
        assert!(!ra.is_end_stream(|| true));
        assert_eq!(ra.size_hint(SizeHint::new).exact(), Some(2));
        let first = std::future::poll_fn(|cx| ra.poll_next(Some(body.as_mut()), cx)).await;
        assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "ab");
        let second = std::future::poll_fn(|cx| ra.poll_next(Some(body.as_mut()), cx)).await;
        assert!(second.unwrap().is_err());
        let third = std::future::poll_fn(|cx| ra.poll_next(Some(body.as_mut()), cx)).await;
        assert!(third.is_none());
    }

    /// Frames taken one by one are handed out, not queued; the trailers
    /// are kept for the replay's end.
    #[test]
    fn next_data_hands_frames_out() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", http::HeaderValue::from_static("1"));
        let mut body = Box::pin(frames(vec![
            data("ab"),
            data("cd"),
            Ok(Frame::trailers(trailers)),
        ]));
        let mut ra = ReadAhead::default();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        for want in ["ab", "cd"] {
            match ra.next_data(body.as_mut(), &mut cx) {
                Next::Data(d) => assert_eq!(d, want),
                other => panic!("{other:?}"),
            }
        }
        assert!(ra.chunks.is_empty() && ra.len == 4);
        assert!(matches!(ra.next_data(body.as_mut(), &mut cx), Next::Ended));
        assert!(ra.ended && ra.trailers.is_some());
    }

    /// A body with nothing ready stops the read-ahead without ending it.
    #[test]
    fn a_waiting_body_stops_the_fill() {
        let mut body = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, BoxError>,
        >());
        let mut ra = ReadAhead::default();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(
            ra.fill(Pin::new(&mut body), &mut cx, |_| false),
            Fill::Waiting
        );
        assert!(!ra.ended);
        let whole = ReadAhead::whole(Bytes::from_static(b"xyz"));
        assert_eq!(whole.size_hint(SizeHint::new).exact(), Some(3));
        assert!(!whole.is_end_stream(|| false));
    }

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
