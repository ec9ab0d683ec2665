//! CacheLayer over real HTTP, against a test origin that counts its calls:
//! the storing, freshness, Vary, directive, validation, invalidation and
//! stale-serving rules of RFC 9111 / RFC 5861, coalescing, purge, the byte
//! budget and aborted bodies.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use support::{BoxError, TestResponse, TestServer};
use tower::ServiceBuilder;
use tower_perf::cache::{CacheLayer, MemoryStore};
use tower_perf::clock::ManualClock;
use tower_perf::headers::HttpDate;

/// What the test origin does for one request.
enum Reply {
    Ok(Response<Body>),
    /// The origin can't be reached (the service fails).
    Fail,
    /// Answer after a delay.
    Slow(Duration, Response<Body>),
}

/// A test origin: `script(parts, n)` answers the n-th call (1-based); it
/// records the calls and the headers each came with.
#[derive(Clone)]
struct Origin {
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Parts>>>,
}

impl Origin {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    /// The request headers of call `n` (1-based).
    fn request(&self, n: usize) -> Parts {
        self.seen.lock().unwrap()[n - 1].clone()
    }
}

async fn serve<F>(layer: CacheLayer, script: F) -> (TestServer, Origin)
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
                Reply::Slow(d, r) => {
                    tokio::time::sleep(d).await;
                    Ok(r)
                }
            }
        }
    });
    let app = ServiceBuilder::new().layer(layer).service(svc);
    (TestServer::serve(app).await, origin)
}

fn resp(headers: &[(&str, &str)], body: impl Into<Body>) -> Response<Body> {
    let mut b = Response::builder();
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.into()).unwrap()
}

fn ok(headers: &[(&str, &str)], body: &str) -> Reply {
    Reply::Ok(resp(headers, body.to_owned()))
}

fn status(r: &TestResponse) -> &str {
    r.header("cache-status").unwrap_or("")
}

fn clocked() -> (CacheLayer, ManualClock) {
    let clock = ManualClock::new();
    (CacheLayer::new().clock(clock.clone()), clock)
}

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
async fn freshness_precedence_and_expiry() {
    let (layer, clock) = clocked();
    let (server, origin) = serve(layer, |parts, n| {
        let now = HttpDate::now();
        let later = HttpDate::from_unix_secs(now.as_unix_secs() + 30).to_string();
        let now = now.to_string();
        match parts.uri.path() {
            // s-maxage wins over max-age.
            "/s" => ok(
                &[("cache-control", "max-age=5, s-maxage=20")],
                &format!("s{n}"),
            ),
            // Expires - Date = 30 s.
            "/expires" => ok(&[("date", &now), ("expires", &later)], &format!("e{n}")),
            // An invalid Expires is already stale; no validator, so a miss.
            "/bad-expires" => ok(&[("date", &now), ("expires", "0")], &format!("b{n}")),
            _ => unreachable!(),
        }
    })
    .await;
    for p in ["/s", "/expires", "/bad-expires"] {
        server.get(p).await;
    }
    assert_eq!(origin.calls(), 3);
    clock.advance(Duration::from_secs(10));
    assert!(status(&server.get("/s").await).contains("hit"));
    assert!(status(&server.get("/expires").await).contains("hit"));
    assert!(status(&server.get("/bad-expires").await).contains("fwd="));
    assert_eq!(origin.calls(), 4);
    clock.advance(Duration::from_secs(15)); // 25 s
    assert_eq!(server.get("/s").await.text(), "s5");
    assert!(status(&server.get("/expires").await).contains("hit"));
    clock.advance(Duration::from_secs(10)); // 35 s
    assert!(server.get("/expires").await.text().starts_with('e'));
    assert_eq!(origin.calls(), 6);
}

#[tokio::test]
async fn upstream_age_counts() {
    let (layer, clock) = clocked();
    let (server, _origin) = serve(layer, |_, _| {
        ok(&[("cache-control", "max-age=100"), ("age", "30")], "x")
    })
    .await;
    server.get("/").await;
    clock.advance(Duration::from_secs(5));
    let hit = server.get("/").await;
    assert_eq!(hit.header("age"), Some("35"));
    assert_eq!(status(&hit), "tower-perf; hit; ttl=65");
}

#[tokio::test]
async fn heuristic_freshness_only_when_enabled() {
    let lm = HttpDate::from_unix_secs(HttpDate::now().as_unix_secs() - 1000).to_string();
    for (layer, expect_calls) in [
        (CacheLayer::new(), 2),
        (
            CacheLayer::new().heuristic_freshness(0.1, Duration::from_secs(3600)),
            1,
        ),
    ] {
        let lm = lm.clone();
        let (server, origin) = serve(layer, move |_, _| ok(&[("last-modified", &lm)], "x")).await;
        server.get("/").await;
        server.get("/").await;
        assert_eq!(origin.calls(), expect_calls);
    }
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
async fn request_directives() {
    let (layer, clock) = clocked();
    let (server, origin) = serve(layer, |_, n| {
        ok(&[("cache-control", "max-age=60")], &format!("v{n}"))
    })
    .await;
    server.get("/").await;
    // no-cache and Pragma: no-cache go to the origin.
    let r = server.get_with("/", &[("cache-control", "no-cache")]).await;
    assert_eq!(r.text(), "v2");
    assert_eq!(
        status(&r),
        "tower-perf; fwd=request; fwd-status=200; stored"
    );
    assert_eq!(
        server.get_with("/", &[("pragma", "no-cache")]).await.text(),
        "v3"
    );
    clock.advance(Duration::from_secs(30));
    // max-age: age 30 > 10.
    assert_eq!(
        server
            .get_with("/", &[("cache-control", "max-age=10")])
            .await
            .text(),
        "v4"
    );
    assert_eq!(
        server
            .get_with("/", &[("cache-control", "max-age=40")])
            .await
            .text(),
        "v4"
    );
    clock.advance(Duration::from_secs(40));
    // min-fresh: 20 s left < 30.
    assert_eq!(
        server
            .get_with("/", &[("cache-control", "min-fresh=30")])
            .await
            .text(),
        "v5"
    );
    clock.advance(Duration::from_secs(70)); // stale by 10 s
    let stale = server
        .get_with("/", &[("cache-control", "max-stale=20")])
        .await;
    assert_eq!(stale.text(), "v5");
    assert_eq!(status(&stale), "tower-perf; hit; ttl=-10; detail=max-stale");
    let any = server
        .get_with("/", &[("cache-control", "max-stale")])
        .await;
    assert_eq!(any.text(), "v5");
    assert_eq!(
        server
            .get_with("/", &[("cache-control", "max-stale=5")])
            .await
            .text(),
        "v6"
    );
    // only-if-cached: served when usable, 504 otherwise.
    let cached = server
        .get_with("/", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(cached.text(), "v6");
    let none = server
        .get_with("/other", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(none.status, StatusCode::GATEWAY_TIMEOUT);
    // no-store: served from the cache, but the answer isn't stored.
    let calls = origin.calls();
    server
        .get_with("/ns", &[("cache-control", "no-store")])
        .await;
    server.get("/ns").await;
    assert_eq!(origin.calls(), calls + 2);
}

/// An origin with validators that answers conditional requests with 304.
fn validating(parts: &Parts, n: usize, cc: &str) -> Reply {
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

#[tokio::test]
async fn stale_entries_are_revalidated_and_freshened_by_304() {
    let (layer, clock) = clocked();
    let stats = layer.stats();
    let (server, origin) = serve(layer, |p, n| validating(p, n, "max-age=10")).await;
    server.get("/").await;
    clock.advance(Duration::from_secs(15));
    let r = server.get("/").await;
    assert_eq!(r.text(), "body-v1");
    assert_eq!(status(&r), "tower-perf; fwd=stale; fwd-status=304; ttl=10");
    assert_eq!(
        r.header("x-validated"),
        Some("2"),
        "304 fields replace stored ones"
    );
    assert_eq!(r.header("age"), Some("0"));
    let sent = origin.request(2);
    assert_eq!(sent.headers["if-none-match"], "\"v1\"");
    // Freshened: a hit again.
    clock.advance(Duration::from_secs(5));
    let hit = server.get("/").await;
    assert!(status(&hit).contains("hit"));
    assert_eq!(hit.header("x-validated"), Some("2"));
    assert_eq!(origin.calls(), 2);
    assert_eq!(stats.snapshot().revalidated_not_modified, 1);
}

#[tokio::test]
async fn response_no_cache_is_validated_before_each_reuse() {
    let (server, origin) = serve(CacheLayer::new(), |p, n| validating(p, n, "no-cache")).await;
    server.get("/").await;
    for i in 2..=4 {
        let r = server.get("/").await;
        assert_eq!(r.text(), "body-v1");
        assert_eq!(origin.calls(), i);
        assert_eq!(origin.request(i).headers["if-none-match"], "\"v1\"");
    }
}

#[tokio::test]
async fn client_conditionals() {
    let (server, origin) = serve(CacheLayer::new(), |p, n| validating(p, n, "max-age=60")).await;
    // On a miss the cache asks unconditionally, stores, and answers 304.
    let r = server.get_with("/", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(origin.request(1).headers.get("if-none-match").is_none());
    assert_eq!(r.header("etag"), Some("\"v1\""));
    // Give the background store a moment, then a hit.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let full = server.get("/").await;
    assert_eq!(full.text(), "body-v1");
    assert!(status(&full).contains("hit"));
    let hit304 = server
        .get_with("/", &[("if-none-match", "W/\"v1\", \"zz\"")])
        .await;
    assert_eq!(hit304.status, StatusCode::NOT_MODIFIED);
    assert!(hit304.body.is_empty());
    assert_eq!(hit304.header("cache-control"), Some("max-age=60"));
    let other = server.get_with("/", &[("if-none-match", "\"zz\"")]).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(origin.calls(), 1);
}

/// RFC 9110 §15.4.5, the rule `CacheControlLayer` follows too: a 304
/// carries what a 200 would, less the content's metadata; Last-Modified
/// only when there is no ETag to validate with. Whether the cache answers
/// from the store or from a response it just fetched.
#[tokio::test]
async fn a_304_carries_the_fields_of_a_200_less_content_metadata() {
    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    let (server, origin) = serve(CacheLayer::new(), |p, _| {
        let tagged = p.uri.path() == "/tagged";
        let mut fields = vec![
            ("cache-control", "max-age=60"),
            ("last-modified", LM),
            ("content-type", "text/plain"),
            ("content-language", "en"),
            ("x-custom", "kept"),
        ];
        if tagged {
            fields.push(("etag", "\"v1\""));
        }
        ok(&fields, "body")
    })
    .await;
    let check = |r: &TestResponse, tagged: bool, what: &str| {
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{what}");
        assert!(r.body.is_empty(), "{what}");
        assert_eq!(r.header("cache-control"), Some("max-age=60"), "{what}");
        assert_eq!(r.header("x-custom"), Some("kept"), "{what}");
        assert!(r.header("date").is_some(), "{what}");
        assert!(r.header("cache-status").is_some(), "{what}");
        assert_eq!(r.header("content-type"), None, "{what}");
        assert_eq!(r.header("content-language"), None, "{what}");
        if tagged {
            assert_eq!(r.header("etag"), Some("\"v1\""), "{what}");
            assert_eq!(r.header("last-modified"), None, "{what}: ETag present");
        } else {
            assert_eq!(r.header("last-modified"), Some(LM), "{what}: no ETag");
        }
    };
    let miss = server
        .get_with("/tagged", &[("if-none-match", "\"v1\"")])
        .await;
    check(&miss, true, "tagged, miss");
    let miss = server
        .get_with("/dated", &[("if-modified-since", LM)])
        .await;
    check(&miss, false, "dated, miss");
    // The bodies reach the store in the background.
    for _ in 0..100 {
        if status(&server.get("/tagged").await).contains("hit")
            && status(&server.get("/dated").await).contains("hit")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let calls = origin.calls();
    let hit = server
        .get_with("/tagged", &[("if-none-match", "\"v1\"")])
        .await;
    check(&hit, true, "tagged, hit");
    assert!(hit.header("age").is_some());
    let hit = server
        .get_with("/dated", &[("if-modified-since", LM)])
        .await;
    check(&hit, false, "dated, hit");
    assert_eq!(origin.calls(), calls, "both answered from the store");
}

/// The cache evaluates a client's conditions as `CacheControlLayer` does
/// (RFC 9110 §13.1.2, §13.1.3): `If-None-Match: *` fails on any stored
/// representation, with or without an ETag; an `If-Modified-Since` sent
/// twice has more than one member and is ignored.
#[tokio::test]
async fn client_conditions_follow_rfc_9110() {
    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    let (server, origin) = serve(CacheLayer::new(), |_, _| {
        ok(
            &[("cache-control", "max-age=60"), ("last-modified", LM)],
            "body",
        )
    })
    .await;
    let miss = server.get_with("/", &[("if-none-match", "*")]).await;
    assert_eq!(miss.status, StatusCode::NOT_MODIFIED, "miss");
    for _ in 0..100 {
        if status(&server.get("/").await).contains("hit") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let hit = server.get_with("/", &[("if-none-match", "*")]).await;
    assert_eq!(hit.status, StatusCode::NOT_MODIFIED, "hit");
    assert!(status(&hit).contains("hit"));
    let one = server.get_with("/", &[("if-modified-since", LM)]).await;
    assert_eq!(one.status, StatusCode::NOT_MODIFIED);
    let twice = server
        .get_with("/", &[("if-modified-since", LM), ("if-modified-since", LM)])
        .await;
    assert_eq!(twice.status, StatusCode::OK, "a list of dates is ignored");
    assert_eq!(twice.text(), "body");
    assert_eq!(origin.calls(), 1);
}

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

trait IntoStatus {
    fn into_status(self, s: u16) -> Self;
}
impl IntoStatus for Response<Body> {
    fn into_status(mut self, s: u16) -> Self {
        *self.status_mut() = StatusCode::from_u16(s).unwrap();
        self
    }
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let (layer, clock) = clocked();
    let stats = layer.stats();
    let (server, origin) = serve(layer, |_, n| {
        Reply::Slow(
            Duration::from_millis(if n == 1 { 0 } else { 200 }),
            resp(
                &[("cache-control", "max-age=10, stale-while-revalidate=30")],
                format!("v{n}"),
            ),
        )
    })
    .await;
    server.get("/").await;
    clock.advance(Duration::from_secs(15));
    let started = std::time::Instant::now();
    let r = server.get("/").await;
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "served at once"
    );
    assert_eq!(r.text(), "v1");
    assert_eq!(
        status(&r),
        "tower-perf; hit; ttl=-5; detail=stale-while-revalidate"
    );
    // While the refresh runs, more requests get the stale copy, no new fetch.
    for _ in 0..3 {
        assert_eq!(server.get("/").await.text(), "v1");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(origin.calls(), 2, "one background refresh");
    let fresh = server.get("/").await;
    assert_eq!(fresh.text(), "v2");
    assert!(status(&fresh).contains("hit; ttl=10"));
    let s = stats.snapshot();
    assert_eq!(
        (
            s.background_refreshes,
            s.stale_served,
            s.revalidated_modified
        ),
        (1, 4, 1)
    );
    // Past the window: validated in line.
    clock.advance(Duration::from_secs(50));
    assert_eq!(server.get("/").await.text(), "v3");
}

/// Issue 18: a background refresh keeps what it fetched whether or not
/// `Cache-Status` is written (it used to read its own decision back from
/// that header, so with the header off every refresh deleted the entry,
/// and an empty body was stored, then deleted).
#[tokio::test]
async fn background_refresh_stores_with_cache_status_off() {
    for body in ["fresh", ""] {
        let (layer, clock) = clocked();
        let stats = layer.stats();
        let (server, origin) = serve(layer.cache_status(None), move |_, n| {
            let text = if body.is_empty() {
                String::new()
            } else {
                format!("{body}{n}")
            };
            ok(
                &[("cache-control", "max-age=10, stale-while-revalidate=30")],
                &text,
            )
        })
        .await;
        server.get("/").await;
        clock.advance(Duration::from_secs(15));
        server.get("/").await;
        // The refresh stores its response (the second store), in the
        // background; nothing after that may drop it.
        for _ in 0..10_000 {
            if stats.snapshot().stores == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(stats.snapshot().stores, 2, "{body:?}");
        let r = server.get("/").await;
        assert_eq!(
            origin.calls(),
            2,
            "{body:?}: the refreshed entry was dropped"
        );
        let expect = if body.is_empty() { "" } else { "fresh2" };
        assert_eq!(r.text(), expect);
        assert_eq!(stats.snapshot().entries, 1, "{body:?}");
    }
}

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

#[tokio::test]
async fn stale_if_error_and_must_revalidate() {
    let (layer, clock) = clocked();
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = down.clone();
    let (server, _origin) = serve(layer, move |parts, _| {
        let is_down = d.load(Ordering::SeqCst);
        match (parts.uri.path(), is_down) {
            (_, false) if parts.uri.path().starts_with("/sie") => ok(
                &[("cache-control", "max-age=10, stale-if-error=60")],
                "good",
            ),
            ("/must", false) => ok(
                &[(
                    "cache-control",
                    "max-age=10, must-revalidate, stale-if-error=60",
                )],
                "good",
            ),
            ("/plain", false) => ok(&[("cache-control", "max-age=10")], "good"),
            ("/sie-500", true) => Reply::Ok(resp(&[], "broken").into_status(500)),
            (_, true) => Reply::Fail,
            _ => unreachable!(),
        }
    })
    .await;
    for p in ["/sie", "/sie-500", "/must", "/plain"] {
        server.get(p).await;
    }
    down.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(20));
    let r = server.get("/sie").await;
    assert_eq!((r.status, r.text()), (StatusCode::OK, "good"));
    assert_eq!(
        status(&r),
        "tower-perf; fwd=stale; ttl=-10; detail=stale-if-error"
    );
    let r = server.get("/sie-500").await;
    assert_eq!((r.status, r.text()), (StatusCode::OK, "good"));
    assert_eq!(
        status(&r),
        "tower-perf; fwd=stale; fwd-status=500; ttl=-10; detail=stale-if-error"
    );
    // must-revalidate: never stale, 504 when the origin is unreachable.
    let r = server.get("/must").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    // Past the stale-if-error window the error goes through.
    clock.advance(Duration::from_secs(60));
    let r = server
        .client()
        .request(
            server
                .request(Method::GET, "/sie")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert!(r.is_err() || r.unwrap().status().is_server_error());
}

#[tokio::test]
async fn concurrent_misses_coalesce_into_one_origin_call() {
    let layer = CacheLayer::new();
    let stats = layer.stats();
    let (server, origin) = serve(layer, |_, n| {
        Reply::Slow(
            Duration::from_millis(200),
            resp(&[("cache-control", "max-age=60")], format!("v{n}")),
        )
    })
    .await;
    let server = Arc::new(server);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = server.clone();
            tokio::spawn(async move { s.get("/hot").await })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.text(), "v1");
    }
    assert_eq!(origin.calls(), 1);
    let s = stats.snapshot();
    assert_eq!(s.coalesced, 49);
    assert_eq!(s.coalesce_timeouts, 0);
}

#[tokio::test]
async fn an_uncacheable_answer_releases_waiters_at_once() {
    let (server, origin) = serve(CacheLayer::new(), |_, n| {
        Reply::Slow(
            Duration::from_millis(300),
            resp(&[("cache-control", "no-store")], format!("v{n}")),
        )
    })
    .await;
    let server = Arc::new(server);
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let s = server.clone();
            tokio::spawn(async move { s.get("/x").await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().status, StatusCode::OK);
    }
    assert_eq!(origin.calls(), 10);
    // One wait for the leader, then everyone in parallel: about 2 x 300 ms,
    // far from the 5 s coalescing timeout.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn uncacheable_urls_skip_coalescing_afterwards() {
    let (server, origin) = serve(CacheLayer::new(), |_, n| {
        Reply::Slow(
            Duration::from_millis(200),
            resp(&[("cache-control", "private")], format!("v{n}")),
        )
    })
    .await;
    let server = Arc::new(server);
    let burst = |server: Arc<TestServer>| async move {
        let started = std::time::Instant::now();
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let s = server.clone();
                tokio::spawn(async move { s.get("/private").await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        started.elapsed()
    };
    // The first burst learns the URL is uncacheable (its waiters queue
    // behind the leader once: about two delays).
    let first = burst(server.clone()).await;
    assert!(first >= Duration::from_millis(380), "{first:?}");
    // The second goes to the origin in parallel: about one delay.
    let second = burst(server.clone()).await;
    assert!(second < Duration::from_millis(380), "{second:?}");
    assert_eq!(origin.calls(), 10);
}

#[tokio::test]
async fn waiters_go_to_the_origin_after_the_coalescing_timeout() {
    let layer = CacheLayer::new().coalesce(true, Duration::from_millis(100));
    let stats = layer.stats();
    let (server, origin) = serve(layer, |_, n| {
        Reply::Slow(
            Duration::from_millis(400),
            resp(&[("cache-control", "max-age=60")], format!("v{n}")),
        )
    })
    .await;
    let server = Arc::new(server);
    let a = tokio::spawn({
        let s = server.clone();
        async move { s.get("/slow").await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let b = server.get("/slow").await;
    assert_eq!(b.text(), "v2", "gave up waiting and fetched itself");
    assert_eq!(a.await.unwrap().text(), "v1");
    assert_eq!(origin.calls(), 2);
    assert_eq!(stats.snapshot().coalesce_timeouts, 1);
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

#[tokio::test]
async fn byte_budget_holds() {
    let budget = 256 * 1024;
    let store = MemoryStore::new(budget);
    let layer = CacheLayer::new().store(store.clone());
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
async fn range_and_other_preconditions_bypass() {
    let (server, origin) = serve(CacheLayer::new(), |_, _| {
        ok(&[("cache-control", "max-age=60")], "abc")
    })
    .await;
    server.get("/").await;
    let r = server.get_with("/", &[("range", "bytes=0-1")]).await;
    assert_eq!(status(&r), "tower-perf; fwd=bypass");
    server.get_with("/", &[("if-match", "\"x\"")]).await;
    assert_eq!(origin.calls(), 3);
    assert!(status(&server.get("/").await).contains("hit"));
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
        _ => Reply::Slow(
            Duration::from_millis(50),
            resp(&[("cache-control", "max-age=60")], "hot"),
        ),
    })
    .await;
    // Warm through a service that shares the layer's store (a second
    // stack over the same origin, as a router would be).
    let o = origin.clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(move |req: Request<()>| {
            o.calls.fetch_add(1, Ordering::SeqCst);
            let path = req.uri().path().to_owned();
            async move {
                match path.as_str() {
                    "/private" => Ok(resp(&[("cache-control", "private")], "mine")),
                    "/down" => Err::<_, BoxError>("origin down".into()),
                    _ => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(resp(&[("cache-control", "max-age=60")], "hot"))
                    }
                }
            }
        }));
    let host = server.addr().to_string();
    let req = |p: &str| Request::get(p).header("host", &host).body(()).unwrap();
    let started = std::time::Instant::now();
    let urls = ["/h1", "/h2", "/h3", "/h4", "/private", "/down"];
    let report = handle.warm(svc.clone(), urls.map(req), 4).await;
    // Four slow fetches at once: about one delay, not four.
    assert!(
        started.elapsed() < Duration::from_millis(180),
        "{:?}",
        started.elapsed()
    );
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
