//! Vary matching (RFC 9111 §4.1): the variant key of a stored response
//! and the selection of the variant a request may be served.

use std::cell::Cell;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName};

use super::entry::CachedResponse;
use super::fields::normalize;
use super::storable::StoredCoding;
use crate::headers::{
    AVAILABLE_DICTIONARY, AcceptEncoding, ContentCoding, Fetch, QValue, accepts_coding,
    dictionary_coding_weight,
};

/// How the cache reads `Accept-Encoding` (RFC 9110 §12.5.3) when a
/// response varies on it: a request reduces to its preferred coding among
/// a list, and each such preference is a variant. Whatever the key says, a
/// stored response is served only to a request that accepts its
/// `Content-Encoding` ([`RequestVary::select`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Encodings {
    /// The origin negotiates (behind a proxy): requests reduce to their
    /// preference among every coding this crate knows
    /// ([`Encodings::KNOWN`]), so a browser's `gzip, deflate, br` and
    /// curl's absent field never share a variant.
    Origin,
    /// A compression layer inside the cache produces these codings (in its
    /// order of preference): a request reduces to the coding it would pick.
    Inside(Vec<ContentCoding>),
}

impl Encodings {
    /// Every content coding this crate knows, in tower-http's order of
    /// preference among equal weights.
    pub(crate) const KNOWN: [ContentCoding; 4] = [
        ContentCoding::Zstd,
        ContentCoding::Br,
        ContentCoding::Gzip,
        ContentCoding::Deflate,
    ];

    fn codings(&self) -> &[ContentCoding] {
        match self {
            Self::Origin => &Self::KNOWN,
            Self::Inside(codings) => codings,
        }
    }
}

/// Most distinct fields a stored response's `Vary` may name; a response
/// naming more is not stored (so matching stays a short, bounded loop).
pub(crate) const MAX_VARY_FIELDS: usize = 32;

/// Why a response's `Vary` keeps it out of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VaryRefusal {
    /// `Vary: *`: no request matches.
    Star,
    /// More than [`MAX_VARY_FIELDS`] fields.
    TooMany,
}

/// One request as the variant matching sees it: its fields, how
/// `Accept-Encoding` is read, and that field parsed at most once.
pub(crate) struct RequestVary<'a> {
    headers: &'a HeaderMap,
    encodings: &'a Encodings,
    accept_encoding: Cell<Option<AcceptEncoding>>,
    dictionary: Cell<Option<DictionaryKey<'a>>>,
}

/// What a request naming a dictionary adds to a variant's key (RFC 9842):
/// the dictionary codings it may be answered with, and for a cross-site
/// CORS request its `Origin`, whose right to read the response decides.
#[derive(Debug, Clone, Copy)]
struct DictionaryKey<'a> {
    codings: &'static str,
    origin: Option<&'a [u8]>,
}

impl<'a> RequestVary<'a> {
    pub(crate) fn new(headers: &'a HeaderMap, encodings: &'a Encodings) -> Self {
        Self {
            headers,
            encodings,
            accept_encoding: Cell::new(None),
            dictionary: Cell::new(None),
        }
    }

    fn accept_encoding(&self) -> AcceptEncoding {
        if let Some(ae) = self.accept_encoding.get() {
            return ae;
        }
        let ae = AcceptEncoding::from_headers(self.headers);
        self.accept_encoding.set(Some(ae));
        ae
    }

    /// The weight this request gives `stored`, when it accepts its coding
    /// (`None` for an unknown coding). A request without `Accept-Encoding`
    /// accepts identity only: the RFC lets it take any coding, but such
    /// clients (curl, probes, scripts) often can't decode. A response
    /// compressed against a dictionary goes only to a request naming a
    /// dictionary (the variant's `Vary`, which storing requires to name
    /// `Available-Dictionary`, makes it the same one), listing the coding,
    /// and whose Fetch Metadata lets this response be compressed for it
    /// (RFC 9842 §9.3.3).
    pub(crate) fn acceptable(&self, stored: &CachedResponse) -> Option<QValue> {
        let coding = match stored.facts.coding? {
            StoredCoding::Plain(c) => c,
            StoredCoding::Dictionary(token) => {
                return (!self.dictionary_key().codings.is_empty()
                    && Fetch::of(self.headers).allows(stored.headers()))
                .then(|| dictionary_coding_weight(self.headers, token))
                .flatten();
            }
        };
        if coding == ContentCoding::Identity && !self.headers.contains_key(header::ACCEPT_ENCODING)
        {
            return Some(QValue::ONE);
        }
        // Identity the client did not weigh ranks below what it listed.
        let q = self.accept_encoding().rank(coding);
        (q > QValue::ZERO).then_some(q)
    }

    /// Whether the request accepts `coding` at all: [`acceptable`]
    /// without the weight, so identity skips parsing when no weight could
    /// exclude it (no `=` in the field: no `identity;q=0`, no `*;q=0`).
    ///
    /// [`acceptable`]: Self::acceptable
    fn accepts(&self, stored: &CachedResponse) -> bool {
        let identity = Some(StoredCoding::Plain(ContentCoding::Identity));
        if stored.facts.coding == identity && self.accept_encoding.get().is_none() {
            // One look-up of the field: absent, or without any weight.
            let mut weighted = false;
            for v in self.headers.get_all(header::ACCEPT_ENCODING) {
                weighted |= v.as_bytes().contains(&b'=');
            }
            if !weighted {
                return true;
            }
        }
        self.acceptable(stored).is_some()
    }

    /// The variant for this request (RFC 9111 §4.1): one whose `Vary`
    /// fields match and whose `Content-Encoding` the request accepts; among
    /// several, the coding the request weighs highest (ties: the newest).
    pub(crate) fn select<'v>(
        &self,
        variants: &'v [Arc<CachedResponse>],
    ) -> Option<&'v Arc<CachedResponse>> {
        // One pass: the usual single match needs only acceptability; only
        // a second match makes weights worth working out.
        let mut matching = variants.iter().filter(|v| v.vary.matches(self));
        let first = matching.next()?;
        let Some(second) = matching.next() else {
            return self.accepts(first).then_some(first);
        };
        let mut best: Option<(&Arc<CachedResponse>, QValue)> = None;
        for v in [first, second].into_iter().chain(matching) {
            if let Some(q) = self.acceptable(v) {
                if best.is_none_or(|(_, bq)| q > bq) {
                    best = Some((v, q));
                }
            }
        }
        best.map(|(v, _)| v)
    }

    /// The value the key holds for `Accept-Encoding`: the coding the
    /// request prefers among the configured ones (or `none`).
    fn reduced_encoding(&self) -> &'static str {
        self.accept_encoding()
            .negotiate(self.encodings.codings())
            .map_or("none", ContentCoding::as_str)
    }

    /// What the key adds to the reduced `Accept-Encoding` when the variant
    /// also varies on `Available-Dictionary` (RFC 9842): the dictionary
    /// codings a request naming a dictionary lists, none when its Fetch
    /// Metadata rules dictionaries out, and a cross-site CORS request's
    /// `Origin`. So a request that may not get `dcz` never shares a
    /// variant with one that got it, nor leaves one that would keep it
    /// from those that may. Worked out once per request.
    fn dictionary_key(&self) -> DictionaryKey<'a> {
        if let Some(k) = self.dictionary.get() {
            return k;
        }
        let none = DictionaryKey {
            codings: "",
            origin: None,
        };
        let key = if self.headers.contains_key(&AVAILABLE_DICTIONARY) {
            let origin = match Fetch::of(self.headers) {
                Fetch::Safe => Some(None),
                Fetch::Cors(origin) => Some(Some(origin.as_bytes())),
                Fetch::Unsafe => None,
            };
            let lists = |t: &str| accepts_coding(self.headers, t);
            let codings = match (lists("dcb"), lists("dcz")) {
                (false, false) => "",
                (true, false) => ";dcb",
                (false, true) => ";dcz",
                (true, true) => ";dcb;dcz",
            };
            match origin {
                Some(origin) if !codings.is_empty() => DictionaryKey { codings, origin },
                _ => none,
            }
        } else {
            none
        };
        self.dictionary.set(Some(key));
        key
    }

    /// Whether `stored`, the key's value for `Accept-Encoding`, is this
    /// request's: its reduced preference, then (`dictionaries`: the
    /// variant varies on `Available-Dictionary` too) its
    /// [`dictionary_key`](Self::dictionary_key).
    fn encoding_matches(&self, stored: &[u8], dictionaries: bool) -> bool {
        let Some(rest) = stored.strip_prefix(self.reduced_encoding().as_bytes()) else {
            return false;
        };
        if !dictionaries {
            return rest.is_empty();
        }
        let key = self.dictionary_key();
        let Some(rest) = rest.strip_prefix(key.codings.as_bytes()) else {
            return false;
        };
        match key.origin {
            None => rest.is_empty(),
            Some(origin) => rest.strip_prefix(ORIGIN_MARK) == Some(origin),
        }
    }

    /// The key's value for `Accept-Encoding` (see
    /// [`encoding_matches`](Self::encoding_matches)).
    fn encoding_value(&self, dictionaries: bool) -> Box<[u8]> {
        let reduced = self.reduced_encoding().as_bytes();
        if !dictionaries {
            return reduced.into();
        }
        let key = self.dictionary_key();
        let mut v = [reduced, key.codings.as_bytes()].concat();
        if let Some(origin) = key.origin {
            v.extend_from_slice(ORIGIN_MARK);
            v.extend_from_slice(origin);
        }
        v.into_boxed_slice()
    }
}

/// Separates a cross-site CORS request's `Origin` in the key's value for
/// `Accept-Encoding`.
const ORIGIN_MARK: &[u8] = b";origin=";

/// The request's values for the fields a stored response's `Vary` names,
/// normalized, in the order of `Vary`. Two requests select the same
/// variant when their `VaryKey`s for that `Vary` are equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VaryKey {
    fields: Vec<(HeaderName, Option<Box<[u8]>>)>,
}

impl VaryKey {
    /// Reads the field names of a response's `Vary` (lowercase, without
    /// duplicates) and the request's normalized value of each, then the
    /// `implicit` fields the request carries that `Vary` did not name.
    /// `Accept-Encoding` holds the request's reduced preference.
    pub(crate) fn build(
        response_headers: &HeaderMap,
        req: &RequestVary<'_>,
        implicit: &[HeaderName],
    ) -> Result<Self, VaryRefusal> {
        let mut fields: Vec<(HeaderName, Option<Box<[u8]>>)> = Vec::new();
        for line in response_headers.get_all(header::VARY) {
            for name in line.as_bytes().split(|b| *b == b',') {
                let name = name.trim_ascii();
                if name.is_empty() {
                    continue;
                }
                if name == b"*" {
                    return Err(VaryRefusal::Star);
                }
                // The names compression adds, without the parser.
                let name = if name.eq_ignore_ascii_case(b"accept-encoding") {
                    header::ACCEPT_ENCODING
                } else if name.eq_ignore_ascii_case(AVAILABLE_DICTIONARY.as_str().as_bytes()) {
                    AVAILABLE_DICTIONARY.clone()
                } else if let Ok(name) = HeaderName::from_bytes(name) {
                    name
                } else {
                    // A field name no request can carry: every request
                    // lacks it, so they all agree on it.
                    continue;
                };
                // At most MAX_VARY_FIELDS entries: a linear scan stays
                // bounded whatever the length of `Vary`.
                if fields.iter().any(|(n, _)| *n == name) {
                    continue;
                }
                if fields.len() == MAX_VARY_FIELDS {
                    return Err(VaryRefusal::TooMany);
                }
                // Accept-Encoding's value depends on whether Available-
                // Dictionary is named too: worked out after the loop.
                let value = if name == header::ACCEPT_ENCODING {
                    None
                } else {
                    normalize(&name, req.headers)
                };
                fields.push((name, value));
            }
        }
        let dictionary = fields.iter().any(|(n, _)| *n == AVAILABLE_DICTIONARY);
        if let Some((_, value)) = fields
            .iter_mut()
            .find(|(n, _)| n == header::ACCEPT_ENCODING)
        {
            *value = Some(req.encoding_value(dictionary));
        }
        // One pass over the request's few field names (most are standard
        // names, which differ from the custom implicit ones at the first
        // comparison), instead of a hashed look-up per implicit name;
        // added in the order of `implicit`, so equal requests build equal
        // keys.
        let mut present: Vec<usize> = Vec::new();
        if !implicit.is_empty() {
            for name in req.headers.keys() {
                // (`keys` yields each name once.)
                if let Some(i) = implicit.iter().position(|n| n == name) {
                    if !fields.iter().any(|(n, _)| n == name) {
                        present.push(i);
                    }
                }
            }
        }
        present.sort_unstable();
        for i in present {
            let name = &implicit[i];
            let value = normalize(name, req.headers);
            fields.push((name.clone(), value));
        }
        Ok(Self { fields })
    }

    /// Whether the request's fields select this variant (RFC 9111 §4.1).
    pub(crate) fn matches(&self, req: &RequestVary<'_>) -> bool {
        self.fields.iter().all(|(name, stored)| {
            if name == header::ACCEPT_ENCODING {
                let dictionaries = self.fields.iter().any(|(n, _)| *n == AVAILABLE_DICTIONARY);
                return stored
                    .as_deref()
                    .is_some_and(|s| req.encoding_matches(s, dictionaries));
            }
            normalize(name, req.headers) == *stored
        })
    }

    /// Whether `req` carries one of the `implicit` fields this variant did
    /// not record: such a request may be served the variant (it depends on
    /// none of them) but must not revalidate or refresh it, or a 304
    /// answered for its fields would rewrite what everyone is served.
    pub(crate) fn lacks_implicit_of(&self, req: &RequestVary<'_>, implicit: &[HeaderName]) -> bool {
        !implicit.is_empty()
            && req
                .headers
                .keys()
                .any(|name| implicit.contains(name) && !self.fields.iter().any(|(n, _)| n == name))
    }

    #[cfg(feature = "redis")]
    pub(crate) fn fields(&self) -> &[(HeaderName, Option<Box<[u8]>>)] {
        &self.fields
    }

    #[cfg(feature = "redis")]
    pub(crate) fn from_fields(fields: Vec<(HeaderName, Option<Box<[u8]>>)>) -> Self {
        Self { fields }
    }

    /// Whether the stored response had a `Vary` naming any field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub(crate) fn weight(&self) -> usize {
        self.fields
            .iter()
            .map(|(n, v)| n.as_str().len() + v.as_ref().map_or(0, |v| v.len()) + 24)
            .sum()
    }
}

#[cfg(test)]
mod tests;
