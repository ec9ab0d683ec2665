//! The origin: fetching, storing what comes back, background refresh.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use super::body::{ResponseBody, Tee};
use super::entry::CachedResponse;
use super::flight::FlightGuard;
use super::freshness::Facts;
use super::future::Resp;
use super::key::CacheKey;
use super::range::storable_part;
use super::request::{Client, not_modified, strip_client_conditions, strip_range};
use super::routes::Answer;
use super::service::Shared;
use super::stats::Counters;
use super::status::Via;
use super::storable::{self, NotStorable};
use super::store::StoreFuture;
use super::vary::{RequestVary, VaryKey, VaryRefusal};
use crate::headers::{CacheControl, EntityTag, HttpDate};
use crate::headers::{Preconditions, retain_not_modified_fields};

impl Shared {
    /// Stores `entry` under `key` for as long as it can be used.
    pub(crate) fn store_entry(&self, key: CacheKey, entry: CachedResponse) {
        self.flights.mark_cacheable(&key);
        let ttl = entry.retention(
            self.now(),
            self.config.validator_grace,
            self.config.stale_if_unreachable,
        );
        let fut = self.store.put(key, Arc::new(entry), ttl);
        self.drive(fut, true);
    }

    /// Keeps what a 304 freshened (RFC 9111 §4.3.4), unless the fields it
    /// brought now forbid storing (`no-store` or `private`, in
    /// `Cache-Control` or the targeted field the cache obeys): then the
    /// URL's stored responses go (§3), and this one is served only once.
    pub(crate) fn keep_freshened(&self, key: CacheKey, fresh: CachedResponse) {
        let policy = storable::policy(fresh.headers(), &self.config.rules.targets);
        if policy.cc.no_store()
            || policy.cc.private()
            || (!self.config.store_validated && fresh.facts.validated_on_every_use())
        {
            self.flights.mark_uncacheable(&key);
            let fut = self.store.remove(&key);
            self.drive(fut, true);
        } else {
            self.store_entry(key, fresh);
        }
    }

    /// What the storing rules read of this layer's settings (`default_ttl`
    /// for the URL) and of the request (`authorized`).
    fn settings(&self, default_ttl: Option<Duration>, authorized: bool) -> storable::Settings {
        let config = &self.config;
        storable::Settings {
            authorized,
            store_set_cookie: config.store_set_cookie,
            heuristics: config.rules.heuristic.is_some(),
            default_ttl: default_ttl.is_some(),
            validated_only: !config.store_validated,
        }
    }

    /// The storing rules (RFC 9111 §3) and this layer's own
    /// ([`CacheLayer::store_validated`](super::CacheLayer::store_validated))
    /// for a response of `status` under `policy` to a `method` request for
    /// `key`, and the [`Facts`] of the response when it may be stored.
    #[allow(clippy::too_many_arguments)]
    fn may_store(
        &self,
        key: &CacheKey,
        method: &Method,
        status: StatusCode,
        headers: &HeaderMap,
        policy: &storable::Policy,
        req_cc: &CacheControl,
        authorized: bool,
        times: (SystemTime, SystemTime),
    ) -> Result<Facts, NotStorable> {
        let default_ttl = self.config.default_ttl(key);
        let settings = self.settings(default_ttl, authorized);
        // A copy that must be validated before each use saves nothing
        // when the origin is in this process: it answers the conditional
        // request by running the handler all the same (BENCHMARKS.md).
        // `no-cache` is refused there; what else only validation could
        // reuse, here from the response's facts.
        storable::check_storable(method, status, headers, policy, req_cc, &settings)?;
        let facts = Facts::derive(
            status,
            headers,
            times.0,
            times.1,
            &self.config.rules,
            Some(policy),
        )
        .with_default_ttl(status, default_ttl);
        if settings.validated_only && facts.validated_on_every_use() {
            return Err(NotStorable::ValidatedOnly);
        }
        Ok(facts)
    }

    /// Completes a store operation: at once when it is ready (memory), on
    /// the runtime otherwise; failures counted.
    pub(super) fn drive<T: Send + 'static>(&self, mut fut: StoreFuture<T>, is_store: bool) {
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

    pub(super) fn tags(&self, headers: &mut HeaderMap) -> Vec<Box<str>> {
        let Some(name) = &self.config.tag_header else {
            return Vec::new();
        };
        // Most responses carry none: one lookup, not a read and a removal.
        if !headers.contains_key(name) {
            return Vec::new();
        }
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

/// A request that found `stale` (or nothing) and goes to the origin.
pub(super) struct Fetch {
    pub(super) key: CacheKey,
    pub(super) req_cc: CacheControl,
    pub(super) stale: Option<Arc<CachedResponse>>,
    pub(super) flight: Option<FlightGuard>,
    /// `Cache-Status` forward reason of a plain miss.
    pub(super) fwd: &'static str,
    /// The client's own `If-None-Match` / `If-Modified-Since`, answered
    /// by the cache (the origin is asked unconditionally when storing),
    /// and its range.
    pub(super) client: Client,
    /// The URL was marked uncacheable when this request looked
    /// ([`Flights::is_uncacheable`](super::flight::Flights::is_uncacheable)):
    /// an uncacheable answer needn't mark it again, and the request's
    /// fields aren't kept to key a variant by. Only a request that could
    /// coalesce (coalescing on, a GET without `Authorization`, `no-store`
    /// or a range, not kept apart by its implicit fields) is ever marked.
    pub(super) marked: bool,
    /// The client asked for an answer of its own (RFC 7240's
    /// `respond-async`): whatever it gets (a `202`, or a task layer's
    /// `503` or `413`) says nothing of whether the URL's answers can be
    /// kept.
    pub(super) own_answer: bool,
}

/// Whether a request asks for an answer of its own
/// ([`Fetch::own_answer`]).
pub(super) fn asks_own_answer(headers: &HeaderMap) -> bool {
    crate::headers::Prefer::from_headers(headers).respond_async()
}

pub(super) async fn call_inner<S, R>(mut inner: S, req: R) -> Result<S::Response, S::Error>
where
    S: Service<R>,
{
    // `inner` is the clone the caller readied (tower's contract): call it
    // once.
    inner.call(req).await
}

pub(super) fn add_validators(headers: &mut HeaderMap, e: &CachedResponse) {
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
///
/// The request is prepared and `inner` (the clone the caller readied,
/// tower's contract) called at once, as most middleware does in `call`;
/// the future returned holds no more than the inner future and what the
/// answer is judged by (an `async fn` would keep its arguments beside its
/// locals, and the whole is copied into a box on every miss).
pub(super) fn fetch_origin<S, ReqB, ResB>(
    shared: Arc<Shared>,
    mut inner: S,
    req: Request<ReqB>,
    mut fetch: Fetch,
) -> impl Future<Output = Result<Resp<ResB>, S::Error>> + Send + 'static
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
    // A range the store could not answer goes to the origin as asked
    // (with the client's conditions: the answer is stored only as a part
    // to combine); validating a stored response, the whole is asked for.
    let ranged = fetch.client.range.is_some() && fetch.stale.is_none();
    if fetch.stale.is_some() {
        strip_range(&mut parts.headers);
    }
    // Storing, the cache asks unconditionally and answers the client's
    // own conditions itself; otherwise the origin answers them.
    if storing && !ranged {
        strip_client_conditions(&mut parts.headers);
    } else {
        fetch.client.conds = Preconditions::default();
    }
    // Kept to key a stored variant by the fields its `Vary` names. Not
    // for a URL found uncacheable lately: its answer is seldom stored, and
    // if it now may be, it is stored the next time (the mark goes).
    let req_headers = (!fetch.marked).then(|| parts.headers.clone());
    let validating = match &fetch.stale {
        Some(e) if storing && (e.facts.etag.is_some() || e.facts.last_modified.is_some()) => {
            add_validators(&mut parts.headers, e);
            true
        }
        _ => false,
    };
    let request_time = shared.now();
    let call = inner.call(Request::from_parts(parts, body));
    let sent = Sent {
        method,
        req_headers,
        validating,
        ranged,
        request_time,
    };
    async move {
        let result = call.await;
        let validated = match &result {
            Ok(resp) => validation(resp, &sent, &fetch),
            Err(_) => None,
        };
        if validated == Some(false) {
            // A 304 for another representation: the stored one is no
            // good. It goes before this request's flight ends, so a request
            // coming after it doesn't validate with it again.
            let _ = shared.store.remove(&fetch.key).await;
        }
        answered(shared, result, sent, fetch, validated)
    }
}

/// What a 304 to the cache's own conditional request says of the stored
/// response it validated: `Some(true)` when it freshens it (§4.3.4: no
/// validator, or the stored one's), `Some(false)` when it names another
/// representation, `None` for any other answer.
fn validation<B>(resp: &Response<B>, sent: &Sent, fetch: &Fetch) -> Option<bool> {
    let e = fetch.stale.as_ref()?;
    if resp.status() != StatusCode::NOT_MODIFIED || !sent.validating {
        return None;
    }
    Some(
        EntityTag::from_headers(resp.headers())
            .is_none_or(|t| e.facts.etag.as_ref().is_some_and(|s| s.weak_eq(&t))),
    )
}

/// What [`fetch_origin`] sent, for judging the answer.
struct Sent {
    method: Method,
    /// `None` for a URL marked uncacheable ([`Fetch::marked`]).
    req_headers: Option<HeaderMap>,
    /// Conditional on a stored response's validators.
    validating: bool,
    /// A range the store could not answer, asked of the origin as is.
    ranged: bool,
    request_time: SystemTime,
}

/// The origin's answer to a [`fetch_origin`] request: stored, merged or
/// passed on.
fn answered<ResB, E>(
    shared: Arc<Shared>,
    result: Result<Response<ResB>, E>,
    sent: Sent,
    fetch: Fetch,
    validated: Option<bool>,
) -> Result<Resp<ResB>, E>
where
    ResB: Body<Data = Bytes> + Send + 'static,
{
    let Sent {
        method,
        req_headers,
        ranged,
        request_time,
        ..
    } = sent;
    let response_time = shared.now();
    let resp = match result {
        Ok(resp) => resp,
        Err(err) => {
            drop(fetch.flight);
            if let Some(e) = &fetch.stale {
                let via = if shared.stale_if_error(e, &fetch.req_cc, response_time) {
                    Some(Via::StaleIfError(None))
                } else if shared.stale_if_unreachable(e, &fetch.req_cc, response_time) {
                    Some(Via::StaleUnreachable(None))
                } else {
                    None
                };
                if let Some(via) = via {
                    Counters::outcome(&shared.counters.stale_served, "stale");
                    return Ok(shared.serve(e, &method, &fetch.client, response_time, via));
                }
                if e.facts.must_revalidate {
                    return Ok(shared.gateway_timeout("origin-unreachable"));
                }
            }
            return Err(err);
        }
    };
    let status = resp.status();
    if ranged {
        Counters::outcome(&shared.counters.misses, "miss");
        if let Some(r) = fetch.client.route {
            shared.counters.routes.at(r).fetched(Answer::Miss);
        }
        // A range request is never marked: its fields are at hand.
        if let (StatusCode::PARTIAL_CONTENT, Some(req_headers)) = (status, &req_headers) {
            let times = (request_time, response_time);
            return Ok(new_part(&shared, resp, req_headers, times, fetch));
        }
        if status != StatusCode::OK {
            // A 416, a 304 to the client's own condition, an error:
            // answers to this request, not the URL's to store.
            drop(fetch.flight);
            return Ok(shared.passthrough(resp, fetch.fwd));
        }
    }
    if validated == Some(false) {
        // A 304 for another representation than the stored one: it
        // updates nothing (§4.3.4), and the cache has no copy of what it
        // names. It answers the client only when the client's own
        // conditions hold for it; a 304 to a request that set none would
        // be a response to another question. The origin isn't asked again
        // (the request's body went with the first ask): a 502 says what
        // happened, and the next request, finding nothing stored, asks
        // unconditionally.
        let etag = EntityTag::from_headers(resp.headers());
        let lm =
            HttpDate::from_headers(resp.headers(), &header::LAST_MODIFIED).and_then(Result::ok);
        if !not_modified(
            &fetch.client.conds,
            &method,
            StatusCode::OK,
            etag.as_ref(),
            lm,
        ) {
            drop(fetch.flight);
            return Ok(shared.gateway_error(StatusCode::BAD_GATEWAY, "validation-mismatch"));
        }
    }
    if let (Some(true), Some(e)) = (validated, &fetch.stale) {
        // §4.3.4: the 304 freshens the stored response it validated.
        Counters::outcome(&shared.counters.revalidated_304, "revalidated");
        let fresh = Arc::new(e.freshened(
            resp.headers(),
            (request_time, response_time),
            &shared.config.rules,
        ));
        let served = shared.serve(
            &fresh,
            &method,
            &fetch.client,
            response_time,
            Via::Revalidated,
        );
        shared.keep_freshened(fetch.key.clone(), Arc::unwrap_or_clone(fresh));
        drop(fetch.flight);
        return Ok(served);
    }
    if status.is_server_error() {
        if let Some(e) = &fetch.stale {
            // 502, 503 and 504: a gateway or the origin saying it can't
            // answer now, as good as unreachable.
            let gone = matches!(status.as_u16(), 502..=504);
            let via = if shared.stale_if_error(e, &fetch.req_cc, response_time) {
                Some(Via::StaleIfError(Some(status)))
            } else if gone && shared.stale_if_unreachable(e, &fetch.req_cc, response_time) {
                Some(Via::StaleUnreachable(Some(status)))
            } else {
                None
            };
            if let Some(via) = via {
                drop(fetch.flight);
                Counters::outcome(&shared.counters.stale_served, "stale");
                return Ok(shared.serve(e, &method, &fetch.client, response_time, via));
            }
        }
    }
    if method == Method::GET && !ranged {
        if fetch.stale.is_some() {
            Counters::outcome(&shared.counters.revalidated_200, "modified");
        } else {
            Counters::outcome(&shared.counters.misses, "miss");
        }
        if let Some(r) = fetch.client.route {
            shared
                .counters
                .routes
                .at(r)
                .fetched(if fetch.stale.is_some() {
                    Answer::Revalidated
                } else {
                    Answer::Miss
                });
        }
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
        req_headers.as_ref(),
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
///
/// `req_headers` are the request's fields, `None` when they weren't kept
/// ([`Fetch::marked`]: such a request had no `Authorization`). A response
/// that could be stored then isn't, and the URL's uncacheable mark goes,
/// so the next request keeps its fields and stores the answer.
#[allow(clippy::too_many_arguments)]
pub(super) fn new_response<ResB>(
    shared: &Arc<Shared>,
    resp: Response<ResB>,
    method: &Method,
    req_headers: Option<&HeaderMap>,
    times: (SystemTime, SystemTime),
    fetch: Fetch,
    fwd_status: Option<StatusCode>,
) -> (Resp<ResB>, bool)
where
    ResB: Body<Data = Bytes> + Send + 'static,
{
    let (mut parts, body) = resp.into_parts();
    add_date(&mut parts.headers, times.1);
    let tags = shared.tags(&mut parts.headers);
    let authorized = req_headers.is_some_and(|h| h.contains_key(header::AUTHORIZATION));
    let policy = storable::policy(&parts.headers, &shared.config.rules.targets);
    let storable = shared
        .may_store(
            &fetch.key,
            method,
            parts.status,
            &parts.headers,
            &policy,
            &fetch.req_cc,
            authorized,
            times,
        )
        .and_then(|facts| match body.size_hint().exact() {
            Some(n) if n > shared.config.max_entry_size as u64 => Err(NotStorable::TooLarge),
            _ => Ok(facts),
        })
        .and_then(|facts| {
            let Some(req_headers) = req_headers else {
                // Storable but for its fields: the mark goes (unless its
                // Vary could never be keyed, whatever the request), and
                // a stale copy this answer would have replaced goes too.
                let empty = HeaderMap::new();
                let no_fields = RequestVary::new(&empty, &shared.config.encodings);
                VaryKey::build(&parts.headers, &no_fields, &shared.config.implicit_vary)
                    .map_err(unkeyable)?;
                shared.flights.mark_cacheable(&fetch.key);
                if fetch.stale.is_some() {
                    shared.drive(shared.store.remove(&fetch.key), false);
                }
                return Err(NotStorable::Unkeyed);
            };
            let request = RequestVary::new(req_headers, &shared.config.encodings);
            VaryKey::build(&parts.headers, &request, &shared.config.implicit_vary)
                .map(|vary| (vary, facts))
                .map_err(unkeyable)
        });
    let fwd = fetch.fwd;
    let stored = storable.is_ok();
    let stored_note = if stored { "; stored" } else { "" };
    let client_304 = !fetch.client.conds.is_empty()
        && not_modified(
            &fetch.client.conds,
            method,
            parts.status,
            EntityTag::from_headers(&parts.headers).as_ref(),
            HttpDate::from_headers(&parts.headers, &header::LAST_MODIFIED).and_then(Result::ok),
        );
    let tee = match storable {
        Ok((vary, facts)) => Some(Tee::new(
            shared,
            fetch.key,
            parts.status,
            parts.headers.clone(),
            times,
            (vary, tags, Some(facts)),
            fetch.flight,
            None,
        )),
        Err(reason) => {
            if *method == Method::GET {
                Counters::add(&shared.counters.not_stored);
                // Remember the URL when the response, not this request,
                // made it uncacheable.
                // An unknown coding answers the client's own
                // Accept-Encoding (`x-custom`, say): not the URL's fault
                // either.
                // A 304 answers a conditional request, nothing more: it
                // says nothing of whether the URL's answers can be kept.
                // Nor does an answer to a client that asked for one of
                // its own (RFC 7240's `respond-async`).
                let request_made_it = fetch.req_cc.no_store()
                    || (authorized && reason == NotStorable::Authorization)
                    || reason == NotStorable::UnknownCoding
                    || parts.status == StatusCode::NOT_MODIFIED
                    || fetch.own_answer;
                if !request_made_it && !fetch.marked {
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
        None => shared.set_fwd_status(&mut parts.headers, fwd, stored),
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
                    rt.spawn(drain(ResponseBody::origin(body, Some(t))));
                }
                Err(_) => drop(t),
            }
        }
        parts.status = StatusCode::NOT_MODIFIED;
        retain_not_modified_fields(&mut parts.headers);
        return (Response::from_parts(parts, ResponseBody::empty()), stored);
    }
    (
        Response::from_parts(parts, ResponseBody::origin(body, tee)),
        stored,
    )
}

/// Why a response whose `Vary` can't be keyed isn't stored.
fn unkeyable(refused: VaryRefusal) -> NotStorable {
    match refused {
        VaryRefusal::Star => NotStorable::VaryStar,
        VaryRefusal::TooMany => NotStorable::VaryTooLong,
    }
}

/// RFC 9110 §6.6.1: a cache adds the `Date` the origin left out.
fn add_date(headers: &mut HeaderMap, received: SystemTime) {
    if !headers.contains_key(header::DATE) {
        headers.insert(header::DATE, HttpDate::from(received).to_header_value());
    }
}

/// The origin's 206 to a range the store could not answer: stored as a
/// part (to answer that range again and combine with others, RFC 9111
/// §3.4) when the rules for a 200 would store it and it has one range of
/// a known length and a strong validator; streamed to the client as it
/// comes.
fn new_part<ResB>(
    shared: &Arc<Shared>,
    resp: Response<ResB>,
    req_headers: &HeaderMap,
    times: (SystemTime, SystemTime),
    fetch: Fetch,
) -> Resp<ResB>
where
    ResB: Body<Data = Bytes> + Send + 'static,
{
    let (mut parts, body) = resp.into_parts();
    add_date(&mut parts.headers, times.1);
    let tags = shared.tags(&mut parts.headers);
    let authorized = req_headers.contains_key(header::AUTHORIZATION);
    let policy = storable::policy(&parts.headers, &shared.config.rules.targets);
    let config = &shared.config;
    // A 206 is stored by the rules of the 200 it is part of.
    let part = shared
        .may_store(
            &fetch.key,
            &Method::GET,
            StatusCode::OK,
            &parts.headers,
            &policy,
            &fetch.req_cc,
            authorized,
            times,
        )
        .ok()
        // The part's own facts (a 206's) are read when it is stored.
        .and_then(|_| storable_part(&parts.headers, config.max_entry_size))
        .filter(|seg| body.size_hint().exact().is_none_or(|n| n == seg.len()))
        .and_then(|seg| {
            let request = RequestVary::new(req_headers, &config.encodings);
            VaryKey::build(&parts.headers, &request, &config.implicit_vary)
                .ok()
                .map(|vary| (seg, vary))
        });
    let stored = part.is_some();
    let tee = part.map(|(seg, vary)| {
        let headers = parts.headers.clone();
        let (status, tt) = (parts.status, (vary, tags, None));
        Tee::new(
            shared,
            fetch.key,
            status,
            headers,
            times,
            tt,
            None,
            Some(seg),
        )
    });
    shared.set_fwd_status(&mut parts.headers, fetch.fwd, stored);
    Response::from_parts(parts, ResponseBody::origin(body, tee))
}

/// Reads a body to its end (copying it into the store on the way).
pub(super) async fn drain<B: Body<Data = Bytes> + Send + 'static>(body: ResponseBody<B>) {
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
}

/// A `stale-while-revalidate` refresh, in the background.
pub(super) async fn refresh<S, ReqB, ResB>(
    shared: Arc<Shared>,
    inner: S,
    req: Request<ReqB>,
    fetch: Fetch,
) where
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
        Counters::outcome(&shared.counters.revalidated_304, "revalidated");
        let fresh = e.freshened(
            resp.headers(),
            (request_time, response_time),
            &shared.config.rules,
        );
        shared.keep_freshened(fetch.key, fresh);
        return;
    }
    if resp.status().is_server_error() {
        return;
    }
    Counters::outcome(&shared.counters.revalidated_200, "modified");
    let key = fetch.key.clone();
    let (resp, stored) = new_response(
        &shared,
        resp,
        &Method::GET,
        Some(&req_headers),
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
