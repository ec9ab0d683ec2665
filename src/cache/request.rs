//! What the cache reads of a GET or HEAD: its fields and the client's own
//! conditions.

use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

use crate::headers::{CacheControl, EntityTagList, HttpDate};

/// What the cache needs to know of a GET or HEAD's fields, read in one
/// pass over the field names (a request has few; hashing each name the
/// cache asks about would cost more).
pub(super) struct RequestFields {
    /// `Range`, `If-Match`, `If-Unmodified-Since` or `If-Range`: the
    /// cache stores whole responses only and evaluates only the two other
    /// preconditions, so such requests go straight through.
    pub(super) bypass: bool,
    pub(super) authorization: bool,
    /// `If-None-Match` or `If-Modified-Since`: a hit may be a 304.
    pub(super) conditional: bool,
    pub(super) directives: CacheControl,
}

impl RequestFields {
    pub(super) fn read(headers: &HeaderMap) -> Self {
        let (mut bypass, mut authorization, mut cc, mut pragma) = (false, false, false, false);
        let mut conditional = false;
        for name in headers.keys() {
            if name == header::RANGE
                || name == header::IF_MATCH
                || name == header::IF_UNMODIFIED_SINCE
                || name == header::IF_RANGE
            {
                bypass = true;
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
            authorization,
            conditional,
            directives,
        }
    }
}

/// The client's `If-None-Match` / `If-Modified-Since`, kept aside while the
/// cache talks to the origin unconditionally.
#[derive(Default)]
pub(super) struct ClientConditions {
    pub(super) if_none_match: Option<HeaderValue>,
    pub(super) if_none_match_more: Vec<HeaderValue>,
    pub(super) if_modified_since: Option<HeaderValue>,
}

impl ClientConditions {
    pub(super) fn take(headers: &mut HeaderMap) -> Self {
        let mut inm = match headers.entry(header::IF_NONE_MATCH) {
            header::Entry::Occupied(o) => o.remove_entry_mult().1.collect::<Vec<_>>(),
            header::Entry::Vacant(_) => Vec::new(),
        };
        let first = (!inm.is_empty()).then(|| inm.remove(0));
        Self {
            if_none_match: first,
            if_none_match_more: inm,
            if_modified_since: headers.remove(header::IF_MODIFIED_SINCE),
        }
    }

    pub(super) fn as_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = &self.if_none_match {
            h.append(header::IF_NONE_MATCH, v.clone());
            for v in &self.if_none_match_more {
                h.append(header::IF_NONE_MATCH, v.clone());
            }
        }
        if let Some(v) = &self.if_modified_since {
            h.insert(header::IF_MODIFIED_SINCE, v.clone());
        }
        h
    }
}

/// Whether a GET/HEAD with these fields would get 304 for a 2xx
/// representation with these validators (RFC 9110 §13.1.2, §13.1.3, in
/// the order of §13.2.2).
pub(super) fn not_modified(req: &HeaderMap, status: StatusCode, resp: &HeaderMap) -> bool {
    if !status.is_success() {
        return false;
    }
    if let Some(list) = EntityTagList::from_headers(req, &header::IF_NONE_MATCH) {
        let etag = crate::headers::EntityTag::from_headers(resp);
        return list.is_ok_and(|l| !l.if_none_match_passes(etag.as_ref()));
    }
    let Some(Ok(since)) = HttpDate::from_headers(req, &header::IF_MODIFIED_SINCE) else {
        return false;
    };
    HttpDate::from_headers(resp, &header::LAST_MODIFIED)
        .and_then(Result::ok)
        .is_some_and(|lm| lm <= since)
}
