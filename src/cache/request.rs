//! What the cache reads of a GET or HEAD: its fields and the client's own
//! conditions.

use http::header::{self, HeaderMap};
use http::{Method, StatusCode};

use super::range::Ranged;
use super::routes::RouteIndex;
use crate::headers::{CacheControl, EntityTag, HttpDate};
use crate::headers::{Precondition, Preconditions};

/// What the cache needs to know of a GET or HEAD's fields, read in one
/// pass over the field names (a request has few; hashing each name the
/// cache asks about would cost more).
pub(super) struct RequestFields {
    /// `If-Match` or `If-Unmodified-Since`: the cache evaluates only the
    /// two other preconditions, so such requests go straight through.
    pub(super) bypass: bool,
    /// `Range` (read by [`Ranged::read`] for a GET).
    pub(super) range: bool,
    pub(super) authorization: bool,
    /// `If-None-Match` or `If-Modified-Since`: a hit may be a 304.
    pub(super) conditional: bool,
    pub(super) directives: CacheControl,
}

impl RequestFields {
    pub(super) fn read(headers: &HeaderMap) -> Self {
        let (mut bypass, mut authorization, mut cc, mut pragma) = (false, false, false, false);
        let (mut conditional, mut range) = (false, false);
        for name in headers.keys() {
            if name == header::IF_MATCH || name == header::IF_UNMODIFIED_SINCE {
                bypass = true;
            } else if name == header::RANGE {
                range = true;
            } else if name == header::AUTHORIZATION {
                authorization = true;
            } else if name == header::IF_NONE_MATCH || name == header::IF_MODIFIED_SINCE {
                conditional = true;
            } else if name == header::CACHE_CONTROL {
                cc = true;
            } else if name == header::PRAGMA {
                pragma = true;
            }
        }
        let directives = if cc {
            CacheControl::from_headers(headers).unwrap_or_default()
        } else if pragma
            && headers
                .get_all(header::PRAGMA)
                .iter()
                .any(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"))
        {
            // RFC 9111 §5.4: Pragma: no-cache when there is no
            // Cache-Control.
            CacheControl::new().with_no_cache()
        } else {
            CacheControl::new()
        };
        Self {
            bypass,
            range,
            authorization,
            conditional,
            directives,
        }
    }
}

/// What a GET or HEAD asks of the cache beyond the resource: its
/// `If-None-Match` / `If-Modified-Since`, and the one range of a GET.
#[derive(Debug, Default)]
pub(crate) struct Client {
    pub(crate) conds: Preconditions,
    pub(crate) range: Option<Ranged>,
    /// The counters of the route the request matched.
    pub(crate) route: Option<RouteIndex>,
}

/// Removes `Range` and `If-Range`: the whole representation is asked for.
pub(super) fn strip_range(headers: &mut HeaderMap) {
    headers.remove(header::RANGE);
    headers.remove(header::IF_RANGE);
}

/// Removes the client's `If-None-Match` / `If-Modified-Since`: the cache
/// asks the origin for the whole response (which it can store) and answers
/// them itself.
pub(super) fn strip_client_conditions(headers: &mut HeaderMap) {
    headers.remove(header::IF_NONE_MATCH);
    headers.remove(header::IF_MODIFIED_SINCE);
}

/// Whether the client's conditions turn an answer of `status` with these
/// validators into a 304: only a 2xx (RFC 9110 §13.2.1), by the evaluation
/// `CacheControlLayer` uses too (§13.2.2's order, before any range). Requests with
/// `If-Match` or `If-Unmodified-Since` bypass the cache, so the only other
/// outcome is to send the response.
pub(super) fn not_modified(
    conds: &Preconditions,
    method: &Method,
    status: StatusCode,
    etag: Option<&EntityTag>,
    last_modified: Option<HttpDate>,
) -> bool {
    !conds.is_empty()
        && status.is_success()
        && conds.evaluate(method, true, etag, last_modified) == Precondition::NotModified
}
