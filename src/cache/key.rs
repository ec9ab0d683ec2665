//! Cache keys (RFC 9111 §2) and Vary matching (§4.1).

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};

use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Uri};

use crate::headers::{AcceptEncoding, ContentCoding};

/// The primary cache key of a request: its host (lowercased) and its path
/// and query, exactly as requested. The method is not part of it: GET and
/// HEAD share entries, and unsafe methods invalidate them.
#[derive(Clone)]
pub struct CacheKey {
    text: Box<str>,
    path_at: usize,
}

impl CacheKey {
    /// The key of a request: host from the absolute URI or the `Host`
    /// field (empty when neither), then the path and query.
    pub fn from_request<B>(req: &Request<B>) -> Self {
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().as_bytes())
            .or_else(|| req.headers().get(header::HOST).map(|h| h.as_bytes()))
            .unwrap_or(b"");
        Self::new(host, req.uri())
    }

    /// The key of `uri` on `host` (only the URI's path and query are read).
    pub fn new(host: &[u8], uri: &Uri) -> Self {
        let pq = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut text = String::with_capacity(host.len() + pq.len());
        // Header values may hold any visible byte; keep visible ASCII,
        // lowercased (hosts are case-insensitive), without the delimiters
        // no host contains ('/', '?', '#', '\\'), so a key is always text
        // whose host ends at its first '/'.
        text.extend(
            host.iter()
                .filter(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#' | b'\\'))
                .map(|b| char::from(b.to_ascii_lowercase())),
        );
        let path_at = text.len();
        // An absolute URI may have an empty path ("http://h?q") and OPTIONS
        // may ask for "*": the path always starts with '/', so the host
        // ends at the first '/' of the key (what `from_text` relies on).
        if !pq.starts_with('/') {
            text.push('/');
        }
        text.push_str(pq);
        Self {
            text: text.into_boxed_str(),
            path_at,
        }
    }

    /// A key from its text form ([`as_str`](Self::as_str)): the path
    /// starts at the first `/`.
    pub fn from_text(text: &str) -> Self {
        let path_at = text.find('/').unwrap_or(text.len());
        Self {
            text: text.into(),
            path_at,
        }
    }

    /// The host part (lowercase; may be empty).
    pub fn host(&self) -> &str {
        &self.text[..self.path_at]
    }

    /// The path and query.
    pub fn path_and_query(&self) -> &str {
        &self.text[self.path_at..]
    }

    /// The path (without the query).
    pub fn path(&self) -> &str {
        let pq = self.path_and_query();
        pq.split_once('?').map_or(pq, |(p, _)| p)
    }

    /// Host followed by path and query, as one string.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for CacheKey {}
impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Same as `str`'s hash, so `Borrow<str>` lookups agree.
        self.text.hash(state);
    }
}
impl Borrow<str> for CacheKey {
    fn borrow(&self) -> &str {
        &self.text
    }
}
impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}
impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The request's values for the fields a stored response's `Vary` names,
/// normalized, in the order of `Vary`. Two requests select the same
/// variant when their `VaryKey`s for that `Vary` are equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VaryKey {
    fields: Vec<(HeaderName, Option<Box<[u8]>>)>,
}

impl VaryKey {
    /// Reads the field names of a response's `Vary` (lowercase, without
    /// duplicates) and the request's normalized value of each.
    /// `None` for `Vary: *`, which no request matches.
    pub(crate) fn build(
        response_headers: &HeaderMap,
        request_headers: &HeaderMap,
        codings: &[ContentCoding],
    ) -> Option<Self> {
        let mut fields: Vec<(HeaderName, Option<Box<[u8]>>)> = Vec::new();
        for line in response_headers.get_all(header::VARY) {
            for name in line.as_bytes().split(|b| *b == b',') {
                let name = name.trim_ascii();
                if name.is_empty() {
                    continue;
                }
                if name == b"*" {
                    return None;
                }
                let Ok(name) = HeaderName::from_bytes(name) else {
                    // A field name no request can carry: every request
                    // lacks it, so they all agree on it.
                    continue;
                };
                if fields.iter().any(|(n, _)| *n == name) {
                    continue;
                }
                let value = normalize(&name, request_headers, codings);
                fields.push((name, value));
            }
        }
        Some(Self { fields })
    }

    /// Whether `request_headers` select this variant (RFC 9111 §4.1).
    pub(crate) fn matches(&self, request_headers: &HeaderMap, codings: &[ContentCoding]) -> bool {
        self.fields
            .iter()
            .all(|(name, stored)| normalize(name, request_headers, codings) == *stored)
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

/// Fields whose values compare case-insensitively (their grammars are
/// tokens and language tags).
fn case_insensitive(name: &HeaderName) -> bool {
    name == header::ACCEPT_LANGUAGE || name == header::ACCEPT_CHARSET || name == header::ACCEPT
}

/// A request field's value as the cache compares it: every line joined as
/// one list, list elements trimmed and joined with ", ", runs of
/// whitespace folded, lowercased where the field is case-insensitive.
/// Accept-Encoding becomes the coding the compression layer would pick
/// among `codings` (or `none`), so variants don't multiply with the
/// spellings browsers send. `None` when the request lacks the field.
pub(crate) fn normalize(
    name: &HeaderName,
    request_headers: &HeaderMap,
    codings: &[ContentCoding],
) -> Option<Box<[u8]>> {
    if name == header::ACCEPT_ENCODING {
        let chosen = AcceptEncoding::from_values(request_headers.get_all(name).iter())
            .negotiate(codings)
            .map_or("none", ContentCoding::as_str);
        return Some(chosen.as_bytes().into());
    }
    let mut lines = request_headers.get_all(name).iter().peekable();
    lines.peek()?;
    let lower = case_insensitive(name);
    let mut out = Vec::new();
    for line in lines {
        for elem in line.as_bytes().split(|b| *b == b',') {
            let elem = elem.trim_ascii();
            if elem.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.extend_from_slice(b", ");
            }
            let mut last_space = false;
            for &b in elem {
                let ws = b == b' ' || b == b'\t';
                if ws {
                    if !last_space {
                        out.push(b' ');
                    }
                } else {
                    out.push(if lower { b.to_ascii_lowercase() } else { b });
                }
                last_space = ws;
            }
        }
    }
    Some(out.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

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

    #[test]
    fn keys_hold_host_and_path() {
        let r = Request::get("/a/b?x=1")
            .header("host", "Example.COM:8080")
            .body(())
            .unwrap();
        let k = CacheKey::from_request(&r);
        assert_eq!(k.host(), "example.com:8080");
        assert_eq!(k.path_and_query(), "/a/b?x=1");
        assert_eq!(k.path(), "/a/b");
        let abs = Request::get("http://other.org/a/b?x=1").body(()).unwrap();
        assert_eq!(CacheKey::from_request(&abs).as_str(), "other.org/a/b?x=1");
        let empty_path = Request::get("ca://f?/lc").body(()).unwrap();
        let k = CacheKey::from_request(&empty_path);
        assert_eq!((k.host(), k.path_and_query()), ("f", "/?/lc"));
        let back = CacheKey::from_text(k.as_str());
        assert_eq!((back.host(), back.path_and_query()), ("f", "/?/lc"));
        let none = Request::get("/").body(()).unwrap();
        assert_eq!(CacheKey::from_request(&none).as_str(), "/");
        // Bytes that aren't visible ASCII never reach the key.
        let odd = Request::get("/")
            .header("host", HeaderValue::from_bytes(b"a\xffb").unwrap())
            .body(())
            .unwrap();
        assert_eq!(CacheKey::from_request(&odd).host(), "ab");
        let slashed = Request::get("/p")
            .header("host", "a/b?c#d\\e")
            .body(())
            .unwrap();
        let k = CacheKey::from_request(&slashed);
        assert_eq!((k.host(), k.path_and_query()), ("abcde", "/p"));
    }

    #[test]
    fn vary_values_are_normalized() {
        let resp = req(&[("vary", "Accept-Language, accept-language,X-Tenant")]);
        let a = VaryKey::build(
            &resp,
            &req(&[("accept-language", "EN-us,  fr;q=0.5"), ("x-tenant", "A")]),
            CODINGS,
        )
        .unwrap();
        assert_eq!(a.fields.len(), 2);
        assert!(a.matches(
            &req(&[
                ("accept-language", "en-US"),
                ("accept-language", "fr;q=0.5"),
                ("x-tenant", "A")
            ]),
            CODINGS
        ));
        // x-tenant is case-sensitive.
        assert!(!a.matches(
            &req(&[("accept-language", "en-us, fr;q=0.5"), ("x-tenant", "a")]),
            CODINGS
        ));
        // A missing field differs from an empty one.
        assert!(!a.matches(&req(&[("accept-language", "en-us, fr;q=0.5")]), CODINGS));
    }

    #[test]
    fn accept_encoding_reduces_to_the_chosen_coding() {
        let resp = req(&[("vary", "accept-encoding")]);
        let gz = VaryKey::build(&resp, &req(&[("accept-encoding", "gzip")]), CODINGS).unwrap();
        for same in [
            "gzip, deflate, br",
            "br;q=1, gzip;q=0.9",
            "GZIP",
            "x-gzip, identity",
        ] {
            assert!(
                gz.matches(&req(&[("accept-encoding", same)]), CODINGS),
                "{same}"
            );
        }
        assert!(!gz.matches(&req(&[("accept-encoding", "deflate")]), CODINGS));
        assert!(!gz.matches(&req(&[]), CODINGS));
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
                const ALPHABET: &[u8] = b" \t,;=*/?#%:AaZz09-_.\"\\\x7f\xff\x00gzipdeflateidentity";
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
            for name in [
                header::ACCEPT_ENCODING,
                header::ACCEPT_LANGUAGE,
                header::ACCEPT,
            ] {
                for _ in 0..(g.next() % 3) {
                    if let Ok(v) = HeaderValue::from_bytes(&g.bytes(40)) {
                        req.append(name.clone(), v);
                    }
                }
            }
            if let Some(vary) = VaryKey::build(&resp, &req, CODINGS) {
                assert!(vary.matches(&req, CODINGS));
            }
        }
    }

    #[test]
    fn vary_star_matches_nothing() {
        assert!(VaryKey::build(&req(&[("vary", "accept, *")]), &req(&[]), CODINGS).is_none());
    }
}
