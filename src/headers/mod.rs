//! Typed parsers and writers for the header fields several layers read.
//!
//! One parser per header, shared by every layer: [`CacheControl`],
//! [`AcceptEncoding`] (with [`ContentCoding`] and [`QValue`]),
//! [`EntityTag`] and [`EntityTagList`] (for `If-Match` and
//! `If-None-Match`), and [`HttpDate`].
//!
//! No parser panics, whatever the bytes. Where an RFC says how to treat a
//! bad value (Cache-Control, Accept-Encoding) the parser does that and
//! documents it; where a bad value has no safe reading (entity tags, dates)
//! it returns a [`ParseError`] and the caller decides.
//!
//! ```
//! use http::{HeaderMap, HeaderValue, header};
//! use tower_perf::headers::{AcceptEncoding, CacheControl, ContentCoding};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("br;q=0.9, gzip"));
//! headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=0"));
//!
//! let coding = AcceptEncoding::from_headers(&headers)
//!     .negotiate(&[ContentCoding::Br, ContentCoding::Gzip]);
//! assert_eq!(coding, Some(ContentCoding::Gzip));
//! assert_eq!(CacheControl::from_headers(&headers).unwrap().max_age().unwrap().as_secs(), 0);
//! ```

mod accept_encoding;
mod cache_control;
mod date;
mod etag;
mod util;

use std::fmt;

#[doc(inline)]
pub use self::{
    accept_encoding::{AcceptEncoding, ContentCoding, QValue},
    cache_control::{CacheControl, MaxStale},
    date::HttpDate,
    etag::{EntityTag, EntityTagList},
};

/// A header value that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    what: &'static str,
    reason: &'static str,
}

impl ParseError {
    pub(crate) const fn new(what: &'static str, reason: &'static str) -> Self {
        Self { what, reason }
    }

    /// What was being parsed (`"etag"`, `"http-date"`…).
    pub const fn what(&self) -> &'static str {
        self.what
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.what, self.reason)
    }
}

impl std::error::Error for ParseError {}
