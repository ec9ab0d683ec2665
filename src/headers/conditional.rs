//! Conditional requests (RFC 9110 §13): the preconditions, evaluated in
//! §13.2.2's order, and the header fields of the 304 they may turn a
//! response into (§15.4.5). The cache and `CacheControlLayer` both answer
//! with these, so the two layers agree.

use http::header::{
    CONTENT_DISPOSITION, CONTENT_ENCODING, CONTENT_LANGUAGE, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE,
    LAST_MODIFIED, TRANSFER_ENCODING,
};
use http::{HeaderMap, Method};

use crate::headers::{EntityTag, EntityTagList, HttpDate, ParseError};

/// The conditional header fields of one request (`If-Match`,
/// `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`), parsed,
/// and their evaluation against a representation's validators in RFC 9110
/// §13.2.2's order ([`evaluate`](Self::evaluate)).
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    if_match: Option<Result<EntityTagList, ParseError>>,
    if_none_match: Option<Result<EntityTagList, ParseError>>,
    if_modified_since: Option<HttpDate>,
    if_unmodified_since: Option<HttpDate>,
}

/// What [`Preconditions::evaluate`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Perform the request (or send the response) as usual.
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// One date field: absent, invalid (RFC 9110 says to ignore it) or a list
/// of dates (also ignored) all read as `None`.
fn date(headers: &HeaderMap, name: &http::HeaderName) -> Option<HttpDate> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    HttpDate::parse(first.as_bytes()).ok()
}

impl Preconditions {
    /// Parses the conditional fields of a request's headers.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        // Most requests carry none of them: one pass over the names
        // (comparing standard names is comparing small integers), linear
        // in the header section, instead of four hashed lookups.
        let any = headers.keys().any(|n| {
            n == IF_MATCH
                || n == IF_NONE_MATCH
                || n == IF_MODIFIED_SINCE
                || n == IF_UNMODIFIED_SINCE
        });
        if !any {
            return Self::default();
        }
        Self {
            if_match: EntityTagList::from_headers(headers, &IF_MATCH),
            if_none_match: EntityTagList::from_headers(headers, &IF_NONE_MATCH),
            if_modified_since: date(headers, &IF_MODIFIED_SINCE),
            if_unmodified_since: date(headers, &IF_UNMODIFIED_SINCE),
        }
    }

    /// True when the request carried no (readable) precondition.
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none()
            && self.if_none_match.is_none()
            && self.if_modified_since.is_none()
            && self.if_unmodified_since.is_none()
    }

    /// Evaluates the preconditions against the selected representation's
    /// validators, in RFC 9110 §13.2.2's order. `exists` is false when
    /// there is no current representation (the resource would answer
    /// 404), which is what `If-Match: *` and `If-None-Match: *` ask about.
    pub fn evaluate(
        &self,
        method: &Method,
        exists: bool,
        etag: Option<&EntityTag>,
        last_modified: Option<HttpDate>,
    ) -> Precondition {
        let get_or_head = method == Method::GET || method == Method::HEAD;
        // 1. If-Match: strong comparison; an unreadable field fails.
        if let Some(im) = &self.if_match {
            let passes = match im {
                Ok(EntityTagList::Any) => exists,
                Ok(list) => exists && list.if_match_passes(etag),
                Err(_) => false,
            };
            if !passes {
                return Precondition::Failed;
            }
        } else if let (Some(ius), Some(lm)) = (self.if_unmodified_since, last_modified) {
            // 2. If-Unmodified-Since, only without If-Match and when the
            //    representation has a modification date.
            if exists && lm > ius {
                return Precondition::Failed;
            }
        }
        // 3. If-None-Match: weak comparison; an unreadable field is ignored
        //    (the full response is always a safe answer).
        match &self.if_none_match {
            Some(Ok(inm)) => {
                let passes = match inm {
                    EntityTagList::Any => !exists,
                    list => !exists || list.if_none_match_passes(etag),
                };
                if !passes {
                    return if get_or_head {
                        Precondition::NotModified
                    } else {
                        Precondition::Failed
                    };
                }
            }
            Some(Err(_)) => {}
            // 4. If-Modified-Since, only for GET/HEAD without If-None-Match.
            None => {
                if let (true, true, Some(ims), Some(lm)) =
                    (get_or_head, exists, self.if_modified_since, last_modified)
                {
                    if lm <= ims {
                        return Precondition::NotModified;
                    }
                }
            }
        }
        Precondition::Proceed
    }
}

/// Turns the header section of the response a 304 replaces into the 304's
/// own (RFC 9110 §15.4.5): the fields a 200 would carry stay (ETag,
/// Cache-Control, Expires, Vary, Date, Content-Location, and fields that
/// are not representation metadata, such as `Set-Cookie`); the content's
/// metadata goes: its type, length, codings, language, range,
/// disposition, transfer coding and digests (`Content-Digest`,
/// `Repr-Digest`, and the obsolete `Digest` and `Content-MD5`). `Last-Modified` stays only without an `ETag`: the RFC
/// asks for no metadata beyond the listed fields unless it guides cache
/// updates, which `Last-Modified` does only when there is no entity tag to
/// validate with.
pub(crate) fn retain_not_modified_fields(headers: &mut HeaderMap) {
    for name in [
        CONTENT_TYPE,
        CONTENT_LENGTH,
        CONTENT_ENCODING,
        CONTENT_LANGUAGE,
        CONTENT_RANGE,
        CONTENT_DISPOSITION,
        TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
    // Digests of content the 304 does not carry (RFC 9530; RFC 3230 and
    // RFC 1864, obsolete).
    for name in ["content-digest", "repr-digest", "digest", "content-md5"] {
        headers.remove(name);
    }
    if headers.contains_key(ETAG) {
        headers.remove(LAST_MODIFIED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn conds(pairs: &[(&'static str, &'static str)]) -> Preconditions {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        Preconditions::from_headers(&h)
    }

    const T0: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const T1: &str = "Mon, 07 Nov 1994 08:49:37 GMT";

    fn t(s: &str) -> Option<HttpDate> {
        HttpDate::parse(s.as_bytes()).ok()
    }

    #[test]
    fn order_of_rfc_9110_13_2_2() {
        let tag = EntityTag::strong("v1").unwrap();
        let e = Some(&tag);
        let get = Method::GET;
        let put = Method::PUT;
        // If-Match failing wins over a matching If-None-Match.
        let c = conds(&[("if-match", "\"v2\""), ("if-none-match", "\"v1\"")]);
        assert_eq!(c.evaluate(&get, true, e, None), Precondition::Failed);
        // If-Match present: If-Unmodified-Since is not evaluated.
        let c = conds(&[("if-match", "\"v1\""), ("if-unmodified-since", T0)]);
        assert_eq!(c.evaluate(&put, true, e, t(T1)), Precondition::Proceed);
        // If-Unmodified-Since alone: modified after → 412.
        let c = conds(&[("if-unmodified-since", T0)]);
        assert_eq!(c.evaluate(&put, true, e, t(T1)), Precondition::Failed);
        assert_eq!(c.evaluate(&put, true, e, t(T0)), Precondition::Proceed);
        // …ignored without Last-Modified.
        assert_eq!(c.evaluate(&put, true, e, None), Precondition::Proceed);
        // If-None-Match present: If-Modified-Since is not evaluated.
        let c = conds(&[("if-none-match", "\"other\""), ("if-modified-since", T1)]);
        assert_eq!(c.evaluate(&get, true, e, t(T0)), Precondition::Proceed);
        // If-None-Match matching: 304 for GET/HEAD, 412 otherwise.
        let c = conds(&[("if-none-match", "W/\"v1\"")]);
        assert_eq!(c.evaluate(&get, true, e, None), Precondition::NotModified);
        assert_eq!(
            c.evaluate(&Method::HEAD, true, e, None),
            Precondition::NotModified
        );
        assert_eq!(c.evaluate(&put, true, e, None), Precondition::Failed);
        // If-Modified-Since: not modified since → 304, only for GET/HEAD.
        let c = conds(&[("if-modified-since", T1)]);
        assert_eq!(c.evaluate(&get, true, e, t(T0)), Precondition::NotModified);
        assert_eq!(c.evaluate(&get, true, e, t(T1)), Precondition::NotModified);
        assert_eq!(
            c.evaluate(&get, true, e, t("Tue, 08 Nov 1994 08:49:37 GMT")),
            Precondition::Proceed
        );
        assert_eq!(c.evaluate(&put, true, e, t(T0)), Precondition::Proceed);
        assert_eq!(c.evaluate(&get, true, e, None), Precondition::Proceed);
    }

    #[test]
    fn found_among_other_fields() {
        let fillers: Vec<(String, &str)> =
            (0..12).map(|i| (format!("x-filler-{i}"), "1")).collect();
        for n in [0, 3, 7, 8, 12] {
            for name in [
                "if-match",
                "if-none-match",
                "if-modified-since",
                "if-unmodified-since",
            ] {
                let value = if name.ends_with("since") {
                    T0
                } else {
                    "\"v1\""
                };
                let mut h = HeaderMap::new();
                for (k, v) in &fillers[..n] {
                    h.append(
                        http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        HeaderValue::from_static(v),
                    );
                }
                assert!(Preconditions::from_headers(&h).is_empty(), "{n} fillers");
                h.append(
                    http::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                );
                assert!(
                    !Preconditions::from_headers(&h).is_empty(),
                    "{name} after {n} fillers"
                );
            }
        }
    }

    #[test]
    fn stars_ask_whether_a_representation_exists() {
        let c = conds(&[("if-match", "*")]);
        assert_eq!(
            c.evaluate(&Method::PUT, true, None, None),
            Precondition::Proceed
        );
        assert_eq!(
            c.evaluate(&Method::PUT, false, None, None),
            Precondition::Failed
        );
        let c = conds(&[("if-none-match", "*")]);
        assert_eq!(
            c.evaluate(&Method::PUT, false, None, None),
            Precondition::Proceed
        );
        assert_eq!(
            c.evaluate(&Method::PUT, true, None, None),
            Precondition::Failed
        );
        assert_eq!(
            c.evaluate(&Method::GET, true, None, None),
            Precondition::NotModified
        );
    }

    #[test]
    fn strong_for_if_match_weak_for_if_none_match() {
        let weak = EntityTag::weak("v1").unwrap();
        let c = conds(&[("if-match", "W/\"v1\"")]);
        assert_eq!(
            c.evaluate(&Method::PUT, true, Some(&weak), None),
            Precondition::Failed
        );
        let c = conds(&[("if-match", "\"v1\"")]);
        assert_eq!(
            c.evaluate(&Method::PUT, true, Some(&weak), None),
            Precondition::Failed
        );
        let c = conds(&[("if-none-match", "\"v1\"")]);
        assert_eq!(
            c.evaluate(&Method::GET, true, Some(&weak), None),
            Precondition::NotModified
        );
    }

    #[test]
    fn malformed_fields() {
        let tag = EntityTag::strong("v1").unwrap();
        // An unreadable If-Match fails; an unreadable If-None-Match is ignored.
        assert_eq!(
            conds(&[("if-match", "v1")]).evaluate(&Method::PUT, true, Some(&tag), None),
            Precondition::Failed
        );
        assert_eq!(
            conds(&[("if-none-match", "v1")]).evaluate(&Method::GET, true, Some(&tag), None),
            Precondition::Proceed
        );
        // Invalid dates and lists of dates are ignored.
        let c = conds(&[("if-modified-since", "yesterday")]);
        assert!(c.is_empty());
        let c = conds(&[("if-modified-since", T1), ("if-modified-since", T1)]);
        assert_eq!(
            c.evaluate(&Method::GET, true, None, t(T0)),
            Precondition::Proceed
        );
        assert!(conds(&[]).is_empty());
    }

    #[test]
    fn a_304_keeps_last_modified_only_without_an_etag() {
        let full = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, HeaderValue::from_static(v));
            }
            h
        };
        let mut h = full(&[
            ("etag", "\"v1\""),
            ("last-modified", T0),
            ("cache-control", "max-age=60"),
            ("expires", T1),
            ("vary", "accept-encoding"),
            ("date", T1),
            ("content-location", "/a"),
            ("set-cookie", "a=b"),
            ("content-type", "text/plain"),
            ("content-length", "5"),
            ("content-encoding", "gzip"),
            ("content-language", "en"),
            ("content-range", "bytes 0-4/5"),
            ("content-disposition", "inline"),
            ("transfer-encoding", "chunked"),
            ("content-digest", "sha-256=:AAAA:"),
            ("repr-digest", "sha-256=:AAAA:"),
            ("digest", "SHA-256=AAAA"),
            ("content-md5", "AAAA"),
        ]);
        retain_not_modified_fields(&mut h);
        let mut names: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "cache-control",
                "content-location",
                "date",
                "etag",
                "expires",
                "set-cookie",
                "vary"
            ]
        );
        // Without an ETag, Last-Modified is the validator: it stays.
        let mut h = full(&[("last-modified", T0), ("content-type", "text/plain")]);
        retain_not_modified_fields(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["last-modified"], T0);
    }
}
