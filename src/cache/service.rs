//! [`Cache`]: the request path of the cache.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, Entry, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::authority;
use super::body::ResponseBody;
use super::entry::CachedResponse;
use super::flight::{Flights, Join};
use super::freshness::Decision;
use super::future::{Resp, ResponseFuture};
use super::invalidate::other_method;
use super::key::CacheKey;
use super::layer::{CacheLayer, Config};
use super::origin::{Fetch, add_validators, call_inner, fetch_origin, refresh};
use super::range::{RangeRead, Ranged, answer};
use super::request::{Client, RequestFields, not_modified, strip_client_conditions, strip_range};
use super::stats::{CacheStats, Counters};
use super::status::{self, Via};
use super::store::{CacheStore, StoreError, Variants};
use crate::headers::CacheControl;
use crate::headers::{Preconditions, retain_not_modified_fields};

/// State shared by every service of one [`CacheLayer`].
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Arc<dyn CacheStore>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) flights: Arc<Flights>,
}

/// The service [`CacheLayer`] builds. See the [module docs](crate::cache).
#[derive(Debug, Clone)]
pub struct Cache<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S> Cache<S> {
    /// Wraps `inner` in a cache with the default settings.
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&CacheLayer::new(), inner)
    }

    /// A [`CacheLayer`] with the default settings.
    pub fn layer() -> CacheLayer {
        CacheLayer::new()
    }

    /// This cache's statistics.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            counters: Arc::clone(&self.shared.counters),
            store: Arc::clone(&self.shared.store),
        }
    }

    crate::macros::define_inner_service_accessors!();
}

impl Shared {
    pub(super) fn now(&self) -> SystemTime {
        self.config.clock.system_time()
    }

    /// A lookup result, errors counted and read as "nothing stored".
    pub(super) fn found(&self, r: Result<Option<Variants>, StoreError>) -> Option<Variants> {
        r.unwrap_or_else(|_| {
            Counters::add(&self.counters.store_errors);
            None
        })
    }

    pub(super) async fn lookup(&self, key: &CacheKey) -> Option<Variants> {
        let r = self.store.get(key).await;
        self.found(r)
    }

    /// A response from a stored one: 304 when the client's condition
    /// holds, headers only for HEAD, 206 or 416 for a GET's range, with
    /// `Age` and `Cache-Status`.
    pub(super) fn serve<B>(
        &self,
        e: &Arc<CachedResponse>,
        method: &Method,
        client: &Client,
        now: SystemTime,
        via: Via,
    ) -> Resp<B> {
        if let Some(r) = client.route {
            self.counters.routes.at(r).served(&via);
        }
        let age = e.age(now);
        let ttl = e.facts.lifetime.as_secs() as i64 - age.as_secs() as i64;
        let is_304 = not_modified(
            &client.conds,
            method,
            e.status,
            e.facts.etag.as_ref(),
            e.facts.last_modified,
        );
        let (status, mut headers, body) = if is_304 {
            let mut headers = e.template().clone();
            retain_not_modified_fields(&mut headers);
            (StatusCode::NOT_MODIFIED, headers, ResponseBody::empty())
        } else if method == Method::HEAD {
            (e.status, e.template().clone(), ResponseBody::empty())
        } else if let Some((status, headers, body)) =
            client.range.as_ref().and_then(|r| answer(r, e))
        {
            (status, headers, ResponseBody::stored(body, None))
        } else {
            let (template, body) = super::hot::template_and_body(e);
            (
                e.status,
                template,
                ResponseBody::stored(body, e.trailers.clone()),
            )
        };
        headers.insert(header::AGE, status::age_value(age));
        // The template's empty placeholder (there when no upstream cache
        // sent a Cache-Status) takes our member in place; otherwise it
        // follows the upstream ones (RFC 9211 §2).
        let value = self.cache_status(via, ttl);
        match headers.entry(&status::CACHE_STATUS) {
            Entry::Occupied(mut e) if e.get().is_empty() => match value {
                Some(v) => {
                    e.insert(v);
                }
                None => {
                    e.remove();
                }
            },
            Entry::Occupied(mut e) => {
                if let Some(v) = value {
                    e.append(v);
                }
            }
            Entry::Vacant(e) => {
                if let Some(v) = value {
                    e.insert(v);
                }
            }
        }
        respond_with(status, headers, body)
    }

    pub(super) fn gateway_timeout<B>(&self, detail: &str) -> Resp<B> {
        Counters::outcome(&self.counters.gateway_timeouts, "gateway_timeout");
        self.gateway_error(StatusCode::GATEWAY_TIMEOUT, detail)
    }

    /// An empty `status` answer of the cache's own, `detail` saying why
    /// in `Cache-Status`.
    pub(super) fn gateway_error<B>(&self, status: StatusCode, detail: &str) -> Resp<B> {
        let mut resp = Response::new(ResponseBody::empty());
        *resp.status_mut() = status;
        self.set_status(resp.headers_mut(), format_args!("detail={detail}"));
        resp
    }

    pub(super) fn passthrough<B>(&self, resp: Response<B>, fwd: &'static str) -> Resp<B> {
        let (mut parts, body) = resp.into_parts();
        self.set_fwd_status(&mut parts.headers, fwd, false);
        Response::from_parts(parts, ResponseBody::origin(body, None))
    }
}

/// 400 for a request whose authority can't be settled; an HTTP/1
/// connection closes after it (the rest of what the client sent is
/// suspect; HTTP/2 has no `Connection` field).
pub(super) fn bad_request<B>(reason: &'static str, version: http::Version) -> Resp<B> {
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if version <= http::Version::HTTP_11 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let body = ResponseBody::stored(Bytes::from_static(reason.as_bytes()), None);
    respond_with(StatusCode::BAD_REQUEST, headers, body)
}

pub(super) fn respond_with<B>(
    status: StatusCode,
    headers: HeaderMap,
    body: ResponseBody<B>,
) -> Resp<B> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Cache<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
{
    type Response = Resp<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<ResB, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        // The authority is settled first, for every method: the key holds
        // exactly the `Host` the inner service will see.
        let key = if req.method() == Method::CONNECT {
            // Its target is an authority-form host and port, never cached.
            CacheKey::from_request(&req)
        } else {
            match authority::settle(&mut req) {
                Ok(key) => key,
                Err(refused) => {
                    Counters::outcome(&shared.counters.rejected, "rejected");
                    return ResponseFuture::ready(bad_request(refused.reason(), req.version()));
                }
            }
        };
        let key = match &shared.config.key_rules {
            Some(rules) if req.method() != Method::CONNECT => rules.apply(&mut req, key),
            _ => key,
        };
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let method = req.method();
        if method != Method::GET && method != Method::HEAD {
            // RFC 9110 §9.2.1: GET, HEAD, OPTIONS and TRACE are safe;
            // everything else, extension methods included, may change
            // the resource.
            // CONNECT targets a tunnel's authority, no stored resource.
            let invalidates = !matches!(*method, Method::OPTIONS | Method::TRACE | Method::CONNECT);
            return ResponseFuture::boxed(other_method(shared, inner, req, key, invalidates));
        }
        let fields = RequestFields::read(req.headers());
        let mut bypass = fields.bypass;
        // RFC 9110 §14.2: a range applies to GET only. A request that
        // bypasses the cache goes on untouched.
        let range = if fields.range && !bypass && method == Method::GET {
            match Ranged::read(req.headers()) {
                RangeRead::One(r) => Some(r),
                // Answered whole, from the cache or the origin.
                RangeRead::Several => {
                    strip_range(req.headers_mut());
                    None
                }
                // Another unit, or no valid range: the origin decides.
                RangeRead::Invalid => {
                    bypass = true;
                    None
                }
            }
        } else {
            None
        };
        if bypass {
            Counters::outcome(&shared.counters.bypassed, "bypass");
            return ResponseFuture::boxed(async move {
                let resp = call_inner(inner, req).await?;
                Ok(shared.passthrough(resp, "bypass"))
            });
        }
        let req_cc = fields.directives;
        // The field scan above already knows whether a hit can be a 304: an
        // unconditional request skips the precondition lookups.
        let conds = Client {
            conds: if fields.conditional {
                Preconditions::from_headers(req.headers())
            } else {
                Preconditions::default()
            },
            range,
            route: route_of(&req).map(|r| shared.counters.routes.get(r)),
        };
        if !shared.config.serve_authorized && fields.authorization {
            // Its answer may depend on who asks (an origin seldom says
            // `Vary: Authorization`): ask the origin. What it answers may
            // still be stored when §3.5 allows.
            let decision = Decision::Miss {
                vary_miss: false,
                alone: false,
                partial: false,
            };
            return respond(shared, inner, req, key, req_cc, conds, decision);
        }
        let mut lookup = shared.store.get(&key);
        let Some(found) = lookup.take_ready() else {
            return ResponseFuture::boxed(async move {
                let r = lookup.await;
                let variants = shared.found(r);
                let now = shared.now();
                let decision = shared.decide(
                    req.headers(),
                    &req_cc,
                    variants.as_ref(),
                    now,
                    conds.range.as_ref(),
                );
                respond(shared, inner, req, key, req_cc, conds, decision).await
            });
        };
        let variants = shared.found(found);
        let now = shared.now();
        match shared.decide(
            req.headers(),
            &req_cc,
            variants.as_ref(),
            now,
            conds.range.as_ref(),
        ) {
            Decision::Fresh(e) => {
                Counters::outcome(&shared.counters.hits, "hit");
                ResponseFuture::ready(shared.serve(&e, req.method(), &conds, now, Via::Hit))
            }
            Decision::MaxStale(e) => {
                Counters::outcome(&shared.counters.stale_served, "stale");
                ResponseFuture::ready(shared.serve(&e, req.method(), &conds, now, Via::MaxStale))
            }
            Decision::OnlyIfCached => {
                ResponseFuture::ready(shared.gateway_timeout("only-if-cached"))
            }
            decision => respond(shared, inner, req, key, req_cc, conds, decision),
        }
    }
}

/// The route template the request matched, if the router said.
#[allow(unused_variables)]
fn route_of<B>(req: &Request<B>) -> Option<&str> {
    #[cfg(feature = "axum")]
    if let Some(p) = req.extensions().get::<axum::extract::MatchedPath>() {
        return Some(p.as_str());
    }
    None
}

/// A GET or HEAD once the store's answer is decided (or, with
/// `Authorization`, without asking it): a stored response served (a
/// hit found through a store that answers later, or stale serving), or a
/// future that goes to the origin (or waits for the request already
/// there).
fn respond<S, ReqB, ResB>(
    shared: Arc<Shared>,
    inner: S,
    req: Request<ReqB>,
    key: CacheKey,
    req_cc: CacheControl,
    conds: Client,
    decision: Decision,
) -> ResponseFuture<ResB, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
{
    let now = shared.now();
    let mut alone = false;
    let (stale, fwd) = match decision {
        Decision::Fresh(e) => {
            Counters::outcome(&shared.counters.hits, "hit");
            return ResponseFuture::ready(shared.serve(&e, req.method(), &conds, now, Via::Hit));
        }
        Decision::MaxStale(e) => {
            Counters::outcome(&shared.counters.stale_served, "stale");
            return ResponseFuture::ready(shared.serve(
                &e,
                req.method(),
                &conds,
                now,
                Via::MaxStale,
            ));
        }
        Decision::OnlyIfCached => {
            return ResponseFuture::ready(shared.gateway_timeout("only-if-cached"));
        }
        Decision::WhileRevalidate(e) => {
            let runtime = tokio::runtime::Handle::try_current();
            match (runtime, shared.flights.try_lead(&key)) {
                (Ok(rt), Some(flight)) => {
                    Counters::outcome(&shared.counters.stale_served, "stale");
                    Counters::add(&shared.counters.background_refreshes);
                    let resp = shared.serve(&e, req.method(), &conds, now, Via::WhileRevalidate);
                    let (mut parts, body) = req.into_parts();
                    // The refresh asks for the representation (a HEAD that
                    // found a stale GET refreshes with a GET).
                    parts.method = Method::GET;
                    strip_client_conditions(&mut parts.headers);
                    strip_range(&mut parts.headers);
                    add_validators(&mut parts.headers, &e);
                    let fetch = Fetch {
                        key,
                        req_cc,
                        stale: Some(e),
                        flight: Some(flight),
                        fwd: "stale",
                        // A background refresh answers no client.
                        client: Client::default(),
                        marked: false,
                        own_answer: false,
                    };
                    rt.spawn(refresh(
                        shared,
                        inner,
                        Request::from_parts(parts, body),
                        fetch,
                    ));
                    return ResponseFuture::ready(resp);
                }
                // A refresh is under way already: the stale response is
                // served while it runs ("once").
                (Ok(_), None) => {
                    Counters::outcome(&shared.counters.stale_served, "stale");
                    return ResponseFuture::ready(shared.serve(
                        &e,
                        req.method(),
                        &conds,
                        now,
                        Via::WhileRevalidate,
                    ));
                }
                // No runtime to refresh on: validate in line.
                (Err(_), _) => (Some(e), "stale"),
            }
        }
        Decision::Validate(e) => {
            let fwd = if req_cc.no_cache() || req_cc.max_age().is_some() {
                "request"
            } else {
                "stale"
            };
            (Some(e), fwd)
        }
        Decision::Miss {
            vary_miss,
            alone: own,
            partial,
        } => {
            // A request with implicit fields the stored variant lacks: if
            // it led the URL's flight, waiters for the shared variant would
            // find it still stale and each go to the origin.
            alone = own;
            let fwd = if req.headers().contains_key(header::AUTHORIZATION)
                && !shared.config.serve_authorized
            {
                "request"
            } else if partial {
                "partial"
            } else if vary_miss {
                "vary-miss"
            } else {
                "uri-miss"
            };
            (None, fwd)
        }
    };

    // Coalescing: one fetch per key; the others wait, then look again.
    let mut flight = None;
    let may_coalesce = shared.config.coalesce
        && !alone
        && req.method() == Method::GET
        && !req.headers().contains_key(header::AUTHORIZATION)
        && !req_cc.no_store()
        // Each range is its own request.
        && conds.range.is_none();
    // Found uncacheable lately: no waiting for a leader, and no second
    // mark when the answer is uncacheable again (should the mark lapse
    // meanwhile, the URL goes unmarked until an answer marks it anew:
    // one round of coalescing more).
    let marked = may_coalesce && shared.flights.is_uncacheable(&key);
    let coalesces = may_coalesce && !marked && tokio::runtime::Handle::try_current().is_ok();
    if coalesces {
        match shared.flights.join(&key) {
            Join::Leader(g) => flight = Some(g),
            Join::Waiter(w) => {
                Counters::add(&shared.counters.coalesced);
                // The waiting has a future of its own: the leader's path
                // (every miss) keeps a small one.
                return ResponseFuture::boxed(async move {
                    if !w.wait(shared.config.coalesce_timeout).await {
                        Counters::add(&shared.counters.coalesce_timeouts);
                    }
                    let variants = shared.lookup(&key).await;
                    let now = shared.now();
                    // Only a response usable without the origin ends the
                    // wait; anything else goes to the origin (without
                    // leading).
                    let retry = CacheControl::new();
                    let cc = if req_cc.no_cache() || req_cc.max_age().is_some() {
                        // The leader just validated: that is what the
                        // client's no-cache / max-age=0 asked for.
                        &retry
                    } else {
                        &req_cc
                    };
                    let range = conds.range.as_ref();
                    if let Decision::Fresh(e) =
                        shared.decide(req.headers(), cc, variants.as_ref(), now, range)
                    {
                        Counters::outcome(&shared.counters.hits, "hit");
                        return Ok(shared.serve(&e, req.method(), &conds, now, Via::Collapsed));
                    }
                    let fetch = Fetch {
                        key,
                        req_cc,
                        stale,
                        flight: None,
                        fwd,
                        client: conds,
                        marked,
                        own_answer: super::origin::asks_own_answer(req.headers()),
                    };
                    fetch_origin(shared, inner, req, fetch).await
                });
            }
        }
    }
    let fetch = Fetch {
        key,
        req_cc,
        stale,
        flight,
        fwd,
        client: conds,
        marked,
        own_answer: super::origin::asks_own_answer(req.headers()),
    };
    ResponseFuture::boxed(fetch_origin(shared, inner, req, fetch))
}
