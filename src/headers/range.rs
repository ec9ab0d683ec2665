//! Byte ranges: the `Range`, `If-Range` and `Content-Range` fields
//! (RFC 9110 §14).

use std::ops::RangeInclusive;

use http::header::{self, HeaderMap, HeaderValue};

use super::util::trim_ows;
use super::{EntityTag, HttpDate, ParseError};

/// One `range-spec` of the `bytes` unit (RFC 9110 §14.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRangeSpec {
    /// `first-last`, or `first-` (to the end) when `last` is `None`.
    FromTo {
        /// The first byte's offset.
        first: u64,
        /// The last byte's offset, inclusive.
        last: Option<u64>,
    },
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRangeSpec {
    /// The bytes this range selects of a representation `len` bytes long
    /// (RFC 9110 §14.1.2), or `None` when it selects none (unsatisfiable:
    /// a first byte at or past the end, a zero-length suffix, or any range
    /// of an empty representation). A last offset past the end, or a
    /// suffix longer than the representation, is cut to it.
    pub fn resolve(self, len: u64) -> Option<RangeInclusive<u64>> {
        let end = len.checked_sub(1)?;
        match self {
            Self::FromTo { first, last } if first <= end => {
                Some(first..=last.map_or(end, |l| l.min(end)))
            }
            Self::FromTo { .. } | Self::Suffix(0) => None,
            Self::Suffix(n) => Some(len.saturating_sub(n)..=end),
        }
    }
}

/// A `Range` request field in the `bytes` unit (RFC 9110 §14.2).
///
/// Only the first range is kept: a field listing several tells
/// [`is_several`](Self::is_several), and this crate answers such a request
/// with the whole representation (which RFC 9110 §14.2 allows: a server
/// may ignore `Range`), never with `multipart/byteranges`. Overlapping or
/// many small ranges cost a server far more than they cost the client.
///
/// Parsing takes time linear in the field and keeps two numbers, however
/// many ranges it lists. The unit is matched case-insensitively, digits
/// may have leading zeros, and a number too large for 64 bits counts as
/// `u64::MAX` (so an offset that large is past any end).
///
/// # Example
///
/// ```
/// use tower_perf::headers::{ByteRangeSpec, ByteRanges};
///
/// let r = ByteRanges::parse(b"bytes=500-999").unwrap();
/// assert_eq!(r.first(), ByteRangeSpec::FromTo { first: 500, last: Some(999) });
/// assert_eq!(r.first().resolve(800), Some(500..=799));
/// assert_eq!(ByteRanges::parse(b"bytes=-500").unwrap().first().resolve(100), Some(0..=99));
/// assert_eq!(ByteRanges::parse(b"bytes=900-").unwrap().first().resolve(800), None);
/// assert!(ByteRanges::parse(b"bytes=0-0, -1").unwrap().is_several());
/// assert!(ByteRanges::parse(b"bytes=9-5").is_err()); // first after last: invalid
/// assert!(ByteRanges::parse(b"items=0-5").is_err()); // another unit
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRanges {
    first: ByteRangeSpec,
    several: bool,
}

impl ByteRanges {
    /// Parses a `Range` value. An error for another unit, an empty set,
    /// or any range-spec that is not a valid byte range (RFC 9110 §14.2:
    /// an invalid field is ignored, so the caller serves the whole
    /// representation or passes the field on).
    pub fn parse(value: &[u8]) -> Result<Self, ParseError> {
        let bad = |reason| ParseError::new("range", reason);
        let eq = value
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| bad("no range unit"))?;
        if !value[..eq].eq_ignore_ascii_case(b"bytes") {
            return Err(bad("a range unit other than bytes"));
        }
        let mut first = None;
        let mut several = false;
        // `1#range-spec`: empty elements are allowed and ignored (RFC 9110
        // §5.6.1.2).
        for element in value[eq + 1..].split(|&b| b == b',') {
            let element = trim_ows(element);
            if element.is_empty() {
                continue;
            }
            let spec = parse_spec(element).ok_or_else(|| bad("an invalid byte range"))?;
            if first.is_none() {
                first = Some(spec);
            } else {
                several = true;
            }
        }
        let first = first.ok_or_else(|| bad("no range"))?;
        Ok(Self { first, several })
    }

    /// Reads the request's `Range`: `None` when absent; an error when it
    /// is invalid or has several lines (a `Range` is a single field).
    pub fn from_headers(headers: &HeaderMap) -> Option<Result<Self, ParseError>> {
        let mut lines = headers.get_all(header::RANGE).iter();
        let first = lines.next()?;
        if lines.next().is_some() {
            return Some(Err(ParseError::new("range", "several Range lines")));
        }
        Some(Self::parse(first.as_bytes()))
    }

    /// The first range listed.
    pub const fn first(&self) -> ByteRangeSpec {
        self.first
    }

    /// Whether the field lists more than one range.
    pub const fn is_several(&self) -> bool {
        self.several
    }
}

/// `int-range / suffix-range` of the bytes unit; `None` when invalid.
fn parse_spec(s: &[u8]) -> Option<ByteRangeSpec> {
    let dash = s.iter().position(|&b| b == b'-')?;
    let (a, b) = (&s[..dash], &s[dash + 1..]);
    if a.is_empty() {
        return Some(ByteRangeSpec::Suffix(digits(b)?));
    }
    let first = digits(a)?;
    let last = if b.is_empty() { None } else { Some(digits(b)?) };
    // RFC 9110 §14.1.1: a last-pos before first-pos makes it invalid.
    if last.is_some_and(|l| l < first) {
        return None;
    }
    Some(ByteRangeSpec::FromTo { first, last })
}

/// `1*DIGIT`, saturating at `u64::MAX`.
fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// An `If-Range` field (RFC 9110 §13.1.5): the validator a client's
/// partial copy has.
///
/// ```
/// use tower_perf::headers::IfRange;
///
/// assert!(matches!(IfRange::parse(b"\"v1\""), Ok(IfRange::Tag(_))));
/// assert!(matches!(IfRange::parse(b"Sun, 06 Nov 1994 08:49:37 GMT"), Ok(IfRange::Date(_))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfRange {
    /// An entity tag: the condition holds only for the same strong tag.
    Tag(EntityTag),
    /// A date: the condition holds only for exactly this `Last-Modified`,
    /// and only when that is a strong validator.
    Date(HttpDate),
}

impl IfRange {
    /// Parses an `If-Range` value.
    pub fn parse(value: &[u8]) -> Result<Self, ParseError> {
        let v = trim_ows(value);
        if v.starts_with(b"\"") || v.starts_with(b"W/") {
            EntityTag::parse(v).map(Self::Tag)
        } else {
            HttpDate::parse(v).map(Self::Date)
        }
    }

    /// Whether the condition holds for a representation with these
    /// validators (RFC 9110 §13.1.5): a strong comparison of entity tags;
    /// a date equal to a `Last-Modified` known to be strong
    /// (`last_modified_strong`: for a cache, the stored `Date` is at least
    /// a second later, §8.8.2.2).
    pub fn holds(
        &self,
        etag: Option<&EntityTag>,
        last_modified: Option<HttpDate>,
        last_modified_strong: bool,
    ) -> bool {
        match self {
            Self::Tag(t) => etag.is_some_and(|e| e.strong_eq(t)),
            Self::Date(d) => last_modified_strong && last_modified == Some(*d),
        }
    }
}

/// A `Content-Range` of the bytes unit (RFC 9110 §14.4).
///
/// ```
/// use tower_perf::headers::ContentRange;
///
/// let r = ContentRange::parse(b"bytes 0-499/1234").unwrap();
/// assert_eq!(r, ContentRange::Bytes { first: 0, last: 499, complete: Some(1234) });
/// assert_eq!(ContentRange::Unsatisfied(1234).to_header_value(), "bytes */1234");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes first-last/complete` (`complete` is `None` for `*`).
    Bytes {
        /// The first byte's offset.
        first: u64,
        /// The last byte's offset, inclusive.
        last: u64,
        /// The complete representation's length, when known.
        complete: Option<u64>,
    },
    /// `bytes */complete`, as a 416 carries it.
    Unsatisfied(u64),
}

impl ContentRange {
    /// Parses a `Content-Range` value: an error for another unit, a last
    /// offset before the first, or one at or past a known length.
    pub fn parse(value: &[u8]) -> Result<Self, ParseError> {
        let bad = |reason| ParseError::new("content-range", reason);
        let v = trim_ows(value);
        let rest = match v.get(..6) {
            Some(unit) if unit.eq_ignore_ascii_case(b"bytes ") => &v[6..],
            _ => return Err(bad("a range unit other than bytes")),
        };
        let slash = rest
            .iter()
            .position(|&b| b == b'/')
            .ok_or_else(|| bad("no complete length"))?;
        let (range, complete) = (&rest[..slash], &rest[slash + 1..]);
        let complete = if complete == b"*" {
            None
        } else {
            Some(digits(complete).ok_or_else(|| bad("an invalid complete length"))?)
        };
        if range == b"*" {
            return complete
                .map(Self::Unsatisfied)
                .ok_or_else(|| bad("neither a range nor a length"));
        }
        let dash = range
            .iter()
            .position(|&b| b == b'-')
            .ok_or_else(|| bad("an invalid range"))?;
        let first = digits(&range[..dash]).ok_or_else(|| bad("an invalid first offset"))?;
        let last = digits(&range[dash + 1..]).ok_or_else(|| bad("an invalid last offset"))?;
        if last < first || complete.is_some_and(|c| last >= c) {
            return Err(bad("a range outside the representation"));
        }
        Ok(Self::Bytes {
            first,
            last,
            complete,
        })
    }

    /// Reads the `Content-Range` of `headers`: `None` when absent, an
    /// error when invalid or on several lines.
    pub fn from_headers(headers: &HeaderMap) -> Option<Result<Self, ParseError>> {
        let mut lines = headers.get_all(header::CONTENT_RANGE).iter();
        let first = lines.next()?;
        if lines.next().is_some() {
            return Some(Err(ParseError::new(
                "content-range",
                "several Content-Range lines",
            )));
        }
        Some(Self::parse(first.as_bytes()))
    }

    /// The field value.
    pub fn to_header_value(&self) -> HeaderValue {
        let s = match self {
            Self::Bytes {
                first,
                last,
                complete: Some(c),
            } => format!("bytes {first}-{last}/{c}"),
            Self::Bytes { first, last, .. } => format!("bytes {first}-{last}/*"),
            Self::Unsatisfied(c) => format!("bytes */{c}"),
        };
        // Digits, spaces, `-`, `/` and `*` only.
        HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> ByteRangeSpec {
        let r = ByteRanges::parse(v.as_bytes()).unwrap();
        assert!(!r.is_several(), "{v}");
        r.first()
    }

    #[test]
    fn the_forms_of_rfc_9110() {
        assert_eq!(
            one("bytes=0-499"),
            ByteRangeSpec::FromTo {
                first: 0,
                last: Some(499)
            }
        );
        assert_eq!(
            one("bytes=9500-"),
            ByteRangeSpec::FromTo {
                first: 9500,
                last: None
            }
        );
        assert_eq!(one("bytes=-500"), ByteRangeSpec::Suffix(500));
        assert_eq!(one("BYTES=00-01"), one("bytes=0-1"), "case, leading zeros");
        assert_eq!(
            one("bytes=, 0-1 ,"),
            one("bytes=0-1"),
            "empty elements, OWS"
        );
        let r = ByteRanges::parse(b"bytes=0-0,-1").unwrap();
        assert!(r.is_several());
        assert_eq!(r.first(), one("bytes=0-0"));
    }

    #[test]
    fn invalid_fields_are_errors() {
        for v in [
            "bytes=",
            "bytes=,",
            "bytes",
            "bytes 0-1",
            "bits=0-1",
            "bytes=5-4",
            "bytes=a-1",
            "bytes=1-b",
            "bytes=-",
            "bytes=--1",
            "bytes=1--2",
            "bytes=+1-2",
            "bytes=0-1,x",
            "bytes=1 -2",
        ] {
            assert!(ByteRanges::parse(v.as_bytes()).is_err(), "{v}");
        }
        let mut h = HeaderMap::new();
        h.append(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        assert!(ByteRanges::from_headers(&h).unwrap().is_ok());
        h.append(header::RANGE, HeaderValue::from_static("bytes=2-3"));
        assert!(ByteRanges::from_headers(&h).unwrap().is_err());
    }

    #[test]
    fn resolving_against_a_length() {
        let r = |v: &str, len| one(v).resolve(len);
        assert_eq!(r("bytes=0-499", 10_000), Some(0..=499));
        assert_eq!(r("bytes=0-499", 100), Some(0..=99));
        assert_eq!(r("bytes=99-", 100), Some(99..=99));
        assert_eq!(r("bytes=100-", 100), None);
        assert_eq!(r("bytes=-1", 100), Some(99..=99));
        assert_eq!(r("bytes=-500", 100), Some(0..=99), "longer than it");
        assert_eq!(r("bytes=-0", 100), None);
        assert_eq!(r("bytes=0-0", 0), None, "an empty representation");
        assert_eq!(r("bytes=-5", 0), None);
        let huge = "bytes=99999999999999999999999999-";
        assert_eq!(r(huge, u64::MAX), None);
        assert_eq!(r("bytes=0-99999999999999999999999", 5), Some(0..=4));
    }

    #[test]
    fn if_range_compares_strongly() {
        let tag = |s: &str| EntityTag::parse(s.as_bytes()).unwrap();
        let lm = HttpDate::from_unix_secs(1_000);
        let by_tag = IfRange::parse(b"\"a\"").unwrap();
        assert!(by_tag.holds(Some(&tag("\"a\"")), None, false));
        assert!(!by_tag.holds(Some(&tag("W/\"a\"")), None, false));
        assert!(!by_tag.holds(None, Some(lm), true));
        let weak = IfRange::parse(b"W/\"a\"").unwrap();
        assert!(!weak.holds(Some(&tag("W/\"a\"")), None, false));
        let by_date = IfRange::Date(lm);
        assert!(by_date.holds(None, Some(lm), true));
        assert!(!by_date.holds(None, Some(lm), false), "a weak date");
        assert!(!by_date.holds(None, Some(HttpDate::from_unix_secs(1_001)), true));
        assert!(IfRange::parse(b"yesterday").is_err());
    }

    #[test]
    fn content_ranges() {
        let p = |v: &str| ContentRange::parse(v.as_bytes());
        assert_eq!(
            p("bytes 21010-47021/47022"),
            Ok(ContentRange::Bytes {
                first: 21010,
                last: 47021,
                complete: Some(47022)
            })
        );
        assert_eq!(
            p("bytes 0-0/*"),
            Ok(ContentRange::Bytes {
                first: 0,
                last: 0,
                complete: None
            })
        );
        assert_eq!(p("bytes */47022"), Ok(ContentRange::Unsatisfied(47022)));
        for bad in [
            "bytes 5-4/10",
            "bytes 0-10/10",
            "bytes */*",
            "items 0-1/2",
            "bytes 0-1",
            "bytes a-1/2",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
        let v = ContentRange::Bytes {
            first: 1,
            last: 2,
            complete: Some(3),
        };
        assert_eq!(ContentRange::parse(v.to_header_value().as_bytes()), Ok(v));
    }
}
