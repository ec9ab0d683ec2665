//! The response body of a cache layer: a stored body, or the origin's body
//! passed through (and copied into the store as it streams, when the
//! response is to be stored).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::entry::CachedResponse;
use super::flight::FlightGuard;
use super::freshness::Facts;
use super::key::CacheKey;
use super::range::Segment;
use super::service::Shared;
use super::stats::Counters;
use super::vary::VaryKey;

pin_project! {
    /// The body of responses from [`Cache`](super::Cache).
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Stored { data: Option<Bytes>, trailers: Option<HeaderMap> },
        Origin { #[pin] body: B, tee: Option<Box<Tee>> },
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            Kind::Stored { .. } => "ResponseBody::Stored",
            Kind::Origin { .. } => "ResponseBody::Origin",
        })
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn stored(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            kind: Kind::Stored {
                data: (!data.is_empty()).then_some(data),
                trailers,
            },
        }
    }

    pub(crate) fn empty() -> Self {
        Self::stored(Bytes::new(), None)
    }

    pub(crate) fn origin(body: B, tee: Option<Box<Tee>>) -> Self {
        Self {
            kind: Kind::Origin { body, tee },
        }
    }
}

/// A response being copied into the store while it streams.
pub(crate) struct Tee {
    pub(crate) shared: Arc<Shared>,
    pub(crate) key: CacheKey,
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) times: (SystemTime, SystemTime),
    pub(crate) vary: VaryKey,
    pub(crate) tags: Vec<Box<str>>,
    pub(crate) chunks: Vec<Bytes>,
    pub(crate) size: usize,
    pub(crate) trailers: Option<HeaderMap>,
    /// Released (waiters woken) once the response is stored or abandoned.
    pub(crate) flight: Option<FlightGuard>,
    pub(crate) finished: bool,
    /// A 206: the bytes it holds, stored to combine with others.
    pub(crate) part: Option<Segment>,
    /// The facts of a whole response, derived when it was decided to
    /// store it (`None` for a part: a 206's are its own).
    pub(crate) facts: Option<Facts>,
}

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee")
            .field("key", &self.key)
            .field("size", &self.size)
            .finish()
    }
}

impl Tee {
    /// A copy of a response about to stream: `part` for a 206 stored to
    /// combine; `flight` released once it is stored or abandoned.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shared: &Arc<Shared>,
        key: CacheKey,
        status: StatusCode,
        headers: HeaderMap,
        times: (SystemTime, SystemTime),
        (vary, tags, facts): (VaryKey, Vec<Box<str>>, Option<Facts>),
        flight: Option<FlightGuard>,
        part: Option<Segment>,
    ) -> Box<Self> {
        Box::new(Self {
            shared: Arc::clone(shared),
            key,
            status,
            headers,
            times,
            vary,
            tags,
            chunks: Vec::new(),
            size: 0,
            trailers: None,
            flight,
            finished: false,
            part,
            facts,
        })
    }

    /// Takes a data chunk; `false` when the response outgrew the maximum
    /// entry size and is no longer to be stored.
    fn push(&mut self, chunk: &Bytes) -> bool {
        self.size += chunk.len();
        if self.size > self.shared.config.max_entry_size {
            Counters::add(&self.shared.counters.not_stored);
            self.finished = true;
            return false;
        }
        if !chunk.is_empty() {
            self.chunks.push(chunk.clone());
        }
        true
    }

    /// The body ended: store the response, then release the waiters.
    pub(crate) fn finish(mut self: Box<Self>) {
        self.finished = true;
        let body = match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks.pop().unwrap_or_default(),
            _ => {
                let mut all = BytesMut::with_capacity(self.size);
                for c in &self.chunks {
                    all.extend_from_slice(c);
                }
                all.freeze()
            }
        };
        // The stored body's length is known: HEAD answers from the cache
        // carry it even when the origin's framing didn't.
        if !self.headers.contains_key(http::header::CONTENT_LENGTH) {
            self.headers.insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(body.len()),
            );
        }
        let entry = CachedResponse::build(
            self.status,
            std::mem::take(&mut self.headers),
            body,
            self.trailers.take(),
            self.times,
            (
                std::mem::take(&mut self.vary),
                std::mem::take(&mut self.tags),
            ),
            &self.shared.config.rules,
            self.facts.take(),
        )
        .with_default_ttl(self.shared.config.default_ttl(&self.key));
        let key = self.key.clone();
        match self.part {
            // A part shorter or longer than its Content-Range says.
            Some(seg) if seg.len() != entry.body.len() as u64 => {
                Counters::add(&self.shared.counters.not_stored);
            }
            Some(_) => self.shared.store_part(key, entry),
            None => self.shared.store_entry(key, entry),
        }
        // Waiters now find the entry.
        drop(self.flight.take());
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        if !self.finished {
            Counters::add(&self.shared.counters.aborted);
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Stored { data, trailers } => Poll::Ready(
                data.take()
                    .map(|d| Ok(Frame::data(d)))
                    .or_else(|| trailers.take().map(|t| Ok(Frame::trailers(t)))),
            ),
            KindProj::Origin { mut body, tee } => {
                let frame = ready!(body.as_mut().poll_frame(cx));
                match &frame {
                    Some(Ok(f)) => {
                        if let Some(t) = tee.as_mut() {
                            let keep = if let Some(d) = f.data_ref() {
                                t.push(d)
                            } else if let Some(tr) = f.trailers_ref() {
                                t.trailers = Some(tr.clone());
                                true
                            } else {
                                true
                            };
                            if !keep {
                                *tee = None;
                            } else if body.is_end_stream() {
                                // hyper stops polling a body that says it
                                // has ended: store now.
                                if let Some(t) = tee.take() {
                                    t.finish();
                                }
                            }
                        }
                    }
                    // An error midway: nothing is stored.
                    Some(Err(_)) => *tee = None,
                    None => {
                        if let Some(t) = tee.take() {
                            t.finish();
                        }
                    }
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Stored { data, trailers } => data.is_none() && trailers.is_none(),
            Kind::Origin { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Stored { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Origin { body, .. } => body.size_hint(),
        }
    }
}
