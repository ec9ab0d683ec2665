//! CacheLayer over real HTTP, against a test origin that counts its calls
//! (`support::cache`): invalidation by unsafe methods (RFC 9111 §4.4) and
//! purging by URL, prefix, tag or all.

mod support;

use http::Method;
use http_body_util::Full;
use support::TestResponse;
use support::cache::{IntoStatus, Reply, ok, resp, serve, status};
use tower_perf::cache::CacheLayer;

#[tokio::test]
async fn unsafe_methods_invalidate() {
    let (server, origin) = serve(CacheLayer::new(), |parts, n| {
        match (parts.method.as_str(), parts.uri.path()) {
            ("GET", _) => ok(&[("cache-control", "max-age=600")], &format!("get{n}")),
            ("POST", "/items") => ok(&[("location", "/items/7")], "created"),
            ("PUT", "/items/8") => ok(&[("content-location", "http://elsewhere.test/items/9")], ""),
            ("DELETE", _) => Reply::Ok(resp(&[], "").map(|b| b).into_status(500)),
            _ => ok(&[], "other"),
        }
    })
    .await;
    for p in ["/items", "/items/7", "/items/8", "/items/9"] {
        server.get(p).await;
    }
    assert_eq!(origin.calls(), 4);
    let post = server
        .send(
            server
                .request(Method::POST, "/items")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(status(&post), "tower-perf; fwd=method");
    // The target and its same-origin Location went.
    assert!(server.get("/items").await.text().starts_with("get"));
    assert!(status(&server.get("/items/7").await).contains("fwd=uri-miss"));
    assert!(status(&server.get("/items/8").await).contains("hit"));
    // Content-Location on another host is left alone.
    server
        .send(
            server
                .request(Method::PUT, "/items/8")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert!(status(&server.get("/items/8").await).contains("fwd=uri-miss"));
    assert!(status(&server.get("/items/9").await).contains("hit"));
    // An error answer invalidates nothing; an extension method does.
    server
        .send(
            server
                .request(Method::DELETE, "/items/9")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert!(status(&server.get("/items/9").await).contains("hit"));
    let purge = Method::from_bytes(b"PURGEX").unwrap();
    server
        .send(
            server
                .request(purge, "/items/9")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert!(status(&server.get("/items/9").await).contains("fwd=uri-miss"));
}

#[tokio::test]
async fn purge_by_url_prefix_tag_and_all() {
    let layer = CacheLayer::new();
    let handle = layer.handle();
    let (server, origin) = serve(layer, |parts, _| {
        let tag = if parts.uri.path().starts_with("/products/") {
            "products p-1"
        } else {
            "other"
        };
        ok(
            &[("cache-control", "max-age=600"), ("surrogate-key", tag)],
            "x",
        )
    })
    .await;
    let paths = [
        "/products/1",
        "/products/2",
        "/static/a.js",
        "/static/b.js",
        "/home",
    ];
    for p in paths {
        let r = server.get(p).await;
        assert!(
            r.header("surrogate-key").is_none(),
            "tags are for the cache"
        );
    }
    let hit = |r: TestResponse| status(&r).contains("hit");
    assert_eq!(handle.purge_tag("products").await.unwrap(), 2);
    assert!(!hit(server.get("/products/1").await));
    assert!(hit(server.get("/static/a.js").await));
    assert_eq!(handle.purge_prefix("/static/").await.unwrap(), 2);
    assert!(!hit(server.get("/static/b.js").await));
    assert!(hit(server.get("/home").await));
    assert_eq!(handle.purge_url("/home").await.unwrap(), 1);
    assert!(!hit(server.get("/home").await));
    let host = server.addr().to_string();
    assert_eq!(
        handle
            .purge_url(&format!("http://{host}/home"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        handle
            .purge_url("http://other.test/products/2")
            .await
            .unwrap(),
        0
    );
    assert!(handle.purge_url("no-slash").await.is_err());
    assert!(handle.purge_url("ftp://shop.test/home").await.is_err());
    assert!(handle.purge_prefix("static").await.is_err());
    assert!(handle.purge_tag("two words").await.is_err());
    // Left: /products/1 and /static/b.js, fetched again after their purges.
    assert_eq!(handle.clear().await.unwrap(), 2);
    assert!(!hit(server.get("/products/2").await));
    assert_eq!(origin.calls(), 9);
    assert_eq!(handle.stats().snapshot().purged, 8);
}

/// A hot entry (copied into the serving thread's memory after a few hits)
/// is never served once purged or replaced: the next answer is the
/// origin's new one, with its own fields.
#[tokio::test]
async fn hot_entries_go_with_their_stored_response() {
    let layer = CacheLayer::new();
    let handle = layer.handle();
    let (server, origin) = serve(layer, |_, n| {
        ok(
            &[
                ("cache-control", "max-age=600"),
                ("x-version", &format!("{n}")),
            ],
            &format!("v{n}"),
        )
    })
    .await;
    let check = |r: &TestResponse, n: usize| {
        assert_eq!(r.text(), format!("v{n}"));
        assert_eq!(r.header("x-version"), Some(n.to_string().as_str()));
    };
    // The origin numbers its answers from 1.
    for _ in 0..6 {
        check(&server.get("/hot").await, 1);
    }
    assert_eq!(handle.purge_url("/hot").await.unwrap(), 1);
    for _ in 0..6 {
        check(&server.get("/hot").await, 2);
    }
    assert_eq!(origin.calls(), 2);
}
