//! When a request may be answered with a body compressed against a
//! dictionary (RFC 9842): the request field that names the dictionary,
//! the codings, and what Fetch Metadata allows (§9.3.3). The compression
//! layer decides with this, and a response cache outside it keys and
//! serves its variants with the same rules.

use http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, HeaderMap, HeaderName, HeaderValue, ORIGIN};

use super::QValue;
use super::accept_encoding::listed_weight;

/// `Available-Dictionary` (RFC 9842 §2.2).
pub static AVAILABLE_DICTIONARY: HeaderName = HeaderName::from_static("available-dictionary");

/// The dictionary content codings (RFC 9842 §4, §5), by name.
#[cfg(feature = "cache")]
pub(crate) const DICTIONARY_CODINGS: [&str; 2] = ["dcb", "dcz"];

/// The dictionary coding named `token` (case-insensitive), as its
/// lowercase name.
#[cfg(feature = "cache")]
pub(crate) fn dictionary_coding(token: &[u8]) -> Option<&'static str> {
    DICTIONARY_CODINGS
        .into_iter()
        .find(|d| token.eq_ignore_ascii_case(d.as_bytes()))
}

/// The weight `Accept-Encoding` gives `token` by naming it, when above
/// zero (`*` does not count).
pub(crate) fn weight(headers: &HeaderMap, token: &str) -> Option<QValue> {
    listed_weight(headers, token.as_bytes()).filter(|q| *q > QValue::ZERO)
}

/// Whether `Accept-Encoding` lists `token` with a weight above zero (`*`
/// does not count).
pub(crate) fn accepts(headers: &HeaderMap, token: &str) -> bool {
    weight(headers, token).is_some()
}

/// What a request's Fetch Metadata says about answering it with a body
/// compressed against a dictionary (RFC 9842 §9.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fetch<'a> {
    /// Same origin, a navigation, or a client that sends no metadata.
    Safe,
    /// A cross-site CORS request from this origin: safe if the response
    /// allows that origin to read it ([`Fetch::allows`]).
    Cors(&'a HeaderValue),
    /// A cross-site request whose response the page may not read
    /// (`no-cors` and the like): the compressed size could reveal the
    /// content.
    Unsafe,
}

impl<'a> Fetch<'a> {
    /// Reads `Sec-Fetch-Site`, `Sec-Fetch-Mode` and `Origin`.
    pub(crate) fn of(headers: &'a HeaderMap) -> Self {
        let value = |name: &str| headers.get(name).map(HeaderValue::as_bytes);
        if value("sec-fetch-site").is_none_or(|v| v.eq_ignore_ascii_case(b"same-origin")) {
            return Self::Safe;
        }
        match value("sec-fetch-mode") {
            None => Self::Safe,
            Some(m)
                if m.eq_ignore_ascii_case(b"navigate")
                    || m.eq_ignore_ascii_case(b"same-origin") =>
            {
                Self::Safe
            }
            Some(m) if m.eq_ignore_ascii_case(b"cors") => match headers.get(ORIGIN) {
                Some(origin) => Self::Cors(origin),
                None => Self::Unsafe,
            },
            Some(_) => Self::Unsafe,
        }
    }

    /// Whether a response with these fields may be compressed against a
    /// dictionary for the request: always when safe; for a cross-site
    /// CORS request, when `Access-Control-Allow-Origin` is `*` or its
    /// origin.
    pub(crate) fn allows(self, response: &HeaderMap) -> bool {
        match self {
            Self::Safe => true,
            Self::Cors(origin) => response
                .get(ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_some_and(|a| a.as_bytes() == b"*" || a == origin),
            Self::Unsafe => false,
        }
    }
}

/// (Fetch Metadata is tested through the compression layer's choice,
/// `compression::dictionary`, and the cache's variants, `cache::vary`.)
#[cfg(all(test, feature = "cache"))]
mod tests {
    use super::*;

    #[test]
    fn dictionary_codings_by_name() {
        assert_eq!(dictionary_coding(b"DCZ"), Some("dcz"));
        assert_eq!(dictionary_coding(b"dcb"), Some("dcb"));
        assert_eq!(dictionary_coding(b"gzip"), None);
        let mut h = HeaderMap::new();
        h.insert(
            "accept-encoding",
            HeaderValue::from_static("gzip, dcz;q=0, *"),
        );
        assert!(!accepts(&h, "dcz"));
        assert!(!accepts(&h, "dcb"));
    }
}
