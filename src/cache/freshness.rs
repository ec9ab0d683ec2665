//! Freshness (RFC 9111 §4.2, RFC 5861): what a GET or HEAD gets from what
//! the store holds.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderName};

use http::StatusCode;
use http::header;

use super::entry::CachedResponse;
use super::range::{Ranged, Segment};
use super::service::Shared;
use super::storable::{StoredCoding, heuristically_cacheable, response_coding};
use super::store::Variants;
use super::vary::RequestVary;
use crate::headers::{CacheControl, EntityTag, HttpDate};

/// What to do with a GET or HEAD, given what the store holds.
pub(super) enum Decision {
    /// Serve this fresh response.
    Fresh(Arc<CachedResponse>),
    /// Serve this stale response: the client's `max-stale` allows it.
    MaxStale(Arc<CachedResponse>),
    /// Serve this stale response now and refresh it in the background.
    WhileRevalidate(Arc<CachedResponse>),
    /// Validate this stored response with the origin first.
    Validate(Arc<CachedResponse>),
    /// Nothing usable stored (`vary_miss`: the URL is stored, not for
    /// this request's Vary values; `alone`: the request fetches a variant
    /// of its own, so it neither leads nor joins the URL's shared fetch).
    /// `partial`: what is stored is a part that doesn't answer this
    /// request (RFC 9211's `fwd=partial`).
    Miss {
        vary_miss: bool,
        alone: bool,
        partial: bool,
    },
    /// `only-if-cached` and nothing usable: 504.
    OnlyIfCached,
}

impl Shared {
    pub(super) fn decide(
        &self,
        req: &HeaderMap,
        req_cc: &CacheControl,
        variants: Option<&Variants>,
        now: SystemTime,
        range: Option<&Ranged>,
    ) -> Decision {
        let request = RequestVary::new(req, &self.config.encodings);
        let entry = variants.and_then(|vs| request.select(vs).cloned());
        let Some(e) = entry else {
            if req_cc.only_if_cached() {
                return Decision::OnlyIfCached;
            }
            return Decision::Miss {
                vary_miss: variants.is_some(),
                alone: false,
                partial: false,
            };
        };
        if e.status != StatusCode::PARTIAL_CONTENT {
            return self.decide_entry(e, req_cc, &request, now);
        }
        // A stored 206 answers only a range it holds, and only while
        // fresh (or within the client's max-stale); it is never validated:
        // a request it can't answer fetches what it asked for, which may
        // then combine with the part.
        if range.is_some_and(|r| r.answerable_from(&e)) {
            let d = self.decide_entry(e, req_cc, &request, now);
            if matches!(d, Decision::Fresh(_) | Decision::MaxStale(_)) {
                return d;
            }
        }
        if req_cc.only_if_cached() {
            return Decision::OnlyIfCached;
        }
        Decision::Miss {
            vary_miss: false,
            alone: false,
            partial: true,
        }
    }

    /// [`decide`](Self::decide) once `e` is the variant for the request.
    fn decide_entry(
        &self,
        e: Arc<CachedResponse>,
        req_cc: &CacheControl,
        request: &RequestVary<'_>,
        now: SystemTime,
    ) -> Decision {
        // A request with implicit fields its variant lacks may be served
        // it fresh, never go to the origin on its behalf (see
        // `VaryKey::lacks_implicit_of`): it fetches a variant of its own.
        let own_fetch = |e: &CachedResponse| {
            e.vary
                .lacks_implicit_of(request, &self.config.implicit_vary)
        };
        let age = e.age(now);
        let life = e.facts.lifetime;
        let request_allows = req_cc.max_age().is_none_or(|m| age <= m)
            && req_cc
                .min_fresh()
                .is_none_or(|mf| life.saturating_sub(age) >= mf);
        if !e.facts.no_cache && !req_cc.no_cache() && request_allows {
            if age < life {
                return Decision::Fresh(e);
            }
            let staleness = age - life;
            if !e.facts.must_revalidate {
                let within = |w: Duration| staleness <= w;
                match req_cc.max_stale() {
                    Some(crate::headers::MaxStale::Any) => return Decision::MaxStale(e),
                    Some(crate::headers::MaxStale::Limit(l)) if within(l) => {
                        return Decision::MaxStale(e);
                    }
                    _ => {}
                }
                if e.facts.stale_while_revalidate.is_some_and(within) && !own_fetch(&e) {
                    return Decision::WhileRevalidate(e);
                }
            }
        }
        if req_cc.only_if_cached() {
            return Decision::OnlyIfCached;
        }
        if own_fetch(&e) {
            return Decision::Miss {
                vary_miss: true,
                alone: true,
                partial: false,
            };
        }
        Decision::Validate(e)
    }

    /// Whether `e` may be served because the origin failed (RFC 5861 §4).
    pub(super) fn stale_if_error(
        &self,
        e: &CachedResponse,
        req_cc: &CacheControl,
        now: SystemTime,
    ) -> bool {
        if e.facts.must_revalidate || e.facts.no_cache {
            return false;
        }
        let staleness = e.age(now).saturating_sub(e.facts.lifetime);
        let window = e
            .facts
            .stale_if_error
            .into_iter()
            .chain(req_cc.stale_if_error())
            .max();
        window.is_some_and(|w| staleness <= w)
    }

    /// Whether `e` may be served because the origin can't be reached (RFC
    /// 9111 §4.2.4), within [`CacheLayer::stale_if_unreachable`]: never
    /// against `must-revalidate`, `proxy-revalidate`, `s-maxage` or
    /// `no-cache` in the response, nor to a request that said it wants no
    /// stored response unvalidated (`no-cache`, §5.2.1.4) or none older
    /// than its `max-age` without allowing `max-stale` (§5.2.1.1).
    ///
    /// [`CacheLayer::stale_if_unreachable`]: super::CacheLayer::stale_if_unreachable
    pub(super) fn stale_if_unreachable(
        &self,
        e: &CachedResponse,
        req_cc: &CacheControl,
        now: SystemTime,
    ) -> bool {
        let window = self.config.stale_if_unreachable;
        let age = e.age(now);
        let too_old_for_client = req_cc
            .max_age()
            .is_some_and(|max| age > max && req_cc.max_stale().is_none());
        !(e.facts.must_revalidate
            || e.facts.no_cache
            || window.is_zero()
            || req_cc.no_cache()
            || too_old_for_client)
            && age.saturating_sub(e.facts.lifetime) <= window
    }
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
    pub(crate) coding: Option<StoredCoding>,
    /// `Last-Modified` is a strong validator: `Date` is at least a
    /// second later (RFC 9110 §8.8.2.2).
    pub(crate) last_modified_strong: bool,
    /// The lifetime came from [`CacheLayer::default_ttl`](super::CacheLayer::default_ttl)
    /// (kept when a 304 freshens the response).
    pub(crate) default_ttl: Option<Duration>,
    /// `s-maxage`, `max-age` or `Expires` (of the directives obeyed) gave
    /// the lifetime.
    pub(crate) explicit: bool,
    /// A stored 206: the bytes it holds of the whole (`None` for any
    /// other status, or a 206 without one `Content-Range` of a known
    /// length, which no request is served).
    pub(crate) partial: Option<Segment>,
}

/// The `Age` a response arrived with (RFC 9111 §5.1): delta-seconds,
/// from the first member when the field is a list (`7200, 0`, as some
/// caches chain it) or has several lines; a value too large for the
/// clock counts as 2^31 seconds (§1.2.2); absent or invalid, 0.
fn age_value(headers: &HeaderMap) -> Duration {
    let Some(first) = headers.get(header::AGE) else {
        return Duration::ZERO;
    };
    let member = first
        .as_bytes()
        .split(|&b| b == b',')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if member.is_empty() || !member.iter().all(u8::is_ascii_digit) {
        return Duration::ZERO;
    }
    let secs = std::str::from_utf8(member)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(MAX_DELTA, |n| n.min(MAX_DELTA));
    Duration::from_secs(secs)
}

/// The largest delta-seconds a cache needs to represent (RFC 9111 §1.2.2).
const MAX_DELTA: u64 = 1 << 31;

/// What the layer's configuration adds to reading a response's
/// freshness: heuristic freshness, and the targeted fields (RFC 9213) that
/// replace `Cache-Control` and `Expires` for this cache.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Rules {
    pub(crate) heuristic: Option<Heuristic>,
    pub(crate) targets: Vec<HeaderName>,
}

/// Heuristic freshness (RFC 9111 §4.2.2): a fraction of the time since
/// `Last-Modified`, capped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Heuristic {
    pub(crate) fraction: f64,
    pub(crate) max: Duration,
}

impl Facts {
    /// Whether the response could be reused only after validating it:
    /// `no-cache`, or no freshness lifetime and no stale window it may be
    /// served in (RFC 9111 §4.2.4, §4.3; RFC 5861).
    pub(crate) fn validated_on_every_use(&self) -> bool {
        let window = |w: Option<Duration>| w.is_some_and(|d| !d.is_zero());
        let stale_usable = !self.must_revalidate
            && (window(self.stale_while_revalidate) || window(self.stale_if_error));
        self.no_cache || (self.lifetime.is_zero() && !stale_usable)
    }

    /// These facts with `ttl` as the lifetime when the response has no
    /// explicit freshness, a status cacheable without it, and no
    /// `no-cache` ([`CacheLayer::default_ttl`](super::CacheLayer::default_ttl)).
    pub(crate) fn with_default_ttl(mut self, status: StatusCode, ttl: Option<Duration>) -> Self {
        if let Some(ttl) = ttl {
            if !self.explicit && !self.no_cache && heuristically_cacheable(status) {
                self.lifetime = ttl;
                self.default_ttl = Some(ttl);
            }
        }
        self
    }

    /// The facts of a response: `parsed` is the [`Policy`](super::storable::Policy)
    /// the storing decision already read from `headers`, if any (the
    /// field is then parsed once per response).
    pub(crate) fn derive(
        status: StatusCode,
        headers: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
        rules: &Rules,
        parsed: Option<&super::storable::Policy>,
    ) -> Self {
        let read;
        let policy = match parsed {
            Some(p) => p,
            None => {
                read = super::storable::policy(headers, &rules.targets);
                &read
            }
        };
        let cc = &policy.cc;
        let date = HttpDate::from_headers(headers, &header::DATE)
            .and_then(Result::ok)
            .map(HttpDate::to_system_time);
        let date_value = date.unwrap_or(response_time);
        let last_modified =
            HttpDate::from_headers(headers, &header::LAST_MODIFIED).and_then(Result::ok);

        // §4.2.1: s-maxage, then max-age, then Expires - Date, then a
        // heuristic.
        let expires = headers.get(header::EXPIRES).filter(|_| !policy.targeted);
        let explicit = cc.s_maxage().is_some() || cc.max_age().is_some() || expires.is_some();
        let lifetime = if let Some(s) = cc.s_maxage() {
            s
        } else if let Some(m) = cc.max_age() {
            m
        } else if let Some(expires) = expires {
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
            rules.heuristic,
            last_modified,
            (heuristically_cacheable(status) || status == StatusCode::PARTIAL_CONTENT)
                && !cc.no_cache(),
        ) {
            let since = date_value
                .duration_since(lm.to_system_time())
                .unwrap_or_default();
            since.mul_f64(h.fraction).min(h.max)
        } else {
            Duration::ZERO
        };

        // §4.2.3
        let age_value = age_value(headers);
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
            // Both fields already read above.
            last_modified_strong: super::range::last_modified_strong(date, last_modified),
            default_ttl: None,
            explicit,
            partial: if status == StatusCode::PARTIAL_CONTENT {
                Segment::of(headers)
            } else {
                None
            },
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::tests::{at, date, headers};
    use crate::cache::vary::VaryKey;
    use bytes::Bytes;
    use http::StatusCode;

    /// What `store_validated(false)` leaves out, read from the same facts
    /// freshness uses: only what could be reused after validation alone.
    #[test]
    fn what_could_be_reused_only_after_validation() {
        let (d, later, earlier) = (date(1_000), date(2_000), date(500));
        let only_validated = |fields: &[(&str, &str)], heuristic: bool, default_ttl: bool| {
            let h = headers(fields);
            let rules = Rules {
                heuristic: heuristic.then_some(Heuristic {
                    fraction: 0.1,
                    max: Duration::from_secs(86_400),
                }),
                ..Rules::default()
            };
            let ttl = default_ttl.then_some(Duration::from_secs(60));
            Facts::derive(StatusCode::OK, &h, at(1_000), at(1_000), &rules, None)
                .with_default_ttl(StatusCode::OK, ttl)
                .validated_on_every_use()
        };
        let cc = |v| [("cache-control", v), ("date", d.as_str())];
        for v in [
            "no-cache",
            "no-cache, max-age=60",
            "max-age=0",
            "s-maxage=0, max-age=60",
            "max-age=0, stale-while-revalidate=0",
            "max-age=0, must-revalidate, stale-while-revalidate=60",
            "s-maxage=0, stale-if-error=60",
        ] {
            assert!(only_validated(&cc(v), false, false), "{v}");
        }
        for v in [
            "max-age=60",
            "s-maxage=60, max-age=0",
            "max-age=0, stale-while-revalidate=60",
            "max-age=0, stale-if-error=60",
        ] {
            assert!(!only_validated(&cc(v), false, false), "{v}");
        }
        for (e, validated) in [
            (later.as_str(), false),
            (earlier.as_str(), true),
            ("0", true),
        ] {
            let f = [("date", d.as_str()), ("expires", e)];
            assert_eq!(only_validated(&f, false, false), validated, "Expires {e}");
        }
        // Without `Date`, `Expires` counts from when the response came
        // (the copy this replaced called any such `Expires` fresh).
        assert!(only_validated(
            &[("expires", earlier.as_str())],
            false,
            false
        ));
        assert!(!only_validated(
            &[("expires", later.as_str())],
            false,
            false
        ));
        let lm = [("date", d.as_str()), ("last-modified", earlier.as_str())];
        assert!(only_validated(&lm, false, false), "no heuristic");
        assert!(!only_validated(&lm, true, false), "heuristic");
        assert!(!only_validated(&lm, false, true), "default TTL");
        // A heuristic over no time since Last-Modified gives no lifetime.
        let lm_now = [("date", d.as_str()), ("last-modified", d.as_str())];
        assert!(only_validated(&lm_now, true, false), "Last-Modified = Date");
        let lm0 = [
            ("cache-control", "max-age=0"),
            ("last-modified", earlier.as_str()),
        ];
        assert!(only_validated(&lm0, true, true), "explicit zero wins");
    }

    #[test]
    fn lifetime_precedence() {
        let t = 1_000_000;
        let d = date(t);
        let e = date(t + 500);
        let f = |h: &HeaderMap| {
            Facts::derive(StatusCode::OK, h, at(t), at(t), &Rules::default(), None).lifetime
        };
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
        let f = |s, heur| {
            Facts::derive(
                s,
                &h,
                at(t),
                at(t),
                &Rules {
                    heuristic: heur,
                    ..Rules::default()
                },
                None,
            )
            .lifetime
        };
        assert_eq!(f(StatusCode::OK, heur), Duration::from_secs(100));
        assert_eq!(f(StatusCode::OK, None), Duration::ZERO);
        assert_eq!(f(StatusCode::CREATED, heur), Duration::ZERO);
    }

    #[test]
    fn age_calculation() {
        // Sent at 100, received at 102, Date says 95 (origin clock behind
        // or response queued), Age: 10 from upstream.
        let h = headers(&[("date", &date(95)), ("age", "10")]);
        let facts = Facts::derive(
            StatusCode::OK,
            &h,
            at(100),
            at(102),
            &Rules::default(),
            None,
        );
        // apparent = 7, corrected_age_value = 10 + 2 = 12 → 12.
        assert_eq!(facts.initial_age, Duration::from_secs(12));
        let stored = CachedResponse {
            status: StatusCode::OK,
            template: Default::default(),
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

    /// RFC 9111 §5.1 and §1.2.2: the first member of a list, overflow as
    /// 2^31, anything else 0.
    #[test]
    fn age_values_as_rfc_9111_reads_them() {
        for (value, secs) in [
            ("7200, 0", 7200),
            (" 30 ", 30),
            ("0", 0),
            ("99999999999999999999999", 1 << 31),
            ("3000000000", 1 << 31),
            ("-5", 0),
            ("1.5", 0),
            ("abc, 10", 0),
            ("", 0),
        ] {
            assert_eq!(
                age_value(&headers(&[("age", value)])),
                Duration::from_secs(secs),
                "{value:?}"
            );
        }
        // Several lines: the first.
        let h = headers(&[("age", "60"), ("age", "5")]);
        assert_eq!(age_value(&h), Duration::from_secs(60));
        assert_eq!(age_value(&HeaderMap::new()), Duration::ZERO);
    }

    /// The shared state of a cache with the default settings.
    fn shared() -> Arc<Shared> {
        let svc = crate::cache::Cache::new(());
        svc.shared
    }

    /// One stored response received at `at(T)` with these fields (and a
    /// `Date` of then), as the store would hand it over.
    fn stored(fields: &[(&str, &str)]) -> Variants {
        let d = date(T);
        let mut h = headers(fields);
        h.insert(http::header::DATE, d.parse().unwrap());
        let e = CachedResponse::new(
            StatusCode::OK,
            h,
            Bytes::from_static(b"body"),
            None,
            (at(T), at(T)),
            VaryKey::default(),
            Vec::new(),
            &Default::default(),
        );
        Arc::from(vec![Arc::new(e)])
    }

    const T: u64 = 1_000_000;

    /// What `decide` answers, as a name (`Decision` holds the entry).
    fn decision(
        variants: Option<&Variants>,
        request: &[(&str, &str)],
        secs_later: u64,
    ) -> &'static str {
        let req = headers(request);
        let cc = crate::cache::request::RequestFields::read(&req).directives;
        match shared().decide(&req, &cc, variants, at(T + secs_later), None) {
            Decision::Fresh(_) => "fresh",
            Decision::MaxStale(_) => "max-stale",
            Decision::WhileRevalidate(_) => "while-revalidate",
            Decision::Validate(_) => "validate",
            Decision::Miss {
                vary_miss: false, ..
            } => "miss",
            Decision::Miss {
                vary_miss: true, ..
            } => "vary-miss",
            Decision::OnlyIfCached => "only-if-cached",
        }
    }

    #[test]
    fn fresh_stale_and_what_the_client_asks() {
        let v = stored(&[("cache-control", "max-age=60")]);
        let v = Some(&v);
        assert_eq!(decision(v, &[], 10), "fresh");
        assert_eq!(decision(v, &[], 60), "validate", "age == lifetime is stale");
        assert_eq!(decision(v, &[], 70), "validate");
        // RFC 9111 §5.2.1: the request's own limits.
        let any = [("cache-control", "max-stale")];
        assert_eq!(decision(v, &any, 70), "max-stale");
        let five = [("cache-control", "max-stale=5")];
        assert_eq!(decision(v, &five, 70), "validate", "10 s stale");
        assert_eq!(decision(v, &five, 64), "max-stale");
        let young = [("cache-control", "max-age=5")];
        assert_eq!(decision(v, &young, 10), "validate");
        let min_fresh = [("cache-control", "min-fresh=55")];
        assert_eq!(decision(v, &min_fresh, 10), "validate", "50 s left");
        assert_eq!(decision(v, &min_fresh, 5), "fresh");
        let no_cache = [("cache-control", "no-cache")];
        assert_eq!(decision(v, &no_cache, 10), "validate");
        assert_eq!(decision(v, &[("pragma", "no-cache")], 10), "validate");
        let both = [("pragma", "no-cache"), ("cache-control", "max-stale")];
        assert_eq!(
            decision(v, &both, 10),
            "fresh",
            "Pragma only without Cache-Control"
        );
        let only = [("cache-control", "only-if-cached")];
        assert_eq!(decision(v, &only, 10), "fresh");
        assert_eq!(decision(v, &only, 70), "only-if-cached");
        // Nothing stored.
        assert_eq!(decision(None, &[], 0), "miss");
        assert_eq!(decision(None, &only, 0), "only-if-cached");
    }

    #[test]
    fn stale_windows_and_what_forbids_them() {
        let v = stored(&[("cache-control", "max-age=10, stale-while-revalidate=30")]);
        let v = Some(&v);
        assert_eq!(decision(v, &[], 20), "while-revalidate");
        assert_eq!(decision(v, &[], 40), "while-revalidate", "30 s stale");
        assert_eq!(decision(v, &[], 41), "validate");
        let must = stored(&[(
            "cache-control",
            "max-age=10, must-revalidate, stale-while-revalidate=30",
        )]);
        let must = Some(&must);
        assert_eq!(decision(must, &[], 20), "validate");
        let any = [("cache-control", "max-stale")];
        assert_eq!(decision(must, &any, 20), "validate", "never served stale");
        let s_maxage = stored(&[("cache-control", "s-maxage=10")]);
        assert_eq!(decision(Some(&s_maxage), &any, 20), "validate");
        let no_cache = stored(&[("cache-control", "no-cache"), ("etag", "\"a\"")]);
        assert_eq!(decision(Some(&no_cache), &[], 0), "validate");
    }

    #[test]
    fn a_variant_for_other_request_fields_is_a_vary_miss() {
        let shared = shared();
        let request = headers(&[("accept-language", "fr")]);
        let enc = &shared.config.encodings;
        let vary = VaryKey::build(
            &headers(&[("vary", "accept-language")]),
            &RequestVary::new(&request, enc),
            &shared.config.implicit_vary,
        )
        .unwrap();
        let e = CachedResponse::new(
            StatusCode::OK,
            headers(&[("cache-control", "max-age=60"), ("vary", "accept-language")]),
            Bytes::new(),
            None,
            (at(T), at(T)),
            vary,
            Vec::new(),
            &Default::default(),
        );
        let v: Variants = Arc::from(vec![Arc::new(e)]);
        assert_eq!(decision(Some(&v), &[("accept-language", "fr")], 1), "fresh");
        assert_eq!(
            decision(Some(&v), &[("accept-language", "de")], 1),
            "vary-miss"
        );
    }

    #[test]
    fn stale_if_error_windows() {
        let shared = shared();
        let none = CacheControl::new();
        let v = stored(&[("cache-control", "max-age=10, stale-if-error=30")]);
        let e = &v[0];
        assert!(shared.stale_if_error(e, &none, at(T + 40)));
        assert!(!shared.stale_if_error(e, &none, at(T + 41)));
        // The client may widen the window (RFC 5861 §4).
        let wider = CacheControl::parse(b"stale-if-error=60");
        assert!(shared.stale_if_error(e, &wider, at(T + 70)));
        let plain = stored(&[("cache-control", "max-age=10")]);
        assert!(!shared.stale_if_error(&plain[0], &none, at(T + 11)));
        assert!(shared.stale_if_error(&plain[0], &wider, at(T + 11)));
        let must = stored(&[(
            "cache-control",
            "max-age=10, must-revalidate, stale-if-error=30",
        )]);
        assert!(!shared.stale_if_error(&must[0], &wider, at(T + 11)));
    }
}
