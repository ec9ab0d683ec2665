//! Rate-limit requests from a chosen client address, without a server.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Service, ServiceExt};
use tower_perf::rate_limit::PeerAddr;

/// A GET of `/` from `ip`, as the layer sees a peer address.
pub fn req_from(ip: [u8; 4]) -> Request<Full<Bytes>> {
    let mut req = Request::get("/").body(Full::default()).unwrap();
    req.extensions_mut()
        .insert(PeerAddr(SocketAddr::from((ip, 1234))));
    req
}

/// The status a request from `ip` gets.
pub async fn status_from<S, B>(svc: &S, ip: [u8; 4]) -> StatusCode
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
{
    svc.clone().oneshot(req_from(ip)).await.unwrap().status()
}

/// Each policy's (name, allowed, limited), in rule order.
pub fn counts(stats: &tower_perf::rate_limit::RateLimitStats) -> Vec<(String, u64, u64)> {
    stats
        .snapshot()
        .policies
        .into_iter()
        .map(|p| (p.name, p.allowed, p.limited))
        .collect()
}
