//! Live statistics of a request decompression layer: atomics behind an
//! `Arc`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::headers::ContentCoding;

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    /// gzip, deflate, br, zstd.
    codings: [Counters; 4],
    unsupported: AtomicU64,
    too_large: AtomicU64,
    malformed: AtomicU64,
}

fn slot(coding: ContentCoding) -> Option<usize> {
    match coding {
        ContentCoding::Gzip => Some(0),
        ContentCoding::Deflate => Some(1),
        ContentCoding::Br => Some(2),
        ContentCoding::Zstd => Some(3),
        ContentCoding::Identity => None,
    }
}

/// A cheap, cloneable handle to a
/// [`RequestDecompressionLayer`](super::RequestDecompressionLayer)'s live
/// statistics. Clones share the counters; reading never blocks a request.
#[derive(Debug, Clone, Default)]
pub struct DecompressionStats {
    inner: Arc<Inner>,
}

/// Requests decoded with one coding, in a [`DecompressionSnapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodedSnapshot {
    /// Requests whose body came with this coding (those later answered
    /// 400 or 413 included).
    pub requests: u64,
    /// Encoded body bytes decoded.
    pub bytes_in: u64,
    /// Decoded bytes produced (for a body past the limit, the one byte
    /// past it included).
    pub bytes_out: u64,
}

/// A point-in-time copy of [`DecompressionStats`].
///
/// With the `report` feature it serializes as `/performance/summary`
/// serves it (under `decompression`): `codings`, each with its name, then
/// `unsupported`, `too_large` and `malformed`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecompressionSnapshot {
    /// gzip request bodies.
    pub gzip: DecodedSnapshot,
    /// deflate request bodies.
    pub deflate: DecodedSnapshot,
    /// br request bodies (zero without the `compression-br` feature).
    pub br: DecodedSnapshot,
    /// zstd request bodies (zero without the `compression-zstd` feature).
    pub zstd: DecodedSnapshot,
    /// `415 Unsupported Media Type` answers: a coding the layer does not
    /// decode, or several codings stacked.
    pub unsupported: u64,
    /// `413 Content Too Large` answers: the decoded body passed the limit.
    pub too_large: u64,
    /// `400 Bad Request` answers: the body was not valid for its coding.
    pub malformed: u64,
}

impl DecompressionSnapshot {
    /// The figures of each coding this build decodes, named as in
    /// `Content-Encoding`.
    pub fn codings(&self) -> impl Iterator<Item = (&'static str, &DecodedSnapshot)> {
        [
            (ContentCoding::Zstd, &self.zstd),
            (ContentCoding::Br, &self.br),
            (ContentCoding::Gzip, &self.gzip),
            (ContentCoding::Deflate, &self.deflate),
        ]
        .into_iter()
        .filter(|(c, _)| crate::compression::encoder::supported(*c))
        .map(|(c, s)| (c.as_str(), s))
    }

    /// The figures for one coding (`None` for identity).
    pub fn coding(&self, coding: ContentCoding) -> Option<&DecodedSnapshot> {
        match slot(coding)? {
            0 => Some(&self.gzip),
            1 => Some(&self.deflate),
            2 => Some(&self.br),
            _ => Some(&self.zstd),
        }
    }
}

/// The report's JSON: `codings` (each with its name), `unsupported`,
/// `too_large` and `malformed`.
#[cfg(feature = "report")]
#[cfg_attr(docsrs, doc(cfg(feature = "report")))]
impl serde::Serialize for DecompressionSnapshot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        #[derive(serde::Serialize)]
        struct Coding<'a> {
            coding: &'a str,
            requests: u64,
            bytes_in: u64,
            bytes_out: u64,
        }
        let codings: Vec<Coding<'_>> = self
            .codings()
            .map(|(coding, c)| Coding {
                coding,
                requests: c.requests,
                bytes_in: c.bytes_in,
                bytes_out: c.bytes_out,
            })
            .collect();
        let mut st = s.serialize_struct("DecompressionSnapshot", 4)?;
        st.serialize_field("codings", &codings)?;
        st.serialize_field("unsupported", &self.unsupported)?;
        st.serialize_field("too_large", &self.too_large)?;
        st.serialize_field("malformed", &self.malformed)?;
        st.end()
    }
}

impl DecompressionStats {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The counters now.
    pub fn snapshot(&self) -> DecompressionSnapshot {
        let i = &self.inner;
        let c = |n: usize| DecodedSnapshot {
            requests: i.codings[n].requests.load(Relaxed),
            bytes_in: i.codings[n].bytes_in.load(Relaxed),
            bytes_out: i.codings[n].bytes_out.load(Relaxed),
        };
        DecompressionSnapshot {
            gzip: c(0),
            deflate: c(1),
            br: c(2),
            zstd: c(3),
            unsupported: i.unsupported.load(Relaxed),
            too_large: i.too_large.load(Relaxed),
            malformed: i.malformed.load(Relaxed),
        }
    }

    pub(crate) fn record_request(&self, coding: ContentCoding) {
        if let Some(n) = slot(coding) {
            self.inner.codings[n].requests.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn record_bytes(&self, coding: ContentCoding, read: u64, written: u64) {
        if let Some(n) = slot(coding) {
            let c = &self.inner.codings[n];
            if read > 0 {
                c.bytes_in.fetch_add(read, Relaxed);
            }
            if written > 0 {
                c.bytes_out.fetch_add(written, Relaxed);
            }
        }
    }

    pub(crate) fn record_unsupported(&self) {
        self.inner.unsupported.fetch_add(1, Relaxed);
    }

    pub(crate) fn record_too_large(&self) {
        self.inner.too_large.fetch_add(1, Relaxed);
    }

    pub(crate) fn record_malformed(&self) {
        self.inner.malformed.fetch_add(1, Relaxed);
    }
}
