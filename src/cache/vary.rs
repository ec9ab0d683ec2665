//! Vary matching (RFC 9111 §4.1): the variant key of a stored response
//! and the selection of the variant a request may be served.

use std::cell::Cell;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName};

use super::entry::CachedResponse;
use super::fields::normalize;
use super::storable::StoredCoding;
use crate::headers::{AcceptEncoding, ContentCoding, QValue, listed_weight};

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
}

impl<'a> RequestVary<'a> {
    pub(crate) fn new(headers: &'a HeaderMap, encodings: &'a Encodings) -> Self {
        Self {
            headers,
            encodings,
            accept_encoding: Cell::new(None),
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

    /// The weight this request gives a stored response in `coding`, when
    /// it accepts it (`None` for an unknown coding). A request without
    /// `Accept-Encoding` accepts identity only: the RFC lets it take any
    /// coding, but such clients (curl, probes, scripts) often can't decode.
    pub(crate) fn acceptable(&self, coding: Option<StoredCoding>) -> Option<QValue> {
        let coding = match coding? {
            StoredCoding::Plain(c) => c,
            // Only to a request naming a dictionary (the variant's `Vary`,
            // which storing requires to name `Available-Dictionary`, makes
            // it the same one) and listing the coding.
            StoredCoding::Dictionary(token) => {
                if !self.headers.contains_key(&AVAILABLE_DICTIONARY) {
                    return None;
                }
                return listed_weight(self.headers, token.as_bytes()).filter(|q| *q > QValue::ZERO);
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
    fn accepts(&self, coding: Option<StoredCoding>) -> bool {
        let identity = Some(StoredCoding::Plain(ContentCoding::Identity));
        if coding == identity && self.accept_encoding.get().is_none() {
            // One look-up of the field: absent, or without any weight.
            let mut weighted = false;
            for v in self.headers.get_all(header::ACCEPT_ENCODING) {
                weighted |= v.as_bytes().contains(&b'=');
            }
            if !weighted {
                return true;
            }
        }
        self.acceptable(coding).is_some()
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
            return self.accepts(first.facts.coding).then_some(first);
        };
        let mut best: Option<(&Arc<CachedResponse>, QValue)> = None;
        for v in [first, second].into_iter().chain(matching) {
            if let Some(q) = self.acceptable(v.facts.coding) {
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
    /// also varies on `Available-Dictionary`: the dictionary codings a
    /// request naming a dictionary lists (RFC 9842), so one that lists
    /// none of them never shares a variant with one that got `dcz`.
    fn dictionary_codings(&self) -> &'static str {
        if !self.headers.contains_key(&AVAILABLE_DICTIONARY) {
            return "";
        }
        let lists =
            |t: &str| listed_weight(self.headers, t.as_bytes()).is_some_and(|q| q > QValue::ZERO);
        match (lists("dcb"), lists("dcz")) {
            (false, false) => "",
            (true, false) => ";dcb",
            (false, true) => ";dcz",
            (true, true) => ";dcb;dcz",
        }
    }
}

/// RFC 9842's request field naming the client's dictionary.
const AVAILABLE_DICTIONARY: HeaderName = HeaderName::from_static("available-dictionary");

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
                let Ok(name) = HeaderName::from_bytes(name) else {
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
                let value = if name == header::ACCEPT_ENCODING {
                    Some(req.reduced_encoding().as_bytes().into())
                } else {
                    normalize(&name, req.headers)
                };
                fields.push((name, value));
            }
        }
        if fields.iter().any(|(n, _)| *n == AVAILABLE_DICTIONARY) {
            let suffix = req.dictionary_codings();
            let ae = fields
                .iter_mut()
                .find(|(n, _)| n == header::ACCEPT_ENCODING);
            if let (false, Some((_, Some(value)))) = (suffix.is_empty(), ae) {
                *value = [&value[..], suffix.as_bytes()].concat().into();
            }
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
                let suffix = if self.fields.iter().any(|(n, _)| *n == AVAILABLE_DICTIONARY) {
                    req.dictionary_codings()
                } else {
                    ""
                };
                let reduced = req.reduced_encoding();
                return stored.as_deref().is_some_and(|s| {
                    s.len() == reduced.len() + suffix.len()
                        && s.starts_with(reduced.as_bytes())
                        && s.ends_with(suffix.as_bytes())
                });
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
mod tests {
    use super::*;
    use crate::cache::key::CacheKey;
    use http::{HeaderValue, Uri};

    const CODINGS: &[ContentCoding] = &[ContentCoding::Gzip, ContentCoding::Deflate];

    fn req(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn inside() -> Encodings {
        Encodings::Inside(CODINGS.to_vec())
    }

    fn build(resp: &HeaderMap, request: &HeaderMap, enc: &Encodings) -> VaryKey {
        VaryKey::build(resp, &RequestVary::new(request, enc), &[]).unwrap()
    }

    fn matches(v: &VaryKey, request: &HeaderMap, enc: &Encodings) -> bool {
        v.matches(&RequestVary::new(request, enc))
    }

    #[test]
    fn vary_values_are_normalized() {
        let enc = inside();
        let resp = req(&[("vary", "Accept-Language, accept-language,X-Tenant")]);
        let a = build(
            &resp,
            &req(&[("accept-language", "EN-us,  fr;q=0.5"), ("x-tenant", "A")]),
            &enc,
        );
        assert_eq!(a.fields.len(), 2);
        assert!(matches(
            &a,
            &req(&[
                ("accept-language", "en-US"),
                ("accept-language", "fr;q=0.5"),
                ("x-tenant", "A")
            ]),
            &enc
        ));
        // x-tenant is case-sensitive.
        assert!(!matches(
            &a,
            &req(&[("accept-language", "en-us, fr;q=0.5"), ("x-tenant", "a")]),
            &enc
        ));
        // A missing field differs from an empty one.
        assert!(!matches(
            &a,
            &req(&[("accept-language", "en-us, fr;q=0.5")]),
            &enc
        ));
    }

    #[test]
    fn accept_encoding_reduces_to_the_chosen_coding() {
        let enc = inside();
        let resp = req(&[("vary", "accept-encoding")]);
        let gz = build(&resp, &req(&[("accept-encoding", "gzip")]), &enc);
        for same in [
            "gzip, deflate, br",
            "br;q=1, gzip;q=0.9",
            "GZIP",
            "x-gzip, identity",
        ] {
            assert!(
                matches(&gz, &req(&[("accept-encoding", same)]), &enc),
                "{same}"
            );
        }
        assert!(!matches(&gz, &req(&[("accept-encoding", "deflate")]), &enc));
        assert!(!matches(&gz, &req(&[]), &enc));
    }

    #[test]
    fn long_vary_lists_are_refused_and_duplicates_folded() {
        let enc = Encodings::Origin;
        let names: Vec<String> = (0..=MAX_VARY_FIELDS).map(|i| format!("x-f{i}")).collect();
        let long = req(&[("vary", &names.join(", "))]);
        let r = VaryKey::build(&long, &RequestVary::new(&req(&[]), &enc), &[]);
        assert_eq!(r, Err(VaryRefusal::TooMany));
        // 30,000 repetitions of one name are one field.
        let repeated = req(&[("vary", &vec!["accept"; 30_000].join(","))]);
        let v = build(&repeated, &req(&[("accept", "a")]), &enc);
        assert_eq!(v.fields.len(), 1);
    }

    #[test]
    fn implicit_fields_join_the_variant_only_when_present() {
        let enc = Encodings::Origin;
        let implicit = [HeaderName::from_static("x-forwarded-host")];
        let resp = req(&[]);
        let evil = req(&[("x-forwarded-host", "evil.test")]);
        let clean = req(&[]);
        let build_with =
            |r: &HeaderMap| VaryKey::build(&resp, &RequestVary::new(r, &enc), &implicit).unwrap();
        let poisoned = build_with(&evil);
        assert!(!matches(&poisoned, &clean, &enc));
        assert!(!matches(
            &poisoned,
            &req(&[("x-forwarded-host", "other.test")]),
            &enc
        ));
        assert!(matches(&poisoned, &evil, &enc));
        // Fetched without the field: shared with everyone.
        let shared = build_with(&clean);
        assert!(shared.is_empty());
        assert!(matches(&shared, &evil, &enc));
    }

    /// A stored response in `coding`, fetched by a request with
    /// `fetched_with` as its Accept-Encoding; `vary`: whether it says
    /// `Vary: Accept-Encoding`.
    fn stored(coding: Option<&str>, fetched_with: Option<&str>, vary: bool) -> Arc<CachedResponse> {
        let mut h = HeaderMap::new();
        h.insert("cache-control", HeaderValue::from_static("max-age=60"));
        if vary {
            h.insert("vary", HeaderValue::from_static("accept-encoding"));
        }
        if let Some(c) = coding {
            h.insert("content-encoding", HeaderValue::from_str(c).unwrap());
        }
        let now = std::time::SystemTime::now();
        let request = match fetched_with {
            Some(ae) => req(&[("accept-encoding", ae)]),
            None => req(&[]),
        };
        let v = build(&h, &request, &Encodings::Origin);
        Arc::new(CachedResponse::new(
            http::StatusCode::OK,
            h,
            bytes::Bytes::from_static(b"x"),
            None,
            (now, now),
            v,
            Vec::new(),
            None,
        ))
    }

    fn chosen(
        variants: &[Arc<CachedResponse>],
        ae: Option<&str>,
        enc: &Encodings,
    ) -> Option<String> {
        let headers = match ae {
            Some(v) => req(&[("accept-encoding", v)]),
            None => req(&[]),
        };
        RequestVary::new(&headers, enc).select(variants).map(|v| {
            v.headers()
                .get("content-encoding")
                .map_or("identity".into(), |c| c.to_str().unwrap().to_owned())
        })
    }

    /// Issue 16: an origin that negotiates itself. Requests reduce to
    /// their preferred coding among all known ones, so a variant fetched
    /// without Accept-Encoding never answers a browser (which would then
    /// never get a compressed body), and a stored coding reaches only
    /// requests that accept it.
    #[test]
    fn origin_variants_follow_the_request_preference() {
        let enc = Encodings::Origin;
        let br = [stored(Some("br"), Some("gzip, deflate, br"), true)];
        assert_eq!(chosen(&br, Some("br, gzip"), &enc).as_deref(), Some("br"));
        assert_eq!(chosen(&br, Some("br"), &enc).as_deref(), Some("br"));
        for other in [Some("gzip"), Some("identity"), None, Some("gzip, br;q=0")] {
            assert_eq!(chosen(&br, other, &enc), None, "{other:?}");
        }
        // Fetched by curl (no Accept-Encoding): not what a browser gets.
        let plain = [stored(None, None, true)];
        assert_eq!(chosen(&plain, None, &enc).as_deref(), Some("identity"));
        assert_eq!(chosen(&plain, Some("gzip, deflate, br"), &enc), None);
        // The origin answered a br-preferring client with gzip: a br-only
        // client with the same preference still doesn't get it.
        let odd = [stored(Some("gzip"), Some("br, gzip"), true)];
        assert_eq!(chosen(&odd, Some("br"), &enc), None);
        assert_eq!(
            chosen(&odd, Some("br;q=1, gzip;q=0.5"), &enc).as_deref(),
            Some("gzip")
        );
    }

    /// Acceptability holds with or without `Vary`, in either mode; among
    /// several matching variants the request's weights choose; q=0 and
    /// `identity;q=0` exclude.
    #[test]
    fn stored_codings_serve_only_requests_that_accept_them() {
        let enc = Encodings::Origin;
        let br = stored(Some("br"), None, false);
        let gzip = stored(Some("gzip"), None, false);
        let identity = stored(None, None, false);
        let only_br = [Arc::clone(&br)];
        assert_eq!(chosen(&only_br, Some("gzip"), &enc), None);
        assert_eq!(chosen(&only_br, Some("gzip"), &inside()), None);
        assert_eq!(chosen(&only_br, Some("identity"), &enc), None);
        assert_eq!(chosen(&only_br, None, &enc), None);
        assert_eq!(chosen(&only_br, Some("gzip, br;q=0"), &enc), None);
        assert_eq!(chosen(&only_br, Some("*"), &enc).as_deref(), Some("br"));
        let all = [Arc::clone(&br), Arc::clone(&gzip), Arc::clone(&identity)];
        assert_eq!(
            chosen(&all, Some("gzip;q=1, br;q=0.5"), &enc).as_deref(),
            Some("gzip")
        );
        assert_eq!(
            chosen(&all, Some("br;q=0.9, gzip;q=0.5"), &enc).as_deref(),
            Some("br")
        );
        assert_eq!(
            chosen(&all, Some("deflate"), &enc).as_deref(),
            Some("identity")
        );
        assert_eq!(chosen(&all, None, &enc).as_deref(), Some("identity"));
        let no_identity = [Arc::clone(&br), Arc::clone(&identity)];
        assert_eq!(chosen(&no_identity, Some("gzip, identity;q=0"), &enc), None);
        assert_eq!(chosen(&no_identity, Some("gzip, *;q=0"), &enc), None);
        // An unknown coding is never served.
        let odd = [stored(Some("x-custom"), None, false)];
        assert_eq!(chosen(&odd, Some("x-custom, *"), &enc), None);
    }

    /// RFC 9842: a variant compressed against a dictionary reaches only a
    /// request naming the same dictionary and listing the coding; one
    /// naming it without listing the coding keys a variant of its own.
    #[test]
    fn dictionary_variants_serve_only_their_dictionary_and_coding() {
        let enc = Encodings::Inside(vec![ContentCoding::Gzip]);
        let (a, b) = (":AAAA:", ":BBBB:");
        let browser =
            |dict: &str, ae: &str| req(&[("accept-encoding", ae), ("available-dictionary", dict)]);
        let mut h = HeaderMap::new();
        h.insert("cache-control", HeaderValue::from_static("max-age=60"));
        h.insert(
            "vary",
            HeaderValue::from_static("accept-encoding, available-dictionary"),
        );
        h.insert("content-encoding", HeaderValue::from_static("dcz"));
        let fetched = browser(a, "gzip, dcb, dcz");
        let now = std::time::SystemTime::now();
        let dcz = Arc::new(CachedResponse::new(
            http::StatusCode::OK,
            h.clone(),
            bytes::Bytes::from_static(b"x"),
            None,
            (now, now),
            build(&h, &fetched, &enc),
            Vec::new(),
            None,
        ));
        let variants = [dcz];
        let select = |r: &HeaderMap| RequestVary::new(r, &enc).select(&variants).is_some();
        assert!(select(&fetched));
        assert!(select(&browser(a, "dcz, gzip, dcb")));
        assert!(!select(&browser(b, "gzip, dcb, dcz")), "another dictionary");
        assert!(!select(&req(&[("accept-encoding", "gzip, dcb, dcz")])));
        assert!(!select(&browser(a, "gzip, dcb, dcz;q=0")));
        assert!(!select(&browser(a, "gzip, dcb")), "keyed apart: ;dcb");
        // Listing dcz with the dictionary is what selects, not the key:
        // served as if no Vary held the codings, it still needs them.
        let bare = Arc::new(CachedResponse::new(
            http::StatusCode::OK,
            h.clone(),
            bytes::Bytes::from_static(b"x"),
            None,
            (now, now),
            VaryKey::default(),
            Vec::new(),
            None,
        ));
        let rv = |r: HeaderMap| {
            RequestVary::new(&r, &enc)
                .acceptable(bare.facts.coding)
                .is_some()
        };
        assert!(rv(browser(a, "dcz")));
        assert!(!rv(req(&[("accept-encoding", "dcz, *")])));
        assert!(!rv(browser(a, "gzip, *")));
    }

    #[test]
    fn a_request_with_implicit_fields_does_not_revalidate_a_shared_variant() {
        let enc = Encodings::Origin;
        let implicit = [HeaderName::from_static("x-forwarded-host")];
        let shared = stored(None, None, false);
        let clean = req(&[]);
        let evil = req(&[("x-forwarded-host", "evil.test")]);
        assert!(
            !shared
                .vary
                .lacks_implicit_of(&RequestVary::new(&clean, &enc), &implicit)
        );
        assert!(
            shared
                .vary
                .lacks_implicit_of(&RequestVary::new(&evil, &enc), &implicit)
        );
        assert!(
            !shared
                .vary
                .lacks_implicit_of(&RequestVary::new(&evil, &enc), &[])
        );
        let own =
            VaryKey::build(&HeaderMap::new(), &RequestVary::new(&evil, &enc), &implicit).unwrap();
        assert!(!own.lacks_implicit_of(&RequestVary::new(&evil, &enc), &implicit));
    }

    /// Generated input (the stable stand-in for a fuzz target): random
    /// bytes as hosts, URIs and request/response fields never panic, keys
    /// are valid text that round-trips through `from_text`, and a variant
    /// always matches the request it was built from.
    #[test]
    fn generated_input_never_panics() {
        struct Gen(u64);
        impl Gen {
            fn next(&mut self) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0
            }
            fn bytes(&mut self, n: u64) -> Vec<u8> {
                const ALPHABET: &[u8] =
                    b" \t,;=*/?#%:AaZz09-_.\"\\\x7f\xff\x00gzipdeflateidentitydcbz";
                let len = (self.next() % n) as usize;
                (0..len)
                    .map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize])
                    .collect()
            }
        }
        let mut g = Gen(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let host = g.bytes(24);
            let path = format!(
                "/{}",
                String::from_utf8_lossy(&g.bytes(30)).replace(|c: char| !c.is_ascii_graphic(), "")
            );
            if let Ok(uri) = path.parse::<Uri>() {
                let k = CacheKey::new(&host, &uri);
                assert!(k.as_str().is_ascii());
                assert_eq!(CacheKey::from_text(k.as_str()).as_str(), k.as_str());
                assert!(k.path_and_query().starts_with('/'));
            }
            let mut resp = HeaderMap::new();
            let mut req = HeaderMap::new();
            for _ in 0..(g.next() % 4) {
                if let Ok(v) = HeaderValue::from_bytes(&g.bytes(40)) {
                    resp.append(header::VARY, v);
                }
            }
            if g.next() % 2 == 0 {
                let v = HeaderValue::from_static("accept-encoding, available-dictionary");
                resp.append(header::VARY, v);
            }
            for name in [
                header::ACCEPT_ENCODING,
                header::ACCEPT_LANGUAGE,
                header::ACCEPT,
                AVAILABLE_DICTIONARY,
            ] {
                for _ in 0..(g.next() % 3) {
                    if let Ok(v) = HeaderValue::from_bytes(&g.bytes(40)) {
                        req.append(name.clone(), v);
                    }
                }
            }
            for enc in [Encodings::Origin, inside()] {
                let request = RequestVary::new(&req, &enc);
                if let Ok(vary) = VaryKey::build(&resp, &request, &[]) {
                    assert!(vary.matches(&request));
                }
            }
        }
    }

    #[test]
    fn vary_star_matches_nothing() {
        let enc = inside();
        let r = VaryKey::build(
            &req(&[("vary", "accept, *")]),
            &RequestVary::new(&req(&[]), &enc),
            &[],
        );
        assert_eq!(r, Err(VaryRefusal::Star));
    }
}
