//! Freshness (RFC 9111 §4.2, RFC 5861): what a GET or HEAD gets from what
//! the store holds.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::HeaderMap;

use super::entry::CachedResponse;
use super::service::Shared;
use super::store::Variants;
use super::vary::RequestVary;
use crate::headers::CacheControl;

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
    Miss { vary_miss: bool, alone: bool },
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
    ) -> Decision {
        let request = RequestVary::new(req, &self.config.encodings);
        let entry = variants.and_then(|vs| request.select(vs).cloned());
        // A request with implicit fields its variant lacks may be served
        // it fresh, never go to the origin on its behalf (see
        // `VaryKey::lacks_implicit_of`): it fetches a variant of its own.
        let own_fetch = |e: &CachedResponse| {
            e.vary
                .lacks_implicit_of(&request, &self.config.implicit_vary)
        };
        let Some(e) = entry else {
            if req_cc.only_if_cached() {
                return Decision::OnlyIfCached;
            }
            return Decision::Miss {
                vary_miss: variants.is_some(),
                alone: false,
            };
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
}
