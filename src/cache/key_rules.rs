//! Custom cache keys ([`KeyRules`]): query parameters dropped or sorted,
//! and request header, cookie or extension values added to the key.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use http::header::{self, HeaderName};
use http::{Extensions, Method, Request, Uri};
use sha2::{Digest, Sha256};

use super::key::CacheKey;

/// A value an extension adds to the key: fed to the hasher when the
/// request has it.
type ExtensionValue = Arc<dyn Fn(&Extensions, &mut Sha256) -> bool + Send + Sync>;

/// What one key component reads.
#[derive(Clone)]
enum Part {
    Header(HeaderName),
    Cookie(Box<str>),
    Extension(Box<str>, ExtensionValue),
}

/// How a [`CacheLayer`](super::CacheLayer) keys requests beyond host,
/// path and query ([`CacheLayer::key`](super::CacheLayer::key)).
///
/// **Query parameters** named in
/// [`ignore_query_params`](Self::ignore_query_params) (or chosen by
/// [`ignore_query_params_if`](Self::ignore_query_params_if)) are removed,
/// and with [`sort_query`](Self::sort_query) the rest are put in order of
/// their names (repeated names keep their order), **in the request the
/// inner service sees as well as in the key**: the key always holds
/// exactly the target the origin answered, so no client can make a
/// response that depends on a parameter reach a client that did not send
/// it. `?utm_source=x&id=1` and `?id=1` then share one entry.
///
/// **Request values** ([`header`](Self::header), [`cookie`](Self::cookie),
/// [`extension`](Self::extension)) are added to the key, each as a
/// SHA-256 digest (32 hex digits, whatever the value: a value of any
/// length makes a key of bounded size, and the value itself is not kept
/// in a store or shown by a report, though a guessable one, such as a
/// small numeric id, can be found again by hashing guesses); an absent
/// value keys differently from an empty one. Keying on a user id that an authentication layer puts in
/// the request extensions caches per user without keying on the raw
/// token. Such responses are still stored only when the storing rules
/// allow: a `private` response never is (this is a shared cache), so an
/// origin that wants per-user answers stored here and not downstream
/// says so in a targeted field (`CDN-Cache-Control: max-age=60` beside
/// `Cache-Control: private`, see
/// [`CacheLayer::targeted_cache_control`](super::CacheLayer::targeted_cache_control)),
/// and requests with `Authorization` are answered from the store only
/// with [`CacheLayer::serve_authorized`](super::CacheLayer::serve_authorized).
/// An unsafe method invalidates the target's entry (and a same-origin
/// `Location`'s) for the request's own key values (RFC 9111 §4.4 at the
/// granularity the key chose); [`CacheHandle::purge_url`](super::CacheHandle::purge_url)
/// applies the query rules to the URL it is given and, when the key holds
/// request values, drops everyone's entries for that path and query (on
/// every host), as a tag does.
///
/// Only GET and HEAD requests are rewritten: other methods, never answered
/// from the store, reach the inner service as they came. With
/// [`sort_query`](Self::sort_query) or ignored parameters, empty elements
/// (`a&&b`) are dropped too.
///
/// ```
/// use tower_perf::cache::{CacheLayer, KeyRules};
///
/// #[derive(Clone)]
/// struct UserId(u64);
///
/// let cache = CacheLayer::new().key(
///     KeyRules::new()
///         .ignore_query_params(["utm_*", "fbclid"])
///         .sort_query()
///         .header(http::header::ACCEPT_LANGUAGE)
///         .cookie("tenant")
///         .extension("user", |u: &UserId| u.0.to_string()),
/// );
/// # let _ = cache;
/// ```
#[derive(Clone, Default)]
pub struct KeyRules {
    ignore: Vec<Box<str>>,
    ignore_if: Option<Arc<dyn Fn(&str) -> bool + Send + Sync>>,
    sort: bool,
    parts: Vec<Part>,
}

impl fmt::Debug for KeyRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Header(h) => format!("header {h}"),
                Part::Cookie(c) => format!("cookie {c}"),
                Part::Extension(n, _) => format!("extension {n}"),
            })
            .collect();
        f.debug_struct("KeyRules")
            .field("ignore", &self.ignore)
            .field("ignore_if", &self.ignore_if.is_some())
            .field("sort", &self.sort)
            .field("parts", &parts)
            .finish()
    }
}

impl KeyRules {
    /// Host, path and query as requested: the default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes these query parameters (by name, after percent-decoding;
    /// a name ending in `*` is a prefix: `utm_*`) from the key and from
    /// the request.
    ///
    /// # Panics
    ///
    /// On an empty name (or a lone `*`, which would drop every parameter:
    /// say so with [`ignore_query_params_if`](Self::ignore_query_params_if)).
    pub fn ignore_query_params<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for n in names {
            let n = n.as_ref();
            let base = n.strip_suffix('*').unwrap_or(n);
            assert!(
                !base.is_empty() && !base.contains(['&', '=', '*', '#']),
                "KeyRules::ignore_query_params({n:?}): name a parameter or a prefix (`utm_*`); no parameter name holds `&`, `=`, `#` or an inner `*`"
            );
            self.ignore.push(n.into());
        }
        self
    }

    /// Removes the query parameters whose (percent-decoded) name `f`
    /// returns `true` for, from the key and from the request.
    pub fn ignore_query_params_if(
        mut self,
        f: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.ignore_if = Some(Arc::new(f));
        self
    }

    /// Orders the query parameters by name (a stable sort: repeated names
    /// keep their order), in the key and in the request.
    pub fn sort_query(mut self) -> Self {
        self.sort = true;
        self
    }

    /// Adds the request's `name` field (its lines, in order) to the key.
    /// Prefer `Vary` when the origin can send it: the key then follows
    /// the origin, not a configuration.
    pub fn header(mut self, name: HeaderName) -> Self {
        self.parts.push(Part::Header(name));
        self
    }

    /// Adds the values of the cookie `name` (every one of that name in the
    /// request's `Cookie` fields, in order: servers differ on which of
    /// several they read, so all of them key) to the key.
    ///
    /// # Panics
    ///
    /// On a name that is not a token (empty, with `=`, `;` or white
    /// space): no cookie could match it, and every request would share
    /// one entry.
    pub fn cookie(mut self, name: &str) -> Self {
        assert!(
            !name.is_empty() && name.bytes().all(crate::headers::is_tchar),
            "KeyRules::cookie({name:?}): a cookie name is a token (RFC 6265 §4.1.1), no such cookie could match"
        );
        self.parts.push(Part::Cookie(name.into()));
        self
    }

    /// Adds what `f` makes of the request extension `T` (set by a layer
    /// before the cache, such as the user id an authentication layer
    /// found) to the key; `name` labels the component.
    pub fn extension<T, F, V>(mut self, name: &str, f: F) -> Self
    where
        T: Send + Sync + 'static,
        F: Fn(&T) -> V + Send + Sync + 'static,
        V: AsRef<[u8]>,
    {
        let read: ExtensionValue = Arc::new(move |ext: &Extensions, h: &mut Sha256| {
            ext.get::<T>().is_some_and(|t| {
                h.update(f(t).as_ref());
                true
            })
        });
        self.parts.push(Part::Extension(name.into(), read));
        self
    }

    /// Whether these rules change nothing (the default).
    pub(crate) fn is_identity(&self) -> bool {
        self.ignore.is_empty() && self.ignore_if.is_none() && !self.sort && self.parts.is_empty()
    }

    /// Rewrites a GET's or HEAD's query as the rules say and returns the
    /// request's key: `key` (the settled host, path and query) redone for
    /// the new query, plus the request values. Other methods (never
    /// answered from the store) reach the inner service as they came; their
    /// key, which they invalidate, is the rewritten one.
    pub(crate) fn apply<B>(&self, req: &mut Request<B>, key: CacheKey) -> CacheKey {
        let mut key = key;
        if let Some(uri) = self.query(req.uri()).and_then(|pq| Uri::try_from(pq).ok()) {
            key = CacheKey::normalized(key.host(), &uri);
            if matches!(*req.method(), Method::GET | Method::HEAD) {
                *req.uri_mut() = uri;
            }
        }
        match self.extra(req) {
            Some(extra) => key.with_extra(&extra),
            None => key,
        }
    }

    /// The key of `location` (a same-origin `Location` or
    /// `Content-Location` an unsafe method invalidates) as a GET for it by
    /// the same client would have: its query rewritten, the request's own
    /// values (`request_key`'s) added.
    pub(crate) fn location_key(&self, location: CacheKey, request_key: &CacheKey) -> CacheKey {
        let pq = location.path_and_query();
        let key = match Uri::try_from(pq).ok().and_then(|u| self.query(&u)) {
            Some(rewritten) => match Uri::try_from(rewritten) {
                Ok(u) => CacheKey::normalized(location.host(), &u),
                Err(_) => location,
            },
            None => location,
        };
        match request_key.extra() {
            Some(extra) => key.with_extra(extra),
            None => key,
        }
    }

    /// The path and query a purge names, as the rules rewrite it.
    pub(crate) fn purge_target(&self, uri: &Uri) -> Option<String> {
        self.query(uri)
    }

    /// Whether the key holds request values (then a URL has one entry per
    /// set of values).
    pub(crate) fn adds_values(&self) -> bool {
        !self.parts.is_empty()
    }

    /// The request values, as they follow the `#` of the key.
    fn extra<B>(&self, req: &Request<B>) -> Option<String> {
        if self.parts.is_empty() {
            return None;
        }
        let mut extra = String::with_capacity(self.parts.len() * 40);
        for part in &self.parts {
            let mut h = Sha256::new();
            let (label, present) = match part {
                Part::Header(name) => {
                    let mut any = false;
                    for v in req.headers().get_all(name) {
                        // Lines are kept apart: `a` + `b` is not `ab`.
                        h.update((v.len() as u64).to_le_bytes());
                        h.update(v.as_bytes());
                        any = true;
                    }
                    (name.as_str(), any)
                }
                Part::Cookie(name) => {
                    let mut any = false;
                    for v in cookies(req.headers(), name) {
                        h.update((v.len() as u64).to_le_bytes());
                        h.update(v);
                        any = true;
                    }
                    (&**name, any)
                }
                Part::Extension(name, read) => (&**name, read(req.extensions(), &mut h)),
            };
            let kind = match part {
                Part::Header(_) => 'h',
                Part::Cookie(_) => 'c',
                Part::Extension(..) => 'e',
            };
            if !extra.is_empty() {
                extra.push('&');
            }
            extra.push(kind);
            extra.push(':');
            extra.extend(
                label
                    .chars()
                    .filter(|c| c.is_ascii_graphic() && !matches!(c, '&' | '=' | '#')),
            );
            if present {
                extra.push('=');
                for b in &h.finalize()[..16] {
                    let _ = write!(extra, "{b:02x}");
                }
            }
        }
        Some(extra)
    }

    /// The path and query the rules make of `uri`'s; `None` when they
    /// change nothing.
    fn query(&self, uri: &Uri) -> Option<String> {
        if self.ignore.is_empty() && self.ignore_if.is_none() && !self.sort {
            return None;
        }
        let query = uri.query()?;
        let mut params: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty() && !self.ignored(p))
            .collect();
        if self.sort {
            // By the decoded name, so `%61` sorts as `a` and repeated names
            // keep their order however they are spelled.
            // Borrowed unless escaped: no allocation per plain name.
            params.sort_by_cached_key(|p| {
                let raw = name_of(p);
                percent_decode(raw).map_or(Cow::Borrowed(raw), Cow::Owned)
            });
        }
        let rebuilt = params.join("&");
        if rebuilt == query {
            return None;
        }
        let mut pq = String::with_capacity(uri.path().len() + 1 + rebuilt.len());
        pq.push_str(uri.path());
        if !rebuilt.is_empty() {
            pq.push('?');
            pq.push_str(&rebuilt);
        }
        Some(pq)
    }

    fn ignored(&self, param: &str) -> bool {
        let raw = name_of(param);
        let decoded = percent_decode(raw);
        let name = decoded.as_deref().unwrap_or(raw);
        self.ignore.iter().any(|i| match i.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == &**i,
        }) || self.ignore_if.as_ref().is_some_and(|f| f(name))
    }
}

/// The name of a `name=value` query parameter, as sent.
fn name_of(param: &str) -> &str {
    param.split_once('=').map_or(param, |(n, _)| n)
}

/// `s` with `%XX` escapes (and `+`, a space in forms) decoded; `None`
/// when there are none (or the result would not be UTF-8).
fn percent_decode(s: &str) -> Option<String> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return None;
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The values of cookie `name` in the request's `Cookie` fields, in order
/// (RFC 6265 §5.4: `name=value` pairs separated by `;`).
fn cookies<'h>(headers: &'h http::HeaderMap, name: &'h str) -> impl Iterator<Item = &'h [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(move |pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(rules: &KeyRules, uri: &str, headers: &[(&str, &str)]) -> (String, String) {
        let mut b = Request::get(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        let mut req = b.body(()).unwrap();
        let key = CacheKey::normalized("h", req.uri());
        let key = rules.apply(&mut req, key);
        (req.uri().to_string(), key.as_str().to_owned())
    }

    #[test]
    fn query_parameters_are_dropped_and_sorted_inward_too() {
        let r = KeyRules::new()
            .ignore_query_params(["utm_*", "fbclid"])
            .sort_query();
        let (uri, key) = keyed(
            &r,
            "/p?utm_source=x&b=2&a=1&fbclid=9&a=0&utm%5Fmedium=y",
            &[],
        );
        assert_eq!(uri, "/p?a=1&a=0&b=2");
        assert_eq!(key, "h/p?a=1&a=0&b=2");
        let (uri, _) = keyed(&r, "/p?utm_source=x", &[]);
        assert_eq!(uri, "/p");
        let (uri, _) = keyed(&r, "/p?a=1&b=2", &[]);
        assert_eq!(uri, "/p?a=1&b=2", "unchanged");
        // Sorted by the decoded name: `%61` is `a`, and the two `a`s keep
        // their order.
        let (uri, _) = keyed(&KeyRules::new().sort_query(), "/p?b=0&%61=1&a=2", &[]);
        assert_eq!(uri, "/p?%61=1&a=2&b=0");
        let pred = KeyRules::new().ignore_query_params_if(|n| n.starts_with('_'));
        assert_eq!(keyed(&pred, "/p?_t=1&x=2", &[]).0, "/p?x=2");
    }

    #[test]
    fn request_values_are_hashed_into_the_key() {
        let r = KeyRules::new()
            .header(HeaderName::from_static("x-tenant"))
            .cookie("sid");
        let a = keyed(
            &r,
            "/p",
            &[("x-tenant", "a"), ("cookie", "x=1; sid=s3cret")],
        )
        .1;
        let b = keyed(&r, "/p", &[("x-tenant", "b"), ("cookie", "sid=s3cret")]).1;
        let none = keyed(&r, "/p", &[]).1;
        let empty = keyed(&r, "/p", &[("x-tenant", ""), ("cookie", "sid=")]).1;
        assert_ne!(a, b);
        assert_ne!(none, empty, "absent is not empty");
        assert!(!a.contains("s3cret"));
        assert!(a.starts_with("h/p#h:x-tenant="), "{a}");
        let k = CacheKey::from_text(&a);
        assert_eq!(k.path_and_query(), "/p");
        assert_eq!(k.as_str(), a);
        // Two lines are not one line with their bytes run together.
        let two = keyed(&r, "/p", &[("x-tenant", "a"), ("x-tenant", "b")]).1;
        let one = keyed(&r, "/p", &[("x-tenant", "ab")]).1;
        assert_ne!(two, one);
    }

    #[test]
    fn extensions_key_by_what_the_closure_reads() {
        #[derive(Clone)]
        struct User(u64);
        let r = KeyRules::new().extension("user", |u: &User| u.0.to_string());
        let key = |user: Option<u64>| {
            let mut req = Request::get("/me").body(()).unwrap();
            if let Some(u) = user {
                req.extensions_mut().insert(User(u));
            }
            let key = CacheKey::normalized("h", req.uri());
            r.apply(&mut req, key).as_str().to_owned()
        };
        assert_ne!(key(Some(1)), key(Some(2)));
        assert_eq!(key(Some(1)), key(Some(1)));
        assert_eq!(key(None), "h/me#e:user");
    }

    /// Only GET and HEAD reach the inner service rewritten; the key of
    /// another method (what it invalidates) is the rewritten one.
    #[test]
    fn other_methods_keep_their_query() {
        let r = KeyRules::new().ignore_query_params(["utm_*"]);
        let mut post = Request::post("/p?utm_x=1&a=1").body(()).unwrap();
        let key = CacheKey::normalized("h", post.uri());
        let key = r.apply(&mut post, key);
        assert_eq!(post.uri(), "/p?utm_x=1&a=1");
        assert_eq!(key.as_str(), "h/p?a=1");
    }

    /// Two cookies of one name: both key (servers differ on which one they
    /// read), so `tenant=a; tenant=b` never shares `tenant=a`'s entry.
    #[test]
    fn every_cookie_of_the_name_keys() {
        let r = KeyRules::new().cookie("tenant");
        let one = keyed(&r, "/p", &[("cookie", "tenant=a")]).1;
        let two = keyed(&r, "/p", &[("cookie", "tenant=a; tenant=b")]).1;
        let other = keyed(&r, "/p", &[("cookie", "tenant=b; tenant=a")]).1;
        assert_ne!(one, two);
        assert_ne!(two, other);
    }

    #[test]
    #[should_panic(expected = "a cookie name is a token")]
    fn a_cookie_name_that_cannot_match_panics() {
        let _ = KeyRules::new().cookie("tenant ");
    }

    #[test]
    #[should_panic(expected = "name a parameter or a prefix")]
    fn an_ignored_name_that_cannot_match_panics() {
        let _ = KeyRules::new().ignore_query_params(["a=b"]);
    }

    #[test]
    fn cookies_and_escapes() {
        let mut h = http::HeaderMap::new();
        h.append(header::COOKIE, "a=1; b = 2 ".parse().unwrap());
        h.append(header::COOKIE, "c=3;b=9".parse().unwrap());
        let all = |n| cookies(&h, n).collect::<Vec<_>>();
        assert_eq!(all("b"), [&b"2"[..], &b"9"[..]]);
        assert_eq!(all("c"), [&b"3"[..]]);
        assert!(all("d").is_empty());
        assert_eq!(percent_decode("utm%5Fx").as_deref(), Some("utm_x"));
        assert_eq!(percent_decode("a%"), Some("a%".into()));
        assert_eq!(percent_decode("a%4"), Some("a%4".into()));
        assert_eq!(percent_decode("plain"), None);
    }
}
