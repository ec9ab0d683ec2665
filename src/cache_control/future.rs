use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderValue, LAST_MODIFIED,
    VARY,
};
use http::response::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::ResponseBody;
use super::layer::{Config, EtagMode};
use super::stats::CacheControlStats;
use crate::BoxError;
use crate::body_util::{Fill, ReadAhead};
use crate::headers::{EntityTag, HttpDate};
use crate::headers::{
    Precondition as Outcome, Preconditions as Conditions, retain_not_modified_fields,
};

/// What the request told the response future.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) method: Method,
    pub(crate) rule: Option<usize>,
    pub(crate) authorized: bool,
    pub(crate) conds: Conditions,
    /// Preconditions already evaluated (by a probe, before the handler ran).
    pub(crate) evaluated: bool,
    pub(crate) config: Arc<Config>,
    pub(crate) stats: CacheControlStats,
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, R, B> {
        // An unsafe request's preconditions: fetching the current validators.
        Probe { #[pin] fut: F, next: Option<(S, Request<R>)> },
        ProbeHash {
            parts: Option<Parts>,
            body: Option<Pin<Box<B>>>,
            collected: ReadAhead,
            next: Option<(S, Request<R>)>,
        },
        // Preconditions hold: forward the request itself.
        Call { next: Option<(S, Request<R>)> },
        Inner { #[pin] fut: F },
        Hash { parts: Option<Parts>, body: Option<Pin<Box<B>>>, collected: ReadAhead },
        Done,
    }
}

pin_project! {
    /// The response future of [`CacheControl`](super::CacheControl).
    pub struct ResponseFuture<F, S, R, B> {
        #[pin]
        state: State<F, S, R, B>,
        ctx: Ctx,
    }
}

impl<F, S, R, B> std::fmt::Debug for ResponseFuture<F, S, R, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

impl<F, S, R, B> ResponseFuture<F, S, R, B> {
    pub(crate) fn new(fut: F, ctx: Ctx) -> Self {
        Self {
            state: State::Inner { fut },
            ctx,
        }
    }

    pub(crate) fn probe(fut: F, svc: S, req: Request<R>, ctx: Ctx) -> Self {
        Self {
            state: State::Probe {
                fut,
                next: Some((svc, req)),
            },
            ctx,
        }
    }
}

impl<F, S, R, B> Future for ResponseFuture<F, S, R, B>
where
    S: Service<Request<R>, Response = Response<B>, Future = F>,
    F: Future<Output = Result<Response<B>, S::Error>>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let ctx: &mut Ctx = this.ctx;
        loop {
            match this.state.as_mut().project() {
                StateProj::Probe { fut, next } => {
                    let (parts, body) = ready!(fut.poll(cx))?.into_parts();
                    let next = next.take();
                    if hashable(&parts, &body, &Method::GET, &ctx.config) {
                        let body = Some(Box::pin(body));
                        this.state.set(State::ProbeHash {
                            parts: Some(parts),
                            body,
                            collected: ReadAhead::default(),
                            next,
                        });
                        continue;
                    }
                    let etag = EntityTag::from_headers(&parts.headers);
                    match probe_outcome(&parts, etag, ctx) {
                        Some(res) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(res));
                        }
                        None => this.state.set(State::Call { next }),
                    }
                }
                StateProj::ProbeHash {
                    parts,
                    body,
                    collected,
                    next,
                } => {
                    let Some(b) = body.as_mut() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    let complete = ready!(read_to_hash(collected, b, ctx, cx));
                    let etag = if complete && collected.error.is_none() {
                        hash_etag(collected, ctx)
                    } else {
                        None
                    };
                    let (Some(parts), next) = (parts.take(), next.take()) else {
                        this.state.set(State::Done);
                        continue;
                    };
                    match probe_outcome(&parts, etag, ctx) {
                        Some(res) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(res));
                        }
                        None => this.state.set(State::Call { next }),
                    }
                }
                StateProj::Call { next } => {
                    let Some((svc, _)) = next.as_mut() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    ready!(svc.poll_ready(cx))?;
                    let Some((mut svc, req)) = next.take() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    ctx.evaluated = true;
                    let fut = svc.call(req);
                    this.state.set(State::Inner { fut });
                }
                StateProj::Inner { fut } => {
                    let (mut parts, body) = ready!(fut.poll(cx))?.into_parts();
                    apply_policy(&mut parts, ctx);
                    if hashable(&parts, &body, &ctx.method, &ctx.config) {
                        let body = Some(Box::pin(body));
                        this.state.set(State::Hash {
                            parts: Some(parts),
                            body,
                            collected: ReadAhead::default(),
                        });
                        continue;
                    }
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(finish(parts, ResponseBody::plain(body), ctx, None)));
                }
                StateProj::Hash {
                    parts,
                    body,
                    collected,
                } => {
                    let Some(b) = body.as_mut() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    let complete = ready!(read_to_hash(collected, b, ctx, cx));
                    let Some(mut parts) = parts.take() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    let mut known = None;
                    if complete && collected.error.is_none() {
                        let weak = ctx.config.etags == EtagMode::Weak;
                        let (buf, len) = etag_bytes(digest(collected), weak);
                        if let Ok(v) = HeaderValue::from_bytes(&buf[..len]) {
                            parts.headers.insert(ETAG, v);
                            ctx.stats.etag_generated();
                            // Handed to the preconditions, so they don't
                            // parse back the header just written.
                            if !ctx.conds.is_empty() {
                                known = EntityTag::parse(&buf[..len]).ok();
                            }
                        }
                    }
                    let rest = if complete { None } else { body.take() };
                    let res_body = ResponseBody::collected(std::mem::take(collected), rest);
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(finish(parts, res_body, ctx, known)));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// Reads the body to hash it, up to the size limit: `Ready(true)` when it
/// ended within it (or failed), `Ready(false)` past it.
fn read_to_hash<B>(
    collected: &mut ReadAhead,
    body: &mut Pin<Box<B>>,
    ctx: &Ctx,
    cx: &mut Context<'_>,
) -> Poll<bool>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let limit = ctx.config.max_hash_size;
    match collected.fill(body.as_mut(), cx, |len| len > limit) {
        Fill::Waiting => Poll::Pending,
        Fill::Ended => Poll::Ready(true),
        Fill::Enough => Poll::Ready(false),
    }
}

/// Whether the layer should read this body to hash it for an ETag.
fn hashable<B: Body>(parts: &Parts, body: &B, method: &Method, config: &Config) -> bool {
    if config.etags == EtagMode::Off
        || parts.status != StatusCode::OK
        || (method != Method::GET && method != Method::HEAD)
        || parts.headers.contains_key(ETAG)
        || parts.headers.contains_key(CONTENT_RANGE)
    {
        return false;
    }
    let Some(len) = body.size_hint().exact() else {
        return false;
    };
    // An empty body is never hashed, for GET or HEAD: its ETag would buy
    // nothing (a 304 saves no bytes), and an empty HEAD body without
    // Content-Length can't be told from one already dropped (axum's router
    // drops it after the layers around it, without the field when the
    // length was unknown), so GET and HEAD would disagree on it.
    if len == 0 || len > config.max_hash_size {
        return false;
    }
    // A HEAD body that disagrees with Content-Length was already stripped
    // (or replaced): its hash would be a validator GET never has.
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    declared.is_none_or(|d| d == len)
}

/// XXH3-128 of the body (benches/etag.rs compares it with other hashes).
fn hash_etag(collected: &ReadAhead, ctx: &Ctx) -> Option<EntityTag> {
    let (buf, len) = etag_bytes(digest(collected), ctx.config.etags == EtagMode::Weak);
    EntityTag::parse(&buf[..len]).ok()
}

fn digest(collected: &ReadAhead) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for chunk in &collected.chunks {
        h.update(chunk);
    }
    h.digest128()
}

/// `"<32 hex digits>"` (or `W/"…"`), written on the stack.
fn etag_bytes(digest: u128, weak: bool) -> ([u8; 36], usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 36];
    let mut n = 0;
    if weak {
        out[..2].copy_from_slice(b"W/");
        n = 2;
    }
    out[n] = b'"';
    for i in 0..32 {
        out[n + 1 + i] = HEX[((digest >> (124 - 4 * i)) & 0xf) as usize];
    }
    out[n + 33] = b'"';
    (out, n + 34)
}

fn apply_policy(parts: &mut Parts, ctx: &Ctx) {
    let Some(rule) = ctx.rule.and_then(|i| ctx.config.rules.get(i)) else {
        return;
    };
    let Some(policy) = rule.policy_for(&ctx.method, parts.status) else {
        return;
    };
    if parts.headers.contains_key(CACHE_CONTROL) && !rule.overrides_handler() {
        return;
    }
    parts
        .headers
        .insert(CACHE_CONTROL, policy.header_for(ctx.authorized).clone());
    ctx.stats.policy_applied();
}

fn last_modified(parts: &Parts) -> Option<HttpDate> {
    HttpDate::from_headers(&parts.headers, &LAST_MODIFIED).and_then(Result::ok)
}

/// Evaluates an unsafe request's preconditions against the probe's answer:
/// `Some(412)` to send instead, `None` to go on.
fn probe_outcome<B>(
    parts: &Parts,
    etag: Option<EntityTag>,
    ctx: &Ctx,
) -> Option<Response<ResponseBody<B>>> {
    let exists = parts.status.is_success();
    let etag = if exists { etag } else { None };
    let lm = if exists { last_modified(parts) } else { None };
    match ctx.conds.evaluate(&ctx.method, exists, etag.as_ref(), lm) {
        Outcome::Proceed => None,
        Outcome::NotModified | Outcome::Failed => {
            ctx.stats.precondition_failed();
            Some(precondition_failed(etag.as_ref(), lm, None))
        }
    }
}

/// Applies the preconditions to a response (the selected representation)
/// and answers 304 or 412 when they say so.
fn finish<B>(
    mut parts: Parts,
    body: ResponseBody<B>,
    ctx: &Ctx,
    known: Option<EntityTag>,
) -> Response<ResponseBody<B>> {
    // RFC 9110 §13.2.1: preconditions only apply to what would be a 2xx.
    if ctx.evaluated || ctx.conds.is_empty() || !parts.status.is_success() {
        return Response::from_parts(parts, body);
    }
    let etag = known.or_else(|| EntityTag::from_headers(&parts.headers));
    let lm = last_modified(&parts);
    match ctx.conds.evaluate(&ctx.method, true, etag.as_ref(), lm) {
        Outcome::Proceed => Response::from_parts(parts, body),
        Outcome::NotModified => {
            ctx.stats.not_modified();
            parts.status = StatusCode::NOT_MODIFIED;
            retain_not_modified_fields(&mut parts.headers);
            Response::from_parts(parts, ResponseBody::empty())
        }
        Outcome::Failed => {
            ctx.stats.precondition_failed();
            precondition_failed(etag.as_ref(), lm, parts.headers.get(VARY).cloned())
        }
    }
}

fn precondition_failed<B>(
    etag: Option<&EntityTag>,
    last_modified: Option<HttpDate>,
    vary: Option<HeaderValue>,
) -> Response<ResponseBody<B>> {
    let mut res = Response::new(ResponseBody::text("precondition failed\n"));
    *res.status_mut() = StatusCode::PRECONDITION_FAILED;
    let h = res.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(tag) = etag {
        h.insert(ETAG, tag.to_header_value());
    }
    if let Some(lm) = last_modified {
        h.insert(LAST_MODIFIED, lm.to_header_value());
    }
    if let Some(v) = vary {
        h.insert(VARY, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_bytes_are_the_hex_digest() {
        let d = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210_u128;
        let (b, n) = etag_bytes(d, false);
        assert_eq!(&b[..n], b"\"0123456789abcdeffedcba9876543210\"");
        let (b, n) = etag_bytes(d, true);
        assert_eq!(&b[..n], b"W/\"0123456789abcdeffedcba9876543210\"");
        assert_eq!(
            &etag_bytes(0, false).0[..34],
            b"\"00000000000000000000000000000000\""
        );
        assert_eq!(
            format!("{d:032x}").as_bytes(),
            &etag_bytes(d, false).0[1..33]
        );
    }
}
