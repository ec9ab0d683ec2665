//! Stored responses: what the store holds of a response and how it is
//! aged, retained and freshened by a 304.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::freshness::{Facts, Rules};
use super::status::CACHE_STATUS;
use super::vary::VaryKey;
use crate::headers::HttpDate;
use crate::headers::{is_hop_by_hop, remove_hop_by_hop};

/// A digest of the content itself (RFC 9530 `Content-Digest`, RFC 1864
/// `Content-MD5`): true of one body only, not of a part or a merge.
pub(crate) fn is_content_digest(name: &HeaderName) -> bool {
    matches!(name.as_str(), "content-digest" | "content-md5")
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
    /// Built at the first hit, not when stored: a response stored and
    /// never asked for again (as many are) never pays for the copy.
    pub(crate) template: OnceLock<HeaderMap>,
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

impl CachedResponse {
    /// Builds a stored response from a header section received at
    /// `response_time` for a request sent at `request_time`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        trailers: Option<HeaderMap>,
        times: (SystemTime, SystemTime),
        vary: VaryKey,
        tags: Vec<Box<str>>,
        rules: &Rules,
    ) -> Self {
        Self::build(
            status,
            headers,
            body,
            trailers,
            times,
            (vary, tags),
            rules,
            None,
        )
    }

    /// [`new`](Self::new), given the [`Facts`] the storing decision
    /// already derived from `headers` when there are some: the fields are
    /// then not read again (unless `Connection` names fields to drop, which
    /// may change them).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build(
        status: StatusCode,
        mut headers: HeaderMap,
        body: Bytes,
        trailers: Option<HeaderMap>,
        times: (SystemTime, SystemTime),
        (vary, tags): (VaryKey, Vec<Box<str>>),
        rules: &Rules,
        facts: Option<Facts>,
    ) -> Self {
        let facts = facts.filter(|_| !headers.contains_key(header::CONNECTION));
        let (request_time, response_time) = times;
        remove_hop_by_hop(&mut headers);
        let facts = facts.unwrap_or_else(|| {
            Facts::derive(status, &headers, request_time, response_time, rules, None)
        });
        Self {
            status,
            template: OnceLock::new(),
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

    /// This response with `ttl` as its lifetime if it has no explicit
    /// freshness ([`CacheLayer::default_ttl`](super::CacheLayer::default_ttl)).
    pub(crate) fn with_default_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.facts = self.facts.with_default_ttl(self.status, ttl);
        self
    }

    /// The header section a hit starts from: the stored fields with
    /// placeholders for `Age` and `Cache-Status` (built once, at the
    /// first use).
    pub(crate) fn template(&self) -> &HeaderMap {
        self.template.get_or_init(|| template(&self.headers))
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
    /// stale window (`unreachable`: how long it may be served stale when
    /// the origin can't be reached), then (if it has validators, so a
    /// conditional request can refresh it cheaply) for `validator_grace`.
    pub(crate) fn retention(
        &self,
        now: SystemTime,
        validator_grace: Duration,
        unreachable: Duration,
    ) -> Duration {
        let remaining = self.facts.lifetime.saturating_sub(self.age(now));
        let stale = if self.facts.must_revalidate {
            Duration::ZERO
        } else {
            // Not for a response that was never fresh (`Expires: 0`,
            // `max-age=0`: origins saying "don't reuse" more often than
            // "keep for outages"), nor one that may not be served stale.
            let unreachable = if self.facts.no_cache || self.facts.lifetime.is_zero() {
                Duration::ZERO
            } else {
                unreachable
            };
            self.facts
                .stale_while_revalidate
                .unwrap_or_default()
                .max(self.facts.stale_if_error.unwrap_or_default())
                .max(unreachable)
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
            // The stored fields, and the template's copy of them with its
            // two placeholders, built or not: a weight never changes.
            + 2 * fields(&self.headers)
            + TEMPLATE_PLACEHOLDERS
            + self.trailers.as_ref().map_or(0, fields)
            + self.vary.weight()
            + self.tags.iter().map(|t| t.len() + 16).sum::<usize>()
            + 256
    }

    /// Applies the header section of a 304 that validated this response
    /// (RFC 9111 §4.3.4, §3.2), or of a 206 of it (§3.4): its fields
    /// replace the stored ones, except those that describe the content
    /// (`Content-Length`, `Content-Encoding`, `Content-Range`, the digests
    /// of the content a 206 holds part of), and the times restart.
    pub(crate) fn freshened(
        &self,
        not_modified: &HeaderMap,
        times: (SystemTime, SystemTime),
        rules: &Rules,
    ) -> Self {
        let mut headers = self.headers.clone();
        for name in not_modified.keys() {
            if is_hop_by_hop(name)
                || name == header::CONTENT_LENGTH
                || name == header::CONTENT_ENCODING
                || name == header::CONTENT_RANGE
                || name == header::TRANSFER_ENCODING
                || is_content_digest(name)
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
        let facts = Facts::derive(self.status, &headers, times.0, times.1, rules, None)
            .with_default_ttl(self.status, self.facts.default_ttl);
        Self {
            status: self.status,
            template: OnceLock::new(),
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

/// What the template's placeholders weigh ([`CachedResponse::weight`]
/// counts a field as its name, its value and 32 bytes).
const TEMPLATE_PLACEHOLDERS: usize = ("age".len() + 1 + 32) + ("cache-status".len() + 32);

/// `headers` with room for, and placeholders of, the two fields each
/// answer from the cache sets. A `Cache-Status` from an upstream cache
/// stays (this cache appends its own after it); no placeholder then.
pub(super) fn template(headers: &HeaderMap) -> HeaderMap {
    // A clone copies the table as it is: no name hashed again.
    let mut t = headers.clone();
    t.reserve(2);
    t.insert(header::AGE, HeaderValue::from_static("0"));
    if !t.contains_key(&CACHE_STATUS) {
        t.insert(CACHE_STATUS.clone(), HeaderValue::from_static(""));
    }
    t
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// The storing decision's facts are reused only while they are the
    /// stored fields' facts: a field `Connection` names is dropped before
    /// storing, and freshness is read from what is left.
    #[test]
    fn a_policy_is_not_reused_for_fields_connection_drops() {
        let now = SystemTime::now();
        let build = |pairs: &[(&str, &str)]| {
            let h = headers(pairs);
            let policy = super::super::storable::policy(&h, &[]);
            let facts = Facts::derive(
                StatusCode::OK,
                &h,
                now,
                now,
                &Rules::default(),
                Some(&policy),
            );
            CachedResponse::build(
                StatusCode::OK,
                h,
                Bytes::new(),
                None,
                (now, now),
                (VaryKey::default(), Vec::new()),
                &Rules::default(),
                Some(facts),
            )
        };
        let kept = build(&[("cache-control", "max-age=600")]);
        assert_eq!(kept.facts.lifetime, Duration::from_secs(600));
        let dropped = build(&[
            ("cache-control", "max-age=600"),
            ("connection", "cache-control"),
        ]);
        assert!(dropped.headers().get("cache-control").is_none());
        assert_eq!(dropped.facts.lifetime, Duration::ZERO);
    }

    pub(crate) fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    pub(crate) fn date(secs: u64) -> String {
        HttpDate::from_unix_secs(secs).to_string()
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
            &Default::default(),
        );
        assert_eq!(r.headers().len(), 1);
        assert!(r.headers().contains_key("etag"));
    }

    #[test]
    fn templates_hold_placeholders() {
        let t = template(&headers(&[("etag", "\"a\""), ("vary", "a"), ("vary", "b")]));
        assert_eq!(t.len(), 5);
        assert_eq!(t.get_all("vary").iter().count(), 2);
        let upstream = template(&headers(&[("cache-status", "origin-cache; hit")]));
        assert_eq!(upstream.get_all("cache-status").iter().count(), 1);
    }

    /// The template is built at the first use, not when the response is
    /// stored, and the weight the store keeps does not change when it is.
    #[test]
    fn the_template_waits_for_its_first_use_and_weighs_the_same() {
        let r = CachedResponse::new(
            StatusCode::OK,
            headers(&[("etag", "\"a\""), ("content-type", "text/plain")]),
            Bytes::from_static(b"hello"),
            None,
            (at(1), at(1)),
            VaryKey::default(),
            Vec::new(),
            &Default::default(),
        );
        let before = r.weight();
        assert!(r.template.get().is_none(), "not built when stored");
        assert_eq!(r.template().len(), 4);
        assert!(r.template.get().is_some());
        assert_eq!(r.weight(), before);
        // The weight counts the template as it is built: the fields again
        // and the two placeholders.
        let fields = |h: &HeaderMap| {
            h.iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 32)
                .sum::<usize>()
        };
        assert_eq!(
            fields(r.template()),
            fields(r.headers()) + TEMPLATE_PLACEHOLDERS
        );
    }

    /// Retention: fresh time, then the longest stale window (the window
    /// for an unreachable origin only for responses that were fresh and
    /// may be served stale), or the validator grace.
    #[test]
    fn retention_keeps_what_may_still_be_served() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let day = Duration::from_secs(86_400);
        let keep = |fields: &[(&str, &str)]| {
            CachedResponse::new(
                StatusCode::OK,
                headers(fields),
                Bytes::new(),
                None,
                (now, now),
                VaryKey::default(),
                Vec::new(),
                &Default::default(),
            )
            .retention(now, hour, day)
        };
        let minute = Duration::from_secs(60);
        assert_eq!(keep(&[("cache-control", "max-age=60")]), minute + day);
        assert_eq!(
            keep(&[("cache-control", "max-age=60, must-revalidate")]),
            minute
        );
        assert_eq!(
            keep(&[("cache-control", "max-age=60, s-maxage=60")]),
            minute
        );
        assert_eq!(keep(&[("cache-control", "no-cache, max-age=60")]), minute);
        assert_eq!(keep(&[("expires", "0")]), Duration::ZERO, "never fresh");
        assert_eq!(
            keep(&[("cache-control", "max-age=0"), ("etag", "\"a\"")]),
            hour,
            "validator grace"
        );
    }
}
