//! `Cache-Control` (RFC 9111 §5.2, RFC 5861, RFC 8246).

use std::fmt;
use std::time::Duration;

use http::header::{CACHE_CONTROL, HeaderMap, HeaderName, HeaderValue};

use super::ParseError;
use super::util::{self, DELTA_SECONDS_MAX};

/// The `max-stale` request directive: how stale a response the client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaxStale {
    /// `max-stale` without a value: a stale response of any age will do.
    Any,
    /// `max-stale=N`: stale by at most this long.
    Limit(Duration),
}

/// A parsed `Cache-Control` field: every request and response directive of
/// RFC 9111 §5.2, `stale-while-revalidate` and `stale-if-error` (RFC 5861),
/// `immutable` (RFC 8246), and unknown extensions.
///
/// The same type serves requests and responses; a directive that means
/// nothing in one direction is simply kept.
///
/// # Parsing rules
///
/// Parsing never fails and never panics: Cache-Control is a list of hints,
/// and RFC 9111 says what a cache does with bad ones.
///
/// - Directive names compare case-insensitively (§5.2); both `max-age=5` and
///   `max-age="5"` are accepted (§5.2).
/// - When a directive appears more than once (in one line or across
///   several), the **first occurrence** is used (§4.2.1 allows the first
///   occurrence or treating the response as stale; the first occurrence keeps
///   a header appended later, by a proxy or an injection, from widening an
///   earlier policy).
/// - A delta-seconds larger than 2^31 is read as 2^31 (§1.2.2).
/// - An invalid `max-age` or `s-maxage` value (negative, fractional, not a
///   number) is read as `0`: responses with invalid freshness information are
///   treated as stale (§4.2.1). An invalid `max-stale`, `min-fresh`,
///   `stale-while-revalidate` or `stale-if-error` value drops that directive:
///   it never widens what a cache may do (a bad `max-stale` is *not* read as
///   "any staleness").
/// - `no-cache` and `private` take an optional list of field names
///   (`no-cache="set-cookie"`). If that list holds anything that isn't a
///   field name, or more than [`MAX_FIELD_NAMES`](Self::MAX_FIELD_NAMES)
///   distinct ones over all the directive's lists, the directive is read
///   unqualified, which is more restrictive (never a field left out).
/// - Unknown directives are kept as extensions when they are well formed
///   (a token name, a token or quoted-string value); malformed elements are
///   ignored. The first [`MAX_EXTENSIONS`](Self::MAX_EXTENSIONS) are kept;
///   later ones are ignored, as caches ignore directives they don't
///   understand (RFC 9111 §5.2.3), and known directives after them are
///   still read: padding can't hide a `no-store`.
///
/// Parsing is linear in the input and keeps no more than these limits. The
/// builders are not limited; what they write past them parses back limited.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_perf::headers::CacheControl;
///
/// let cc = CacheControl::parse(b"public, Max-Age=60, stale-while-revalidate=30, x-ext=\"a b\"");
/// assert!(cc.public());
/// assert_eq!(cc.max_age(), Some(Duration::from_secs(60)));
/// assert_eq!(cc.stale_while_revalidate(), Some(Duration::from_secs(30)));
/// assert_eq!(cc.extension("x-ext"), Some(Some("a b")));
///
/// let written = CacheControl::new().with_public().with_max_age(Duration::from_secs(300));
/// assert_eq!(written.to_string(), "public, max-age=300");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    max_age: Option<u32>,
    s_maxage: Option<u32>,
    max_stale: Option<Option<u32>>,
    min_fresh: Option<u32>,
    stale_while_revalidate: Option<u32>,
    stale_if_error: Option<u32>,
    no_cache: Option<Vec<HeaderName>>,
    private: Option<Vec<HeaderName>>,
    no_store: bool,
    no_transform: bool,
    only_if_cached: bool,
    must_revalidate: bool,
    proxy_revalidate: bool,
    must_understand: bool,
    public: bool,
    immutable: bool,
    extensions: Vec<(String, Option<String>)>,
}

fn secs(v: Option<u32>) -> Option<Duration> {
    v.map(|s| Duration::from_secs(u64::from(s)))
}

fn to_delta(d: Duration) -> u32 {
    u32::try_from(d.as_secs())
        .unwrap_or(DELTA_SECONDS_MAX)
        .min(DELTA_SECONDS_MAX)
}

/// Adds the field names of a `no-cache`/`private` argument to `names`,
/// each once (compared with at most `MAX_FIELD_NAMES` kept ones). `false`
/// when an element is not a field name, the list is empty, or there would
/// be more than [`CacheControl::MAX_FIELD_NAMES`]: the directive then reads
/// as unqualified.
fn add_field_names(names: &mut Vec<HeaderName>, value: &[u8]) -> bool {
    let Some(decoded) = util::unquote(value) else {
        return false;
    };
    let mut listed = false;
    for elem in util::split_list(&decoded) {
        if !util::is_token(elem) {
            return false;
        }
        listed = true;
        if names
            .iter()
            .any(|n| n.as_str().as_bytes().eq_ignore_ascii_case(elem))
        {
            continue;
        }
        if names.len() == CacheControl::MAX_FIELD_NAMES {
            return false;
        }
        let Ok(name) = HeaderName::from_bytes(elem) else {
            return false;
        };
        names.push(name);
    }
    listed
}

impl CacheControl {
    /// The most extension directives parsing keeps (see the [rules](Self)).
    pub const MAX_EXTENSIONS: usize = 64;
    /// The most field names parsing keeps in one `no-cache` or `private`
    /// qualification; more read as unqualified (see the [rules](Self)).
    pub const MAX_FIELD_NAMES: usize = 64;

    /// An empty Cache-Control: no directive at all.
    pub const fn new() -> Self {
        Self {
            max_age: None,
            s_maxage: None,
            max_stale: None,
            min_fresh: None,
            stale_while_revalidate: None,
            stale_if_error: None,
            no_cache: None,
            private: None,
            no_store: false,
            no_transform: false,
            only_if_cached: false,
            must_revalidate: false,
            proxy_revalidate: false,
            must_understand: false,
            public: false,
            immutable: false,
            extensions: Vec::new(),
        }
    }

    /// Parses one field value. See the [type docs](Self) for the rules.
    pub fn parse(value: &[u8]) -> Self {
        let mut cc = Self::new();
        cc.parse_into(value);
        cc
    }

    /// Parses every `Cache-Control` line of `headers` as one list
    /// (RFC 9110 §5.3). Returns `None` when there is no such line.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut lines = headers.get_all(CACHE_CONTROL).iter().peekable();
        lines.peek()?;
        Some(Self::from_values(lines))
    }

    /// [`from_headers`](Self::from_headers) for a response's fields: a
    /// one-line value is parsed once per thread while it keeps coming
    /// back (a route's responses all say the same). Not for requests:
    /// their values are the client's to vary, and would push the
    /// origin's out of the memo.
    #[cfg(any(feature = "cache", feature = "compression"))]
    pub(crate) fn from_response_headers(headers: &HeaderMap) -> Option<Self> {
        let mut lines = headers.get_all(CACHE_CONTROL).iter();
        let first = lines.next()?;
        let Some(second) = lines.next() else {
            return Some(memo::parsed(first.as_bytes()));
        };
        Some(Self::from_values([first, second].into_iter().chain(lines)))
    }

    /// Parses several field lines as one list (RFC 9110 §5.3).
    pub fn from_values<'a, I>(values: I) -> Self
    where
        I: IntoIterator<Item = &'a HeaderValue>,
    {
        let mut cc = Self::new();
        for v in values {
            cc.parse_into(v.as_bytes());
        }
        cc
    }

    fn parse_into(&mut self, value: &[u8]) {
        for elem in util::split_list(value) {
            let (name, raw) = util::split_name_value(elem);
            if !util::is_token(name) {
                continue;
            }
            let decoded = raw.and_then(util::unquote);
            let delta = decoded.as_deref().and_then(util::parse_delta_seconds);
            let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
            if is("max-age") {
                self.max_age.get_or_insert(delta.unwrap_or(0));
            } else if is("s-maxage") {
                self.s_maxage.get_or_insert(delta.unwrap_or(0));
            } else if is("max-stale") {
                match (raw, delta) {
                    (None, _) => {
                        self.max_stale.get_or_insert(None);
                    }
                    (Some(_), Some(d)) => {
                        self.max_stale.get_or_insert(Some(d));
                    }
                    (Some(_), None) => {}
                }
            } else if is("min-fresh") {
                if let Some(d) = delta {
                    self.min_fresh.get_or_insert(d);
                }
            } else if is("stale-while-revalidate") {
                if let Some(d) = delta {
                    self.stale_while_revalidate.get_or_insert(d);
                }
            } else if is("stale-if-error") {
                if let Some(d) = delta {
                    self.stale_if_error.get_or_insert(d);
                }
            } else if is("no-cache") {
                Self::qualified(&mut self.no_cache, raw);
            } else if is("private") {
                Self::qualified(&mut self.private, raw);
            } else if is("no-store") {
                self.no_store = true;
            } else if is("no-transform") {
                self.no_transform = true;
            } else if is("only-if-cached") {
                self.only_if_cached = true;
            } else if is("must-revalidate") {
                self.must_revalidate = true;
            } else if is("proxy-revalidate") {
                self.proxy_revalidate = true;
            } else if is("must-understand") {
                self.must_understand = true;
            } else if is("public") {
                self.public = true;
            } else if is("immutable") {
                self.immutable = true;
            } else {
                // Once full, nothing more is kept, duplicate or not; until
                // then a name is compared with at most MAX_EXTENSIONS others.
                if self.extensions.len() >= Self::MAX_EXTENSIONS
                    || self
                        .extensions
                        .iter()
                        .any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
                {
                    continue;
                }
                let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
                let value = match (raw, decoded) {
                    (None, _) => None,
                    (Some(_), Some(d)) => match std::str::from_utf8(&d) {
                        Ok(s) if s.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) => {
                            Some(s.to_owned())
                        }
                        _ => continue,
                    },
                    (Some(_), None) => continue,
                };
                self.extensions.push((lower, value));
            }
        }
    }

    /// `no-cache` / `private`: unqualified wins over qualified, and a
    /// malformed or too long qualification reads as unqualified.
    fn qualified(slot: &mut Option<Vec<HeaderName>>, raw: Option<&[u8]>) {
        // Unqualified already: nothing can change that, skip the list.
        if slot.as_ref().is_some_and(Vec::is_empty) {
            return;
        }
        let mut names = slot.take().unwrap_or_default();
        if !raw.is_some_and(|v| add_field_names(&mut names, v)) {
            names.clear();
        }
        *slot = Some(names);
    }

    /// `max-age`.
    pub fn max_age(&self) -> Option<Duration> {
        secs(self.max_age)
    }
    /// `s-maxage` (shared caches only).
    pub fn s_maxage(&self) -> Option<Duration> {
        secs(self.s_maxage)
    }
    /// `max-stale` (request).
    pub fn max_stale(&self) -> Option<MaxStale> {
        self.max_stale.map(|v| match v {
            None => MaxStale::Any,
            Some(s) => MaxStale::Limit(Duration::from_secs(u64::from(s))),
        })
    }
    /// `min-fresh` (request).
    pub fn min_fresh(&self) -> Option<Duration> {
        secs(self.min_fresh)
    }
    /// `stale-while-revalidate` (RFC 5861).
    pub fn stale_while_revalidate(&self) -> Option<Duration> {
        secs(self.stale_while_revalidate)
    }
    /// `stale-if-error` (RFC 5861).
    pub fn stale_if_error(&self) -> Option<Duration> {
        secs(self.stale_if_error)
    }
    /// `no-cache`, qualified or not.
    pub fn no_cache(&self) -> bool {
        self.no_cache.is_some()
    }
    /// The field names of a qualified `no-cache="…"`; empty when unqualified
    /// or absent.
    pub fn no_cache_fields(&self) -> &[HeaderName] {
        self.no_cache.as_deref().unwrap_or(&[])
    }
    /// `private`, qualified or not.
    pub fn private(&self) -> bool {
        self.private.is_some()
    }
    /// The field names of a qualified `private="…"`; empty when unqualified
    /// or absent.
    pub fn private_fields(&self) -> &[HeaderName] {
        self.private.as_deref().unwrap_or(&[])
    }
    /// `no-store`.
    pub const fn no_store(&self) -> bool {
        self.no_store
    }
    /// `no-transform`.
    pub const fn no_transform(&self) -> bool {
        self.no_transform
    }
    /// `only-if-cached` (request).
    pub const fn only_if_cached(&self) -> bool {
        self.only_if_cached
    }
    /// `must-revalidate`.
    pub const fn must_revalidate(&self) -> bool {
        self.must_revalidate
    }
    /// `proxy-revalidate`.
    pub const fn proxy_revalidate(&self) -> bool {
        self.proxy_revalidate
    }
    /// `must-understand`.
    pub const fn must_understand(&self) -> bool {
        self.must_understand
    }
    /// `public`.
    pub const fn public(&self) -> bool {
        self.public
    }
    /// `immutable` (RFC 8246).
    pub const fn immutable(&self) -> bool {
        self.immutable
    }
    /// Unknown directives, names lowercased, values unquoted, in order.
    pub fn extensions(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.extensions
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_deref()))
    }
    /// An unknown directive by name (case-insensitive): `Some(None)` when it
    /// has no value.
    pub fn extension(&self, name: &str) -> Option<Option<&str>> {
        self.extensions
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
    /// True when no directive is present.
    pub fn is_empty(&self) -> bool {
        *self == Self::new()
    }

    /// Sets `max-age` (whole seconds, saturating at 2^31).
    pub fn with_max_age(mut self, d: Duration) -> Self {
        self.max_age = Some(to_delta(d));
        self
    }
    /// Sets `s-maxage`.
    pub fn with_s_maxage(mut self, d: Duration) -> Self {
        self.s_maxage = Some(to_delta(d));
        self
    }
    /// Sets `max-stale`.
    pub fn with_max_stale(mut self, m: MaxStale) -> Self {
        self.max_stale = Some(match m {
            MaxStale::Any => None,
            MaxStale::Limit(d) => Some(to_delta(d)),
        });
        self
    }
    /// Sets `min-fresh`.
    pub fn with_min_fresh(mut self, d: Duration) -> Self {
        self.min_fresh = Some(to_delta(d));
        self
    }
    /// Sets `stale-while-revalidate`.
    pub fn with_stale_while_revalidate(mut self, d: Duration) -> Self {
        self.stale_while_revalidate = Some(to_delta(d));
        self
    }
    /// Sets `stale-if-error`.
    pub fn with_stale_if_error(mut self, d: Duration) -> Self {
        self.stale_if_error = Some(to_delta(d));
        self
    }
    /// Sets an unqualified `no-cache`.
    pub fn with_no_cache(mut self) -> Self {
        self.no_cache = Some(Vec::new());
        self
    }
    /// Sets `no-cache="…"` for these fields (an empty list is unqualified).
    pub fn with_no_cache_fields<I: IntoIterator<Item = HeaderName>>(mut self, fields: I) -> Self {
        self.no_cache = Some(fields.into_iter().collect());
        self
    }
    /// Sets an unqualified `private`.
    pub fn with_private(mut self) -> Self {
        self.private = Some(Vec::new());
        self
    }
    /// Sets `private="…"` for these fields (an empty list is unqualified).
    pub fn with_private_fields<I: IntoIterator<Item = HeaderName>>(mut self, fields: I) -> Self {
        self.private = Some(fields.into_iter().collect());
        self
    }
    /// Sets `no-store`.
    pub const fn with_no_store(mut self) -> Self {
        self.no_store = true;
        self
    }
    /// Sets `no-transform`.
    pub const fn with_no_transform(mut self) -> Self {
        self.no_transform = true;
        self
    }
    /// Sets `only-if-cached`.
    pub const fn with_only_if_cached(mut self) -> Self {
        self.only_if_cached = true;
        self
    }
    /// Sets `must-revalidate`.
    pub const fn with_must_revalidate(mut self) -> Self {
        self.must_revalidate = true;
        self
    }
    /// Sets `proxy-revalidate`.
    pub const fn with_proxy_revalidate(mut self) -> Self {
        self.proxy_revalidate = true;
        self
    }
    /// Sets `must-understand`.
    pub const fn with_must_understand(mut self) -> Self {
        self.must_understand = true;
        self
    }
    /// Sets `public`.
    pub const fn with_public(mut self) -> Self {
        self.public = true;
        self
    }
    /// Sets `immutable`.
    pub const fn with_immutable(mut self) -> Self {
        self.immutable = true;
        self
    }
    /// Adds an extension directive. The name must be a token; the value, if
    /// any, printable ASCII (it is quoted when it isn't a token).
    pub fn with_extension(mut self, name: &str, value: Option<&str>) -> Result<Self, ParseError> {
        if !util::is_token(name.as_bytes()) {
            return Err(ParseError::new(
                "cache-control",
                "extension name is not a token",
            ));
        }
        if let Some(v) = value {
            if !v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
                return Err(ParseError::new(
                    "cache-control",
                    "extension value is not printable ASCII",
                ));
            }
        }
        let lower = name.to_ascii_lowercase();
        self.extensions.retain(|(n, _)| *n != lower);
        self.extensions.push((lower, value.map(str::to_owned)));
        Ok(self)
    }

    /// The field value, ready to insert into a header map.
    pub fn to_header_value(&self) -> HeaderValue {
        // Every part written is a token, a number or an escaped quoted
        // string of printable ASCII, so this cannot fail; fall back to an
        // empty value rather than panic all the same.
        HeaderValue::try_from(self.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

impl fmt::Display for CacheControl {
    /// Writes the directives in a fixed order, lowercase, `, `-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let mut push = |s: &str| {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(s);
        };
        let fields = |names: &[HeaderName]| {
            let joined: Vec<&str> = names.iter().map(HeaderName::as_str).collect();
            let mut s = String::new();
            util::write_quoted(&mut s, &joined.join(", "));
            s
        };
        if self.public {
            push("public");
        }
        match self.private.as_deref() {
            Some([]) => push("private"),
            Some(names) => push(&format!("private={}", fields(names))),
            None => {}
        }
        match self.no_cache.as_deref() {
            Some([]) => push("no-cache"),
            Some(names) => push(&format!("no-cache={}", fields(names))),
            None => {}
        }
        if self.no_store {
            push("no-store");
        }
        for (name, v) in [("max-age", self.max_age), ("s-maxage", self.s_maxage)] {
            if let Some(v) = v {
                push(&format!("{name}={v}"));
            }
        }
        match self.max_stale {
            Some(None) => push("max-stale"),
            Some(Some(v)) => push(&format!("max-stale={v}")),
            None => {}
        }
        if let Some(v) = self.min_fresh {
            push(&format!("min-fresh={v}"));
        }
        if self.must_revalidate {
            push("must-revalidate");
        }
        if self.proxy_revalidate {
            push("proxy-revalidate");
        }
        if self.must_understand {
            push("must-understand");
        }
        if self.no_transform {
            push("no-transform");
        }
        if self.only_if_cached {
            push("only-if-cached");
        }
        if self.immutable {
            push("immutable");
        }
        if let Some(v) = self.stale_while_revalidate {
            push(&format!("stale-while-revalidate={v}"));
        }
        if let Some(v) = self.stale_if_error {
            push(&format!("stale-if-error={v}"));
        }
        for (name, value) in &self.extensions {
            match value {
                None => push(name),
                Some(v) if util::is_token(v.as_bytes()) => push(&format!("{name}={v}")),
                Some(v) => {
                    let mut s = format!("{name}=");
                    util::write_quoted(&mut s, v);
                    push(&s);
                }
            }
        }
        f.write_str(&out)
    }
}

/// What recently parsed one-line `Cache-Control` values say, per thread.
#[cfg(any(feature = "cache", feature = "compression"))]
mod memo {
    use std::cell::RefCell;

    use super::CacheControl;

    /// Values remembered per thread, replaced in turn: a server's
    /// routes say few different things (the example server, five), and
    /// requests mostly nothing.
    const SLOTS: usize = 8;
    /// The longest value remembered (longer ones are parsed each time).
    const MAX_LEN: usize = 128;

    struct Memo {
        slots: [Option<(Box<[u8]>, CacheControl)>; SLOTS],
        next: usize,
    }

    thread_local! {
        static MEMO: RefCell<Memo> = const {
            RefCell::new(Memo { slots: [const { None }; SLOTS], next: 0 })
        };
    }

    /// `CacheControl::parse(value)`, from this thread's memo when `value`
    /// was parsed lately. A parse depends on the bytes alone, so a
    /// remembered result is the same as a new one.
    pub(super) fn parsed(value: &[u8]) -> CacheControl {
        if value.len() > MAX_LEN {
            return CacheControl::parse(value);
        }
        let kept = MEMO.try_with(|memo| {
            let mut memo = memo.try_borrow_mut().ok()?;
            if let Some((_, cc)) = memo.slots.iter().flatten().find(|(k, _)| **k == *value) {
                return Some(cc.clone());
            }
            let cc = CacheControl::parse(value);
            let i = memo.next;
            memo.slots[i] = Some((value.into(), cc.clone()));
            memo.next = (i + 1) % SLOTS;
            Some(cc)
        });
        // While the thread is going away: parsed afresh.
        kept.ok()
            .flatten()
            .unwrap_or_else(|| CacheControl::parse(value))
    }
}

#[cfg(test)]
mod tests;
