//! The cache tests' origin: a service that answers by script, counts its
//! calls and records the request each came with, behind a `CacheLayer`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tower::ServiceBuilder;
use tower_perf::cache::CacheLayer;
use tower_perf::clock::ManualClock;

use super::gate::Gate;
use super::{BoxError, TestResponse, TestServer};

/// What the test origin does for one request.
pub enum Reply {
    Ok(Response<Body>),
    /// The origin can't be reached (the service fails).
    Fail,
    /// Answer once the test opens the gate (the request counts as
    /// arrived there): a slow origin whose slowness the test controls.
    Held(Gate, Response<Body>),
}

/// A test origin: `script(parts, n)` answers the n-th call (1-based); it
/// records the calls and the headers each came with.
#[derive(Clone)]
pub struct Origin {
    pub calls: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Parts>>>,
}

impl Origin {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    /// The request headers of call `n` (1-based).
    pub fn request(&self, n: usize) -> Parts {
        self.seen.lock().unwrap()[n - 1].clone()
    }
}

pub async fn serve<F>(layer: CacheLayer, script: F) -> (TestServer, Origin)
where
    F: Fn(&Parts, usize) -> Reply + Clone + Send + Sync + 'static,
{
    let origin = Origin {
        calls: Arc::default(),
        seen: Arc::default(),
    };
    let o = origin.clone();
    let svc = tower::service_fn(move |req: Request<Incoming>| {
        let (parts, _) = req.into_parts();
        let n = o.calls.fetch_add(1, Ordering::SeqCst) + 1;
        o.seen.lock().unwrap().push(parts.clone());
        let reply = script(&parts, n);
        async move {
            match reply {
                Reply::Ok(r) => Ok::<_, BoxError>(r),
                Reply::Fail => Err("origin down".into()),
                Reply::Held(gate, r) => {
                    gate.pass().await;
                    Ok(r)
                }
            }
        }
    });
    let app = ServiceBuilder::new().layer(layer).service(svc);
    (TestServer::serve(app).await, origin)
}

pub fn resp(headers: &[(&str, &str)], body: impl Into<Body>) -> Response<Body> {
    let mut b = Response::builder();
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.into()).unwrap()
}

pub fn ok(headers: &[(&str, &str)], body: &str) -> Reply {
    Reply::Ok(resp(headers, body.to_owned()))
}

pub fn status(r: &TestResponse) -> &str {
    r.header("cache-status").unwrap_or("")
}

/// [`status`] of a response straight from a service.
pub fn status_of<B>(r: &http::Response<B>) -> String {
    r.headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

pub fn clocked() -> (CacheLayer, ManualClock) {
    let clock = ManualClock::new();
    (CacheLayer::new().clock(clock.clone()), clock)
}

/// An origin with validators that answers conditional requests with 304.
pub fn validating(parts: &Parts, n: usize, cc: &str) -> Reply {
    if parts.headers.get("if-none-match").map(|v| v.as_bytes()) == Some(b"\"v1\"") {
        return Reply::Ok(
            Response::builder()
                .status(304)
                .header("etag", "\"v1\"")
                .header("cache-control", cc)
                .header("x-validated", n.to_string())
                .body(Body::empty())
                .unwrap(),
        );
    }
    ok(
        &[
            ("cache-control", cc),
            ("etag", "\"v1\""),
            ("x-validated", "0"),
        ],
        "body-v1",
    )
}

pub trait IntoStatus {
    fn into_status(self, s: u16) -> Self;
}

impl IntoStatus for Response<Body> {
    fn into_status(mut self, s: u16) -> Self {
        *self.status_mut() = StatusCode::from_u16(s).unwrap();
        self
    }
}

/// A cache behind which the origin answers `PATH #N` (`N` its call count
/// in `calls`), cacheable for 600 s and tagged `surrogate`, boxed, with
/// its handle: the Redis stores' replicas.
pub fn counting(
    layer: CacheLayer,
    calls: Arc<AtomicUsize>,
    surrogate: &'static str,
) -> (CountingSvc, tower_perf::cache::CacheHandle) {
    use http_body_util::Full;
    let handle = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(
            move |req: Request<Full<bytes::Bytes>>| {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                let path = req.uri().path().to_owned();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .header("cache-control", "max-age=600")
                            .header("surrogate-key", surrogate)
                            .body(Full::from(format!("{path} #{n}")))
                            .unwrap(),
                    )
                }
            },
        ));
    (tower::util::BoxCloneService::new(svc), handle)
}

/// What [`counting`] makes.
pub type CountingSvc = tower::util::BoxCloneService<
    Request<http_body_util::Full<bytes::Bytes>>,
    Response<tower_perf::cache::ResponseBody<http_body_util::Full<bytes::Bytes>>>,
    std::convert::Infallible,
>;
