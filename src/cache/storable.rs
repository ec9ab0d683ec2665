//! The storing rules of RFC 9111 §3 for a shared cache.

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode};

use crate::headers::{CacheControl, ContentCoding, dictionary_coding};

/// Statuses a cache may store without explicit freshness (RFC 9110 §15.1),
/// less 206: a 206 is stored only as a part of a 200, by that status's
/// rules (see `range.rs`).
pub(super) fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// The one content coding of a stored response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoredCoding {
    /// A coding `Accept-Encoding` weighs (identity when there is none).
    Plain(ContentCoding),
    /// Compressed against a dictionary (RFC 9842): `dcb` or `dcz`, its
    /// name. Served only to a request that names a dictionary and lists
    /// the coding; the response's `Vary` must name `Available-Dictionary`,
    /// so it is the same dictionary ([`check_storable`]).
    Dictionary(&'static str),
}

/// The one content coding of a response: identity without
/// `Content-Encoding`; `None` for a coding this crate doesn't know or a
/// stack of codings (which the cache does not store).
pub(crate) fn response_coding(headers: &HeaderMap) -> Option<StoredCoding> {
    let mut lines = headers.get_all(header::CONTENT_ENCODING).iter();
    let Some(first) = lines.next() else {
        return Some(StoredCoding::Plain(ContentCoding::Identity));
    };
    if lines.next().is_some() {
        return None;
    }
    let value = first.as_bytes().trim_ascii();
    if value.is_empty() {
        return Some(StoredCoding::Plain(ContentCoding::Identity));
    }
    if let Some(c) = ContentCoding::from_token(value) {
        return Some(StoredCoding::Plain(c));
    }
    dictionary_coding(value).map(StoredCoding::Dictionary)
}

/// Whether `Vary` names `field` (lowercase).
fn vary_names(headers: &HeaderMap, field: &str) -> bool {
    headers.get_all(header::VARY).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|f| f.trim_ascii().eq_ignore_ascii_case(field.as_bytes()))
    })
}

/// The response directives this cache obeys (RFC 9213 §2.2): those of the
/// first field of `targets` present with a valid, non-empty value, and
/// then `Cache-Control` and `Expires` are ignored; else `Cache-Control`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Policy {
    pub(crate) cc: CacheControl,
    /// A targeted field decided: `Expires` does not count.
    pub(crate) targeted: bool,
}

impl Policy {
    /// Whether `Expires` counts and the response has one.
    fn expires(&self, headers: &HeaderMap) -> bool {
        !self.targeted && headers.contains_key(header::EXPIRES)
    }
}

/// The [`Policy`] of a response, given the cache's target list.
pub(crate) fn policy(headers: &HeaderMap, targets: &[HeaderName]) -> Policy {
    for name in targets {
        let mut lines = headers.get_all(name).iter().peekable();
        if lines.peek().is_none() {
            continue;
        }
        if let Some(cc) = CacheControl::from_targeted(lines) {
            return Policy { cc, targeted: true };
        }
    }
    Policy {
        cc: CacheControl::from_response_headers(headers).unwrap_or_default(),
        targeted: false,
    }
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
    /// accepts (unknown, several codings, or a dictionary coding without
    /// `Vary: Available-Dictionary`).
    UnknownCoding,
    NoFreshness,
    TooLarge,
    /// Reusable only after validation, and the layer is told not to keep
    /// such responses ([`CacheLayer::store_validated`](super::CacheLayer::store_validated)).
    ValidatedOnly,
    /// Storable, but the request's fields weren't kept to key it by: its
    /// URL was marked uncacheable when the request came. The next request
    /// stores it.
    Unkeyed,
}

/// What the request and the layer's settings add to the storing rules.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Settings {
    /// The request had `Authorization` (§3.5).
    pub(crate) authorized: bool,
    /// [`CacheLayer::store_set_cookie`](super::CacheLayer::store_set_cookie).
    pub(crate) store_set_cookie: bool,
    /// Heuristic freshness is on.
    pub(crate) heuristics: bool,
    /// A default TTL applies to this URL.
    pub(crate) default_ttl: bool,
    /// The layer keeps no copy that must be validated before each use
    /// ([`CacheLayer::store_validated`](super::CacheLayer::store_validated)
    /// off): a `no-cache` response is refused before its other fields are
    /// read.
    pub(crate) validated_only: bool,
}

/// The storing rules of RFC 9111 §3 for a shared cache, for a response to
/// a GET whose request had `req_cc`, under the response's [`Policy`].
pub(crate) fn check_storable(
    method: &Method,
    status: StatusCode,
    headers: &HeaderMap,
    policy: &Policy,
    req_cc: &CacheControl,
    settings: &Settings,
) -> Result<(), NotStorable> {
    let Settings {
        authorized,
        store_set_cookie,
        heuristics,
        default_ttl,
        validated_only,
    } = *settings;
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
    let cc = &policy.cc;
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
    // The rest reads header fields; `no-cache` settles it without them.
    if validated_only && cc.no_cache() {
        return Err(NotStorable::ValidatedOnly);
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
    match response_coding(headers) {
        None => return Err(NotStorable::UnknownCoding),
        // Which dictionary it was compressed against is known only through
        // Vary: without it, any client naming any dictionary would match.
        Some(StoredCoding::Dictionary(_)) if !vary_names(headers, "available-dictionary") => {
            return Err(NotStorable::UnknownCoding);
        }
        Some(_) => {}
    }
    let explicit =
        cc.s_maxage().is_some() || cc.max_age().is_some() || policy.expires(headers) || cc.public();
    if !explicit && !heuristically_cacheable(status) {
        return Err(NotStorable::Status);
    }
    // Storing pays only if the response can be reused: fresh for a while,
    // servable stale, or cheap to validate.
    let has_validator =
        headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED);
    let may_be_fresh = cc.s_maxage().is_some_and(|d| !d.is_zero())
        || (cc.s_maxage().is_none() && cc.max_age().is_some_and(|d| !d.is_zero()))
        || (cc.s_maxage().is_none() && cc.max_age().is_none() && policy.expires(headers))
        || (heuristics && headers.contains_key(header::LAST_MODIFIED))
        // A configured default lifetime (`CacheLayer::default_ttl`), for
        // a response that gives none itself.
        || (default_ttl
            && cc.s_maxage().is_none()
            && cc.max_age().is_none()
            && !policy.expires(headers));
    let stale_usable = cc.stale_while_revalidate().is_some() || cc.stale_if_error().is_some();
    if cc.no_cache() && !has_validator {
        return Err(NotStorable::NoFreshness);
    }
    if !(may_be_fresh || has_validator || stale_usable) {
        return Err(NotStorable::NoFreshness);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::tests::headers;

    #[test]
    fn storing_rules() {
        let get = Method::GET;
        let none = CacheControl::new();
        // A 200 to a GET without request directives, under `settings`.
        let with = |h: &HeaderMap, settings: Settings| {
            check_storable(&get, StatusCode::OK, h, &policy(h, &[]), &none, &settings)
        };
        let ok = |h: &HeaderMap| with(h, Settings::default());
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
        // A layer that keeps nothing it must validate on every use refuses
        // `no-cache` before reading the other fields; what the request or
        // the directives say first still comes first.
        let no_validated = |h: &HeaderMap| {
            let settings = Settings {
                validated_only: true,
                ..Settings::default()
            };
            with(h, settings)
        };
        let validated = headers(&[("cache-control", "no-cache"), ("etag", "\"a\"")]);
        assert_eq!(ok(&validated), Ok(()));
        assert_eq!(no_validated(&validated), Err(NotStorable::ValidatedOnly));
        assert_eq!(
            no_validated(&headers(&[
                ("cache-control", "no-cache"),
                ("set-cookie", "a=b")
            ])),
            Err(NotStorable::ValidatedOnly)
        );
        assert_eq!(
            no_validated(&headers(&[("cache-control", "no-cache, no-store")])),
            Err(NotStorable::NoStore)
        );
        // An unknown coding is the request's doing, `no-cache` the
        // response's: the layer's rule answers first, so the URL is
        // marked uncacheable (the request-made reasons don't mark it).
        let unknown = headers(&[
            ("cache-control", "no-cache"),
            ("content-encoding", "x-custom"),
            ("etag", "\"a\""),
        ]);
        assert_eq!(ok(&unknown), Err(NotStorable::UnknownCoding));
        assert_eq!(no_validated(&unknown), Err(NotStorable::ValidatedOnly));
        assert_eq!(
            no_validated(&headers(&[("cache-control", "max-age=60")])),
            Ok(())
        );
        // Authorization: only with public, s-maxage or must-revalidate.
        let auth = |h: &HeaderMap| {
            let settings = Settings {
                authorized: true,
                ..Settings::default()
            };
            with(h, settings)
        };
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
            check_storable(
                &get,
                StatusCode::CREATED,
                h,
                &policy(h, &[]),
                &none,
                &Settings::default(),
            )
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
                &policy(&headers(&[("cache-control", "max-age=60")]), &[]),
                &req_ns,
                &Settings::default()
            ),
            Err(NotStorable::NoStore)
        );
    }

    #[test]
    fn statuses_and_what_makes_a_response_worth_storing() {
        let none = CacheControl::new();
        let check = |status: u16, h: &[(&str, &str)], heuristics: bool| {
            let status = StatusCode::from_u16(status).unwrap();
            check_storable(
                &Method::GET,
                status,
                &headers(h),
                &policy(&headers(h), &[]),
                &none,
                &Settings {
                    authorized: false,
                    store_set_cookie: false,
                    heuristics,
                    default_ttl: false,
                    validated_only: false,
                },
            )
        };
        let fresh = [("cache-control", "max-age=60")];
        // Partial content, a 304 and interim answers update or precede a
        // response: never stored themselves. Only GET is stored.
        for s in [206, 304, 103] {
            assert_eq!(check(s, &fresh, false), Err(NotStorable::Status), "{s}");
        }
        assert_eq!(
            check_storable(
                &Method::HEAD,
                StatusCode::OK,
                &headers(&fresh),
                &Policy::default(),
                &none,
                &Settings::default()
            ),
            Err(NotStorable::Status)
        );
        // A 404 is heuristically cacheable; a 500 only with explicit
        // freshness.
        assert_eq!(check(404, &[("etag", "\"a\"")], false), Ok(()));
        assert_eq!(
            check(500, &[("etag", "\"a\"")], false),
            Err(NotStorable::Status)
        );
        assert_eq!(check(500, &fresh, false), Ok(()));
        // Last-Modified alone is a validator; heuristics or not, it is
        // worth keeping. Nothing to reuse it by: not stored.
        let dated = [("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")];
        assert_eq!(check(200, &dated, false), Ok(()));
        assert_eq!(
            check(200, &[("cache-control", "max-age=0")], false),
            Err(NotStorable::NoFreshness)
        );
        assert_eq!(
            check(
                200,
                &[("cache-control", "max-age=0, stale-if-error=60")],
                false
            ),
            Ok(())
        );
        // no-cache needs a validator to be worth storing.
        assert_eq!(
            check(200, &[("cache-control", "no-cache, max-age=60")], false),
            Err(NotStorable::NoFreshness)
        );
        assert_eq!(
            check(
                200,
                &[("cache-control", "no-cache"), ("etag", "\"a\"")],
                false
            ),
            Ok(())
        );
        // A coding the cache can't match to Accept-Encoding.
        assert_eq!(
            check(
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("content-encoding", "x-mine")
                ],
                false
            ),
            Err(NotStorable::UnknownCoding)
        );
        assert_eq!(
            check(
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("content-encoding", "gzip, br")
                ],
                false
            ),
            Err(NotStorable::UnknownCoding)
        );
        assert_eq!(
            check(
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("content-encoding", "gzip")
                ],
                false
            ),
            Ok(())
        );
        // A dictionary coding, only with the dictionary in the variant.
        let dcz = [("cache-control", "max-age=60"), ("content-encoding", "DCZ")];
        assert_eq!(check(200, &dcz, false), Err(NotStorable::UnknownCoding));
        let varying = [
            ("cache-control", "max-age=60"),
            ("content-encoding", "dcb"),
            ("vary", "accept-encoding, Available-Dictionary"),
        ];
        assert_eq!(check(200, &varying, false), Ok(()));
        let h = headers(&varying);
        assert_eq!(response_coding(&h), Some(StoredCoding::Dictionary("dcb")));
    }

    /// RFC 9213 §2.2: the first target present with a valid, non-empty
    /// value replaces `Cache-Control` and `Expires`; an empty or invalid
    /// one, or a field not on the list, changes nothing.
    #[test]
    fn targeted_fields_replace_cache_control_and_expires() {
        let cdn = HeaderName::from_static("cdn-cache-control");
        let own = HeaderName::from_static("towerperf-cache-control");
        let targets = [own.clone(), cdn.clone()];
        let check = |h: &[(&str, &str)]| {
            let h = headers(h);
            let none = CacheControl::new();
            check_storable(
                &Method::GET,
                StatusCode::OK,
                &h,
                &policy(&h, &targets),
                &none,
                &Settings::default(),
            )
        };
        // The examples of RFC 9213 §3.1.
        assert_eq!(
            check(&[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=600")
            ]),
            Ok(())
        );
        assert_eq!(
            check(&[("cache-control", "no-store"), ("cdn-cache-control", "none")]),
            Err(NotStorable::NoFreshness)
        );
        assert_eq!(
            check(&[("cache-control", "no-store")]),
            Err(NotStorable::NoStore)
        );
        // The other direction: a targeted private, no-store.
        assert_eq!(
            check(&[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", "private")
            ]),
            Err(NotStorable::Private)
        );
        assert_eq!(
            check(&[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", "no-store")
            ]),
            Err(NotStorable::NoStore)
        );
        // Expires is ignored with a targeted field.
        let later = "Sun, 06 Nov 2094 08:49:37 GMT";
        assert_eq!(
            check(&[("expires", later), ("cdn-cache-control", "must-revalidate")]),
            Err(NotStorable::NoFreshness)
        );
        // Empty or invalid: as if absent.
        for bad in ["", "max-age=60,", "Max-Age=60"] {
            assert_eq!(
                check(&[("cache-control", "no-store"), ("cdn-cache-control", bad)]),
                Err(NotStorable::NoStore),
                "{bad:?}"
            );
        }
        // The first target wins; fields off the list change nothing.
        assert_eq!(
            check(&[
                ("cdn-cache-control", "no-store"),
                ("towerperf-cache-control", "max-age=60")
            ]),
            Ok(())
        );
        // An invalid first target falls through to the next.
        assert_eq!(
            check(&[
                ("towerperf-cache-control", "max-age=60,"),
                ("cdn-cache-control", "no-store")
            ]),
            Err(NotStorable::NoStore)
        );
        let h = headers(&[
            ("cache-control", "max-age=60"),
            ("other-cache-control", "no-store"),
        ]);
        assert!(!policy(&h, &targets).targeted);
        assert!(!policy(&headers(&[("cdn-cache-control", "no-store")]), &[]).targeted);
    }
}
