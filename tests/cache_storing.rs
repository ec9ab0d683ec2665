//! CacheLayer over real HTTP, against a test origin that counts its calls
//! (`support::cache`): what the cache stores and how it serves it: the
//! storing rules of RFC 9111 §3 (authorization, cookies), Vary variants, HEAD
//! from a stored GET, the byte budget, bodies that fail or are too large,
//! malformed request fields and warming.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use support::BoxError;
use support::cache::{Reply, clocked, ok, resp, serve, status};
use support::gate::Gate;
use tower::ServiceBuilder;
use tower_perf::cache::{CacheLayer, MemoryStore};

#[tokio::test]
async fn miss_then_hit_with_age_and_cache_status() {
    let (layer, clock) = clocked();
    let stats = layer.stats();
    let (server, origin) = serve(layer, |_, n| {
        ok(&[("cache-control", "max-age=60")], &format!("v{n}"))
    })
    .await;

    let first = server.get("/a").await;
    assert_eq!(first.text(), "v1");
    assert_eq!(status(&first), "tower-perf; fwd=uri-miss; stored");
    assert!(first.header("date").is_some(), "a missing Date is added");

    clock.advance(Duration::from_secs(10));
    let second = server.get("/a").await;
    assert_eq!(second.text(), "v1");
    assert_eq!(second.header("age"), Some("10"));
    assert_eq!(status(&second), "tower-perf; hit; ttl=50");
    assert_eq!(origin.calls(), 1);

    // Another query string is another resource.
    assert_eq!(server.get("/a?x=1").await.text(), "v2");
    let s = stats.snapshot();
    assert_eq!((s.hits, s.misses, s.stores, s.entries), (1, 2, 2, 2));
    assert!((s.hit_rate - 1.0 / 3.0).abs() < 1e-9);
}

#[tokio::test]
async fn what_is_never_stored() {
    let cases: Vec<(&str, Vec<(&str, &str)>, StatusCode)> = vec![
        (
            "/no-store",
            vec![("cache-control", "max-age=60, no-store")],
            StatusCode::OK,
        ),
        (
            "/private",
            vec![("cache-control", "private, max-age=60")],
            StatusCode::OK,
        ),
        (
            "/cookie",
            vec![("cache-control", "max-age=60"), ("set-cookie", "id=1")],
            StatusCode::OK,
        ),
        (
            "/vary-star",
            vec![("cache-control", "max-age=60"), ("vary", "*")],
            StatusCode::OK,
        ),
        ("/nothing", vec![], StatusCode::OK),
        // 201 is not cacheable by default and has no explicit freshness.
        ("/created", vec![("etag", "\"x\"")], StatusCode::CREATED),
        (
            "/partial",
            vec![("cache-control", "max-age=60")],
            StatusCode::PARTIAL_CONTENT,
        ),
    ];
    let table: Arc<HashMap<String, (Vec<(String, String)>, StatusCode)>> = Arc::new(
        cases
            .iter()
            .map(|(p, h, s)| {
                let h = h
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect();
                (p.to_string(), (h, *s))
            })
            .collect(),
    );
    let layer = CacheLayer::new();
    let stats = layer.stats();
    let (server, origin) = serve(layer, move |parts, _| {
        let (h, s) = &table[parts.uri.path()];
        let mut r = Response::builder().status(*s);
        for (k, v) in h {
            r = r.header(k, v);
        }
        Reply::Ok(r.body(Body::from("x")).unwrap())
    })
    .await;
    for (path, _, _) in &cases {
        let before = origin.calls();
        server.get(path).await;
        let second = server.get(path).await;
        assert_eq!(origin.calls(), before + 2, "{path} must not be stored");
        assert!(
            !status(&second).contains("hit"),
            "{path}: {}",
            status(&second)
        );
    }
    assert_eq!(stats.snapshot().stores, 0);
    assert_eq!(stats.snapshot().not_stored, 2 * cases.len() as u64);
}

#[tokio::test]
async fn authorization_needs_public_or_s_maxage() {
    let (server, origin) = serve(CacheLayer::new(), |parts, _| {
        let cc = if parts.uri.path() == "/public" {
            "public, max-age=60"
        } else {
            "max-age=60"
        };
        ok(&[("cache-control", cc)], "secret")
    })
    .await;
    let auth = [("authorization", "Bearer a")];
    server.get_with("/mine", &auth).await;
    server.get_with("/mine", &auth).await;
    assert_eq!(origin.calls(), 2, "authorized responses are not shared");
    server.get_with("/public", &auth).await;
    let hit = server.get("/public").await;
    assert_eq!(origin.calls(), 3);
    assert!(status(&hit).contains("hit"));
    // A stored response is not handed to an authorized request...
    let authed = server.get_with("/public", &auth).await;
    assert_eq!(status(&authed), "tower-perf; fwd=request; stored");
    assert_eq!(origin.calls(), 4);
}

#[tokio::test]
async fn authorized_requests_served_when_configured() {
    let (server, origin) = serve(CacheLayer::new().serve_authorized(true), |_, _| {
        ok(&[("cache-control", "public, max-age=60")], "x")
    })
    .await;
    server.get("/").await;
    let r = server.get_with("/", &[("authorization", "Bearer a")]).await;
    assert!(status(&r).contains("hit"));
    assert_eq!(origin.calls(), 1);
}

#[tokio::test]
async fn set_cookie_stored_when_configured() {
    let (server, origin) = serve(CacheLayer::new().store_set_cookie(true), |_, _| {
        ok(
            &[("cache-control", "max-age=60"), ("set-cookie", "a=b")],
            "x",
        )
    })
    .await;
    server.get("/").await;
    server.get("/").await;
    assert_eq!(origin.calls(), 1);
}

#[tokio::test]
async fn vary_variants_with_normalized_values() {
    let (server, origin) = serve(CacheLayer::new(), |parts, n| {
        let lang = parts
            .headers
            .get("accept-language")
            .map_or("none".into(), |v| v.to_str().unwrap().to_owned());
        ok(
            &[
                ("cache-control", "max-age=60"),
                ("vary", "Accept-Language, Accept-Encoding"),
            ],
            &format!("{lang} #{n}"),
        )
    })
    .await;
    let en = server
        .get_with(
            "/",
            &[("accept-language", "en-US"), ("accept-encoding", "gzip")],
        )
        .await;
    assert_eq!(en.text(), "en-US #1");
    // Same language in another case and spacing, and an Accept-Encoding
    // that prefers gzip too: the same variant (requests reduce to their
    // preferred known coding).
    let en2 = server
        .get_with(
            "/",
            &[
                ("accept-language", "en-us"),
                ("accept-encoding", "GZIP, deflate;q=0.5, br;q=0.2"),
            ],
        )
        .await;
    assert_eq!(en2.text(), "en-US #1");
    let fr = server
        .get_with(
            "/",
            &[("accept-language", "fr"), ("accept-encoding", "gzip")],
        )
        .await;
    assert_eq!(fr.text(), "fr #2");
    assert_eq!(status(&fr), "tower-perf; fwd=vary-miss; stored");
    // Both variants stay.
    let en3 = server
        .get_with(
            "/",
            &[("accept-language", "EN-US"), ("accept-encoding", "x-gzip")],
        )
        .await;
    assert_eq!(en3.text(), "en-US #1");
    // No Accept-Encoding is a variant of its own (so a client that can't
    // decode never pins browsers to identity, or the other way round).
    let identity = server.get_with("/", &[("accept-language", "fr")]).await;
    assert_eq!(identity.text(), "fr #3");
    // The stored gzip-preference variant is identity (the origin did not
    // compress): a request of that preference that refuses identity is
    // not served it.
    let no_identity = server
        .get_with(
            "/",
            &[
                ("accept-language", "fr"),
                ("accept-encoding", "gzip, identity;q=0"),
            ],
        )
        .await;
    assert_eq!(no_identity.text(), "fr #4");
    assert_eq!(origin.calls(), 4);
}

#[tokio::test]
async fn head_is_answered_from_a_stored_get() {
    let (server, origin) = serve(CacheLayer::new(), |_, _| {
        ok(
            &[
                ("cache-control", "max-age=60"),
                ("content-type", "text/plain"),
            ],
            "twelve bytes",
        )
    })
    .await;
    // A HEAD miss is forwarded and not stored.
    let head = server
        .send(
            server
                .request(Method::HEAD, "/h")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    server.get("/h").await;
    assert_eq!(origin.calls(), 2);
    let head = server
        .send(
            server
                .request(Method::HEAD, "/h")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert!(status(&head).contains("hit"));
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-type"), Some("text/plain"));
    assert_eq!(head.header("content-length"), Some("12"));
    assert_eq!(origin.calls(), 2);
    assert_eq!(origin.request(1).method, Method::HEAD);
}

#[tokio::test]
async fn byte_budget_holds() {
    let budget = 256 * 1024;
    let store = MemoryStore::new(budget);
    // Entries up to 64 KiB: a 256 KiB store can't hold the default 1 MiB.
    let layer = CacheLayer::new()
        .max_entry_size(64 << 10)
        .store(store.clone());
    let (server, _origin) = serve(layer, |_, _| {
        ok(&[("cache-control", "max-age=600")], &"x".repeat(10_000))
    })
    .await;
    for i in 0..200 {
        server.get(&format!("/item/{i}")).await;
    }
    store.sync();
    let usage = tower_perf::cache::CacheStore::usage(&store);
    assert!(usage.bytes <= budget, "{usage:?}");
    assert!(usage.entries > 5 && usage.entries < 30, "{usage:?}");
    assert!(usage.evictions > 0, "{usage:?}");
}

#[tokio::test]
async fn a_body_that_fails_midway_is_not_stored() {
    let layer = CacheLayer::new();
    let stats = layer.stats();
    let (server, origin) = serve(layer, |_, n| {
        if n == 1 {
            let chunks: Vec<Result<Bytes, BoxError>> =
                vec![Ok(Bytes::from_static(b"part")), Err("broken".into())];
            Reply::Ok(resp(
                &[("cache-control", "max-age=60")],
                Body::from_stream(futures_util::stream::iter(chunks)),
            ))
        } else {
            ok(&[("cache-control", "max-age=60")], "whole")
        }
    })
    .await;
    let req = server
        .request(Method::GET, "/")
        .body(Full::default())
        .unwrap();
    // The client sees a failure: before the headers or in the body.
    if let Ok(r) = server.client().request(req).await {
        assert!(
            http_body_util::BodyExt::collect(r.into_body())
                .await
                .is_err()
        );
    }
    let next = server.get("/").await;
    assert_eq!(next.text(), "whole");
    assert_eq!(origin.calls(), 2);
    assert!(stats.snapshot().aborted >= 1);
    assert!(status(&server.get("/").await).contains("hit"));
}

#[tokio::test]
async fn large_bodies_stream_through_unstored() {
    let (server, origin) = serve(CacheLayer::new().max_entry_size(1000), |_, _| {
        ok(&[("cache-control", "max-age=60")], &"y".repeat(5000))
    })
    .await;
    let r = server.get("/big").await;
    assert_eq!(r.body.len(), 5000);
    assert_eq!(status(&r), "tower-perf; fwd=uri-miss");
    server.get("/big").await;
    assert_eq!(origin.calls(), 2);
}

#[tokio::test]
async fn malformed_request_headers_never_poison() {
    let (server, origin) = serve(CacheLayer::new(), |_, n| {
        ok(
            &[("cache-control", "max-age=60"), ("vary", "accept-language")],
            &format!("v{n}"),
        )
    })
    .await;
    let mut raw = format!(
        "GET /m HTTP/1.1\r\nHost: {}\r\nCache-Control: max-age=abc, max-stale=-1, ,,\r\n",
        server.addr()
    )
    .into_bytes();
    raw.extend_from_slice(
        b"Accept-Language: \xff\xfe\r\nIf-None-Match: garbage\r\nConnection: close\r\n\r\n",
    );
    let out = server.send_raw(&raw).await;
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // Another language isn't served the stored variant; the same odd
    // bytes are.
    let r = server.get_with("/m", &[("accept-language", "de")]).await;
    assert_eq!(r.text(), "v2");
    let same = server
        .send(
            server
                .request(Method::GET, "/m")
                .header(
                    "accept-language",
                    http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
                )
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(same.text(), "v1");
    assert_eq!(origin.calls(), 2);
}

#[tokio::test]
async fn warming_fills_the_cache_and_reports() {
    let layer = CacheLayer::new();
    let handle = layer.handle();
    let (server, origin) = serve(layer.clone(), |parts, _| match parts.uri.path() {
        "/private" => ok(&[("cache-control", "private")], "mine"),
        "/down" => Reply::Fail,
        _ => ok(&[("cache-control", "max-age=60")], "hot"),
    })
    .await;
    // Warm through a service that shares the layer's store (a second
    // stack over the same origin, as a router would be). Its hot URLs
    // wait at the gate until all four are fetched at once.
    let gate = Gate::new();
    let g = gate.clone();
    let o = origin.clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(move |req: Request<()>| {
            o.calls.fetch_add(1, Ordering::SeqCst);
            let path = req.uri().path().to_owned();
            let g = g.clone();
            async move {
                match path.as_str() {
                    "/private" => Ok(resp(&[("cache-control", "private")], "mine")),
                    "/down" => Err::<_, BoxError>("origin down".into()),
                    _ => {
                        g.pass().await;
                        Ok(resp(&[("cache-control", "max-age=60")], "hot"))
                    }
                }
            }
        }));
    let host = server.addr().to_string();
    let req = |p: &str| Request::get(p).header("host", &host).body(()).unwrap();
    let urls = ["/h1", "/h2", "/h3", "/h4", "/private", "/down"];
    // Four slow fetches at once, not one after another.
    let (report, ()) = tokio::join!(handle.warm(svc.clone(), urls.map(req), 4), async {
        gate.arrived(4).await;
        gate.open();
    });
    let h = |p: &str| format!("{host}{p}");
    assert_eq!(report.stored, ["/h1", "/h2", "/h3", "/h4"].map(h));
    assert_eq!(report.not_stored, [(h("/private"), 200)]);
    assert_eq!(report.failed, [(h("/down"), "origin down".to_owned())]);
    // Over HTTP, the warmed URLs are hits.
    let calls = origin.calls();
    assert!(status(&server.get("/h3").await).contains("hit"));
    assert_eq!(origin.calls(), calls);
    let again = handle.warm(svc, ["/h1"].map(req), 1).await;
    assert_eq!(again.already_cached, [h("/h1")]);
}
