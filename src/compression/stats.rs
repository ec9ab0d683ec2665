//! Live statistics of a compression layer: atomics behind an `Arc`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::headers::ContentCoding;

/// Why a response went out uncompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SkipReason {
    /// The client accepts none of our codings (identity was negotiated).
    NotAccepted,
    /// The response already had a Content-Encoding.
    AlreadyEncoded,
    /// 1xx, 204 or 304: no body to compress.
    NoBody,
    /// A 206, or a response with Content-Range.
    Range,
    /// `Cache-Control: no-transform`.
    NoTransform,
    /// The content type is excluded (or missing).
    ContentType,
    /// Smaller than the minimum size.
    TooSmall,
}

impl SkipReason {
    /// Every reason, in a fixed order.
    pub const ALL: [Self; 7] = [
        Self::NotAccepted,
        Self::AlreadyEncoded,
        Self::NoBody,
        Self::Range,
        Self::NoTransform,
        Self::ContentType,
        Self::TooSmall,
    ];

    /// A stable snake_case name, for metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotAccepted => "not_accepted",
            Self::AlreadyEncoded => "already_encoded",
            Self::NoBody => "no_body",
            Self::Range => "range",
            Self::NoTransform => "no_transform",
            Self::ContentType => "content_type",
            Self::TooSmall => "too_small",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default)]
struct CodingCounters {
    responses: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    gzip: CodingCounters,
    deflate: CodingCounters,
    br: CodingCounters,
    zstd: CodingCounters,
    dcb: CodingCounters,
    dcz: CodingCounters,
    skipped: [AtomicU64; 7],
    not_acceptable: AtomicU64,
}

/// A cheap, cloneable handle to a compression layer's live statistics.
///
/// Clones share the counters; reading never blocks the request path.
#[derive(Debug, Clone)]
pub struct CompressionStats {
    inner: Arc<Inner>,
}

/// Per-coding figures in a [`CompressionSnapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodingSnapshot {
    /// Responses sent with this coding.
    pub responses: u64,
    /// Body bytes before compression.
    pub bytes_in: u64,
    /// Body bytes after compression.
    pub bytes_out: u64,
}

impl CodingSnapshot {
    /// `bytes_out / bytes_in`, or `None` before any byte went through.
    pub fn ratio(&self) -> Option<f64> {
        (self.bytes_in > 0).then(|| self.bytes_out as f64 / self.bytes_in as f64)
    }
}

/// A point-in-time copy of [`CompressionStats`].
///
/// With the `report` feature it serializes as the report serves it:
/// `codings` (each with `coding`, its name, and `ratio`), `skipped` as
/// `[reason, count]` pairs, `not_acceptable` and `bytes_saved`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompressionSnapshot {
    /// gzip responses and bytes.
    pub gzip: CodingSnapshot,
    /// deflate responses and bytes.
    pub deflate: CodingSnapshot,
    /// br (brotli) responses and bytes (zero in builds without the
    /// `compression-br` feature).
    pub br: CodingSnapshot,
    /// zstd responses and bytes (zero in builds without the
    /// `compression-zstd` feature).
    pub zstd: CodingSnapshot,
    /// Responses compressed with a dictionary as `dcb` (brotli, RFC 9842),
    /// and their bytes.
    pub dcb: CodingSnapshot,
    /// Responses compressed with a dictionary as `dcz` (zstd, RFC 9842),
    /// and their bytes.
    pub dcz: CodingSnapshot,
    /// Uncompressed responses by reason, in [`SkipReason::ALL`] order.
    pub skipped: Vec<(SkipReason, u64)>,
    /// 406 answers (only when the layer is configured to send them).
    pub not_acceptable: u64,
}

impl CompressionSnapshot {
    /// Responses compressed, all codings.
    pub fn compressed(&self) -> u64 {
        self.codings().map(|(_, c)| c.responses).sum()
    }
    /// Responses skipped, all reasons.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.iter().map(|(_, n)| n).sum()
    }
    /// Skipped responses for one reason.
    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
    /// Bytes saved over every coding.
    pub fn bytes_saved(&self) -> u64 {
        let (i, o) = self.codings().fold((0u64, 0u64), |(i, o), (_, c)| {
            (i + c.bytes_in, o + c.bytes_out)
        });
        i.saturating_sub(o)
    }
    /// The figures of each coding this build produces, named as in
    /// `Content-Encoding`, in the layer's default order of preference, then
    /// the dictionary codings (`dcz`, `dcb`) once they were used.
    pub fn codings(&self) -> impl Iterator<Item = (&'static str, &CodingSnapshot)> {
        [
            (ContentCoding::Zstd, &self.zstd),
            (ContentCoding::Br, &self.br),
            (ContentCoding::Gzip, &self.gzip),
            (ContentCoding::Deflate, &self.deflate),
        ]
        .into_iter()
        .filter(|(c, _)| super::encoder::supported(*c))
        .map(|(c, s)| (c.as_str(), s))
        .chain(
            [("dcz", &self.dcz), ("dcb", &self.dcb)]
                .into_iter()
                .filter(|(_, s)| s.responses > 0),
        )
    }
}

/// The report's JSON: `codings` (each with its name and `ratio`),
/// `skipped` as `[reason, count]` pairs, `not_acceptable` and
/// `bytes_saved`.
#[cfg(feature = "report")]
#[cfg_attr(docsrs, doc(cfg(feature = "report")))]
impl serde::Serialize for CompressionSnapshot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        #[derive(serde::Serialize)]
        struct Coding<'a> {
            coding: &'a str,
            responses: u64,
            bytes_in: u64,
            bytes_out: u64,
            ratio: Option<f64>,
        }
        let codings: Vec<Coding<'_>> = self
            .codings()
            .map(|(coding, c)| Coding {
                coding,
                responses: c.responses,
                bytes_in: c.bytes_in,
                bytes_out: c.bytes_out,
                ratio: c.ratio(),
            })
            .collect();
        let skipped: Vec<(&str, u64)> =
            self.skipped.iter().map(|(r, n)| (r.as_str(), *n)).collect();
        let mut st = s.serialize_struct("CompressionSnapshot", 4)?;
        st.serialize_field("codings", &codings)?;
        st.serialize_field("skipped", &skipped)?;
        st.serialize_field("not_acceptable", &self.not_acceptable)?;
        st.serialize_field("bytes_saved", &self.bytes_saved())?;
        st.end()
    }
}

impl CompressionStats {
    /// A fresh set of counters.
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::default(),
        }
    }

    fn coding(&self, coding: ContentCoding) -> Option<&CodingCounters> {
        match coding {
            ContentCoding::Gzip => Some(&self.inner.gzip),
            ContentCoding::Deflate => Some(&self.inner.deflate),
            ContentCoding::Br => Some(&self.inner.br),
            ContentCoding::Zstd => Some(&self.inner.zstd),
            ContentCoding::Identity => None,
        }
    }

    pub(crate) fn record_compressed(&self, coding: ContentCoding) {
        crate::trace::record(crate::trace::field::COMPRESSION_CODING, coding.as_str());
        if let Some(c) = self.coding(coding) {
            c.responses.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn record_bytes(&self, coding: ContentCoding, bytes_in: u64, bytes_out: u64) {
        if let Some(c) = self.coding(coding) {
            c.bytes_in.fetch_add(bytes_in, Relaxed);
            c.bytes_out.fetch_add(bytes_out, Relaxed);
        }
    }

    /// A response compressed with a dictionary, counted when its head goes
    /// out.
    pub(crate) fn record_dictionary(&self, coding: super::dictionary::DictionaryCoding) {
        crate::trace::record(crate::trace::field::COMPRESSION_CODING, coding.as_str());
        self.dictionary(coding).responses.fetch_add(1, Relaxed);
    }

    /// The bytes a dictionary-compressed body took in and sent.
    pub(crate) fn record_dictionary_bytes(
        &self,
        coding: super::dictionary::DictionaryCoding,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let c = self.dictionary(coding);
        c.bytes_in.fetch_add(bytes_in, Relaxed);
        c.bytes_out.fetch_add(bytes_out, Relaxed);
    }

    fn dictionary(&self, coding: super::dictionary::DictionaryCoding) -> &CodingCounters {
        match coding {
            super::dictionary::DictionaryCoding::Dcb => &self.inner.dcb,
            super::dictionary::DictionaryCoding::Dcz => &self.inner.dcz,
        }
    }

    pub(crate) fn record_skip(&self, reason: SkipReason) {
        self.inner.skipped[reason.index()].fetch_add(1, Relaxed);
    }

    pub(crate) fn record_not_acceptable(&self) {
        self.inner.not_acceptable.fetch_add(1, Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> CompressionSnapshot {
        let coding = |c: &CodingCounters| CodingSnapshot {
            responses: c.responses.load(Relaxed),
            bytes_in: c.bytes_in.load(Relaxed),
            bytes_out: c.bytes_out.load(Relaxed),
        };
        CompressionSnapshot {
            gzip: coding(&self.inner.gzip),
            deflate: coding(&self.inner.deflate),
            br: coding(&self.inner.br),
            zstd: coding(&self.inner.zstd),
            dcb: coding(&self.inner.dcb),
            dcz: coding(&self.inner.dcz),
            skipped: SkipReason::ALL
                .iter()
                .map(|r| (*r, self.inner.skipped[r.index()].load(Relaxed)))
                .collect(),
            not_acceptable: self.inner.not_acceptable.load(Relaxed),
        }
    }
}
