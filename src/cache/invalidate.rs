//! Invalidation by unsafe methods (RFC 9111 §4.4): a successful POST, PUT,
//! DELETE… drops the stored responses of its target and of a same-origin
//! `Location` / `Content-Location`. (Purges and their replay through Redis
//! are `invalidation.rs`.)

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, Uri};
use tower_service::Service;

use super::authority;
use super::future::Resp;
use super::key::CacheKey;
use super::origin::call_inner;
use super::service::Shared;
use super::stats::Counters;

/// `location` (from `Location` or `Content-Location`) as a key, if it is
/// on `host` (RFC 9111 §4.4: only same-origin URIs are invalidated).
/// `host` is the request's settled authority; the location's is
/// normalized the same way before they are compared.
pub(super) fn same_origin_key(host: &str, location: &HeaderValue) -> Option<CacheKey> {
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

/// Methods other than GET and HEAD: forwarded; unsafe ones invalidate the
/// target URI and same-origin Location / Content-Location on success
/// (RFC 9111 §4.4).
pub(super) async fn other_method<S, ReqB, ResB>(
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
            let location = resp
                .headers()
                .get(&name)
                .and_then(|v| same_origin_key(key.host(), v));
            let location = match (&shared.config.key_rules, location) {
                (Some(rules), Some(k)) => Some(rules.location_key(k, &key)),
                (_, k) => k,
            };
            if let Some(k) = location {
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
