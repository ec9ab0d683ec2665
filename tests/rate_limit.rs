//! RateLimitLayer over real HTTP and with a controlled clock.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use support::log::LogBuffer;
use support::rate_limit::{counts, req_from, status_from};
use support::{TestResponse, TestServer, serve_without_connect_info};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_perf::clock::ManualClock;
use tower_perf::rate_limit::{KeySource, MemoryStore, MissingKey, Quota, RateLimitLayer, RateRule};

fn app(layer: RateLimitLayer) -> Router {
    Router::new()
        .route(
            "/api/items",
            get(|| async { "items" }).post(|| async { "created" }),
        )
        .route("/health", get(|| async { "ok" }))
        .layer(layer)
}

fn rules() -> RateLimitLayer {
    RateLimitLayer::new()
        .rule(
            RateRule::new("writes", Quota::per_minute(2))
                .path("/api/**")
                .methods([Method::POST]),
        )
        .rule(RateRule::new("api", Quota::per_minute(5)).path("/api/**"))
}

async fn post(s: &TestServer, path: &str) -> TestResponse {
    s.send(s.request(Method::POST, path).body(Full::default()).unwrap())
        .await
}

#[tokio::test]
async fn per_route_rules_over_http() {
    let layer = rules();
    let stats = layer.stats();
    let s = TestServer::serve(app(layer)).await;
    // Writes: 2 a minute.
    assert_eq!(post(&s, "/api/items").await.status, StatusCode::OK);
    assert_eq!(post(&s, "/api/items").await.status, StatusCode::OK);
    let denied = post(&s, "/api/items").await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.text(), "rate limit exceeded\n");
    // Reads have their own quota of 5.
    for _ in 0..5 {
        assert_eq!(s.get("/api/items").await.status, StatusCode::OK);
    }
    assert_eq!(
        s.get("/api/items").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // No rule, no limit, no fields.
    for _ in 0..20 {
        let r = s.get("/health").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("ratelimit"), None);
    }
    let snap = stats.snapshot().policies;
    assert_eq!(
        (snap[0].name.as_str(), snap[0].allowed, snap[0].limited),
        ("writes", 2, 1)
    );
    assert_eq!(
        (snap[1].name.as_str(), snap[1].allowed, snap[1].limited),
        ("api", 5, 1)
    );
}

#[tokio::test]
async fn ietf_fields_and_retry_after() {
    let s = TestServer::serve(app(rules())).await;
    let r = s.get("/api/items").await;
    assert_eq!(r.header("ratelimit-policy"), Some("\"api\";q=5;w=60"));
    // One used of five; the quota is whole again in 12 s (one interval).
    assert_eq!(r.header("ratelimit"), Some("\"api\";r=4;t=12"));
    for _ in 0..4 {
        s.get("/api/items").await;
    }
    let denied = s.get("/api/items").await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = denied.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "{retry}");
    // Retry-After and t agree on a 429.
    assert_eq!(
        denied.header("ratelimit"),
        Some(format!("\"api\";r=0;t={retry}").as_str())
    );
    // Structured Fields: a quoted string, then ;key=integer parameters.
    for v in [
        denied.header("ratelimit").unwrap(),
        denied.header("ratelimit-policy").unwrap(),
    ] {
        let (name, params) = v.split_once(';').unwrap();
        assert!(name.starts_with('"') && name.ends_with('"'), "{v}");
        for p in params.split(';') {
            let (k, n) = p.split_once('=').unwrap();
            assert!(k.chars().all(|c| c.is_ascii_lowercase()), "{v}");
            assert!(n.parse::<u64>().is_ok(), "{v}");
        }
    }
}

fn svc_with_clock(
    quota: Quota,
    clock: ManualClock,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<tower_perf::rate_limit::ResponseBody<Full<Bytes>>>,
    Error = Infallible,
> + Clone {
    let layer = RateLimitLayer::with_store(MemoryStore::with_clock(1000, clock))
        .rule(RateRule::new("q", quota));
    ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok")))
        }))
}

#[tokio::test]
async fn retry_after_rounds_up_and_is_never_zero() {
    let clock = ManualClock::new();
    let svc = svc_with_clock(Quota::per_second(10).with_burst(1), clock.clone());
    assert_eq!(status_from(&svc, [1, 1, 1, 1]).await, StatusCode::OK);
    // 100 ms until the next request: Retry-After says 1, never 0.
    let denied = svc.clone().oneshot(req_from([1, 1, 1, 1])).await.unwrap();
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.headers()["retry-after"], "1");
    assert_eq!(denied.headers()["ratelimit"], "\"q\";r=0;t=1");
    clock.advance(Duration::from_millis(100));
    assert_eq!(status_from(&svc, [1, 1, 1, 1]).await, StatusCode::OK);
    // 1 per minute: after one, Retry-After is 60.
    let svc = svc_with_clock(Quota::per_minute(1), clock.clone());
    svc.clone().oneshot(req_from([2, 2, 2, 2])).await.unwrap();
    clock.advance(Duration::from_millis(500));
    let denied = svc.clone().oneshot(req_from([2, 2, 2, 2])).await.unwrap();
    assert_eq!(denied.headers()["retry-after"], "60", "59.5 s rounded up");
}

#[tokio::test]
async fn burst_then_steady_rate_per_client() {
    let clock = ManualClock::new();
    let svc = svc_with_clock(Quota::per_second(2).with_burst(4), clock.clone());
    let mut ok = 0;
    for _ in 0..10 {
        ok += usize::from(status_from(&svc, [9, 9, 9, 9]).await == StatusCode::OK);
    }
    assert_eq!(ok, 4, "the burst");
    // Another client is not affected.
    assert_eq!(status_from(&svc, [8, 8, 8, 8]).await, StatusCode::OK);
    // Then two a second.
    let mut ok = 0;
    for _ in 0..20 {
        clock.advance(Duration::from_millis(250));
        ok += usize::from(status_from(&svc, [9, 9, 9, 9]).await == StatusCode::OK);
    }
    assert_eq!(ok, 10, "5 s at 2 per second");
}

#[tokio::test]
async fn trusted_proxies_over_http() {
    // The test server's peer is 127.0.0.1: trusted here.
    let layer = RateLimitLayer::new().rule(
        RateRule::new("api", Quota::per_minute(1))
            .key(KeySource::client_ip(["127.0.0.0/8"]).unwrap()),
    );
    let s = TestServer::serve(app(layer)).await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    assert_eq!(
        s.get_with("/api/items", &from("198.51.100.1")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.get_with("/api/items", &from("198.51.100.2")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.get_with("/api/items", &from("198.51.100.1")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A client can't escape by prepending addresses: the rightmost untrusted counts.
    assert_eq!(
        s.get_with(
            "/api/items",
            &[("x-forwarded-for", "6.6.6.6, 198.51.100.2")]
        )
        .await
        .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Without trusted proxies the header is ignored: everyone is 127.0.0.1.
    let layer = RateLimitLayer::new()
        .rule(RateRule::new("api", Quota::per_minute(1)).key(KeySource::PeerIp));
    let s = TestServer::serve(app(layer)).await;
    assert_eq!(
        s.get_with("/api/items", &from("198.51.100.1")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.get_with("/api/items", &from("198.51.100.2")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn api_key_header_and_missing_keys() {
    let rule = || {
        RateRule::new("key", Quota::per_minute(1)).key(KeySource::Header(
            http::HeaderName::from_static("x-api-key"),
        ))
    };
    for (mode, second_anonymous) in [
        (MissingKey::Shared, StatusCode::TOO_MANY_REQUESTS),
        (MissingKey::Allow, StatusCode::OK),
    ] {
        let s =
            TestServer::serve(app(RateLimitLayer::new().rule(rule()).on_missing_key(mode))).await;
        assert_eq!(
            s.get_with("/api/items", &[("x-api-key", "a")]).await.status,
            StatusCode::OK
        );
        assert_eq!(
            s.get_with("/api/items", &[("x-api-key", "b")]).await.status,
            StatusCode::OK
        );
        assert_eq!(
            s.get_with("/api/items", &[("x-api-key", "a")]).await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(s.get("/api/items").await.status, StatusCode::OK, "{mode:?}");
        assert_eq!(
            s.get("/api/items").await.status,
            second_anonymous,
            "{mode:?}"
        );
    }
    let s = TestServer::serve(app(RateLimitLayer::new()
        .rule(rule())
        .on_missing_key(MissingKey::Deny)))
    .await;
    let r = s.get("/api/items").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn shadow_mode_counts_but_never_rejects() {
    let layer = RateLimitLayer::new()
        .rule(RateRule::new("api", Quota::per_minute(1)))
        .shadow(true);
    let stats = layer.stats();
    let s = TestServer::serve(app(layer)).await;
    for _ in 0..5 {
        assert_eq!(s.get("/api/items").await.status, StatusCode::OK);
    }
    let snap = stats.snapshot().policies;
    assert_eq!((snap[0].allowed, snap[0].limited), (1, 4));
}

/// `MissingKey::Deny` in shadow mode: counted as limited, never rejected.
#[tokio::test]
async fn shadow_mode_never_rejects_a_request_without_a_key() {
    let layer = RateLimitLayer::new()
        .rule(RateRule::new("api", Quota::per_minute(5)))
        .on_missing_peer_addr(MissingKey::Deny)
        .shadow(true);
    let stats = layer.stats();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok")))
        },
    ));
    for _ in 0..2 {
        let req = Request::get("/").body(Full::default()).unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(counts(&stats), [("api".to_owned(), 0, 2)]);
}

#[tokio::test]
async fn headers_can_be_turned_off() {
    let layer = RateLimitLayer::new()
        .rule(RateRule::new("api", Quota::per_minute(1)))
        .headers(false);
    let s = TestServer::serve(app(layer)).await;
    assert_eq!(s.get("/api/items").await.header("ratelimit"), None);
    let denied = s.get("/api/items").await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.header("ratelimit"), None);
    assert!(denied.header("retry-after").is_some(), "Retry-After always");
}

#[test]
fn services_futures_and_bodies_are_send() {
    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}
    assert_send::<tower_perf::rate_limit::ResponseBody<Full<Bytes>>>();
    assert_send::<RateLimitLayer>();
    assert_sync::<RateLimitLayer>();
    assert_sync::<MemoryStore>();
}

#[tokio::test]
async fn problem_json_legacy_fields_and_custom_rejections() {
    let layer = RateLimitLayer::new()
        .rule(RateRule::new("api", Quota::per_minute(1)))
        .problem_json(true)
        .legacy_headers(true);
    let s = TestServer::serve(app(layer)).await;
    let ok = s.get("/api/items").await;
    assert_eq!(
        (
            ok.header("x-ratelimit-limit"),
            ok.header("x-ratelimit-remaining"),
            ok.header("x-ratelimit-reset")
        ),
        (Some("1"), Some("0"), Some("60"))
    );
    let denied = s.get("/api/items").await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        denied.header("content-type"),
        Some("application/problem+json")
    );
    let body: serde_json::Value = denied.json();
    assert_eq!(body["status"], 429);
    assert_eq!(body["title"], "Too Many Requests");
    assert_eq!(
        body["retry_after"].as_u64(),
        denied.header("retry-after").and_then(|r| r.parse().ok())
    );
    assert_eq!(denied.header("x-ratelimit-remaining"), Some("0"));

    let layer = RateLimitLayer::new()
        .rule(RateRule::new("api", Quota::per_minute(1)))
        .on_reject(|r| {
            Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .header("x-policy", r.policy.clone())
                .body(Bytes::from(format!("slow down, {}", r.key)))
                .unwrap()
        });
    let s = TestServer::serve(app(layer)).await;
    s.get("/api/items").await;
    let denied = s.get("/api/items").await;
    assert_eq!(denied.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(denied.header("x-policy"), Some("api"));
    assert_eq!(denied.text(), "slow down, 127.0.0.1");
    assert!(
        denied.header("retry-after").is_some(),
        "added when the custom answer has none"
    );
    assert!(denied.header("ratelimit").is_some());
}

#[tokio::test]
async fn several_policies_on_one_request() {
    let api_key = || KeySource::Header(http::HeaderName::from_static("x-api-key"));
    let layer = RateLimitLayer::new()
        .rule(
            RateRule::new("per-client", Quota::per_minute(5))
                .key(api_key())
                .and_policy("global", Quota::per_minute(8), KeySource::Global),
        )
        .on_missing_key(MissingKey::Deny);
    let stats = layer.stats();
    let s = TestServer::serve(app(layer)).await;
    let first = s.get_with("/api/items", &[("x-api-key", "a")]).await;
    assert_eq!(
        first.header("ratelimit-policy"),
        Some("\"per-client\";q=5;w=60, \"global\";q=8;w=60")
    );
    assert_eq!(
        first.header("ratelimit"),
        Some("\"per-client\";r=4;t=12, \"global\";r=7;t=8")
    );
    for _ in 0..4 {
        assert_eq!(
            s.get_with("/api/items", &[("x-api-key", "a")]).await.status,
            StatusCode::OK
        );
    }
    // Client a is out; its refused requests don't eat the global quota.
    for _ in 0..3 {
        let r = s.get_with("/api/items", &[("x-api-key", "a")]).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            r.header("ratelimit")
                .unwrap()
                .starts_with("\"per-client\";r=0;"),
            "{:?}",
            r.header("ratelimit")
        );
    }
    // Client b has its own 5, but only 3 are left globally.
    let b: Vec<StatusCode> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(s.get_with("/api/items", &[("x-api-key", "b")]).await.status);
        }
        v
    };
    assert_eq!(
        b.iter().filter(|s| **s == StatusCode::OK).count(),
        3,
        "{b:?}"
    );
    let snap = stats.snapshot().policies;
    assert_eq!(snap.len(), 2);
    assert_eq!(
        (snap[0].name.as_str(), snap[0].allowed, snap[0].limited),
        ("per-client", 8, 3)
    );
    assert_eq!(
        (snap[1].name.as_str(), snap[1].allowed, snap[1].limited),
        ("global", 8, 2)
    );
}

/// A rule written in axum's route syntax limits the route it names
/// (before, `/api/items/{id}` was a literal path no request has, and the
/// route went unlimited).
#[tokio::test]
async fn axum_route_syntax_limits_the_route() {
    let layer = RateLimitLayer::new()
        .rule(RateRule::new("item", Quota::per_minute(1)).path("/api/items/{id}"))
        .rule(RateRule::new("files", Quota::per_minute(1)).path("/files/{*rest}"));
    let stats = layer.stats();
    let app = Router::new()
        .route("/api/items/{id}", get(|| async { "item" }))
        .route("/files/{*rest}", get(|| async { "file" }))
        .route("/files", get(|| async { "index" }))
        .layer(layer);
    let s = TestServer::serve(app).await;
    assert_eq!(s.get("/api/items/7").await.status, StatusCode::OK);
    let denied = s.get("/api/items/7").await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        s.get("/api/items/8").await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "one quota for the route, as for any pattern"
    );
    assert_eq!(s.get("/files/a/b.txt").await.status, StatusCode::OK);
    assert_eq!(
        s.get("/files/c").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // `/files` is not under axum's `/files/{*rest}`: no rule, no limit.
    for _ in 0..3 {
        let r = s.get("/files").await;
        assert_eq!((r.status, r.header("ratelimit")), (StatusCode::OK, None));
    }
    let snap = stats.snapshot().policies;
    assert_eq!((snap[0].allowed, snap[0].limited), (1, 2));
    assert_eq!((snap[1].allowed, snap[1].limited), (1, 1));
}

#[test]
#[should_panic(expected = "invalid route pattern \"/api/{id\"")]
fn a_pattern_that_cannot_match_panics_at_construction() {
    let _ = RateRule::new("api", Quota::per_minute(1)).path("/api/{id");
}

#[test]
#[should_panic(expected = "must start with `/`")]
fn an_empty_or_relative_pattern_panics_at_construction() {
    let _ = RateRule::new("api", Quota::per_minute(1)).path("api/**");
}

async fn get_from(addr: std::net::SocketAddr, path: &str) -> TestResponse {
    support::get_at(addr, path, &[]).await
}

/// Behind `axum::serve(listener, app)` no request carries a client
/// address. The default used to count them all under one key, where one
/// client could lock everybody out, silently; now each such request gets a
/// 500 that names the fix, and one error is logged for the whole layer.
#[tokio::test]
async fn without_a_client_address_the_default_fails_loudly() {
    let log = LogBuffer::default();
    let _guard = log.capture();
    let layer =
        RateLimitLayer::new().rule(RateRule::new("api", Quota::per_minute(2)).path("/api/**"));
    let stats = layer.stats();
    let addr = serve_without_connect_info(app(layer)).await;
    for _ in 0..5 {
        let r = get_from(addr, "/api/items").await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        let body = r.text();
        assert!(
            body.contains("into_make_service_with_connect_info::<SocketAddr>()"),
            "{body}"
        );
        assert!(
            body.contains("on_missing_peer_addr(MissingKey::Shared)"),
            "{body}"
        );
        assert!(body.contains("MissingKey::Allow"), "{body}");
    }
    // Routes without a rule are not the layer's business.
    assert_eq!(get_from(addr, "/health").await.status, StatusCode::OK);
    let errors = log.errors();
    assert_eq!(errors.len(), 1, "one error for the layer: {errors:#?}");
    assert!(
        errors[0].contains("into_make_service_with_connect_info::<SocketAddr>()"),
        "{}",
        errors[0]
    );
    assert_eq!(stats.missing_key_failures(), 5);
    let snap = stats.snapshot().policies;
    assert_eq!((snap[0].allowed, snap[0].limited), (0, 0), "none counted");
}

/// Sharing one quota among requests without an address is still there,
/// when chosen; so is letting them through.
#[tokio::test]
async fn without_a_client_address_shared_and_allow_work_when_chosen() {
    let log = LogBuffer::default();
    let _guard = log.capture();
    let layer = RateLimitLayer::new()
        .rule(RateRule::new("api", Quota::per_minute(2)).path("/api/**"))
        .on_missing_peer_addr(MissingKey::Shared);
    let stats = layer.stats();
    let addr = serve_without_connect_info(app(layer)).await;
    assert_eq!(get_from(addr, "/api/items").await.status, StatusCode::OK);
    assert_eq!(get_from(addr, "/api/items").await.status, StatusCode::OK);
    let denied = get_from(addr, "/api/items").await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(stats.most_limited(1)[0].key, "unknown");
    let layer = RateLimitLayer::new()
        .rule(RateRule::new("api", Quota::per_minute(2)).path("/api/**"))
        .on_missing_peer_addr(MissingKey::Allow);
    let addr = serve_without_connect_info(app(layer)).await;
    for _ in 0..5 {
        assert_eq!(get_from(addr, "/api/items").await.status, StatusCode::OK);
    }
    assert_eq!(stats.missing_key_failures(), 0);
    assert!(log.lines().is_empty(), "{:?}", log.lines());
    // And with the address handed over, the default counts per client.
    let layer =
        RateLimitLayer::new().rule(RateRule::new("api", Quota::per_minute(2)).path("/api/**"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app(layer).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    assert_eq!(get_from(addr, "/api/items").await.status, StatusCode::OK);
    assert_eq!(get_from(addr, "/api/items").await.status, StatusCode::OK);
    assert_eq!(
        get_from(addr, "/api/items").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Shadow mode never rejects, not even for a missing address: the error
/// is logged and counted, and the request goes on.
#[tokio::test]
async fn without_a_client_address_shadow_mode_logs_but_lets_through() {
    let log = LogBuffer::default();
    let _guard = log.capture();
    let layer = RateLimitLayer::new()
        .rule(RateRule::new("api", Quota::per_minute(1)).path("/api/**"))
        .shadow(true);
    let stats = layer.stats();
    let addr = serve_without_connect_info(app(layer)).await;
    for _ in 0..3 {
        let r = get_from(addr, "/api/items").await;
        assert_eq!((r.status, r.header("ratelimit")), (StatusCode::OK, None));
    }
    assert_eq!(stats.missing_key_failures(), 3);
    let errors = log.errors();
    assert_eq!(errors.len(), 1);
    // It says what happened: nothing was answered 500.
    assert!(
        errors[0].contains("shadow mode lets every such request through")
            && !errors[0].contains("answering 500"),
        "{errors:?}"
    );
}

/// A key that clients send (an API key) may be missing by their choice:
/// no server error for it, and no default either.
#[test]
#[should_panic(expected = "which a client can leave out")]
fn a_header_key_without_a_missing_key_choice_panics_when_built() {
    let layer = RateLimitLayer::new().rule(RateRule::new("key", Quota::per_minute(1)).key(
        KeySource::Header(http::HeaderName::from_static("x-api-key")),
    ));
    let _ = layer.layer(service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok")))
    }));
}

#[tokio::test]
async fn the_most_limited_keys_are_reported() {
    let layer = RateLimitLayer::new()
        .rule(
            RateRule::new("key", Quota::per_minute(1)).key(KeySource::Header(
                http::HeaderName::from_static("x-api-key"),
            )),
        )
        .on_missing_key(MissingKey::Deny);
    let stats = layer.stats();
    let s = TestServer::serve(app(layer)).await;
    for (key, n) in [("a", 5), ("b", 3), ("c", 1)] {
        for _ in 0..n {
            s.get_with("/api/items", &[("x-api-key", key)]).await;
        }
    }
    let top = stats.most_limited(2);
    let got: Vec<(&str, u64)> = top.iter().map(|k| (k.key.as_str(), k.limited)).collect();
    assert_eq!(got, [("a", 4), ("b", 2)]);
    assert_eq!(top[0].policy, "key");
}
