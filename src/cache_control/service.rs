use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{AUTHORIZATION, HeaderName};
use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::future::{Ctx, ResponseFuture};
use super::layer::{CacheControlLayer, Config};
use super::stats::CacheControlStats;
use crate::BoxError;
use crate::headers::Preconditions as Conditions;

/// The service [`CacheControlLayer`] builds.
///
/// See the [module docs](crate::cache_control).
#[derive(Debug, Clone)]
pub struct CacheControl<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
    pub(crate) stats: CacheControlStats,
}

impl<S> CacheControl<S> {
    /// Wraps `inner` with the default settings (no rules).
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&CacheControlLayer::new(), inner)
    }

    /// A [`CacheControlLayer`] with the default settings.
    pub fn layer() -> CacheControlLayer {
        CacheControlLayer::new()
    }

    /// This service's statistics.
    pub fn stats(&self) -> CacheControlStats {
        self.stats.clone()
    }

    crate::macros::define_inner_service_accessors!();
}

/// Request fields a probe must not carry: preconditions (the probe asks for
/// the current representation, unconditionally) and the content of the
/// unsafe request.
fn probe_skips(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with("if-")
        || n.starts_with("content-")
        || n == "expect"
        || n == "transfer-encoding"
        || n == "range"
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CacheControl<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ReqBody: Default,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<super::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, ReqBody, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let method = req.method().clone();
        let path = req.uri().path();
        let rule = self
            .config
            .rules
            .iter()
            .position(|r| r.matches_request(&method, path));
        // RFC 9110 §13.2.1: no preconditions for CONNECT, OPTIONS, TRACE.
        let conds = if self.config.preconditions
            && method != Method::CONNECT
            && method != Method::OPTIONS
            && method != Method::TRACE
        {
            Conditions::from_headers(req.headers())
        } else {
            Conditions::default()
        };
        let safe = method == Method::GET || method == Method::HEAD;
        let unsafe_conditional = !safe && !conds.is_empty();
        if !conds.is_empty() {
            req.extensions_mut().insert(conds.clone());
        }
        let ctx = Ctx {
            method,
            rule,
            authorized: req.headers().contains_key(AUTHORIZATION),
            conds,
            // Without a probe, an unsafe request's preconditions are the
            // handler's to check (before it acts); judging them on its
            // response would come too late.
            evaluated: unsafe_conditional && !self.config.probe_unsafe,
            config: self.config.clone(),
            stats: self.stats.clone(),
        };
        if !unsafe_conditional || !self.config.probe_unsafe {
            return ResponseFuture::new(self.inner.call(req), ctx);
        }
        // An unsafe request with preconditions: they must hold *before* the
        // handler acts, so ask the inner service for the current
        // representation first (a GET of the same URI), evaluate, and only
        // then forward the request.
        self.stats.probe();
        let mut get = Request::new(ReqBody::default());
        *get.method_mut() = Method::GET;
        *get.uri_mut() = req.uri().clone();
        *get.version_mut() = req.version();
        *get.extensions_mut() = req.extensions().clone();
        for (name, value) in req.headers() {
            if !probe_skips(name) {
                get.headers_mut().append(name, value.clone());
            }
        }
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let fut = ready.call(get);
        ResponseFuture::probe(fut, ready, req, ctx)
    }
}
