//! CacheLayer over real HTTP, against a test origin that counts its calls
//! (`support::cache`): the `Cache-Status` field (RFC 9211): renamed, turned
//! off, after the members of the caches before this one.

mod support;

use std::time::Duration;

use support::cache::{clocked, ok, serve};

/// `Cache-Status` can be renamed or turned off; off, no empty placeholder
/// leaks out of the stored template, and `Age` is still sent.
#[tokio::test]
async fn cache_status_name_and_off() {
    for (name, expect_hit) in [(Some("edge"), Some("edge; hit; ttl=60")), (None, None)] {
        // A clock that doesn't move: the age stays 0, the ttl 60.
        let (layer, _clock) = clocked();
        let (server, _origin) = serve(layer.cache_status(name), |_, _| {
            ok(&[("cache-control", "max-age=60")], "v")
        })
        .await;
        let miss = server.get("/").await;
        let hit = server.get("/").await;
        assert_eq!(hit.header("age"), Some("0"));
        assert_eq!(hit.header("cache-status"), expect_hit, "{name:?}");
        if name.is_none() {
            assert!(miss.header_all("cache-status").is_empty());
            assert!(hit.header_all("cache-status").is_empty());
        }
    }
}

/// RFC 9211 §2: a cache appends its own member after those of the caches
/// before it, however it answers (fresh hit, stale while revalidating).
#[tokio::test]
async fn upstream_cache_status_members_are_kept() {
    let (layer, clock) = clocked();
    let (server, _origin) = serve(layer, |_, n| {
        ok(
            &[
                ("cache-control", "max-age=10, stale-while-revalidate=30"),
                ("cache-status", "cdn; fwd=uri-miss; stored"),
            ],
            &format!("v{n}"),
        )
    })
    .await;
    let first = server.get("/").await;
    assert_eq!(
        first.header_all("cache-status"),
        [
            "cdn; fwd=uri-miss; stored",
            "tower-perf; fwd=uri-miss; stored"
        ]
    );
    clock.advance(Duration::from_secs(5));
    let hit = server.get("/").await;
    assert_eq!(
        hit.header_all("cache-status"),
        ["cdn; fwd=uri-miss; stored", "tower-perf; hit; ttl=5"]
    );
    clock.advance(Duration::from_secs(10));
    let stale = server.get("/").await;
    assert_eq!(
        stale.header_all("cache-status"),
        [
            "cdn; fwd=uri-miss; stored",
            "tower-perf; hit; ttl=-5; detail=stale-while-revalidate"
        ]
    );
}

/// The forwarded member is kept per thread: two caches with different
/// names on one thread each write their own, stored or not.
#[tokio::test]
async fn forwarded_members_carry_each_caches_name() {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::{Request, Response, header};
    use http_body_util::Full;
    use tower::{ServiceBuilder, ServiceExt};
    use tower_perf::cache::CacheLayer;

    let origin = |cc: &'static str| {
        tower::service_fn(move |_req: Request<Full<Bytes>>| async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header(header::CACHE_CONTROL, cc)
                    .body(Full::new(Bytes::from_static(b"v")))
                    .expect("a response"),
            )
        })
    };
    let status = |res: &Response<_>| {
        res.headers()
            .get_all("cache-status")
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect::<Vec<_>>()
    };
    // Each step changes one of the memo's inputs: the name, whether the
    // response was stored, or the reason it was forwarded.
    for path in ["/a", "/b"] {
        for (name, cc, auth, expect) in [
            ("one", "max-age=60", false, "one; fwd=uri-miss; stored"),
            ("one", "no-store", false, "one; fwd=uri-miss"),
            ("one", "max-age=60", true, "one; fwd=request"),
            ("two", "max-age=60", true, "two; fwd=request"),
            ("two", "max-age=60", false, "two; fwd=uri-miss; stored"),
            ("two", "no-store", false, "two; fwd=uri-miss"),
            ("one", "no-store", false, "one; fwd=uri-miss"),
        ] {
            let svc = ServiceBuilder::new()
                .layer(CacheLayer::new().cache_status(Some(name)))
                .service(origin(cc));
            let mut req = Request::get(path).header(header::HOST, "example.com");
            if auth {
                req = req.header(header::AUTHORIZATION, "Bearer t");
            }
            let req = req.body(Full::default()).expect("a request");
            let res = svc.oneshot(req).await.expect("infallible");
            assert_eq!(status(&res), [expect], "{path} {name} {cc} {auth}");
        }
    }
}
