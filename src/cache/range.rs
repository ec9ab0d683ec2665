//! Byte ranges from the cache (RFC 9110 §14, RFC 9111 §3.3–3.4): a range
//! of a stored response served as 206 (or 416), 206 responses stored and
//! combined into the complete one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

use super::entry::{CachedResponse, is_content_digest};
use super::freshness::Rules;
use super::key::CacheKey;
use super::service::Shared;
use crate::headers::{ByteRangeSpec, ByteRanges, ContentRange, EntityTag, HttpDate, IfRange};

/// The bytes a stored 206 holds of the complete representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) complete: u64,
}

impl Segment {
    /// The segment a 206's single `Content-Range` names, when it names
    /// the complete length; `None` otherwise (a `multipart/byteranges`
    /// answer has none).
    pub(crate) fn of(headers: &HeaderMap) -> Option<Self> {
        match ContentRange::from_headers(headers)? {
            Ok(ContentRange::Bytes {
                first,
                last,
                complete: Some(complete),
            }) => Some(Self {
                first,
                last,
                complete,
            }),
            _ => None,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    fn is_whole(&self) -> bool {
        self.first == 0 && self.last + 1 == self.complete
    }
}

/// What a GET's `Range` asks of the cache.
#[derive(Debug)]
pub(super) enum RangeRead {
    /// One range: served from a stored response when it can be.
    One(Ranged),
    /// Several: the whole representation answers (documented in the
    /// module docs), so the request goes on without `Range`.
    Several,
    /// Invalid, of another unit or on several lines: the origin decides.
    Invalid,
}

/// A GET's one range and its `If-Range`.
#[derive(Debug, Clone)]
pub(crate) struct Ranged {
    spec: ByteRangeSpec,
    /// `Some(None)`: an `If-Range` that is no validator (never holds).
    if_range: Option<Option<IfRange>>,
}

impl Ranged {
    pub(super) fn read(headers: &HeaderMap) -> RangeRead {
        let ranges = match ByteRanges::from_headers(headers) {
            Some(Ok(r)) => r,
            _ => return RangeRead::Invalid,
        };
        if ranges.is_several() {
            return RangeRead::Several;
        }
        let mut lines = headers.get_all(header::IF_RANGE).iter();
        let if_range = lines.next().map(|v| {
            // An If-Range is a single value; several lines name nothing.
            (lines.next().is_none())
                .then(|| IfRange::parse(v.as_bytes()).ok())
                .flatten()
        });
        RangeRead::One(Self {
            spec: ranges.first(),
            if_range,
        })
    }

    /// Whether `If-Range` (if any) lets the range apply to `e` (RFC 9110
    /// §13.1.5: otherwise the whole representation answers).
    fn applies(&self, e: &CachedResponse) -> bool {
        match &self.if_range {
            None => true,
            Some(None) => false,
            Some(Some(c)) => c.holds(
                e.facts.etag.as_ref(),
                e.facts.last_modified,
                e.facts.last_modified_strong,
            ),
        }
    }

    /// Whether the stored 206 `e` answers this range: `If-Range` holds
    /// and the range lies in its bytes (or is unsatisfiable: its
    /// `Content-Range` gave the complete length).
    pub(super) fn answerable_from(&self, e: &CachedResponse) -> bool {
        let Some(s) = e.facts.partial else {
            return false;
        };
        self.applies(e)
            && self
                .spec
                .resolve(s.complete)
                .is_none_or(|r| *r.start() >= s.first && *r.end() <= s.last)
    }
}

/// The answer to `range` from `e`: 206 with the bytes, or 416 with the
/// complete length, as status, fields (without `Age` and `Cache-Status`,
/// which the caller sets) and body. `None` when the whole representation
/// answers: a stored status other than 200 (RFC 9110 §14.2: a range
/// applies only where the answer would be 200), or an `If-Range` that
/// does not hold.
pub(super) fn answer(range: &Ranged, e: &CachedResponse) -> Option<(StatusCode, HeaderMap, Bytes)> {
    let (first, complete) = match e.facts.partial {
        Some(s) if e.status == StatusCode::PARTIAL_CONTENT => (s.first, s.complete),
        None if e.status == StatusCode::OK => (0, e.body.len() as u64),
        _ => return None,
    };
    if !range.applies(e) {
        return None;
    }
    // RFC 9110 §14.1.1: of an empty representation a non-zero suffix is
    // satisfiable, but no 206 can carry zero bytes: the whole (empty) 200.
    if complete == 0 && matches!(range.spec, ByteRangeSpec::Suffix(n) if n > 0) {
        return None;
    }
    let Some(r) = range.spec.resolve(complete) else {
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(
            header::CONTENT_RANGE,
            ContentRange::Unsatisfied(complete).to_header_value(),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        return Some((StatusCode::RANGE_NOT_SATISFIABLE, headers, Bytes::new()));
    };
    let (start, end) = (*r.start(), *r.end());
    // Offsets in the stored body; a body shorter than its Content-Range
    // says (a corrupt store) answers nothing rather than panic.
    let from = usize::try_from(start.checked_sub(first)?).ok()?;
    let to = usize::try_from(end.checked_sub(first)?).ok()?;
    if to >= e.body.len() {
        return None;
    }
    let body = e.body.slice(from..=to);
    let mut headers = e.template().clone();
    // They describe the whole body, not this part.
    headers.remove("content-digest");
    headers.remove("content-md5");
    headers.insert(
        header::CONTENT_RANGE,
        ContentRange::Bytes {
            first: start,
            last: end,
            complete: Some(complete),
        }
        .to_header_value(),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Some((StatusCode::PARTIAL_CONTENT, headers, body))
}

/// The segment of a 206 the cache may store to combine later (RFC 9111
/// §3.4): one range of a known complete length, no larger than
/// `max_entry_size`, with a strong validator (a strong `ETag`, or a
/// `Last-Modified` at least a second before `Date`, RFC 9110 §8.8.2.2),
/// since only responses with the same strong validator may be combined.
pub(super) fn storable_part(headers: &HeaderMap, max_entry_size: usize) -> Option<Segment> {
    let s = Segment::of(headers)?;
    if s.len() > max_entry_size as u64 {
        return None;
    }
    let strong = match EntityTag::from_headers(headers) {
        Some(t) => !t.is_weak(),
        None => {
            let date = |name| HttpDate::from_headers(headers, name).and_then(Result::ok);
            last_modified_strong(
                date(&header::DATE).map(HttpDate::to_system_time),
                date(&header::LAST_MODIFIED),
            )
        }
    };
    strong.then_some(s)
}

/// Whether `Last-Modified` is a strong validator for a cache (RFC 9110
/// §8.8.2.2): the response's `Date` is at least a second later.
pub(super) fn last_modified_strong(
    date: Option<SystemTime>,
    last_modified: Option<HttpDate>,
) -> bool {
    match (date, last_modified) {
        (Some(d), Some(lm)) => d >= lm.to_system_time() + Duration::from_secs(1),
        _ => false,
    }
}

/// Whether `a` and `b` are the same representation by their strong
/// validators (RFC 9111 §3.4), in the same coding.
fn same_representation(a: &CachedResponse, b: &CachedResponse) -> bool {
    let validators = match (&a.facts.etag, &b.facts.etag) {
        (Some(x), Some(y)) => x.strong_eq(y),
        (None, None) => {
            a.facts.last_modified_strong
                && b.facts.last_modified_strong
                && a.facts.last_modified.is_some()
                && a.facts.last_modified == b.facts.last_modified
        }
        _ => false,
    };
    validators && a.facts.coding == b.facts.coding
}

/// What the store keeps when the 206 `new` arrives and `stored` is the
/// variant it holds for the same `Vary` values (RFC 9111 §3.4):
///
/// - a complete response of the same representation: that response, its
///   fields replaced by the 206's (but `Content-Range` and the length);
/// - a stored 206 of the same representation whose bytes meet or overlap
///   the new ones: one 206 with both (the new fields), or the complete
///   200 once they cover it all, within `max_entry_size`;
/// - otherwise the new 206 (a newer representation, or bytes apart from
///   the stored ones: a partial entry keeps one run of bytes), as a 200
///   if it covers everything; but `None` (keep what is stored) when the
///   stored response of another representation is the newer one (a slow
///   206 finishing after a new 200 was stored).
pub(super) fn combine(
    stored: Option<&CachedResponse>,
    new: CachedResponse,
    rules: &Rules,
    max_entry_size: usize,
) -> Option<CachedResponse> {
    let Some(seg) = new.facts.partial else {
        return Some(new);
    };
    let Some(old) = stored.filter(|old| same_representation(old, &new)) else {
        if stored.is_some_and(|old| old.response_time > new.response_time) {
            return None;
        }
        return Some(whole_if_complete(new, seg, rules));
    };
    if old.status == StatusCode::OK && old.body.len() as u64 == seg.complete {
        let times = (new.request_time, new.response_time);
        return Some(old.freshened(&new.headers, times, rules));
    }
    let Some(o) = old.facts.partial.filter(|o| {
        o.complete == seg.complete
            && old.status == StatusCode::PARTIAL_CONTENT
            && old.body.len() as u64 == o.len()
            && new.body.len() as u64 == seg.len()
    }) else {
        return Some(whole_if_complete(new, seg, rules));
    };
    if o.first <= seg.first && seg.last <= o.last {
        // Nothing new: the stored bytes, with the new fields.
        let body = old.body.clone();
        return Some(rebuild(new, o, body, rules));
    }
    let apart = seg.first > o.last.saturating_add(1) || o.first > seg.last.saturating_add(1);
    let merged = Segment {
        first: o.first.min(seg.first),
        last: o.last.max(seg.last),
        complete: seg.complete,
    };
    if apart || merged.len() > max_entry_size as u64 {
        return Some(whole_if_complete(new, seg, rules));
    }
    // The earlier-starting one, then what the other has past its end.
    let ((lead, ls), (tail, ts)) = if o.first <= seg.first {
        ((&old.body, o), (&new.body, seg))
    } else {
        ((&new.body, seg), (&old.body, o))
    };
    let mut body = BytesMut::with_capacity(merged.len() as usize);
    body.extend_from_slice(lead);
    if ts.last > ls.last {
        let skip = (ls.last + 1 - ts.first) as usize;
        body.extend_from_slice(&tail[skip..]);
    }
    Some(rebuild(new, merged, body.freeze(), rules))
}

/// `new` as a complete 200 when its one segment is everything.
fn whole_if_complete(new: CachedResponse, seg: Segment, rules: &Rules) -> CachedResponse {
    if seg.is_whole() && new.body.len() as u64 == seg.len() {
        let body = new.body.clone();
        rebuild(new, seg, body, rules)
    } else {
        new
    }
}

/// A stored response with `new`'s fields holding `seg` as `body`: a 200
/// without `Content-Range` when it is the whole representation.
fn rebuild(new: CachedResponse, seg: Segment, body: Bytes, rules: &Rules) -> CachedResponse {
    let mut headers = new.headers;
    // A digest of one part's bytes is not one of these.
    let digests: Vec<_> = headers
        .keys()
        .filter(|n| is_content_digest(n))
        .cloned()
        .collect();
    for n in digests {
        headers.remove(n);
    }
    let status = if seg.is_whole() {
        headers.remove(header::CONTENT_RANGE);
        StatusCode::OK
    } else {
        headers.insert(
            header::CONTENT_RANGE,
            ContentRange::Bytes {
                first: seg.first,
                last: seg.last,
                complete: Some(seg.complete),
            }
            .to_header_value(),
        );
        StatusCode::PARTIAL_CONTENT
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    CachedResponse::new(
        status,
        headers,
        body,
        None,
        (new.request_time, new.response_time),
        new.vary,
        new.tags,
        rules,
    )
}

impl Shared {
    /// Stores a 206 that ended cleanly, combined with what the store
    /// holds for its variant.
    pub(super) fn store_part(self: &Arc<Self>, key: CacheKey, part: CachedResponse) {
        let mut lookup = self.store.get(&key);
        if let Some(r) = lookup.take_ready() {
            let variants = self.found(r);
            self.put_part(key, part, variants.as_deref());
        } else if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let shared = Arc::clone(self);
            rt.spawn(async move {
                let variants = shared.found(lookup.await);
                shared.put_part(key, part, variants.as_deref());
            });
        }
    }

    fn put_part(
        &self,
        key: CacheKey,
        part: CachedResponse,
        variants: Option<&[Arc<CachedResponse>]>,
    ) {
        let stored = variants.and_then(|vs| vs.iter().find(|v| v.vary == part.vary));
        let combined = combine(
            stored.map(|s| &**s),
            part,
            &self.config.rules,
            self.config.max_entry_size,
        );
        if let Some(entry) = combined {
            self.store_entry(key, entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::tests::{at, date, headers};
    use crate::cache::vary::VaryKey;

    const BODY: &[u8] = b"0123456789";

    fn entry(status: u16, fields: &[(&str, &str)], body: &[u8]) -> CachedResponse {
        let mut f = vec![
            ("date", date(1_000)),
            ("cache-control", "max-age=60".into()),
        ];
        f.extend(fields.iter().map(|(n, v)| (*n, v.to_string())));
        let f: Vec<(&str, &str)> = f.iter().map(|(n, v)| (*n, v.as_str())).collect();
        CachedResponse::new(
            StatusCode::from_u16(status).unwrap(),
            headers(&f),
            Bytes::copy_from_slice(body),
            None,
            (at(1_000), at(1_000)),
            VaryKey::default(),
            Vec::new(),
            &Rules::default(),
        )
    }

    fn part(first: u64, last: u64, etag: &str) -> CachedResponse {
        let cr = format!("bytes {first}-{last}/10");
        entry(
            206,
            &[("etag", etag), ("content-range", &cr)],
            &BODY[first as usize..=last as usize],
        )
    }

    fn ranged(range: &str, if_range: Option<&str>) -> Ranged {
        let mut h = headers(&[("range", range)]);
        if let Some(v) = if_range {
            h.insert(header::IF_RANGE, HeaderValue::from_str(v).unwrap());
        }
        match Ranged::read(&h) {
            RangeRead::One(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn served(range: &Ranged, e: &CachedResponse) -> Option<(u16, Option<String>, Bytes)> {
        answer(range, e).map(|(s, h, b)| {
            let cr = h
                .get(header::CONTENT_RANGE)
                .map(|v| v.to_str().unwrap().to_owned());
            (s.as_u16(), cr, b)
        })
    }

    #[test]
    fn ranges_of_a_complete_response() {
        let e = entry(200, &[("etag", "\"v\"")], BODY);
        let ok = |r: &str, cr: &str, body: &'static [u8]| {
            assert_eq!(
                served(&ranged(r, None), &e),
                Some((206, Some(cr.into()), Bytes::from_static(body))),
                "{r}"
            );
        };
        ok("bytes=0-3", "bytes 0-3/10", b"0123");
        ok("bytes=7-", "bytes 7-9/10", b"789");
        ok("bytes=-2", "bytes 8-9/10", b"89");
        ok("bytes=-20", "bytes 0-9/10", BODY);
        ok("bytes=5-100", "bytes 5-9/10", b"56789");
        assert_eq!(
            served(&ranged("bytes=10-", None), &e),
            Some((416, Some("bytes */10".into()), Bytes::new()))
        );
        // If-Range: a strong match ranges; anything else gets the whole.
        assert!(served(&ranged("bytes=0-1", Some("\"v\"")), &e).is_some());
        assert!(served(&ranged("bytes=0-1", Some("\"w\"")), &e).is_none());
        assert!(served(&ranged("bytes=0-1", Some("W/\"v\"")), &e).is_none());
        assert!(served(&ranged("bytes=0-1", Some("garbage")), &e).is_none());
        // A 404 is answered whole.
        assert!(served(&ranged("bytes=0-1", None), &entry(404, &[], BODY)).is_none());
    }

    #[test]
    fn if_range_by_date_needs_a_strong_last_modified() {
        let lm = date(900);
        let strong = entry(200, &[("last-modified", &lm)], BODY);
        assert!(served(&ranged("bytes=0-1", Some(&lm)), &strong).is_some());
        let same_second = entry(200, &[("last-modified", &date(1_000))], BODY);
        assert!(served(&ranged("bytes=0-1", Some(&date(1_000))), &same_second).is_none());
    }

    #[test]
    fn a_stored_part_answers_what_it_holds() {
        let p = part(2, 5, "\"v\"");
        assert_eq!(
            p.facts.partial,
            Some(Segment {
                first: 2,
                last: 5,
                complete: 10
            })
        );
        let r = ranged("bytes=3-4", None);
        assert!(r.answerable_from(&p));
        assert_eq!(
            served(&r, &p),
            Some((206, Some("bytes 3-4/10".into()), Bytes::from_static(b"34")))
        );
        assert!(!ranged("bytes=3-6", None).answerable_from(&p));
        assert!(!ranged("bytes=0-", None).answerable_from(&p));
        assert!(ranged("bytes=10-", None).answerable_from(&p), "a 416");
        assert!(!ranged("bytes=3-4", Some("\"w\"")).answerable_from(&p));
    }

    #[test]
    fn parts_combine_into_the_complete_response() {
        let rules = Rules::default();
        let a = combine(None, part(0, 3, "\"v\""), &rules, 1 << 20).unwrap();
        assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
        // Overlapping, then touching: one run, then the whole 200.
        let b = combine(Some(&a), part(2, 6, "\"v\""), &rules, 1 << 20).unwrap();
        assert_eq!(&b.body[..], b"0123456");
        assert_eq!(b.headers["content-range"], "bytes 0-6/10");
        let c = combine(Some(&b), part(7, 9, "\"v\""), &rules, 1 << 20).unwrap();
        assert_eq!(c.status, StatusCode::OK);
        assert_eq!(&c.body[..], BODY);
        assert!(!c.headers.contains_key("content-range"));
        assert_eq!(c.headers["content-length"], "10");
        // The later part first.
        let d = combine(
            Some(&part(5, 9, "\"v\"")),
            part(0, 5, "\"v\""),
            &rules,
            1 << 20,
        )
        .unwrap();
        assert_eq!((d.status, &d.body[..]), (StatusCode::OK, BODY));
        // Another representation, or bytes apart: the new part alone.
        let e = combine(Some(&a), part(4, 9, "\"w\""), &rules, 1 << 20).unwrap();
        assert_eq!(e.headers["content-range"], "bytes 4-9/10");
        let f = combine(Some(&a), part(6, 9, "\"v\""), &rules, 1 << 20).unwrap();
        assert_eq!(f.headers["content-range"], "bytes 6-9/10");
        // Too large together: the new part alone.
        let g = combine(Some(&a), part(4, 9, "\"v\""), &rules, 8).unwrap();
        assert_eq!(g.headers["content-range"], "bytes 4-9/10");
        // One part that is everything.
        let h = combine(None, part(0, 9, "\"v\""), &rules, 1 << 20).unwrap();
        assert_eq!(h.status, StatusCode::OK);
    }

    #[test]
    fn what_combining_keeps() {
        let rules = Rules::default();
        // A part inside the stored one: its bytes, the new fields.
        let a = combine(None, part(0, 6, "\"v\""), &rules, 1 << 20).unwrap();
        let mut inner = part(2, 3, "\"v\"");
        inner.headers.insert("x-new", HeaderValue::from_static("1"));
        let k = combine(Some(&a), inner, &rules, 1 << 20).unwrap();
        assert_eq!(&k.body[..], b"0123456");
        assert_eq!(k.headers["content-range"], "bytes 0-6/10");
        assert_eq!(k.headers["x-new"], "1");
        // A late part of another representation leaves a newer 200 alone.
        let newer = CachedResponse::new(
            StatusCode::OK,
            headers(&[("etag", "\"w\""), ("cache-control", "max-age=60")]),
            Bytes::from_static(BODY),
            None,
            (at(2_000), at(2_000)),
            VaryKey::default(),
            Vec::new(),
            &rules,
        );
        assert!(combine(Some(&newer), part(0, 1, "\"v\""), &rules, 1 << 20).is_none());
        // Digests of one part don't survive a merge.
        let mut d = part(7, 9, "\"v\"");
        d.headers
            .insert("content-digest", HeaderValue::from_static("sha-256=:x:"));
        let whole = combine(Some(&a), d, &rules, 1 << 20).unwrap();
        assert_eq!(whole.status, StatusCode::OK);
        assert!(!whole.headers.contains_key("content-digest"));
    }

    #[test]
    fn ranges_of_an_empty_body_and_digests() {
        let empty = entry(200, &[("etag", "\"v\"")], b"");
        assert!(
            served(&ranged("bytes=-5", None), &empty).is_none(),
            "the whole"
        );
        assert_eq!(
            served(&ranged("bytes=0-", None), &empty).map(|r| r.0),
            Some(416)
        );
        let digested = entry(
            200,
            &[
                ("content-digest", "sha-256=:x:"),
                ("repr-digest", "sha-256=:y:"),
            ],
            BODY,
        );
        let (_, h, _) = answer(&ranged("bytes=0-1", None), &digested).unwrap();
        assert!(!h.contains_key("content-digest"));
        assert!(
            h.contains_key("repr-digest"),
            "of the representation: still true"
        );
    }

    #[test]
    fn a_part_updates_the_fields_of_the_complete_response() {
        let rules = Rules::default();
        let whole = entry(
            200,
            &[
                ("etag", "\"v\""),
                ("x-version", "1"),
                ("content-length", "10"),
            ],
            BODY,
        );
        let mut p = part(0, 1, "\"v\"");
        p.headers.insert("x-version", HeaderValue::from_static("2"));
        p.headers
            .insert("content-digest", HeaderValue::from_static("sha-256=:p:"));
        let u = combine(Some(&whole), p, &rules, 1 << 20).unwrap();
        assert_eq!(u.status, StatusCode::OK);
        assert_eq!(&u.body[..], BODY);
        assert_eq!(u.headers["x-version"], "2");
        assert_eq!(u.headers["content-length"], whole.headers["content-length"]);
        assert!(!u.headers.contains_key("content-range"));
        assert!(!u.headers.contains_key("content-digest"));
    }

    #[test]
    fn only_strong_validators_allow_storing_a_part() {
        let h = |f: &[(&str, &str)]| storable_part(&headers(f), 1 << 20);
        let cr = ("content-range", "bytes 0-1/10");
        assert!(h(&[cr, ("etag", "\"v\"")]).is_some());
        assert!(h(&[cr, ("etag", "W/\"v\"")]).is_none());
        assert!(h(&[cr]).is_none());
        let (d, lm) = (date(1_000), date(900));
        assert!(h(&[cr, ("date", &d), ("last-modified", &lm)]).is_some());
        assert!(h(&[cr, ("date", &d), ("last-modified", &d)]).is_none());
        assert!(h(&[("content-range", "bytes 0-1/*"), ("etag", "\"v\"")]).is_none());
        assert!(storable_part(&headers(&[cr, ("etag", "\"v\"")]), 1).is_none());
    }
}
