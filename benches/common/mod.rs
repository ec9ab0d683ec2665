//! What the compression benches share: the payload and the service.
#![allow(dead_code)]

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt, service_fn};

/// JSON of exactly `n` bytes, with the variety real API output has.
pub(crate) fn json(n: usize) -> Bytes {
    let mut s = String::from("[");
    let mut i: u64 = 0;
    while s.len() < n {
        let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        s.push_str(&format!(
            "{{\"id\":{i},\"sku\":\"SKU-{h:06X}\",\"name\":\"Product {i}\",\"price\":{}.{:02},\"stock\":{},\"active\":{}}},",
            h % 500,
            h % 100,
            h % 73,
            h % 3 != 0
        ));
        i += 1;
    }
    s.truncate(n - 1);
    s.push(']');
    Bytes::from(s)
}

/// Text of exactly `n` bytes: this crate's own changelog and sources,
/// repeated as needed (prose and code, unlike the generated JSON).
pub(crate) fn prose(n: usize) -> Bytes {
    let text = [
        include_str!("../../CHANGELOG.md"),
        include_str!("../../src/compression/future.rs"),
        include_str!("../../src/cache/service.rs"),
    ]
    .concat();
    Bytes::from(text.bytes().cycle().take(n).collect::<Vec<u8>>())
}

/// A handler that answers every request with `body` as JSON.
pub(crate) fn handler(
    body: Bytes,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send,
> + Clone {
    service_fn(move |_req: Request<Full<Bytes>>| {
        let body = body.clone();
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Full::new(body))
                    .unwrap(),
            )
        }
    })
}

/// One `Accept-Encoding: gzip` request through `svc`, body collected.
pub(crate) async fn run<S, B>(svc: &S) -> Bytes
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let req = Request::get("/items")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Full::default())
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    res.into_body().collect().await.unwrap().to_bytes()
}

/// gzip with a raw flate2 encoder created for this call.
pub(crate) fn gzip_fresh(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 3),
        flate2::Compression::new(level),
    );
    std::io::Write::write_all(&mut e, data).unwrap();
    e.finish().unwrap()
}

/// Decompresses a whole gzip stream.
pub(crate) fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(b), &mut out).unwrap();
    out
}

/// The bare handler, tower-perf's and tower-http's compression around it,
/// all serving `data` at gzip `level`.
#[cfg(feature = "compression")]
pub(crate) fn contenders(
    data: &Bytes,
    level: u32,
) -> (
    impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone,
    impl Service<
        Request<Full<Bytes>>,
        Response = Response<tower_perf::compression::ResponseBody<Full<Bytes>>>,
        Error = Infallible,
    > + Clone,
    impl Service<
        Request<Full<Bytes>>,
        Response = Response<tower_http::compression::CompressionBody<Full<Bytes>>>,
        Error = Infallible,
    > + Clone,
) {
    use tower::ServiceBuilder;
    let ours = ServiceBuilder::new()
        .layer(
            tower_perf::compression::CompressionLayer::new()
                .level(tower_perf::headers::ContentCoding::Gzip, level),
        )
        .service(handler(data.clone()));
    let theirs = ServiceBuilder::new()
        .layer(
            tower_http::compression::CompressionLayer::new()
                .no_deflate()
                .quality(tower_http::CompressionLevel::Precise(level as i32)),
        )
        .service(handler(data.clone()));
    (handler(data.clone()), ours, theirs)
}

/// Runs one worker per thread, all started together; returns the slowest
/// worker's time. `make` prepares a thread's work (runtime, clones) before
/// the start, so only the work itself is timed.
pub(crate) fn parallel<W>(threads: usize, make: impl Fn(usize) -> W + Sync) -> std::time::Duration
where
    W: FnOnce() + Send,
{
    let barrier = std::sync::Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (make, barrier) = (&make, &barrier);
                s.spawn(move || {
                    let work = make(t);
                    barrier.wait();
                    let start = std::time::Instant::now();
                    work();
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap_or_default()
    })
}

/// The arguments of a workload binary (`benches/*_workload.rs`, counted by
/// `benches/callgrind.sh`): the contender and how many requests (10,000
/// unless given). `None` after printing `usage` when there is no contender.
pub(crate) fn workload_args(usage: &str) -> Option<(String, u32)> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(contender) = args.first().cloned() else {
        eprintln!("usage: {usage}");
        return None;
    };
    let n = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    Some((contender, n))
}

/// Sends `n` requests made by `request` through `svc` on `rt`, one at a
/// time, collecting each body. callgrind counts this function alone
/// (`--toggle-collect='*drive*'`), so set-up stays out of the count.
#[inline(never)]
pub(crate) fn drive<S, Req, B>(
    rt: &tokio::runtime::Runtime,
    svc: &S,
    n: u32,
    request: impl Fn(u32) -> Request<Req>,
) where
    S: Service<Request<Req>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes>,
{
    rt.block_on(async {
        for i in 0..n {
            let res = svc
                .clone()
                .oneshot(request(i))
                .await
                .unwrap_or_else(|e| match e {});
            // A refused or failed request (400 for a missing Host, 500 for
            // a rate limiter that got no client address, say) would measure
            // the refusal, not the path under test.
            let status = res.status();
            assert!(
                !(status.is_client_error() || status.is_server_error())
                    || status == http::StatusCode::TOO_MANY_REQUESTS,
                "request {i} answered {status}"
            );
            let body = res.into_body().collect().await.ok().map(|b| b.to_bytes());
            std::hint::black_box(body);
        }
    });
}

/// An origin answering every request with `body` as storable JSON (an
/// hour's freshness, an ETag): the cache benches' inner service.
pub(crate) fn cacheable_origin(
    body: Bytes,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |_req: Request<Full<Bytes>>| {
        let body = body.clone();
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::CACHE_CONTROL, "public, max-age=3600")
                    .header(header::ETAG, "\"v1\"")
                    .body(Full::new(body))
                    .expect("a valid response"),
            )
        }
    })
}

/// tower_governor's configuration in the rate-limit benches: a quota no
/// request reaches (one per nanosecond, a burst of a billion), keyed on
/// the peer IP; `.use_headers()` on it turns its `x-ratelimit-*` fields on.
pub(crate) fn governor_quota() -> tower_governor::governor::GovernorConfigBuilder<
    tower_governor::key_extractor::PeerIpKeyExtractor,
    governor::middleware::NoOpMiddleware,
> {
    let mut b = tower_governor::governor::GovernorConfigBuilder::default();
    b.per_nanosecond(1).burst_size(1_000_000_000);
    b
}
