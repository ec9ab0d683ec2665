//! `Cache-Status` (RFC 9211) and `Age`: what the cache says of an answer.

use bytes::Bytes;
use http::StatusCode;
use http::header::{HeaderMap, HeaderValue};

use super::entry;
use super::service::Shared;

/// How a response came to be, for `Cache-Status`.
#[derive(Clone, Copy)]
pub(super) enum Via {
    Hit,
    Collapsed,
    MaxStale,
    WhileRevalidate,
    StaleIfError(Option<StatusCode>),
    Revalidated,
}

impl Shared {
    pub(super) fn status_value(&self, rest: std::fmt::Arguments<'_>) -> Option<HeaderValue> {
        let name = self.config.status_name.as_deref()?;
        let mut s = String::with_capacity(64);
        s.push_str(name);
        s.push_str("; ");
        std::fmt::Write::write_fmt(&mut s, rest).ok()?;
        // Hands the buffer over instead of copying it.
        HeaderValue::from_maybe_shared(Bytes::from(s)).ok()
    }

    pub(super) fn set_status(&self, headers: &mut HeaderMap, rest: std::fmt::Arguments<'_>) {
        if let Some(v) = self.status_value(rest) {
            headers.append(entry::CACHE_STATUS.clone(), v);
        }
    }

    /// Our `Cache-Status` member for an answer from the store (`None`
    /// when the header is off).
    pub(super) fn cache_status(&self, via: Via, ttl: i64) -> Option<HeaderValue> {
        let name = self.config.status_name.as_deref()?;
        match via {
            // Every hit: no formatting machinery (a per-thread memo).
            Via::Hit => entry::hit_status(name, ttl, || {
                self.status_value(format_args!("hit; ttl={ttl}"))
            }),
            Via::Collapsed => self.status_value(format_args!("hit; ttl={ttl}; collapsed")),
            Via::MaxStale => self.status_value(format_args!("hit; ttl={ttl}; detail=max-stale")),
            Via::WhileRevalidate => self.status_value(format_args!(
                "hit; ttl={ttl}; detail=stale-while-revalidate"
            )),
            Via::StaleIfError(Some(s)) => self.status_value(format_args!(
                "fwd=stale; fwd-status={}; ttl={ttl}; detail=stale-if-error",
                s.as_u16()
            )),
            Via::StaleIfError(None) => {
                self.status_value(format_args!("fwd=stale; ttl={ttl}; detail=stale-if-error"))
            }
            Via::Revalidated => {
                self.status_value(format_args!("fwd=stale; fwd-status=304; ttl={ttl}"))
            }
        }
    }
}
