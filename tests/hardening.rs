//! Hardening: floods of distinct requests stay within every bound, faults
//! in the inner service end cleanly, and the cache key keeps clients apart.

mod support;

use std::convert::Infallible;
#[cfg(all(feature = "rate-limit", feature = "timing"))]
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
#[cfg(all(feature = "rate-limit", feature = "timing"))]
use http::StatusCode;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use support::gate::{Gate, until};
use support::{BoxError, TestServer};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_perf::cache::CacheLayer;
#[cfg(all(feature = "rate-limit", feature = "timing"))]
use tower_perf::cache::{CacheStore, MemoryStore as CacheMemory};
#[cfg(all(feature = "rate-limit", feature = "timing"))]
use tower_perf::rate_limit::{
    KeySource, MemoryStore as LimitMemory, PeerAddr, Quota, RateLimitLayer, RateRule,
};
#[cfg(feature = "timing")]
use tower_perf::timing::TimingLayer;

// The tests that stack timing and rate limiting on the cache need those
// features too (Cargo.toml requires only `cache`).

#[cfg(all(feature = "rate-limit", feature = "timing"))]
/// The process's resident set, where `/proc` tells it (Linux); `None`
/// elsewhere, so the check is skipped out loud instead of comparing zeros.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages = statm.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    assert!(pages > 0, "/proc/self/statm: {statm}");
    Some(pages * 4096)
}

/// 200,000 requests, each with its own path, query string, client address
/// and Vary value, through timing (raw paths as labels: the worst case),
/// rate limiting and the cache: every table stays within its bound.
#[cfg(all(feature = "rate-limit", feature = "timing"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_distinct_requests_stays_bounded() {
    const N: u32 = 200_000;
    let timing = TimingLayer::new()
        .max_routes(64)
        .classifier(|_, uri, _| Some(uri.path().to_owned()));
    let timing_stats = timing.stats();
    let limiter_store = Arc::new(LimitMemory::with_max_keys(5_000));
    let limits = RateLimitLayer::with_store(limiter_store.clone()).rule(
        RateRule::new("all", Quota::per_minute(1000))
            .path("/**")
            .key(KeySource::PeerIp),
    );
    let cache_store = CacheMemory::new(2 * 1024 * 1024);
    let cache = CacheLayer::new().store(cache_store.clone());
    let svc = ServiceBuilder::new()
        .layer(timing)
        .layer(limits)
        .layer(cache)
        .service(service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(
                Response::builder()
                    .header("cache-control", "max-age=600")
                    .header("vary", "x-variant")
                    .body(Full::new(Bytes::from(vec![b'x'; 512])))
                    .unwrap(),
            )
        }));
    // Two rounds of 100,000: the second must not grow the process (the
    // first reaches every bound; allocator warm-up happens there too).
    let mut rss = Vec::new();
    for round in 0..2u32 {
        let mut tasks = Vec::new();
        for part in 0..2u32 {
            let svc = svc.clone();
            tasks.push(tokio::spawn(async move {
                for i in (round * N / 2 + part..(round + 1) * N / 2).step_by(2) {
                    let mut req =
                        Request::get(format!("/flood/{i}?q={}", i.wrapping_mul(2_654_435_761)))
                            .header("host", "flood.test")
                            .header("x-variant", i.to_string())
                            .body(Full::default())
                            .unwrap();
                    let ip = std::net::Ipv4Addr::from(0x0A00_0000 + i);
                    req.extensions_mut()
                        .insert(PeerAddr(SocketAddr::from((ip, 1000))));
                    let resp = svc.clone().oneshot(req).await.unwrap();
                    assert_eq!(resp.status(), StatusCode::OK);
                    resp.into_body().collect().await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        rss.push(rss_bytes());
    }
    let routes = timing_stats.snapshot().routes;
    assert!(routes.len() <= 65, "{} route labels", routes.len());
    assert!(routes.iter().any(|r| r.route == "other"));
    assert!(
        limiter_store.len() <= 5_000,
        "{} limiter keys",
        limiter_store.len()
    );
    let usage = cache_store.usage();
    assert!(usage.bytes <= 2 * 1024 * 1024, "{usage:?}");
    assert!(usage.evictions > 0, "{usage:?}");
    // The tables are bounded; so is the process: the second 100,000 distinct
    // requests add (almost) nothing. (Release builds: +13 MiB over all
    // 200,000 requests from the start.)
    let (Some(first), Some(second)) = (rss[0], rss[1]) else {
        support::skipped("the RSS bound", "no /proc/self/statm on this system");
        return;
    };
    let grown = second.saturating_sub(first);
    assert!(
        grown < 16 * 1024 * 1024,
        "RSS grew by {} MiB in the second round",
        grown >> 20
    );
}

/// An origin that counts its calls in `calls`: its first answer has the
/// body `broken` makes, every later one "whole"; all storable for a minute.
fn first_broken_then_whole(
    calls: Arc<AtomicUsize>,
    broken: impl Fn() -> Body + Clone + Send + Sync + 'static,
) -> impl Service<
    Request<hyper::body::Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |_req: Request<hyper::body::Incoming>| {
        let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
        let body = if first { broken() } else { Body::from("whole") };
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header("cache-control", "max-age=60")
                    .body(body)
                    .unwrap(),
            )
        }
    })
}

/// An origin whose first answer's body fails midway, while other requests
/// wait for it: they are released and get a whole answer; nothing partial is
/// stored; the timing layer counts the failure.
#[cfg(feature = "timing")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_failing_midway_releases_the_waiters() {
    let calls = Arc::new(AtomicUsize::new(0));
    let timing = TimingLayer::new();
    let stats = timing.stats();
    let cache = CacheLayer::new();
    let cache_stats = cache.stats();
    // The first body sends its first chunk, then fails once the test has
    // every waiter waiting for it.
    let fail = Gate::new();
    let f = fail.clone();
    let app = ServiceBuilder::new()
        .layer(timing)
        .layer(cache)
        .service(first_broken_then_whole(calls.clone(), move || {
            let f = f.clone();
            let chunks: Vec<Result<Bytes, BoxError>> = vec![
                Ok(Bytes::from_static(b"partial")),
                Err("disk on fire".into()),
            ];
            Body::from_stream(futures_util::stream::iter(chunks).then(move |c| {
                let f = f.clone();
                async move {
                    if c.is_err() {
                        f.pass().await;
                    }
                    c
                }
            }))
        }));
    let server = Arc::new(TestServer::serve(app).await);
    let first = {
        let s = server.clone();
        tokio::spawn(async move {
            let req = s
                .request(http::Method::GET, "/x")
                .body(Full::default())
                .unwrap();
            match s.client().request(req).await {
                Ok(r) => r.into_body().collect().await.is_err(),
                Err(_) => true,
            }
        })
    };
    // The first request leads (its body is streaming), the others wait.
    fail.arrived(1).await;
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let s = server.clone();
            tokio::spawn(async move { s.get("/x").await })
        })
        .collect();
    until("5 requests wait for the failing fetch", || {
        cache_stats.snapshot().coalesced == 5
    })
    .await;
    fail.open();
    assert!(first.await.unwrap(), "the first client sees the failure");
    for w in waiters {
        let r = tokio::time::timeout(Duration::from_secs(3), w)
            .await
            .expect("waiter released")
            .unwrap();
        assert_eq!(r.text(), "whole");
    }
    // Nothing partial stored: the next answer is whole, from the cache.
    let again = server.get("/x").await;
    assert_eq!(again.text(), "whole");
    assert!(again.header("cache-status").unwrap().contains("hit"));
    let snap = stats.snapshot();
    assert!(
        snap.overall_total.aborted + snap.overall_total.server_errors >= 1,
        "{:?}",
        snap.overall_total
    );
}

/// A panic in the inner service (the handler's future) drops the fetch:
/// requests waiting for it are released instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_origin_releases_the_waiters() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let cache = CacheLayer::new().coalesce(true, Duration::from_secs(30));
    let stats = cache.stats();
    // The first fetch panics once the waiter waits for it.
    let panic = Gate::new();
    let p = panic.clone();
    let mut svc = ServiceBuilder::new().layer(cache).service(service_fn(
        move |_req: Request<Full<Bytes>>| {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            let p = p.clone();
            async move {
                if n == 1 {
                    p.pass().await;
                }
                assert!(n != 1, "the first fetch panics");
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("cache-control", "max-age=60")
                        .body(Full::from("ok"))
                        .unwrap(),
                )
            }
        },
    ));
    let get = || {
        Request::get("/p")
            .header("host", "h.test")
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    let leader = {
        let f = svc.ready().await.unwrap().call(get());
        tokio::spawn(f)
    };
    panic.arrived(1).await;
    let waiter = tokio::spawn(svc.clone().oneshot(get()));
    until("the request waits for the leader", || {
        stats.snapshot().coalesced == 1
    })
    .await;
    panic.open();
    assert!(leader.await.is_err(), "the leader's task panicked");
    let r = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter is released long before the 30 s coalescing timeout")
        .unwrap()
        .unwrap();
    assert_eq!(r.into_body().collect().await.unwrap().to_bytes(), "ok");
}

/// The same path on two hosts is two resources.
#[tokio::test]
async fn the_host_is_part_of_the_key() {
    let svc = ServiceBuilder::new()
        .layer(CacheLayer::new())
        .service(service_fn(|req: Request<Full<Bytes>>| async move {
            let host = req.headers()["host"].to_str().unwrap().to_owned();
            Ok::<_, Infallible>(
                Response::builder()
                    .header("cache-control", "max-age=60")
                    .body(Full::from(host))
                    .unwrap(),
            )
        }));
    // Hosts compare case-insensitively: B.TEST is b.test's entry.
    for (host, expect) in [
        ("a.test", "a.test"),
        ("b.test", "b.test"),
        ("a.test", "a.test"),
        ("B.TEST", "b.test"),
    ] {
        let r = svc
            .clone()
            .oneshot(
                Request::get("/same")
                    .header("host", host)
                    .body(Full::default())
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, expect, "{host}");
    }
}

/// A body that stalls midway for good: requests that were waiting for it
/// go to the origin themselves after the coalescing timeout, while the
/// stalled client still waits; it gives up, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_never_holds_the_waiters() {
    let calls = Arc::new(AtomicUsize::new(0));
    // The coalescing timeout is real time (the point of the test).
    let cache = CacheLayer::new().coalesce(true, Duration::from_millis(200));
    let stats = cache.stats();
    let app = ServiceBuilder::new()
        .layer(cache)
        .service(first_broken_then_whole(calls.clone(), || {
            let first =
                futures_util::stream::iter([Ok::<_, BoxError>(Bytes::from_static(b"part"))]);
            // …and then nothing, ever.
            Body::from_stream(first.chain(futures_util::stream::pending()))
        }));
    let server = Arc::new(TestServer::serve(app).await);
    // The stalled client gives up when the test says: only after the
    // waiter has its answer, so the stall certainly outlasts the wait.
    let (give_up, gave_up) = tokio::sync::oneshot::channel::<()>();
    let stalled = {
        let s = server.clone();
        tokio::spawn(async move {
            let req = s
                .request(http::Method::GET, "/s")
                .body(Full::default())
                .unwrap();
            let r = s.client().request(req).await.unwrap();
            tokio::select! {
                _ = r.into_body().collect() => false,
                _ = gave_up => true,
            }
        })
    };
    until("the stalled request reached the origin", || {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
    let waiter = server.get("/s").await;
    assert_eq!(waiter.text(), "whole");
    assert_eq!(
        stats.snapshot().coalesce_timeouts,
        1,
        "{:?}",
        stats.snapshot()
    );
    let _ = give_up.send(());
    assert!(stalled.await.unwrap(), "the stalled client gave up");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// Cache poisoning through a reflected request header: an origin that
/// declares `Vary` on it gets one variant per value, so an attacker's
/// `X-Forwarded-Host: evil.test` answer is never served to anyone else.
/// (An origin that reflects a header without naming it in `Vary` can't be
/// told apart by any cache: the module docs say so.)
#[tokio::test]
async fn a_reflected_header_named_in_vary_cannot_poison() {
    let svc = ServiceBuilder::new()
        .layer(CacheLayer::new())
        .service(service_fn(|req: Request<Full<Bytes>>| async move {
            let fwd = req
                .headers()
                .get("x-forwarded-host")
                .map_or("shop.test".to_owned(), |v| {
                    v.to_str().unwrap_or("?").to_owned()
                });
            Ok::<_, Infallible>(
                Response::builder()
                    .header("cache-control", "public, max-age=600")
                    .header("vary", "X-Forwarded-Host")
                    .body(Full::from(format!("<script src=//{fwd}/app.js>")))
                    .unwrap(),
            )
        }));
    let get = |fwd: Option<&str>| {
        let mut b = Request::get("/").header("host", "shop.test");
        if let Some(f) = fwd {
            b = b.header("x-forwarded-host", f);
        }
        let svc = svc.clone();
        async move {
            let r = svc.oneshot(b.body(Full::default()).unwrap()).await.unwrap();
            r.into_body().collect().await.unwrap().to_bytes()
        }
    };
    assert!(
        get(Some("evil.test"))
            .await
            .windows(9)
            .any(|w| w == b"evil.test")
    );
    // The attacker's answer is stored, but only for requests like its own.
    for _ in 0..3 {
        let body = get(None).await;
        assert!(
            !body.windows(9).any(|w| w == b"evil.test"),
            "poisoned: {body:?}"
        );
    }
}
