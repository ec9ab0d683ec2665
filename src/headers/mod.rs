//! Typed parsers and writers for the header fields several layers read.
//!
//! One parser per header, shared by every layer: [`CacheControl`],
//! [`AcceptEncoding`] (with [`ContentCoding`] and [`QValue`]),
//! [`EntityTag`] and [`EntityTagList`] (for `If-Match` and
//! `If-None-Match`), [`HttpDate`], [`Prefer`] (RFC 7240), and with the `compression` feature the
//! Compression Dictionary Transport fields (RFC 9842)
//! `AvailableDictionary` and `UseAsDictionary`, and with the `cache`
//! feature the range fields [`ByteRanges`], [`IfRange`] and
//! [`ContentRange`].
//!
//! No parser panics, whatever the bytes. Where an RFC says how to treat a
//! bad value (Cache-Control, Accept-Encoding) the parser does that and
//! documents it; where a bad value has no safe reading (entity tags, dates)
//! it returns a [`ParseError`] and the caller decides.
//!
//! Every parser takes time linear in its input and keeps a bounded part of
//! it, however long a list a client or an origin sends:
//! [`CacheControl::MAX_EXTENSIONS`] extensions,
//! [`CacheControl::MAX_FIELD_NAMES`] names in a `no-cache`/`private`
//! qualification, [`EntityTagList::MAX_TAGS`] entity tags, the six weights
//! of [`AcceptEncoding`]. Each type's docs say what a field past its limit
//! means.
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
#[cfg(any(feature = "cache", feature = "cache-control"))]
mod conditional;
mod date;
#[cfg(feature = "compression")]
mod dictionary;
#[cfg(any(feature = "cache", feature = "compression"))]
mod dictionary_use;
mod etag;
#[cfg(any(feature = "cache", feature = "tasks"))]
mod hop;
#[cfg(test)]
mod limits;
pub(crate) mod memo;
mod prefer;
#[cfg(feature = "cache")]
mod range;
#[cfg(any(feature = "cache", feature = "compression"))]
mod sf;
#[cfg(feature = "cache")]
mod targeted;
mod util;

use std::fmt;

#[cfg(feature = "cache")]
pub(crate) use self::hop::is_hop_by_hop;
#[cfg(any(feature = "cache", feature = "tasks"))]
pub(crate) use self::hop::remove_hop_by_hop;
#[cfg(any(feature = "cache", feature = "compression", feature = "timing"))]
pub(crate) use self::util::is_tchar;
#[cfg(any(feature = "compression", all(feature = "tasks", feature = "report")))]
pub(crate) use self::util::split_list;
#[cfg(feature = "compression")]
pub(crate) use self::util::trim_ows;

#[cfg(any(feature = "cache", feature = "cache-control"))]
pub(crate) use self::conditional::retain_not_modified_fields;
#[cfg(any(feature = "cache", feature = "cache-control"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "cache", feature = "cache-control"))))]
#[doc(inline)]
pub use self::conditional::{Precondition, Preconditions};
#[cfg(feature = "compression")]
#[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
#[doc(inline)]
pub use self::dictionary::{
    AvailableDictionary, DICTIONARY_ID, MAX_DICTIONARY_ID, USE_AS_DICTIONARY, UseAsDictionary,
};
#[cfg(any(feature = "cache", feature = "compression"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "cache", feature = "compression"))))]
#[doc(inline)]
pub use self::dictionary_use::AVAILABLE_DICTIONARY;
#[cfg(any(feature = "cache", feature = "compression"))]
pub(crate) use self::dictionary_use::{Fetch, accepts as accepts_coding};
#[cfg(feature = "cache")]
pub(crate) use self::dictionary_use::{dictionary_coding, weight as dictionary_coding_weight};
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
#[doc(inline)]
pub use self::range::{ByteRangeSpec, ByteRanges, ContentRange, IfRange};
#[doc(inline)]
pub use self::{
    accept_encoding::{AcceptEncoding, ContentCoding, QValue},
    cache_control::{CacheControl, MaxStale},
    date::HttpDate,
    etag::{EntityTag, EntityTagList},
    prefer::{PREFER, PREFERENCE_APPLIED, Prefer},
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic inputs: half random bytes from the characters the
    /// grammars care about, half sequences of grammar fragments.
    fn inputs() -> impl Iterator<Item = Vec<u8>> {
        const BYTES: &[u8] =
            b"\"\\,;=/*W 0123456789.-qmax-agegzipnostore\t\x00\x7f\xff\xc3\xa9\r\nGMTSun";
        const FRAGMENTS: &[&[u8]] = &[
            b"\"",
            b"W/",
            b"\"v1\"",
            b"W/\"a,b\"",
            b",",
            b", ",
            b" ",
            b"*",
            b"gzip",
            b"x-gzip",
            b"br",
            b"identity",
            b";q=",
            b"0.5",
            b"1",
            b"0",
            b"2",
            b"max-age",
            b"s-maxage",
            b"=",
            b"10",
            b"99999999999",
            b"-1",
            b"no-cache",
            b"private",
            b"max-stale",
            b"\\",
            b"\xff",
            b"\x00",
            b"abc",
            b"Sun, 06 Nov 1994 08:49:37 GMT",
            b"Sunday, 06-Nov-94 ",
            b"08:49:37 GMT",
            b"Nov  6",
            b"\t",
        ];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        (0..20_000u32).map(move |n| {
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let len = (next() % 12) as usize;
            let mut out = Vec::new();
            for _ in 0..len {
                let r = next();
                if n % 2 == 0 {
                    for i in 0..4u32 {
                        let b = (r >> (i * 8)) as usize % BYTES.len();
                        out.push(BYTES[b]);
                    }
                } else {
                    out.extend_from_slice(FRAGMENTS[(r % FRAGMENTS.len() as u64) as usize]);
                }
            }
            out
        })
    }

    #[test]
    fn no_parser_panics_and_writers_round_trip() {
        let (mut directives, mut codings, mut tags, mut lists) = (0, 0, 0, 0);
        for input in inputs() {
            let cc = CacheControl::parse(&input);
            directives += usize::from(!cc.is_empty());
            let again = CacheControl::parse(cc.to_header_value().as_bytes());
            assert_eq!(
                again,
                cc,
                "cache-control {:?}",
                String::from_utf8_lossy(&input)
            );

            let ae = AcceptEncoding::parse(&input);
            codings += usize::from(!ae.to_string().is_empty());
            let again = AcceptEncoding::parse(ae.to_header_value().as_bytes());
            assert_eq!(again.to_string(), ae.to_string());

            if let Ok(tag) = EntityTag::parse(&input) {
                tags += 1;
                assert_eq!(EntityTag::parse(tag.to_header_value().as_bytes()), Ok(tag));
            }
            if let Ok(list) = EntityTagList::parse(&input) {
                lists += 1;
                assert_eq!(
                    EntityTagList::parse(list.to_header_value().as_bytes()),
                    Ok(list)
                );
            }
            if let Ok(date) = HttpDate::parse(&input) {
                assert_eq!(HttpDate::parse(date.to_header_value().as_bytes()), Ok(date));
            }
        }
        // The generator must reach the parsers' interesting paths.
        eprintln!(
            "non-empty: {directives} cache-control, {codings} accept-encoding, {tags} tags, {lists} lists"
        );
        assert!(directives > 100 && codings > 10 && tags > 10 && lists > 10);
    }
}
