use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderMap, HeaderName, IF_MATCH, IF_NONE_MATCH};
use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::future::{Ctx, ResponseFuture};
use super::layer::{CompressionLayer, Config};
use super::stats::CompressionStats;
use crate::BoxError;
use crate::headers::{AcceptEncoding, ContentCoding, EntityTag, EntityTagList};

/// Compresses the response bodies of the inner service.
///
/// See the [module docs](crate::compression).
#[derive(Debug, Clone)]
pub struct Compression<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
    pub(crate) stats: CompressionStats,
}

impl<S> Compression<S> {
    /// Wraps `inner` with the default settings.
    pub fn new(inner: S) -> Self {
        CompressionLayer::new().into_service(inner)
    }

    /// A [`CompressionLayer`] with the default settings.
    pub fn layer() -> CompressionLayer {
        CompressionLayer::new()
    }

    /// This service's statistics.
    pub fn stats(&self) -> CompressionStats {
        self.stats.clone()
    }

    crate::macros::define_inner_service_accessors!();
}

impl CompressionLayer {
    fn into_service<S>(self, inner: S) -> Compression<S> {
        Compression {
            inner,
            config: self.config,
            stats: self.stats,
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Compression<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<super::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let accept = AcceptEncoding::from_headers(req.headers());
        let coding = match accept.negotiate(&self.config.codings) {
            Some(c) => c,
            None if self.config.reject_unacceptable => {
                self.stats.record_not_acceptable();
                return ResponseFuture::not_acceptable();
            }
            // RFC 9110 §12.5.3 lets us disregard the field: send identity.
            None => ContentCoding::Identity,
        };
        let stripped = if coding == ContentCoding::Identity {
            Vec::new()
        } else {
            strip_coding_suffixes(req.headers_mut(), coding)
        };
        let dictionary = match &self.config.dictionaries {
            Some(d) if coding != ContentCoding::Identity => d.choose(req.headers()),
            _ => None,
        };
        let ctx = Ctx {
            coding,
            is_get: req.method() == Method::GET,
            authorized: req.headers().contains_key(http::header::AUTHORIZATION),
            dictionary,
            is_head: req.method() == Method::HEAD,
            stripped,
            config: self.config.clone(),
            stats: self.stats.clone(),
        };
        ResponseFuture::new(self.inner.call(req), ctx)
    }
}

/// The suffix this layer appends to a strong ETag of a `coding` response.
pub(crate) fn etag_suffix(coding: ContentCoding) -> &'static [u8] {
    match coding {
        ContentCoding::Gzip => b"-gzip",
        ContentCoding::Deflate => b"-deflate",
        ContentCoding::Br => b"-br",
        ContentCoding::Zstd => b"-zstd",
        ContentCoding::Identity => b"",
    }
}

/// Maps the validators a client got from us (`"abc-gzip"`) back to the
/// inner service's (`"abc"`) in If-None-Match and If-Match, so that the
/// inner service's own precondition checks match. Returns the base tags
/// stripped from If-None-Match, so a 304 can carry the suffixed tag back.
fn strip_coding_suffixes(headers: &mut HeaderMap, coding: ContentCoding) -> Vec<EntityTag> {
    let mut stripped = Vec::new();
    if !headers.contains_key(IF_NONE_MATCH) && !headers.contains_key(IF_MATCH) {
        return stripped;
    }
    let suffix = etag_suffix(coding);
    for name in [IF_NONE_MATCH, IF_MATCH] {
        let Some(Ok(EntityTagList::Tags(tags))) = EntityTagList::from_headers(headers, &name)
        else {
            continue;
        };
        let mut changed = false;
        let tags: Vec<EntityTag> = tags
            .into_iter()
            .map(|t| match base_of(&t, suffix) {
                Some(base) => {
                    changed = true;
                    if name == IF_NONE_MATCH {
                        stripped.push(base.clone());
                    }
                    base
                }
                None => t,
            })
            .collect();
        if changed {
            replace(headers, name, EntityTagList::Tags(tags));
        }
    }
    stripped
}

fn base_of(tag: &EntityTag, suffix: &[u8]) -> Option<EntityTag> {
    if tag.is_weak() {
        return None;
    }
    let base = tag.tag().strip_suffix(suffix)?;
    EntityTag::strong(base).ok()
}

fn replace(headers: &mut HeaderMap, name: HeaderName, list: EntityTagList) {
    headers.insert(name, list.to_header_value());
}
