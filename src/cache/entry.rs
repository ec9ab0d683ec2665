//! Stored responses and the arithmetic of RFC 9111 §4.2: freshness
//! lifetime, age, staleness.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::vary::VaryKey;
use crate::headers::{CacheControl, ContentCoding, EntityTag, HttpDate};

/// Statuses a cache may store without explicit freshness (RFC 9110 §15.1),
/// less 206: this cache does not combine partial content.
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Hop-by-hop fields (RFC 9110 §7.6.1) and fields a cache must not
/// replay, dropped before a response is stored (RFC 9111 §3.1).
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authentication-info"
    )
}

/// A response held by a cache store: status, headers, the whole body and
/// trailers, plus the times and derived facts the cache needs to reuse it.
///
/// Bodies are [`Bytes`]: serving a hit clones a reference, never the bytes.
#[derive(Debug, Clone)]
pub struct CachedResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    /// `headers` plus placeholders for `Age` and `Cache-Status`: a hit
    /// clones it and overwrites them in place, and the map never grows.
    pub(crate) template: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) trailers: Option<HeaderMap>,
    /// When the request that produced this response was sent.
    pub(crate) request_time: SystemTime,
    /// When its header section arrived (or a 304 freshened it).
    pub(crate) response_time: SystemTime,
    /// Normalized values of the fields its `Vary` names, as the request
    /// that produced it had them.
    pub(crate) vary: VaryKey,
    /// Surrogate keys (tags) for purging.
    pub(crate) tags: Vec<Box<str>>,
    pub(crate) facts: Facts,
}

/// What the cache derives from a stored response's header section once,
/// instead of parsing it again at each reuse.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    /// Freshness lifetime (§4.2.1).
    pub(crate) lifetime: Duration,
    /// `corrected_initial_age` of §4.2.3.
    pub(crate) initial_age: Duration,
    pub(crate) stale_while_revalidate: Option<Duration>,
    pub(crate) stale_if_error: Option<Duration>,
    /// `must-revalidate`, `proxy-revalidate` or `s-maxage`: never served
    /// stale (§5.2.2.2, §5.2.2.8, §5.2.2.10).
    pub(crate) must_revalidate: bool,
    /// `no-cache`: validated before each reuse (§5.2.2.4).
    pub(crate) no_cache: bool,
    pub(crate) etag: Option<EntityTag>,
    pub(crate) last_modified: Option<HttpDate>,
    /// The `Content-Encoding` (identity when absent); `None` when it is
    /// not one coding this crate knows, and then no request is served it.
    pub(crate) coding: Option<ContentCoding>,
}

impl CachedResponse {
    /// Builds a stored response from a header section received at
    /// `response_time` for a request sent at `request_time`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        status: StatusCode,
        mut headers: HeaderMap,
        body: Bytes,
        trailers: Option<HeaderMap>,
        times: (SystemTime, SystemTime),
        vary: VaryKey,
        tags: Vec<Box<str>>,
        heuristic: Option<Heuristic>,
    ) -> Self {
        let (request_time, response_time) = times;
        headers.retain_not_hop_by_hop();
        let facts = Facts::derive(status, &headers, request_time, response_time, heuristic);
        Self {
            status,
            template: template(&headers),
            headers,
            body,
            trailers,
            request_time,
            response_time,
            vary,
            tags,
            facts,
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The stored header section (hop-by-hop fields removed).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
    /// The trailers, if the response had any.
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_ref()
    }
    /// The purge tags read from the response.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.tags.iter().map(|t| &**t)
    }
    /// When the request that fetched (or last validated) it was sent.
    pub fn request_time(&self) -> SystemTime {
        self.request_time
    }
    /// When the response was received (or last freshened by a 304).
    pub fn response_time(&self) -> SystemTime {
        self.response_time
    }
    /// Its freshness lifetime (RFC 9111 §4.2.1).
    pub fn freshness_lifetime(&self) -> Duration {
        self.facts.lifetime
    }

    /// Its current age at `now` (RFC 9111 §4.2.3).
    pub fn age(&self, now: SystemTime) -> Duration {
        let resident = now.duration_since(self.response_time).unwrap_or_default();
        self.facts.initial_age + resident
    }

    /// How long the store should keep it: while fresh, then for the longest
    /// stale window, then (if it has validators, so a conditional request
    /// can refresh it cheaply) for `validator_grace`.
    pub(crate) fn retention(&self, now: SystemTime, validator_grace: Duration) -> Duration {
        let remaining = self.facts.lifetime.saturating_sub(self.age(now));
        let stale = if self.facts.must_revalidate {
            Duration::ZERO
        } else {
            self.facts
                .stale_while_revalidate
                .unwrap_or_default()
                .max(self.facts.stale_if_error.unwrap_or_default())
        };
        let grace = if self.facts.etag.is_some() || self.facts.last_modified.is_some() {
            validator_grace
        } else {
            Duration::ZERO
        };
        remaining + stale.max(grace)
    }

    /// Approximate bytes held: body, trailers and header section.
    pub(crate) fn weight(&self) -> usize {
        let fields = |h: &HeaderMap| {
            h.iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 32)
                .sum::<usize>()
        };
        self.body.len()
            + fields(&self.headers)
            + fields(&self.template)
            + self.trailers.as_ref().map_or(0, fields)
            + self.vary.weight()
            + self.tags.iter().map(|t| t.len() + 16).sum::<usize>()
            + 256
    }

    /// Applies the header section of a 304 that validated this response
    /// (RFC 9111 §4.3.4, §3.2): its fields replace the stored ones, except
    /// those that describe the content (`Content-Length`,
    /// `Content-Encoding`, `Content-Range`), and the times restart.
    pub(crate) fn freshened(
        &self,
        not_modified: &HeaderMap,
        times: (SystemTime, SystemTime),
        heuristic: Option<Heuristic>,
    ) -> Self {
        let mut headers = self.headers.clone();
        for name in not_modified.keys() {
            if is_hop_by_hop(name)
                || name == header::CONTENT_LENGTH
                || name == header::CONTENT_ENCODING
                || name == header::CONTENT_RANGE
                || name == header::TRANSFER_ENCODING
            {
                continue;
            }
            headers.remove(name);
            for v in not_modified.get_all(name) {
                headers.append(name.clone(), v.clone());
            }
        }
        // An Age or Date from the stale copy must not survive when the 304
        // brought none: the response is as new as the 304.
        if !not_modified.contains_key(header::AGE) {
            headers.remove(header::AGE);
        }
        if !not_modified.contains_key(header::DATE) {
            headers.insert(header::DATE, HttpDate::from(times.1).to_header_value());
        }
        let facts = Facts::derive(self.status, &headers, times.0, times.1, heuristic);
        Self {
            status: self.status,
            template: template(&headers),
            headers,
            body: self.body.clone(),
            trailers: self.trailers.clone(),
            request_time: times.0,
            response_time: times.1,
            vary: self.vary.clone(),
            tags: self.tags.clone(),
            facts,
        }
    }
}

/// The `Cache-Status` field.
pub(crate) static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// `headers` with room for, and placeholders of, the two fields each
/// answer from the cache sets. A `Cache-Status` from an upstream cache
/// stays (this cache appends its own after it); no placeholder then.
fn template(headers: &HeaderMap) -> HeaderMap {
    let mut t = HeaderMap::with_capacity(headers.len() + 2);
    for (k, v) in headers {
        t.append(k.clone(), v.clone());
    }
    t.insert(header::AGE, HeaderValue::from_static("0"));
    if !t.contains_key(&CACHE_STATUS) {
        t.insert(CACHE_STATUS.clone(), HeaderValue::from_static(""));
    }
    t
}

trait RetainExt {
    fn retain_not_hop_by_hop(&mut self);
}

impl RetainExt for HeaderMap {
    fn retain_not_hop_by_hop(&mut self) {
        // Fields named by Connection are hop-by-hop too (RFC 9110 §7.6.1).
        let named: Vec<HeaderName> = self
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .filter_map(|n| HeaderName::from_bytes(n.trim_ascii()).ok())
            .collect();
        for n in named {
            self.remove(n);
        }
        let hop: Vec<HeaderName> = self.keys().filter(|n| is_hop_by_hop(n)).cloned().collect();
        for n in hop {
            self.remove(n);
        }
    }
}

/// Heuristic freshness (RFC 9111 §4.2.2): a fraction of the time since
/// `Last-Modified`, capped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Heuristic {
    pub(crate) fraction: f64,
    pub(crate) max: Duration,
}

impl Facts {
    pub(crate) fn derive(
        status: StatusCode,
        headers: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
        heuristic: Option<Heuristic>,
    ) -> Self {
        let cc = CacheControl::from_headers(headers).unwrap_or_default();
        let date = HttpDate::from_headers(headers, &header::DATE)
            .and_then(Result::ok)
            .map(HttpDate::to_system_time);
        let date_value = date.unwrap_or(response_time);
        let last_modified =
            HttpDate::from_headers(headers, &header::LAST_MODIFIED).and_then(Result::ok);

        // §4.2.1: s-maxage, then max-age, then Expires - Date, then a
        // heuristic.
        let lifetime = if let Some(s) = cc.s_maxage() {
            s
        } else if let Some(m) = cc.max_age() {
            m
        } else if let Some(expires) = headers.get(header::EXPIRES) {
            // An invalid Expires (including "0") means already expired
            // (§5.3).
            match HttpDate::parse(expires.as_bytes()) {
                Ok(e) => e
                    .to_system_time()
                    .duration_since(date_value)
                    .unwrap_or_default(),
                Err(_) => Duration::ZERO,
            }
        } else if let (Some(h), Some(lm), true) = (
            heuristic,
            last_modified,
            heuristically_cacheable(status) && !cc.no_cache(),
        ) {
            let since = date_value
                .duration_since(lm.to_system_time())
                .unwrap_or_default();
            since.mul_f64(h.fraction).min(h.max)
        } else {
            Duration::ZERO
        };

        // §4.2.3
        let age_value = headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or_default();
        let apparent_age = response_time.duration_since(date_value).unwrap_or_default();
        let response_delay = response_time
            .duration_since(request_time)
            .unwrap_or_default();
        let corrected_age_value = age_value + response_delay;
        let initial_age = apparent_age.max(corrected_age_value);

        Self {
            lifetime,
            initial_age,
            stale_while_revalidate: cc.stale_while_revalidate(),
            stale_if_error: cc.stale_if_error(),
            must_revalidate: cc.must_revalidate()
                || cc.proxy_revalidate()
                || cc.s_maxage().is_some(),
            no_cache: cc.no_cache(),
            etag: EntityTag::from_headers(headers),
            last_modified,
            coding: response_coding(headers),
        }
    }
}

/// The one content coding of a response: identity without
/// `Content-Encoding`; `None` for a coding this crate doesn't know or a
/// stack of codings (which the cache does not store).
pub(crate) fn response_coding(headers: &HeaderMap) -> Option<ContentCoding> {
    let mut lines = headers.get_all(header::CONTENT_ENCODING).iter();
    let Some(first) = lines.next() else {
        return Some(ContentCoding::Identity);
    };
    if lines.next().is_some() {
        return None;
    }
    let value = first.as_bytes().trim_ascii();
    if value.is_empty() {
        return Some(ContentCoding::Identity);
    }
    ContentCoding::from_token(value)
}

/// Why a response is not stored, for statistics and `Cache-Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotStorable {
    Status,
    NoStore,
    Private,
    Authorization,
    SetCookie,
    VaryStar,
    /// `Vary` names more than `vary::MAX_VARY_FIELDS` fields.
    VaryTooLong,
    /// A `Content-Encoding` this cache can't match to what a request
    /// accepts (unknown, or several codings).
    UnknownCoding,
    NoFreshness,
    TooLarge,
}

/// The storing rules of RFC 9111 §3 for a shared cache, for a response to
/// a GET whose request had `req_cc` and (maybe) `Authorization`.
pub(crate) fn check_storable(
    method: &Method,
    status: StatusCode,
    headers: &HeaderMap,
    req_cc: &CacheControl,
    authorized: bool,
    store_set_cookie: bool,
    heuristics: bool,
) -> Result<(), NotStorable> {
    if method != Method::GET {
        return Err(NotStorable::Status);
    }
    // Final, understood, and not partial content or a 304 (those update
    // stored responses, they are not stored themselves).
    if status.is_informational()
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.as_u16() >= 600
    {
        return Err(NotStorable::Status);
    }
    let cc = CacheControl::from_headers(headers).unwrap_or_default();
    if req_cc.no_store() || cc.no_store() {
        return Err(NotStorable::NoStore);
    }
    // A shared cache never stores `private` responses, even qualified
    // ones (storing them with the named fields removed is allowed but
    // gains little).
    if cc.private() {
        return Err(NotStorable::Private);
    }
    // §3.5
    if authorized && !(cc.public() || cc.s_maxage().is_some() || cc.must_revalidate()) {
        return Err(NotStorable::Authorization);
    }
    if !store_set_cookie && headers.contains_key(header::SET_COOKIE) {
        return Err(NotStorable::SetCookie);
    }
    if headers.get_all(header::VARY).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|f| f.trim_ascii() == b"*")
    }) {
        return Err(NotStorable::VaryStar);
    }
    if response_coding(headers).is_none() {
        return Err(NotStorable::UnknownCoding);
    }
    let explicit = cc.s_maxage().is_some()
        || cc.max_age().is_some()
        || headers.contains_key(header::EXPIRES)
        || cc.public();
    if !explicit && !heuristically_cacheable(status) {
        return Err(NotStorable::Status);
    }
    // Storing pays only if the response can be reused: fresh for a while,
    // servable stale, or cheap to validate.
    let has_validator =
        headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED);
    let may_be_fresh = cc.s_maxage().is_some_and(|d| !d.is_zero())
        || (cc.s_maxage().is_none() && cc.max_age().is_some_and(|d| !d.is_zero()))
        || (cc.s_maxage().is_none()
            && cc.max_age().is_none()
            && headers.contains_key(header::EXPIRES))
        || (heuristics && headers.contains_key(header::LAST_MODIFIED));
    let stale_usable = cc.stale_while_revalidate().is_some() || cc.stale_if_error().is_some();
    if cc.no_cache() && !has_validator {
        return Err(NotStorable::NoFreshness);
    }
    if !(may_be_fresh || has_validator || stale_usable) {
        return Err(NotStorable::NoFreshness);
    }
    Ok(())
}

/// Builds the fields a 304 from the cache carries (RFC 9110 §15.4.5): the
/// ones a 200 would have that describe the representation's metadata.
pub(crate) fn not_modified_headers(stored: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [
        header::CACHE_CONTROL,
        header::CONTENT_LOCATION,
        header::DATE,
        header::ETAG,
        header::EXPIRES,
        header::VARY,
        header::LAST_MODIFIED,
    ] {
        for v in stored.get_all(&name) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

/// An `Age` value in whole seconds.
pub(crate) fn age_value(age: Duration) -> HeaderValue {
    let secs = age.as_secs();
    // Most answers are younger than three hours: their value is a slice of
    // a static table, so an `Age` costs no allocation and no shared count.
    if let Some(digits) = static_digits(secs) {
        return HeaderValue::from_static(digits);
    }
    HeaderValue::from(secs)
}

/// The numbers 0 to [`STATIC_DIGITS_MAX`] written back to back.
static DIGITS: [u8; DIGITS_LEN] = digits_table();
const STATIC_DIGITS_MAX: u64 = 9_999;
const DIGITS_LEN: usize = 10 + 90 * 2 + 900 * 3 + 9_000 * 4;

const fn digits_table() -> [u8; DIGITS_LEN] {
    let mut out = [0u8; DIGITS_LEN];
    let mut n = 0u64;
    let mut at = 0usize;
    while n <= STATIC_DIGITS_MAX {
        let len = digit_count(n);
        let mut i = len;
        let mut v = n;
        while i > 0 {
            i -= 1;
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        at += len;
        n += 1;
    }
    out
}

const fn digit_count(n: u64) -> usize {
    if n < 10 {
        1
    } else if n < 100 {
        2
    } else if n < 1_000 {
        3
    } else {
        4
    }
}

/// `n` in decimal from the static table, when it is there.
fn static_digits(n: u64) -> Option<&'static str> {
    let at = match n {
        0..=9 => n,
        10..=99 => 10 + (n - 10) * 2,
        100..=999 => 190 + (n - 100) * 3,
        1_000..=STATIC_DIGITS_MAX => 2_890 + (n - 1_000) * 4,
        _ => return None,
    };
    let at = usize::try_from(at).ok()?;
    let bytes = DIGITS.get(at..at + digit_count(n))?;
    std::str::from_utf8(bytes).ok()
}

/// `Cache-Status` of a fresh hit under `name` with `ttl`, as `write` makes
/// it. It is on every hit and changes once a second at most, so each thread
/// keeps its last one and hands out clones (the thread's own allocation: no
/// count shared between threads); `write` runs only when it changes.
pub(crate) fn hit_status(
    name: &str,
    ttl: i64,
    write: impl FnOnce() -> Option<HeaderValue>,
) -> Option<HeaderValue> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(Box<str>, i64, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    let mut write = Some(write);
    let memo = LAST.try_with(|last| {
        let mut last = last.try_borrow_mut().ok()?;
        if let Some((n, t, v)) = last.as_ref() {
            if *t == ttl && **n == *name {
                return Some(v.clone());
            }
        }
        let v = write.take()?()?;
        *last = Some((name.into(), ttl, v.clone()));
        Some(v)
    });
    match (memo, write) {
        (Ok(Some(v)), _) => Some(v),
        // The thread is going away (or the memo is busy): write it afresh.
        (_, Some(write)) => write(),
        (_, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn date(secs: u64) -> String {
        HttpDate::from_unix_secs(secs).to_string()
    }

    #[test]
    fn lifetime_precedence() {
        let t = 1_000_000;
        let d = date(t);
        let e = date(t + 500);
        let f = |h: &HeaderMap| Facts::derive(StatusCode::OK, h, at(t), at(t), None).lifetime;
        let all = headers(&[
            ("cache-control", "max-age=60, s-maxage=120"),
            ("date", &d),
            ("expires", &e),
        ]);
        assert_eq!(f(&all), Duration::from_secs(120));
        let no_s = headers(&[
            ("cache-control", "max-age=60"),
            ("date", &d),
            ("expires", &e),
        ]);
        assert_eq!(f(&no_s), Duration::from_secs(60));
        let expires = headers(&[("date", &d), ("expires", &e)]);
        assert_eq!(f(&expires), Duration::from_secs(500));
        let bad = headers(&[("date", &d), ("expires", "0")]);
        assert_eq!(f(&bad), Duration::ZERO);
    }

    #[test]
    fn heuristic_only_when_enabled_and_cacheable_status() {
        let t = 1_000_000;
        let h = headers(&[("date", &date(t)), ("last-modified", &date(t - 1000))]);
        let heur = Some(Heuristic {
            fraction: 0.1,
            max: Duration::from_secs(3600),
        });
        let f = |s, heur| Facts::derive(s, &h, at(t), at(t), heur).lifetime;
        assert_eq!(f(StatusCode::OK, heur), Duration::from_secs(100));
        assert_eq!(f(StatusCode::OK, None), Duration::ZERO);
        assert_eq!(f(StatusCode::CREATED, heur), Duration::ZERO);
    }

    #[test]
    fn age_calculation() {
        // Sent at 100, received at 102, Date says 95 (origin clock behind
        // or response queued), Age: 10 from upstream.
        let h = headers(&[("date", &date(95)), ("age", "10")]);
        let facts = Facts::derive(StatusCode::OK, &h, at(100), at(102), None);
        // apparent = 7, corrected_age_value = 10 + 2 = 12 → 12.
        assert_eq!(facts.initial_age, Duration::from_secs(12));
        let stored = CachedResponse {
            status: StatusCode::OK,
            template: template(&h),
            headers: h,
            body: Bytes::new(),
            trailers: None,
            request_time: at(100),
            response_time: at(102),
            vary: VaryKey::default(),
            tags: Vec::new(),
            facts,
        };
        assert_eq!(stored.age(at(110)), Duration::from_secs(20));
    }

    #[test]
    fn storing_rules() {
        let get = Method::GET;
        let none = CacheControl::new();
        let ok =
            |h: &HeaderMap| check_storable(&get, StatusCode::OK, h, &none, false, false, false);
        assert_eq!(ok(&headers(&[("cache-control", "max-age=60")])), Ok(()));
        assert_eq!(
            ok(&headers(&[("cache-control", "max-age=60, no-store")])),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            ok(&headers(&[("cache-control", "private, max-age=60")])),
            Err(NotStorable::Private)
        );
        assert_eq!(
            ok(&headers(&[
                ("cache-control", "max-age=60"),
                ("set-cookie", "a=b")
            ])),
            Err(NotStorable::SetCookie)
        );
        assert_eq!(
            ok(&headers(&[
                ("cache-control", "max-age=60"),
                ("vary", "accept, *")
            ])),
            Err(NotStorable::VaryStar)
        );
        assert_eq!(ok(&headers(&[])), Err(NotStorable::NoFreshness));
        assert_eq!(ok(&headers(&[("etag", "\"a\"")])), Ok(()));
        // Authorization: only with public, s-maxage or must-revalidate.
        let auth =
            |h: &HeaderMap| check_storable(&get, StatusCode::OK, h, &none, true, false, false);
        assert_eq!(
            auth(&headers(&[("cache-control", "max-age=60")])),
            Err(NotStorable::Authorization)
        );
        assert_eq!(
            auth(&headers(&[("cache-control", "public, max-age=60")])),
            Ok(())
        );
        assert_eq!(auth(&headers(&[("cache-control", "s-maxage=60")])), Ok(()));
        // 201 only with explicit freshness.
        let created = |h: &HeaderMap| {
            check_storable(&get, StatusCode::CREATED, h, &none, false, false, false)
        };
        assert_eq!(
            created(&headers(&[("etag", "\"a\"")])),
            Err(NotStorable::Status)
        );
        assert_eq!(created(&headers(&[("cache-control", "max-age=5")])), Ok(()));
        // Request no-store.
        let req_ns = CacheControl::parse(b"no-store");
        assert_eq!(
            check_storable(
                &get,
                StatusCode::OK,
                &headers(&[("cache-control", "max-age=60")]),
                &req_ns,
                false,
                false,
                false
            ),
            Err(NotStorable::NoStore)
        );
    }

    #[test]
    fn hop_by_hop_fields_are_not_stored() {
        let h = headers(&[
            ("connection", "close, x-trace"),
            ("x-trace", "1"),
            ("transfer-encoding", "chunked"),
            ("etag", "\"a\""),
        ]);
        let r = CachedResponse::new(
            StatusCode::OK,
            h,
            Bytes::new(),
            None,
            (at(1), at(1)),
            VaryKey::default(),
            Vec::new(),
            None,
        );
        assert_eq!(r.headers().len(), 1);
        assert!(r.headers().contains_key("etag"));
    }

    #[test]
    fn hit_status_values() {
        let writes = std::cell::Cell::new(0);
        let status = |name: &str, ttl: i64| {
            hit_status(name, ttl, || {
                writes.set(writes.get() + 1);
                HeaderValue::from_str(&format!("{name}; hit; ttl={ttl}")).ok()
            })
        };
        // The per-thread memo answers by name and ttl, not by the last
        // call, and writes a value only when it changes.
        assert_eq!(status("a", 5).unwrap(), "a; hit; ttl=5");
        assert_eq!(status("a", 5).unwrap(), "a; hit; ttl=5");
        assert_eq!(writes.get(), 1);
        assert_eq!(status("b", 5).unwrap(), "b; hit; ttl=5");
        assert_eq!(status("b", 6).unwrap(), "b; hit; ttl=6");
        assert_eq!(status("a", 5).unwrap(), "a; hit; ttl=5");
        assert_eq!(writes.get(), 4);
        // A writer that fails is not remembered.
        assert!(hit_status("c", 1, || None).is_none());
        assert_eq!(status("c", 1).unwrap(), "c; hit; ttl=1");
    }

    #[test]
    fn templates_hold_placeholders() {
        let t = template(&headers(&[("etag", "\"a\""), ("vary", "a"), ("vary", "b")]));
        assert_eq!(t.len(), 5);
        assert_eq!(t.get_all("vary").iter().count(), 2);
        let upstream = template(&headers(&[("cache-status", "origin-cache; hit")]));
        assert_eq!(upstream.get_all("cache-status").iter().count(), 1);
    }

    #[test]
    fn age_values() {
        for n in [
            0u64, 1, 9, 10, 11, 99, 100, 101, 999, 1_000, 1_001, 9_998, 9_999, 10_000, 86_400,
        ] {
            assert_eq!(
                age_value(Duration::from_secs(n)),
                n.to_string().as_str(),
                "{n}"
            );
        }
        assert_eq!(age_value(Duration::from_secs(0)), "0");
        assert_eq!(age_value(Duration::from_millis(1999)), "1");
        assert_eq!(
            age_value(Duration::from_secs(u64::MAX)),
            "18446744073709551615"
        );
    }
}
