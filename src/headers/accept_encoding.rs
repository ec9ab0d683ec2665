//! `Accept-Encoding` with q-values (RFC 9110 §12.5.3) and content codings.

use std::fmt;
use std::str::FromStr;

use http::header::{ACCEPT_ENCODING, HeaderMap, HeaderValue};

use super::ParseError;
use super::util;

/// A content coding this crate knows (RFC 9110 §8.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContentCoding {
    /// `gzip` (also accepted as `x-gzip`, RFC 9110 §8.4.1.3).
    Gzip,
    /// `deflate` (zlib format, RFC 9110 §8.4.1.2).
    Deflate,
    /// `br` (Brotli, RFC 7932).
    Br,
    /// `zstd` (Zstandard, RFC 8878).
    Zstd,
    /// `identity`: no transformation.
    Identity,
}

impl ContentCoding {
    /// Every coding, in a fixed order.
    pub const ALL: [Self; 5] = [
        Self::Gzip,
        Self::Deflate,
        Self::Br,
        Self::Zstd,
        Self::Identity,
    ];

    /// The registered name, lowercase.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
            Self::Br => "br",
            Self::Zstd => "zstd",
            Self::Identity => "identity",
        }
    }

    /// Reads a coding name, case-insensitively; `x-gzip` is gzip.
    pub fn from_token(token: &[u8]) -> Option<Self> {
        let eq = |n: &str| token.eq_ignore_ascii_case(n.as_bytes());
        Some(if eq("gzip") || eq("x-gzip") {
            Self::Gzip
        } else if eq("deflate") {
            Self::Deflate
        } else if eq("br") {
            Self::Br
        } else if eq("zstd") {
            Self::Zstd
        } else if eq("identity") {
            Self::Identity
        } else {
            return None;
        })
    }

    /// The value for a `Content-Encoding` header.
    pub const fn to_header_value(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ContentCoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ContentCoding {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::from_token(s.trim().as_bytes())
            .ok_or_else(|| ParseError::new("content-coding", "unknown content coding"))
    }
}

/// A quality value (RFC 9110 §12.4.2): 0 to 1 with at most three decimals,
/// held as thousandths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QValue(u16);

impl QValue {
    /// `q=1`, the default weight.
    pub const ONE: Self = Self(1000);
    /// `q=0`: "not acceptable".
    pub const ZERO: Self = Self(0);

    /// A weight in thousandths; `None` above 1000.
    pub const fn from_thousandths(t: u16) -> Option<Self> {
        if t <= 1000 { Some(Self(t)) } else { None }
    }

    /// The weight in thousandths (0..=1000).
    pub const fn thousandths(self) -> u16 {
        self.0
    }

    /// Parses `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`.
    pub fn parse(s: &[u8]) -> Option<Self> {
        let (int, frac) = match s.iter().position(|&b| b == b'.') {
            Some(i) => (&s[..i], &s[i + 1..]),
            None => (s, &[][..]),
        };
        if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut thousandths = 0u16;
        for (i, d) in frac.iter().enumerate() {
            thousandths += u16::from(d - b'0') * [100, 10, 1][i];
        }
        match int {
            b"0" => Some(Self(thousandths)),
            b"1" if thousandths == 0 => Some(Self::ONE),
            _ => None,
        }
    }
}

impl fmt::Display for QValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1000 => f.write_str("1"),
            0 => f.write_str("0"),
            t => {
                let s = format!("{t:03}");
                write!(f, "0.{}", s.trim_end_matches('0'))
            }
        }
    }
}

/// The weight `Accept-Encoding` gives `token`, a coding [`AcceptEncoding`]
/// does not keep (RFC 9842's `dcz` and `dcb`), by naming it: the first
/// element with that name and a valid weight (case-insensitive); `None`
/// when no element names it. `*` does not count: such codings need state
/// the client announces elsewhere (`Available-Dictionary`). Linear in the
/// field.
#[cfg(any(feature = "cache", feature = "compression"))]
pub(super) fn listed_weight(headers: &HeaderMap, token: &[u8]) -> Option<QValue> {
    for line in headers.get_all(ACCEPT_ENCODING) {
        for elem in util::split_list(line.as_bytes()) {
            let (coding, q) = element(elem);
            if q.is_some() && coding.eq_ignore_ascii_case(token) {
                return q;
            }
        }
    }
    None
}

/// One list element: its coding name and its weight (1 without `q`,
/// `None` when `q` is not a valid qvalue).
fn element(elem: &[u8]) -> (&[u8], Option<QValue>) {
    let mut parts = elem.split(|&b| b == b';');
    let coding = util::trim_ows(parts.next().unwrap_or_default());
    for param in parts {
        let (name, value) = util::split_name_value(param);
        if name.eq_ignore_ascii_case(b"q") {
            return (coding, value.and_then(QValue::parse));
        }
    }
    (coding, Some(QValue::ONE))
}

const STAR: usize = 5;

/// A parsed `Accept-Encoding` field (RFC 9110 §12.5.3), all of its lines
/// together.
///
/// Only the codings of [`ContentCoding`] and `*` are kept; others are
/// skipped. Coding names compare case-insensitively, `x-gzip` counts as
/// `gzip`. An element whose weight isn't a valid qvalue (`q=2`, `q=abc`) is
/// ignored, as if the client had not listed that coding. When a coding is
/// listed twice, the first weight counts. Parsing is linear in the field
/// and keeps six weights (five codings and `*`), however long the list.
///
/// # Negotiation
///
/// [`negotiate`](Self::negotiate) picks the acceptable coding with the
/// highest weight; among equal weights the server's order wins, and identity
/// comes after every real coding. Following RFC 9110 §12.5.3:
///
/// - an empty field means "identity only";
/// - identity is acceptable unless `identity;q=0`, or `*;q=0` with no
///   entry for identity, rules it out; when the client gives identity no
///   weight (neither `identity` nor `*` listed) it is chosen only if no
///   listed coding is acceptable, so `gzip;q=0.5` still gets gzip;
/// - a request *without* the field may receive any coding by the letter of
///   the RFC, but clients that send none are very often unable to decode
///   (curl without `--compressed`, probes, scripts), so `negotiate` answers
///   them with identity, as tower-http, nginx and Go's gzhttp do.
///
/// `negotiate` returns `None` when nothing is acceptable, identity included;
/// what to send then (406, or identity anyway, which the RFC permits) is the
/// caller's choice.
///
/// # Example
///
/// ```
/// use tower_perf::headers::{AcceptEncoding, ContentCoding};
///
/// let ae = AcceptEncoding::parse(b"gzip;q=0.8, deflate, br;q=0");
/// let ours = [ContentCoding::Gzip, ContentCoding::Deflate, ContentCoding::Br];
/// assert_eq!(ae.negotiate(&ours), Some(ContentCoding::Deflate));
///
/// // Ties go to the server's order.
/// let ae = AcceptEncoding::parse(b"deflate, gzip");
/// assert_eq!(ae.negotiate(&ours), Some(ContentCoding::Gzip));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AcceptEncoding {
    present: bool,
    /// Weights by `ContentCoding::index`, then `*`.
    weights: [Option<QValue>; 6],
}

impl Default for AcceptEncoding {
    fn default() -> Self {
        Self::absent()
    }
}

impl AcceptEncoding {
    /// The value for a request that carries no Accept-Encoding field.
    pub const fn absent() -> Self {
        Self {
            present: false,
            weights: [None; 6],
        }
    }

    /// Parses one field value.
    pub fn parse(value: &[u8]) -> Self {
        let mut ae = Self {
            present: true,
            weights: [None; 6],
        };
        ae.parse_into(value);
        ae
    }

    /// Parses every Accept-Encoding line of `headers` as one list.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self::from_values(headers.get_all(ACCEPT_ENCODING))
    }

    /// Parses several field lines as one list; no line at all is
    /// [`absent`](Self::absent).
    pub fn from_values<'a, I>(values: I) -> Self
    where
        I: IntoIterator<Item = &'a HeaderValue>,
    {
        let mut ae = Self::absent();
        for v in values {
            ae.present = true;
            ae.parse_into(v.as_bytes());
        }
        ae
    }

    fn parse_into(&mut self, value: &[u8]) {
        for elem in util::split_list(value) {
            let (coding, q) = element(elem);
            let slot = if coding == b"*" {
                STAR
            } else {
                match ContentCoding::from_token(coding) {
                    Some(c) => c.index(),
                    None => continue,
                }
            };
            if let Some(q) = q {
                self.weights[slot].get_or_insert(q);
            }
        }
    }

    /// Whether the request carried the field at all.
    pub const fn is_present(&self) -> bool {
        self.present
    }

    /// The weight the client gives `coding` by the letter of RFC 9110
    /// §12.5.3 (an absent field accepts everything).
    pub fn quality(&self, coding: ContentCoding) -> QValue {
        if !self.present {
            return QValue::ONE;
        }
        if let Some(q) = self.weights[coding.index()] {
            return q;
        }
        if let Some(q) = self.weights[STAR] {
            return q;
        }
        if coding == ContentCoding::Identity {
            QValue::ONE
        } else {
            QValue::ZERO
        }
    }

    /// The weight negotiation gives `coding`: [`quality`](Self::quality),
    /// except that identity the client weighed neither directly nor
    /// through `*` ranks below every listed coding (0.001). An absent
    /// field accepts identity only.
    pub(crate) fn rank(&self, coding: ContentCoding) -> QValue {
        if !self.present {
            return if coding == ContentCoding::Identity {
                QValue::ONE
            } else {
                QValue::ZERO
            };
        }
        match (coding, self.weights[coding.index()], self.weights[STAR]) {
            // Identity the client did not weigh is acceptable, but only
            // when no coding it listed is: it ranks below every weight.
            (ContentCoding::Identity, None, None) => QValue(1),
            _ => self.quality(coding),
        }
    }

    /// Picks the coding to send among `supported` (in the server's order of
    /// preference) and identity. See the [type docs](Self).
    pub fn negotiate(&self, supported: &[ContentCoding]) -> Option<ContentCoding> {
        if !self.present {
            return Some(ContentCoding::Identity);
        }
        let mut best: Option<(ContentCoding, QValue)> = None;
        let candidates = supported
            .iter()
            .copied()
            .filter(|c| *c != ContentCoding::Identity)
            .chain(std::iter::once(ContentCoding::Identity));
        for coding in candidates {
            let q = self.rank(coding);
            if q == QValue::ZERO {
                continue;
            }
            if best.is_none_or(|(_, bq)| q > bq) {
                best = Some((coding, q));
            }
        }
        best.map(|(c, _)| c)
    }

    /// Sets the weight of `coding`, as a client would send it.
    pub fn with(mut self, coding: ContentCoding, q: QValue) -> Self {
        self.present = true;
        self.weights[coding.index()] = Some(q);
        self
    }

    /// Sets the weight of `*`.
    pub fn with_any(mut self, q: QValue) -> Self {
        self.present = true;
        self.weights[STAR] = Some(q);
        self
    }

    /// The field value (empty for an empty or absent field).
    pub fn to_header_value(&self) -> HeaderValue {
        HeaderValue::try_from(self.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

impl fmt::Display for AcceptEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = ContentCoding::ALL.map(ContentCoding::as_str);
        let mut first = true;
        for (i, w) in self.weights.iter().enumerate() {
            let Some(q) = w else { continue };
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            f.write_str(if i == STAR { "*" } else { names[i] })?;
            if *q != QValue::ONE {
                write!(f, ";q={q}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ContentCoding::*;
    use super::*;

    fn ae(s: &str) -> AcceptEncoding {
        AcceptEncoding::parse(s.as_bytes())
    }

    /// Codings the parsed form does not keep are weighed by name: the
    /// first valid element counts, `*` does not, names compare
    /// case-insensitively, across lines.
    #[cfg(any(feature = "cache", feature = "compression"))]
    #[test]
    fn listed_weight_reads_codings_by_name() {
        let weight = |lines: &[&str], token: &str| {
            let mut h = HeaderMap::new();
            for l in lines {
                h.append(ACCEPT_ENCODING, HeaderValue::from_str(l).unwrap());
            }
            listed_weight(&h, token.as_bytes()).map(QValue::thousandths)
        };
        assert_eq!(weight(&["gzip, dcz"], "dcz"), Some(1000));
        assert_eq!(weight(&["gzip, DCZ;q=0.5"], "dcz"), Some(500));
        assert_eq!(weight(&["dcz;q=0", "dcz"], "dcz"), Some(0));
        assert_eq!(weight(&["dcz;q=2, dcz;q=0.3"], "dcz"), Some(300));
        assert_eq!(weight(&["gzip, *"], "dcz"), None);
        assert_eq!(weight(&["dcb"], "dcz"), None);
        assert_eq!(weight(&[], "dcz"), None);
    }
    const ALL: [ContentCoding; 4] = [Zstd, Br, Gzip, Deflate];

    #[test]
    fn rfc_9110_examples() {
        // The five examples of RFC 9110 §12.5.3.
        assert_eq!(ae("compress, gzip").negotiate(&ALL), Some(Gzip));
        let empty = ae("");
        assert_eq!(empty.negotiate(&ALL), Some(Identity));
        assert_eq!(empty.quality(Gzip), QValue::ZERO);
        assert_eq!(ae("*").negotiate(&ALL), Some(Zstd));
        let q = ae("compress;q=0.5, gzip;q=1.0");
        assert_eq!(q.quality(Gzip), QValue::ONE);
        assert_eq!(q.negotiate(&ALL), Some(Gzip));
        let id = ae("gzip;q=1.0, identity; q=0.5, *;q=0");
        assert_eq!(id.quality(Identity).thousandths(), 500);
        assert_eq!(id.quality(Br), QValue::ZERO);
        assert_eq!(id.negotiate(&ALL), Some(Gzip));
        assert_eq!(id.negotiate(&[Br]), Some(Identity));
    }

    #[test]
    fn qvalues() {
        let ok: [(&str, u16); 9] = [
            ("0", 0),
            ("0.", 0),
            ("0.5", 500),
            ("0.25", 250),
            ("0.125", 125),
            ("1", 1000),
            ("1.", 1000),
            ("1.0", 1000),
            ("1.000", 1000),
        ];
        for (s, t) in ok {
            assert_eq!(QValue::parse(s.as_bytes()), Some(QValue(t)), "{s}");
        }
        for bad in [
            "", ".5", "1.5", "2", "0.1234", "-0", "0.5x", "01", "1.001", " 1",
        ] {
            assert_eq!(QValue::parse(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(QValue(250).to_string(), "0.25");
        assert_eq!(QValue(5).to_string(), "0.005");
        assert_eq!(QValue::from_thousandths(1001), None);
    }

    #[test]
    fn highest_weight_then_server_order() {
        assert_eq!(ae("gzip;q=0.5, br;q=0.9").negotiate(&ALL), Some(Br));
        assert_eq!(ae("gzip, br").negotiate(&[Gzip, Br]), Some(Gzip));
        assert_eq!(ae("gzip, br").negotiate(&[Br, Gzip]), Some(Br));
        // Identity loses ties against real codings, wins on weight.
        assert_eq!(ae("gzip, identity").negotiate(&ALL), Some(Gzip));
        assert_eq!(ae("gzip;q=0.5, identity").negotiate(&ALL), Some(Identity));
        // Identity the client did not weigh ranks below every listed coding.
        assert_eq!(ae("gzip;q=0.5").negotiate(&ALL), Some(Gzip));
        assert_eq!(ae("gzip;q=0.001").negotiate(&ALL), Some(Gzip));
        assert_eq!(ae("*;q=0.5, gzip;q=0.4").negotiate(&[Gzip]), Some(Identity));
        // Unsupported codings are never picked even with the top weight.
        assert_eq!(ae("br").negotiate(&[Gzip]), Some(Identity));
    }

    #[test]
    fn identity_exclusion() {
        assert_eq!(ae("identity;q=0").negotiate(&[]), None);
        assert_eq!(ae("*;q=0").negotiate(&[]), None);
        assert_eq!(ae("*;q=0, identity").negotiate(&[]), Some(Identity));
        assert_eq!(ae("*;q=0, gzip").negotiate(&ALL), Some(Gzip));
        assert_eq!(ae("br, identity;q=0").negotiate(&[Gzip]), None);
    }

    #[test]
    fn case_aliases_and_lines() {
        assert_eq!(ae("GZIP").quality(Gzip), QValue::ONE);
        assert_eq!(ae("x-gzip;Q=0.3").quality(Gzip).thousandths(), 300);
        let mut h = HeaderMap::new();
        h.append(ACCEPT_ENCODING, HeaderValue::from_static("br;q=0"));
        h.append(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let parsed = AcceptEncoding::from_headers(&h);
        assert!(parsed.is_present());
        assert_eq!(parsed.negotiate(&ALL), Some(Gzip));
    }

    #[test]
    fn absent_field_gets_identity() {
        let none = AcceptEncoding::from_headers(&HeaderMap::new());
        assert!(!none.is_present());
        assert_eq!(none.quality(Gzip), QValue::ONE);
        assert_eq!(none.negotiate(&ALL), Some(Identity));
    }

    #[test]
    fn malformed_elements_are_ignored() {
        assert_eq!(ae("gzip;q=2, deflate").negotiate(&ALL), Some(Deflate));
        assert_eq!(ae("gzip;q=, deflate;q=0.1").negotiate(&ALL), Some(Deflate));
        assert_eq!(ae("gzip;q=abc").quality(Gzip), QValue::ZERO);
        // Other parameters are skipped, q found after them.
        assert_eq!(ae("gzip;level=9;q=0.2").quality(Gzip).thousandths(), 200);
        // First occurrence wins.
        assert_eq!(ae("gzip;q=0, gzip").quality(Gzip), QValue::ZERO);
        for junk in [
            &b"\xff\xfe"[..],
            b";;;",
            b",,",
            b"q=1",
            b"*;q",
            b"gzip;q=\"",
            b";q=1",
        ] {
            let parsed = AcceptEncoding::parse(junk);
            let _ = parsed.negotiate(&ALL);
            let _ = parsed.to_header_value();
        }
    }

    #[test]
    fn writer_round_trips() {
        let a = AcceptEncoding::absent()
            .with(Gzip, QValue::ONE)
            .with(Br, QValue(500))
            .with_any(QValue::ZERO);
        assert_eq!(a.to_string(), "gzip, br;q=0.5, *;q=0");
        assert_eq!(ae(&a.to_string()), a);
        assert_eq!("X-Gzip".parse::<ContentCoding>(), Ok(Gzip));
        assert!("lzma".parse::<ContentCoding>().is_err());
    }
}
