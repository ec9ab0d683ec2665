//! What the key holds besides the authority: encoded paths and dot
//! segments, Range and HEAD requests; purges and invalidations by the
//! normalized authority; CONNECT invalidates nothing.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tower::ServiceBuilder;
use tower_perf::cache::CacheLayer;

use crate::support::TestServer;
use crate::support::gate::Gate;
use crate::{Setup, behind_proxy, field, get, origin};

#[tokio::test]
async fn encoded_paths_and_dot_segments_are_distinct_keys() {
    let s = behind_proxy(CacheLayer::new()).await;
    let paths = [
        "/p/a/b",
        "/p/a%2fb",
        "/p/a%2Fb",
        "/p/x/../a/b",
        "/p/./a/b",
        "/p/%61/b",
        "/p/a/b?",
        "/p/a/b?q=%2f",
        "/p/a/b?q=/",
    ];
    for round in 0..2 {
        for p in paths {
            let r = get(&s, p, &[("host", "victim.test")]).await;
            assert_eq!(field(&r, "path"), p, "round {round}");
        }
    }
    // Each path was fetched once and then served from its own entry.
    assert_eq!(s.calls.load(Ordering::SeqCst), paths.len());
}

#[tokio::test]
async fn range_and_head_never_shape_a_later_full_get() {
    let s = behind_proxy(CacheLayer::new()).await;
    let victim = [("host", "victim.test")];
    // A Range request's 206 is not stored...
    let part = get(&s, "/r", &[("host", "victim.test"), ("range", "bytes=0-3")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    let full = get(&s, "/r", &victim).await;
    assert_eq!(full.status, StatusCode::OK);
    assert!(!full.text().starts_with("part"), "{}", full.text());
    // ...and a later Range request gets its bytes of the stored full
    // answer (issue 20: ranges from the cache), not the origin's part.
    let calls = s.calls.load(Ordering::SeqCst);
    let part2 = get(&s, "/r", &[("host", "victim.test"), ("range", "bytes=0-3")]).await;
    assert_eq!(part2.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part2.text(), &full.text()[..4]);
    assert_eq!(s.calls.load(Ordering::SeqCst), calls, "from the store");
    // HEAD first: the later GET gets the whole body.
    let head = s
        .front
        .send(
            s.front
                .request(Method::HEAD, "/hd")
                .header("host", "victim.test")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.text().is_empty());
    let body = get(&s, "/hd", &victim).await;
    assert!(body.text().contains("path=/hd"), "{:?}", body.text());
    let again = get(&s, "/hd", &victim).await;
    assert_eq!(again.text(), body.text());
}

/// The cache keys exactly what the origin sees: what the origin got as
/// `Host` for each request equals the key's host (read back from purge).
#[tokio::test]
async fn the_key_is_the_host_the_origin_saw() {
    let cache = CacheLayer::new();
    let handle = cache.handle();
    let s = behind_proxy(cache).await;
    let r = get(&s, "/k", &[("host", "Victim.Test:80")]).await;
    assert_eq!(field(&r, "host"), "victim.test");
    // A purge names the URL in any spelling of the host.
    assert_eq!(
        handle.purge_url("http://VICTIM.test:80/k").await.unwrap(),
        1
    );
    let fresh = get(&s, "/k", &[("host", "victim.test")]).await;
    assert!(!fresh.header("cache-status").unwrap().contains("hit"));
}

/// Unsafe methods invalidate by the settled authority: a `Location` on the
/// same host in another spelling drops that URL too, one on another host
/// does not.
#[tokio::test]
async fn invalidation_follows_the_normalized_authority() {
    let calls = Arc::new(AtomicUsize::new(0));
    let held = Gate::new();
    let (c, h) = (calls.clone(), held.clone());
    let svc = ServiceBuilder::new()
        .layer(CacheLayer::new())
        .service(tower::service_fn(move |req: Request<Incoming>| {
            let (c, h) = (c.clone(), h.clone());
            async move {
                if req.method() == Method::POST {
                    let loc = req.headers()["x-location"].clone();
                    return Ok::<_, Infallible>(
                        Response::builder()
                            .status(StatusCode::CREATED)
                            .header(header::LOCATION, loc)
                            .body(Full::default())
                            .unwrap(),
                    );
                }
                Ok(origin(c, h, req).await)
            }
        }));
    let s = Setup {
        front: TestServer::serve(svc).await,
        _origin: None,
        calls,
        held,
    };
    let victim = [("host", "victim.test")];
    get(&s, "/loc", &victim).await;
    let post = |loc: &'static str| {
        s.front
            .request(Method::POST, "/items")
            .header("host", "Victim.test")
            .header("x-location", loc)
            .body(Full::default())
            .unwrap()
    };
    s.front.send(post("http://evil.test/loc")).await;
    let still = get(&s, "/loc", &victim).await;
    assert!(still.header("cache-status").unwrap().contains("hit"));
    s.front.send(post("http://VICTIM.test:80/loc")).await;
    let gone = get(&s, "/loc", &victim).await;
    assert!(!gone.header("cache-status").unwrap().contains("hit"));
}

/// Issue 16 review: CONNECT names a tunnel's authority, not a stored
/// resource; a 2xx to it must not drop `victim.test/` (its authority-form
/// target, normalized, would otherwise be that very key).
#[tokio::test]
async fn connect_invalidates_nothing() {
    use tower::ServiceExt;
    let svc = ServiceBuilder::new()
        .layer(CacheLayer::new())
        .service(tower::service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(
                Response::builder()
                    .header(header::CACHE_CONTROL, "max-age=60")
                    .body(Full::from("page"))
                    .unwrap(),
            )
        }));
    let get = || {
        Request::get("/")
            .header("host", "victim.test")
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    let status = |r: &Response<_>| r.headers()["cache-status"].to_str().unwrap().to_owned();
    let first = svc.clone().oneshot(get()).await.unwrap();
    assert!(status(&first).contains("stored"));
    // Stored when its body ends.
    http_body_util::BodyExt::collect(first.into_body())
        .await
        .unwrap();
    for target in ["victim.test:443", "victim.test:80"] {
        let connect = Request::connect(target)
            .header("host", target)
            .body(Full::<Bytes>::default())
            .unwrap();
        let r = svc.clone().oneshot(connect).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let again = svc.clone().oneshot(get()).await.unwrap();
        assert!(
            status(&again).contains("hit"),
            "{target}: {}",
            status(&again)
        );
    }
}
