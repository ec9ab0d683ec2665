//! [`CacheService`]: the request path of the cache.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use super::authority;
use super::body::{CacheBody, Tee};
use super::entry::{self, CachedResponse, NotStorable};
use super::flight::{FlightGuard, Flights, Join};
use super::key::CacheKey;
use super::layer::{CacheLayer, Config};
use super::stats::{CacheStats, Counters};
use super::store::{CacheStore, StoreError, StoreFuture, Variants};
use super::vary::{RequestVary, VaryKey, VaryRefusal};
use crate::headers::{CacheControl, EntityTagList, HttpDate};
use http::header::Entry;

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
pub struct CacheService<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S> CacheService<S> {
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

type Resp<B> = Response<CacheBody<B>>;
type BoxFut<B, E> = Pin<Box<dyn Future<Output = Result<Resp<B>, E>> + Send>>;

/// The future of [`CacheService`]: a response at hand (a hit never
/// allocates a future), or the boxed origin path (whose network I/O
/// dwarfs one allocation).
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<B, E> {
    kind: FutKind<B, E>,
}

// The response stays inline: boxing it would put an allocation back on
// the hit path this variant exists to keep free of one.
#[allow(clippy::large_enum_variant)]
enum FutKind<B, E> {
    Ready(Option<Resp<B>>),
    Boxed(BoxFut<B, E>),
}

impl<B, E> std::fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            FutKind::Ready(_) => "ResponseFuture::Ready",
            FutKind::Boxed(_) => "ResponseFuture::Origin",
        })
    }
}

impl<B, E> ResponseFuture<B, E> {
    fn ready(r: Resp<B>) -> Self {
        Self {
            kind: FutKind::Ready(Some(r)),
        }
    }
    fn boxed(f: impl Future<Output = Result<Resp<B>, E>> + Send + 'static) -> Self {
        Self {
            kind: FutKind::Boxed(Box::pin(f)),
        }
    }
}

impl<B, E> Unpin for ResponseFuture<B, E> {}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Resp<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.kind {
            FutKind::Ready(r) => match r.take() {
                Some(r) => Poll::Ready(Ok(r)),
                // Polled after completion: never ready again.
                None => Poll::Pending,
            },
            FutKind::Boxed(f) => f.as_mut().poll(cx),
        }
    }
}

/// What to do with a GET or HEAD, given what the store holds.
enum Decision {
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

/// How a response came to be, for `Cache-Status`.
#[derive(Clone, Copy)]
enum Via {
    Hit,
    Collapsed,
    MaxStale,
    WhileRevalidate,
    StaleIfError(Option<StatusCode>),
    Revalidated,
}

/// What the cache needs to know of a GET or HEAD's fields, read in one
/// pass over the field names (a request has few; hashing each name the
/// cache asks about would cost more).
struct RequestFields {
    /// `Range`, `If-Match`, `If-Unmodified-Since` or `If-Range`: the
    /// cache stores whole responses only and evaluates only the two other
    /// preconditions, so such requests go straight through.
    bypass: bool,
    authorization: bool,
    /// `If-None-Match` or `If-Modified-Since`: a hit may be a 304.
    conditional: bool,
    directives: CacheControl,
}

impl RequestFields {
    fn read(headers: &HeaderMap) -> Self {
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
struct ClientConditions {
    if_none_match: Option<HeaderValue>,
    if_none_match_more: Vec<HeaderValue>,
    if_modified_since: Option<HeaderValue>,
}

impl ClientConditions {
    fn take(headers: &mut HeaderMap) -> Self {
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

    fn as_headers(&self) -> HeaderMap {
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
fn not_modified(req: &HeaderMap, status: StatusCode, resp: &HeaderMap) -> bool {
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

/// `location` (from `Location` or `Content-Location`) as a key, if it is
/// on `host` (RFC 9111 §4.4: only same-origin URIs are invalidated).
/// `host` is the request's settled authority; the location's is
/// normalized the same way before they are compared.
fn same_origin_key(host: &str, location: &HeaderValue) -> Option<CacheKey> {
    let uri: Uri = location.to_str().ok()?.parse().ok()?;
    match uri.authority() {
        Some(a) => {
            let theirs = authority::normalize(a.as_str().as_bytes())?;
            (theirs == host).then(|| CacheKey::new(host.as_bytes(), &uri))
        }
        None if uri.path().starts_with('/') => Some(CacheKey::new(host.as_bytes(), &uri)),
        None => None,
    }
}

impl Shared {
    fn now(&self) -> SystemTime {
        self.config.clock.system_time()
    }

    /// A lookup result, errors counted and read as "nothing stored".
    fn found(&self, r: Result<Option<Variants>, StoreError>) -> Option<Variants> {
        r.unwrap_or_else(|_| {
            Counters::add(&self.counters.store_errors);
            None
        })
    }

    async fn lookup(&self, key: &CacheKey) -> Option<Variants> {
        let r = self.store.get(key).await;
        self.found(r)
    }

    /// Stores `entry` under `key` for as long as it can be used.
    pub(crate) fn store_entry(&self, key: CacheKey, entry: CachedResponse) {
        self.flights.mark_cacheable(&key);
        let ttl = entry.retention(self.now(), self.config.validator_grace);
        let fut = self.store.put(key, Arc::new(entry), ttl);
        self.drive(fut, true);
    }

    /// Completes a store operation: at once when it is ready (memory), on
    /// the runtime otherwise; failures counted.
    fn drive<T: Send + 'static>(&self, mut fut: StoreFuture<T>, is_store: bool) {
        let counters = Arc::clone(&self.counters);
        let done = move |ok: bool| {
            Counters::add(if !ok {
                &counters.store_errors
            } else if is_store {
                &counters.stores
            } else {
                return;
            });
        };
        if let Some(r) = fut.take_ready() {
            done(r.is_ok());
        } else if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { done(fut.await.is_ok()) });
        } else {
            done(false);
        }
    }

    fn decide(
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
    fn stale_if_error(&self, e: &CachedResponse, req_cc: &CacheControl, now: SystemTime) -> bool {
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

    fn status_value(&self, rest: std::fmt::Arguments<'_>) -> Option<HeaderValue> {
        let name = self.config.status_name.as_deref()?;
        let mut s = String::with_capacity(64);
        s.push_str(name);
        s.push_str("; ");
        std::fmt::Write::write_fmt(&mut s, rest).ok()?;
        // Hands the buffer over instead of copying it.
        HeaderValue::from_maybe_shared(Bytes::from(s)).ok()
    }

    fn set_status(&self, headers: &mut HeaderMap, rest: std::fmt::Arguments<'_>) {
        if let Some(v) = self.status_value(rest) {
            headers.append(entry::CACHE_STATUS.clone(), v);
        }
    }

    /// A response from a stored one: 304 when the client's condition
    /// holds, headers only for HEAD, with `Age` and `Cache-Status`.
    fn serve<B>(
        &self,
        e: &CachedResponse,
        method: &Method,
        req: &HeaderMap,
        now: SystemTime,
        via: Via,
    ) -> Resp<B> {
        let age = e.age(now);
        let ttl = e.facts.lifetime.as_secs() as i64 - age.as_secs() as i64;
        let is_304 = not_modified(req, e.status, &e.headers);
        let (status, mut headers, body) = if is_304 {
            (
                StatusCode::NOT_MODIFIED,
                entry::not_modified_headers(&e.headers),
                CacheBody::empty(),
            )
        } else if method == Method::HEAD {
            (e.status, e.template.clone(), CacheBody::empty())
        } else {
            (
                e.status,
                e.template.clone(),
                CacheBody::stored(e.body.clone(), e.trailers.clone()),
            )
        };
        headers.insert(header::AGE, entry::age_value(age));
        // The template's empty placeholder (there when no upstream cache
        // sent a Cache-Status) takes our member in place; otherwise it
        // follows the upstream ones (RFC 9211 §2).
        let value = self.cache_status(via, ttl);
        match headers.entry(&entry::CACHE_STATUS) {
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

    /// Our `Cache-Status` member for an answer from the store (`None`
    /// when the header is off).
    fn cache_status(&self, via: Via, ttl: i64) -> Option<HeaderValue> {
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

    fn gateway_timeout<B>(&self, detail: &str) -> Resp<B> {
        Counters::add(&self.counters.gateway_timeouts);
        let mut resp = Response::new(CacheBody::empty());
        *resp.status_mut() = StatusCode::GATEWAY_TIMEOUT;
        self.set_status(resp.headers_mut(), format_args!("detail={detail}"));
        resp
    }

    fn passthrough<B>(&self, resp: Response<B>, fwd: &str) -> Resp<B> {
        let (mut parts, body) = resp.into_parts();
        self.set_status(&mut parts.headers, format_args!("fwd={fwd}"));
        Response::from_parts(parts, CacheBody::origin(body, None))
    }

    fn tags(&self, headers: &mut HeaderMap) -> Vec<Box<str>> {
        let Some(name) = &self.config.tag_header else {
            return Vec::new();
        };
        let mut tags: Vec<Box<str>> = Vec::new();
        for v in headers.get_all(name) {
            let Ok(s) = v.to_str() else { continue };
            for t in s.split(|c: char| c.is_ascii_whitespace() || c == ',') {
                if !t.is_empty() && !tags.iter().any(|x| &**x == t) && tags.len() < 64 {
                    tags.push(t.into());
                }
            }
        }
        if self.config.strip_tag_header {
            headers.remove(name);
        }
        tags
    }
}

/// 400 for a request whose authority can't be settled; an HTTP/1
/// connection closes after it (the rest of what the client sent is
/// suspect; HTTP/2 has no `Connection` field).
fn bad_request<B>(reason: &'static str, version: http::Version) -> Resp<B> {
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if version <= http::Version::HTTP_11 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let body = CacheBody::stored(Bytes::from_static(reason.as_bytes()), None);
    respond_with(StatusCode::BAD_REQUEST, headers, body)
}

fn respond_with<B>(status: StatusCode, headers: HeaderMap, body: CacheBody<B>) -> Resp<B> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// A request that found `stale` (or nothing) and goes to the origin.
struct Fetch {
    key: CacheKey,
    req_cc: CacheControl,
    stale: Option<Arc<CachedResponse>>,
    flight: Option<FlightGuard>,
    /// `Cache-Status` forward reason of a plain miss.
    fwd: &'static str,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for CacheService<S>
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
                    Counters::add(&shared.counters.rejected);
                    return ResponseFuture::ready(bad_request(refused.reason(), req.version()));
                }
            }
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
        if fields.bypass {
            Counters::add(&shared.counters.bypassed);
            return ResponseFuture::boxed(async move {
                let resp = call_inner(inner, req).await?;
                Ok(shared.passthrough(resp, "bypass"))
            });
        }
        let req_cc = fields.directives;
        if !shared.config.serve_authorized && fields.authorization {
            // Its answer may depend on who asks (an origin seldom says
            // `Vary: Authorization`): ask the origin. What it answers may
            // still be stored when §3.5 allows.
            let decision = Decision::Miss {
                vary_miss: false,
                alone: false,
            };
            return ResponseFuture::boxed(respond(shared, inner, req, key, req_cc, decision));
        }
        let mut lookup = shared.store.get(&key);
        let Some(found) = lookup.take_ready() else {
            return ResponseFuture::boxed(async move {
                let r = lookup.await;
                let variants = shared.found(r);
                let now = shared.now();
                let decision = shared.decide(req.headers(), &req_cc, variants.as_ref(), now);
                respond(shared, inner, req, key, req_cc, decision).await
            });
        };
        let variants = shared.found(found);
        let now = shared.now();
        // The field scan above already knows whether a hit can be a 304: an
        // unconditional request skips the precondition lookups (an empty
        // map answers them without hashing).
        let none = HeaderMap::new();
        let conditions = if fields.conditional {
            req.headers()
        } else {
            &none
        };
        match shared.decide(req.headers(), &req_cc, variants.as_ref(), now) {
            Decision::Fresh(e) => {
                Counters::add(&shared.counters.hits);
                ResponseFuture::ready(shared.serve(&e, req.method(), conditions, now, Via::Hit))
            }
            Decision::MaxStale(e) => {
                Counters::add(&shared.counters.stale_served);
                ResponseFuture::ready(shared.serve(
                    &e,
                    req.method(),
                    conditions,
                    now,
                    Via::MaxStale,
                ))
            }
            Decision::OnlyIfCached => {
                ResponseFuture::ready(shared.gateway_timeout("only-if-cached"))
            }
            decision => ResponseFuture::boxed(respond(shared, inner, req, key, req_cc, decision)),
        }
    }
}

async fn call_inner<S, R>(mut inner: S, req: R) -> Result<S::Response, S::Error>
where
    S: Service<R>,
{
    // `inner` is the clone the caller readied (tower's contract): call it
    // once.
    inner.call(req).await
}

/// The asynchronous part of a GET or HEAD.
async fn respond<S, ReqB, ResB>(
    shared: Arc<Shared>,
    inner: S,
    req: Request<ReqB>,
    key: CacheKey,
    req_cc: CacheControl,
    decision: Decision,
) -> Result<Resp<ResB>, S::Error>
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
            Counters::add(&shared.counters.hits);
            return Ok(shared.serve(&e, req.method(), req.headers(), now, Via::Hit));
        }
        Decision::MaxStale(e) => {
            Counters::add(&shared.counters.stale_served);
            return Ok(shared.serve(&e, req.method(), req.headers(), now, Via::MaxStale));
        }
        Decision::OnlyIfCached => return Ok(shared.gateway_timeout("only-if-cached")),
        Decision::WhileRevalidate(e) => {
            let runtime = tokio::runtime::Handle::try_current();
            match (runtime, shared.flights.try_lead(&key)) {
                (Ok(rt), Some(flight)) => {
                    Counters::add(&shared.counters.stale_served);
                    Counters::add(&shared.counters.background_refreshes);
                    let resp =
                        shared.serve(&e, req.method(), req.headers(), now, Via::WhileRevalidate);
                    let (mut parts, body) = req.into_parts();
                    // The refresh asks for the representation (a HEAD that
                    // found a stale GET refreshes with a GET).
                    parts.method = Method::GET;
                    ClientConditions::take(&mut parts.headers);
                    add_validators(&mut parts.headers, &e);
                    let fetch = Fetch {
                        key,
                        req_cc,
                        stale: Some(e),
                        flight: Some(flight),
                        fwd: "stale",
                    };
                    rt.spawn(refresh(
                        shared,
                        inner,
                        Request::from_parts(parts, body),
                        fetch,
                    ));
                    return Ok(resp);
                }
                // A refresh is under way already: the stale response is
                // served while it runs ("once").
                (Ok(_), None) => {
                    Counters::add(&shared.counters.stale_served);
                    return Ok(shared.serve(
                        &e,
                        req.method(),
                        req.headers(),
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
        } => {
            // A request with implicit fields the stored variant lacks: if
            // it led the URL's flight, waiters for the shared variant would
            // find it still stale and each go to the origin.
            alone = own;
            let fwd = if req.headers().contains_key(header::AUTHORIZATION)
                && !shared.config.serve_authorized
            {
                "request"
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
    let coalesces = shared.config.coalesce
        && !alone
        && req.method() == Method::GET
        && !req.headers().contains_key(header::AUTHORIZATION)
        && !shared.flights.is_uncacheable(&key)
        && !req_cc.no_store()
        && tokio::runtime::Handle::try_current().is_ok();
    if coalesces {
        match shared.flights.join(&key) {
            Join::Leader(g) => flight = Some(g),
            Join::Waiter(w) => {
                Counters::add(&shared.counters.coalesced);
                if !w.wait(shared.config.coalesce_timeout).await {
                    Counters::add(&shared.counters.coalesce_timeouts);
                }
                let variants = shared.lookup(&key).await;
                let now = shared.now();
                // Only a response usable without the origin ends the wait;
                // anything else goes to the origin (without leading).
                let retry = CacheControl::new();
                let cc = if req_cc.no_cache() || req_cc.max_age().is_some() {
                    // The leader just validated: that is what the client's
                    // no-cache / max-age=0 asked for.
                    &retry
                } else {
                    &req_cc
                };
                if let Decision::Fresh(e) = shared.decide(req.headers(), cc, variants.as_ref(), now)
                {
                    Counters::add(&shared.counters.hits);
                    return Ok(shared.serve(&e, req.method(), req.headers(), now, Via::Collapsed));
                }
            }
        }
    }
    let fetch = Fetch {
        key,
        req_cc,
        stale,
        flight,
        fwd,
    };
    fetch_origin(shared, inner, req, fetch).await
}

fn add_validators(headers: &mut HeaderMap, e: &CachedResponse) {
    if let Some(etag) = &e.facts.etag {
        headers.insert(header::IF_NONE_MATCH, etag.to_header_value());
    }
    if let Some(lm) = e.facts.last_modified {
        headers.insert(header::IF_MODIFIED_SINCE, lm.to_header_value());
    }
}

/// Goes to the origin for a GET or HEAD: unconditionally (the client's
/// own validators kept aside) or, with a stored response, conditionally
/// on its validators; then stores and serves what comes back.
async fn fetch_origin<S, ReqB, ResB>(
    shared: Arc<Shared>,
    inner: S,
    req: Request<ReqB>,
    fetch: Fetch,
) -> Result<Resp<ResB>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
{
    let (mut parts, body) = req.into_parts();
    let method = parts.method.clone();
    let storing = method == Method::GET && !fetch.req_cc.no_store();
    let client = if storing {
        ClientConditions::take(&mut parts.headers)
    } else {
        ClientConditions::default()
    };
    let req_headers = parts.headers.clone();
    let mut client_headers = client.as_headers();
    if !storing {
        client_headers = HeaderMap::new();
    }
    let validating = match &fetch.stale {
        Some(e) if storing && (e.facts.etag.is_some() || e.facts.last_modified.is_some()) => {
            add_validators(&mut parts.headers, e);
            true
        }
        _ => false,
    };
    let request_time = shared.now();
    let result = call_inner(inner, Request::from_parts(parts, body)).await;
    let response_time = shared.now();
    let resp = match result {
        Ok(resp) => resp,
        Err(err) => {
            drop(fetch.flight);
            if let Some(e) = &fetch.stale {
                if shared.stale_if_error(e, &fetch.req_cc, response_time) {
                    Counters::add(&shared.counters.stale_served);
                    return Ok(shared.serve(
                        e,
                        &method,
                        &client_headers,
                        response_time,
                        Via::StaleIfError(None),
                    ));
                }
                if e.facts.must_revalidate {
                    return Ok(shared.gateway_timeout("origin-unreachable"));
                }
            }
            return Err(err);
        }
    };
    let status = resp.status();
    if let (true, Some(e)) = (
        status == StatusCode::NOT_MODIFIED && validating,
        &fetch.stale,
    ) {
        // §4.3.4: the 304 freshens the stored response it validated.
        let etag_ok = crate::headers::EntityTag::from_headers(resp.headers())
            .is_none_or(|t| e.facts.etag.as_ref().is_some_and(|s| s.weak_eq(&t)));
        if etag_ok {
            Counters::add(&shared.counters.revalidated_304);
            let fresh = e.freshened(
                resp.headers(),
                (request_time, response_time),
                shared.config.heuristic,
            );
            let served = shared.serve(
                &fresh,
                &method,
                &client_headers,
                response_time,
                Via::Revalidated,
            );
            shared.store_entry(fetch.key.clone(), fresh);
            drop(fetch.flight);
            return Ok(served);
        }
        // A 304 for another representation: the stored one is no good.
        let _ = shared.store.remove(&fetch.key).await;
    }
    if status.is_server_error() {
        if let Some(e) = &fetch.stale {
            if shared.stale_if_error(e, &fetch.req_cc, response_time) {
                drop(fetch.flight);
                Counters::add(&shared.counters.stale_served);
                return Ok(shared.serve(
                    e,
                    &method,
                    &client_headers,
                    response_time,
                    Via::StaleIfError(Some(status)),
                ));
            }
        }
    }
    if method == Method::GET {
        Counters::add(if fetch.stale.is_some() {
            &shared.counters.revalidated_200
        } else {
            &shared.counters.misses
        });
    }
    let fwd_status = if fetch.stale.is_some() {
        Some(status)
    } else {
        None
    };
    let (resp, _stored) = new_response(
        &shared,
        resp,
        &method,
        &req_headers,
        &client_headers,
        (request_time, response_time),
        fetch,
        fwd_status,
    );
    Ok(resp)
}

/// A response the origin sent in full: store it (copying the body as it
/// streams to the client) when RFC 9111 allows, and answer the client's
/// own conditional request. Also says whether the response is being
/// stored (the decision, not what `Cache-Status` shows: it may be off).
#[allow(clippy::too_many_arguments)]
fn new_response<ResB>(
    shared: &Arc<Shared>,
    resp: Response<ResB>,
    method: &Method,
    req_headers: &HeaderMap,
    client: &HeaderMap,
    times: (SystemTime, SystemTime),
    fetch: Fetch,
    fwd_status: Option<StatusCode>,
) -> (Resp<ResB>, bool)
where
    ResB: Body<Data = Bytes> + Send + 'static,
{
    let (mut parts, body) = resp.into_parts();
    // RFC 9110 §6.6.1: a cache adds the Date the origin left out.
    if !parts.headers.contains_key(header::DATE) {
        parts
            .headers
            .insert(header::DATE, HttpDate::from(times.1).to_header_value());
    }
    let tags = shared.tags(&mut parts.headers);
    let authorized = req_headers.contains_key(header::AUTHORIZATION);
    let storable = entry::check_storable(
        method,
        parts.status,
        &parts.headers,
        &fetch.req_cc,
        authorized,
        shared.config.store_set_cookie,
        shared.config.heuristic.is_some(),
    )
    .and_then(|()| match body.size_hint().exact() {
        Some(n) if n > shared.config.max_entry_size as u64 => Err(NotStorable::TooLarge),
        _ => Ok(()),
    })
    .and_then(|()| {
        let request = RequestVary::new(req_headers, &shared.config.encodings);
        VaryKey::build(&parts.headers, &request, &shared.config.implicit_vary).map_err(|refused| {
            match refused {
                VaryRefusal::Star => NotStorable::VaryStar,
                VaryRefusal::TooMany => NotStorable::VaryTooLong,
            }
        })
    });
    let fwd = fetch.fwd;
    let stored = storable.is_ok();
    let stored_note = if stored { "; stored" } else { "" };
    let client_304 = not_modified(client, parts.status, &parts.headers);
    let tee = match storable {
        Ok(vary) => Some(Box::new(Tee {
            shared: Arc::clone(shared),
            key: fetch.key,
            status: parts.status,
            headers: parts.headers.clone(),
            times,
            vary,
            tags,
            chunks: Vec::new(),
            size: 0,
            trailers: None,
            flight: fetch.flight,
            finished: false,
        })),
        Err(reason) => {
            if *method == Method::GET {
                Counters::add(&shared.counters.not_stored);
                // Remember the URL when the response, not this request,
                // made it uncacheable.
                // An unknown coding answers the client's own
                // Accept-Encoding (`dcb`, say): not the URL's fault either.
                let request_made_it = fetch.req_cc.no_store()
                    || (authorized && reason == NotStorable::Authorization)
                    || reason == NotStorable::UnknownCoding;
                if !request_made_it {
                    shared.flights.mark_uncacheable(&fetch.key);
                }
            }
            // Uncacheable: the waiters go to the origin at once.
            drop(fetch.flight);
            None
        }
    };
    match fwd_status {
        Some(s) => shared.set_status(
            &mut parts.headers,
            format_args!("fwd={fwd}; fwd-status={}{stored_note}", s.as_u16()),
        ),
        None => shared.set_status(&mut parts.headers, format_args!("fwd={fwd}{stored_note}")),
    }
    let tee = match tee {
        // Nothing more to read: store at once.
        Some(t) if body.is_end_stream() => {
            t.finish();
            None
        }
        t => t,
    };
    if client_304 {
        // The client's validator matches the new response: it gets 304,
        // and the body goes to the store alone.
        if let Some(t) = tee {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(drain(CacheBody::origin(body, Some(t))));
                }
                Err(_) => drop(t),
            }
        }
        let headers = entry::not_modified_headers(&parts.headers);
        let cache_status = parts.headers.get("cache-status").cloned();
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers = headers;
        if let Some(cs) = cache_status {
            parts
                .headers
                .insert(HeaderName::from_static("cache-status"), cs);
        }
        return (Response::from_parts(parts, CacheBody::empty()), stored);
    }
    (
        Response::from_parts(parts, CacheBody::origin(body, tee)),
        stored,
    )
}

/// Reads a body to its end (copying it into the store on the way).
async fn drain<B: Body<Data = Bytes> + Send + 'static>(body: CacheBody<B>) {
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
}

/// A `stale-while-revalidate` refresh, in the background.
async fn refresh<S, ReqB, ResB>(shared: Arc<Shared>, inner: S, req: Request<ReqB>, fetch: Fetch)
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
{
    let req_headers = req.headers().clone();
    let request_time = shared.now();
    let Ok(resp) = call_inner(inner, req).await else {
        // The stale response stays; the next request after the window
        // validates in line.
        return;
    };
    let response_time = shared.now();
    let Some(e) = fetch.stale.clone() else { return };
    if resp.status() == StatusCode::NOT_MODIFIED {
        Counters::add(&shared.counters.revalidated_304);
        let fresh = e.freshened(
            resp.headers(),
            (request_time, response_time),
            shared.config.heuristic,
        );
        shared.store_entry(fetch.key, fresh);
        return;
    }
    if resp.status().is_server_error() {
        return;
    }
    Counters::add(&shared.counters.revalidated_200);
    let key = fetch.key.clone();
    let (resp, stored) = new_response(
        &shared,
        resp,
        &Method::GET,
        &req_headers,
        &HeaderMap::new(),
        (request_time, response_time),
        fetch,
        None,
    );
    if !stored {
        // The origin no longer allows storing: the stale copy goes too.
        let _ = shared.store.remove(&key).await;
    }
    drain(resp.into_body()).await;
}

/// Methods other than GET and HEAD: forwarded; unsafe ones invalidate the
/// target URI and same-origin Location / Content-Location on success
/// (RFC 9111 §4.4).
async fn other_method<S, ReqB, ResB>(
    shared: Arc<Shared>,
    inner: S,
    req: Request<ReqB>,
    key: CacheKey,
    invalidates: bool,
) -> Result<Resp<ResB>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
{
    let resp = call_inner(inner, req).await?;
    let status = resp.status();
    if invalidates && (status.is_success() || status.is_redirection()) {
        let mut keys = vec![key.clone()];
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(k) = resp
                .headers()
                .get(&name)
                .and_then(|v| same_origin_key(key.host(), v))
            {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        for k in keys {
            match shared.store.remove(&k).await {
                Ok(true) => Counters::add(&shared.counters.invalidations),
                Ok(false) => {}
                Err(_) => Counters::add(&shared.counters.store_errors),
            }
        }
    }
    Ok(shared.passthrough(resp, "method"))
}
