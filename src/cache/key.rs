//! Cache keys (RFC 9111 §2): the request's host and target.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::LazyLock;

use http::header;
use http::{Request, Uri};

/// The primary cache key of a request: its host (lowercased) and its path
/// and query, exactly as requested. The method is not part of it: GET and
/// HEAD share entries, and unsafe methods invalidate them.
///
/// With [`KeyRules`](super::KeyRules) that add request values, the key
/// also holds them after a `#` (which no request target contains).
#[derive(Clone)]
pub struct CacheKey {
    text: Box<str>,
    /// The text's hash, computed once (with this process's random seed):
    /// the stores' maps hash this, not the text, on every lookup and when
    /// they grow.
    hash: u64,
    path_at: usize,
    /// Where the path and query end (the `#` of the added values, or the
    /// end).
    pq_end: usize,
}

impl CacheKey {
    /// The key of a request: host from the absolute URI or the `Host`
    /// field (empty when neither), lowercased with the scheme's default
    /// port dropped, then the path and query: the key the cache gives the
    /// request (which answers 400 where this falls back to the host's
    /// visible bytes).
    pub fn from_request<B>(req: &Request<B>) -> Self {
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().as_bytes())
            .or_else(|| req.headers().get(header::HOST).map(|h| h.as_bytes()))
            .unwrap_or(b"");
        // Normalized as the cache settles a request's authority
        // (`Example.com:80` keys as `example.com`); a host the cache would
        // refuse is kept to its visible bytes.
        match super::authority::normalize(host) {
            Some(h) => Self::normalized(&h, req.uri()),
            None => Self::new(host, req.uri()),
        }
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
        let pq_end = text.len();
        Self::make(text.into_boxed_str(), path_at, pq_end)
    }

    /// The key of `uri` on `host`, a host already checked and normalized
    /// (by the cache's authority rules: visible ASCII, no '/').
    pub(crate) fn normalized(host: &str, uri: &Uri) -> Self {
        let pq = uri.path_and_query().map_or("/", |p| p.as_str());
        let slash = !pq.starts_with('/');
        let mut text = String::with_capacity(host.len() + pq.len() + usize::from(slash));
        text.push_str(host);
        if slash {
            text.push('/');
        }
        text.push_str(pq);
        let pq_end = text.len();
        Self::make(text.into_boxed_str(), host.len(), pq_end)
    }

    /// This key with the request values `extra` (see
    /// [`KeyRules`](super::KeyRules)) after a `#`.
    pub(crate) fn with_extra(&self, extra: &str) -> Self {
        let base = &self.text[..self.pq_end];
        let mut text = String::with_capacity(base.len() + 1 + extra.len());
        text.push_str(base);
        text.push('#');
        text.push_str(extra);
        Self::make(text.into_boxed_str(), self.path_at, self.pq_end)
    }

    /// A key from its text form ([`as_str`](Self::as_str)): the path
    /// starts at the first `/`.
    pub fn from_text(text: &str) -> Self {
        let path_at = text.find('/').unwrap_or(text.len());
        let pq_end = text[path_at..]
            .find('#')
            .map_or(text.len(), |i| path_at + i);
        Self::make(text.into(), path_at, pq_end)
    }

    /// The host part (lowercase; may be empty).
    pub fn host(&self) -> &str {
        &self.text[..self.path_at]
    }

    /// The path and query.
    pub fn path_and_query(&self) -> &str {
        &self.text[self.path_at..self.pq_end]
    }

    /// The request values [`KeyRules`](super::KeyRules) added (after the
    /// `#`), if any.
    pub(crate) fn extra(&self) -> Option<&str> {
        self.text
            .get(self.pq_end + 1..)
            .filter(|_| self.pq_end < self.text.len())
    }

    /// The path (without the query).
    pub fn path(&self) -> &str {
        let pq = self.path_and_query();
        pq.split_once('?').map_or(pq, |(p, _)| p)
    }

    /// Host followed by path and query (and any request values the key
    /// rules added, after a `#`), as one string.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The seed of the keys' hashes: random for each process, so a client
/// can't choose URLs that collide.
static KEY_HASHER: LazyLock<foldhash::quality::RandomState> = LazyLock::new(Default::default);

impl CacheKey {
    fn make(text: Box<str>, path_at: usize, pq_end: usize) -> Self {
        let hash = KEY_HASHER.hash_one(&*text);
        Self {
            text,
            hash,
            path_at,
            pq_end,
        }
    }
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.text == other.text
    }
}
impl Eq for CacheKey {}
impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// However a key is built, equal text means an equal key with an equal
    /// hash (the stores find it), and different text a different key.
    #[test]
    fn equal_keys_hash_alike_however_built() {
        use std::hash::BuildHasher;
        let h = |k: &CacheKey| foldhash::fast::FixedState::with_seed(7).hash_one(k);
        let r = Request::get("/a?x=1")
            .header("host", "Example.com")
            .body(())
            .unwrap();
        let from_request = CacheKey::from_request(&r);
        let from_text = CacheKey::from_text(from_request.as_str());
        let normalized = CacheKey::normalized("example.com", r.uri());
        for k in [&from_text, &normalized] {
            assert!(*k == from_request);
            assert_eq!(h(k), h(&from_request));
        }
        let extra = from_request.with_extra("ab12");
        let extra_text = CacheKey::from_text(extra.as_str());
        assert!(extra == extra_text);
        assert_eq!(h(&extra), h(&extra_text));
        assert_eq!(extra_text.path_and_query(), "/a?x=1");
        assert!(extra != from_request);
        assert!(CacheKey::from_text("example.com/a?x=2") != from_request);
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
}
