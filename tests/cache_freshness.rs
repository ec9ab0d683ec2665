//! CacheLayer over real HTTP, against a test origin that counts its calls
//! (`support::cache`): freshness (RFC 9111 §4.2) and the stale-serving rules:
//! the request's directives, heuristic freshness, `stale-while-revalidate`
//! with its background refresh, `stale-if-error` and `must-revalidate` (RFC
//! 5861).

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::Full;
use support::cache::{IntoStatus, Reply, clocked, ok, resp, serve, status};
use support::gate::{DEADLINE, Gate, until};
use tower_perf::cache::CacheLayer;
use tower_perf::headers::HttpDate;

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

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let (layer, clock) = clocked();
    let stats = layer.stats();
    // The refreshes wait at the gate until the test opens it.
    let gate = Gate::new();
    let g = gate.clone();
    let (server, origin) = serve(layer, move |_, n| {
        let r = resp(
            &[("cache-control", "max-age=10, stale-while-revalidate=30")],
            format!("v{n}"),
        );
        if n == 1 {
            Reply::Ok(r)
        } else {
            Reply::Held(g.clone(), r)
        }
    })
    .await;
    server.get("/").await;
    clock.advance(Duration::from_secs(15));
    // Served while the refresh it started is still held at the origin.
    let r = tokio::time::timeout(DEADLINE, server.get("/"))
        .await
        .expect("served at once");
    assert_eq!(r.text(), "v1");
    assert_eq!(
        status(&r),
        "tower-perf; hit; ttl=-5; detail=stale-while-revalidate"
    );
    gate.arrived(1).await;
    // While the refresh runs, more requests get the stale copy, no new fetch.
    for _ in 0..3 {
        assert_eq!(server.get("/").await.text(), "v1");
    }
    assert_eq!(gate.count(), 1, "no second fetch while the refresh runs");
    gate.open();
    until("the refresh stored its answer", || {
        stats.snapshot().stores == 2
    })
    .await;
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

#[tokio::test]
async fn stale_if_error_and_must_revalidate() {
    // Only stale-if-error here: the window for an unreachable origin is
    // `a_stale_copy_answers_while_the_origin_is_unreachable`'s.
    let (layer, clock) = clocked();
    let layer = layer.stale_if_unreachable(Duration::ZERO);
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

/// RFC 9111 §4.2.4: disconnected from the origin (it fails, or answers
/// 502, 503 or 504), the cache serves a stale copy within
/// `stale_if_unreachable`, unless `must-revalidate`, `proxy-revalidate`,
/// `s-maxage` or `no-cache` forbid it; a 500 is the origin's answer and
/// goes through. Past the window, or with the window off, the failure
/// goes through too.
#[tokio::test]
async fn a_stale_copy_answers_while_the_origin_is_unreachable() {
    let (layer, clock) = clocked();
    let layer = layer.stale_if_unreachable(Duration::from_secs(60));
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = down.clone();
    let (server, _origin) = serve(layer, move |parts, _| {
        let path = parts.uri.path();
        if !d.load(Ordering::SeqCst) {
            let cc = match path {
                "/must" => "max-age=10, must-revalidate",
                "/proxy" => "max-age=10, proxy-revalidate",
                "/shared" => "max-age=100, s-maxage=10",
                "/no-cache" => "no-cache, max-age=10",
                _ => "max-age=10",
            };
            return Reply::Ok(resp(&[("cache-control", cc), ("etag", "\"v1\"")], "good"));
        }
        match path.strip_prefix("/status-") {
            Some(code) => Reply::Ok(resp(&[], "broken").into_status(code.parse().unwrap())),
            None => Reply::Fail,
        }
    })
    .await;
    let paths = [
        "/plain",
        "/status-502",
        "/status-503",
        "/status-504",
        "/status-500",
        "/must",
        "/proxy",
        "/shared",
        "/no-cache",
    ];
    for p in paths {
        server.get(p).await;
    }
    down.store(true, Ordering::SeqCst);
    // Stale by 10 seconds.
    clock.advance(Duration::from_secs(20));
    let r = server.get("/plain").await;
    assert_eq!((r.status, r.text()), (StatusCode::OK, "good"));
    assert_eq!(
        status(&r),
        "tower-perf; fwd=stale; ttl=-10; detail=origin-unreachable"
    );
    for code in [502, 503, 504] {
        let r = server.get(&format!("/status-{code}")).await;
        assert_eq!((r.status, r.text()), (StatusCode::OK, "good"), "{code}");
        assert_eq!(
            status(&r),
            format!("tower-perf; fwd=stale; fwd-status={code}; ttl=-10; detail=origin-unreachable")
        );
    }
    let r = server.get("/status-500").await;
    assert_eq!(
        r.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "the origin's answer"
    );
    // A client that wants no stored response unvalidated, or none this
    // old, gets the failure (RFC 9111 §5.2.1.4, §5.2.1.1); with
    // `max-stale` it takes the stale copy.
    for (cc, served) in [
        ("no-cache", false),
        ("max-age=0", false),
        ("max-age=0, max-stale", true),
    ] {
        let r = server
            .get_with("/status-503", &[("cache-control", cc)])
            .await;
        assert_eq!(r.status == StatusCode::OK, served, "{cc}: {}", r.status);
    }
    let r = server
        .get_with("/status-503", &[("pragma", "no-cache")])
        .await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "Pragma: no-cache"
    );
    for p in ["/must", "/proxy", "/shared", "/no-cache"] {
        let r = server
            .client()
            .request(
                server
                    .request(Method::GET, p)
                    .body(Full::default())
                    .unwrap(),
            )
            .await;
        let served = r.is_ok_and(|r| r.status() == StatusCode::OK);
        assert!(!served, "{p}: forbidden to serve stale");
    }
    // 70 seconds stale: past the window.
    clock.advance(Duration::from_secs(60));
    let r = server
        .client()
        .request(
            server
                .request(Method::GET, "/plain")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert!(r.is_err() || r.unwrap().status().is_server_error());
    let r = server.get("/status-503").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}
