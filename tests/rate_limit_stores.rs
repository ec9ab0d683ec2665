//! Where the rate limiter counts: a store that fails (requests go
//! through), a store that answers only through its future (as Redis does)
//! against the memory store that answers inside `call`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_perf::clock::ManualClock;
use tower_perf::rate_limit::{MemoryStore, Quota, RateLimitLayer, RateRule};

mod support;

use support::TestServer;
use support::rate_limit::req_from;

/// A store that always fails, as Redis does when it is down.
struct Broken;

impl tower_perf::rate_limit::RateLimitStore for Broken {
    type Future = std::future::Ready<
        Result<tower_perf::rate_limit::Decision, tower_perf::rate_limit::StoreError>,
    >;
    fn check(
        &self,
        _: &tower_perf::rate_limit::PolicyRef,
        _: &tower_perf::rate_limit::Key,
        _: u32,
    ) -> Self::Future {
        std::future::ready(Err(tower_perf::rate_limit::StoreError::new(
            "connection refused",
        )))
    }
    fn peek(
        &self,
        p: &tower_perf::rate_limit::PolicyRef,
        k: &tower_perf::rate_limit::Key,
        c: u32,
    ) -> Self::Future {
        self.check(p, k, c)
    }
}

#[tokio::test]
async fn a_failing_store_lets_requests_through() {
    let layer = RateLimitLayer::with_store(Broken).rule(RateRule::new("api", Quota::per_minute(1)));
    let s = TestServer::serve(
        Router::new()
            .route("/api/items", get(|| async { "items" }))
            .layer(layer),
    )
    .await;
    for _ in 0..5 {
        assert_eq!(s.get("/api/items").await.status, StatusCode::OK);
    }
}

/// The memory store's answers, but only through its futures: the layer
/// can't decide inside `call` (no `check_at_once`), as with Redis.
struct Deferred(MemoryStore);

impl tower_perf::rate_limit::RateLimitStore for Deferred {
    type Future = <MemoryStore as tower_perf::rate_limit::RateLimitStore>::Future;
    fn check(
        &self,
        p: &tower_perf::rate_limit::PolicyRef,
        k: &tower_perf::rate_limit::Key,
        c: u32,
    ) -> Self::Future {
        self.0.check(p, k, c)
    }
    fn peek(
        &self,
        p: &tower_perf::rate_limit::PolicyRef,
        k: &tower_perf::rate_limit::Key,
        c: u32,
    ) -> Self::Future {
        self.0.peek(p, k, c)
    }
}

/// Deciding in `call` (the memory store) and through the store's future
/// (any other store) give the same statuses and fields, request by request.
#[tokio::test]
async fn answers_in_call_and_through_the_future_agree() {
    use tower_perf::rate_limit::RateLimitStore;
    let clock = ManualClock::new();
    let store = MemoryStore::with_clock(1000, clock.clone());
    assert!(
        store
            .check_at_once(
                &tower_perf::rate_limit::PolicyRef {
                    index: 99,
                    name: "probe".into(),
                    quota: Quota::per_second(1),
                },
                &tower_perf::rate_limit::Key::Global,
                1,
            )
            .is_some(),
        "the memory store answers at once"
    );
    let rule = || RateRule::new("q", Quota::per_second(2).with_burst(3));
    let direct = RateLimitLayer::with_store(store)
        .rule(rule())
        .legacy_headers(true);
    let deferred =
        RateLimitLayer::with_store(Deferred(MemoryStore::with_clock(1000, clock.clone())))
            .rule(rule())
            .legacy_headers(true);
    let handler = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok")))
    });
    let direct = ServiceBuilder::new().layer(direct).service(handler);
    let deferred = ServiceBuilder::new().layer(deferred).service(handler);
    let mut limited = 0;
    for step in 0..12 {
        if step % 3 == 2 {
            clock.advance(Duration::from_millis(250));
        }
        let a = direct
            .clone()
            .oneshot(req_from([3, 3, 3, 3]))
            .await
            .unwrap();
        let b = deferred
            .clone()
            .oneshot(req_from([3, 3, 3, 3]))
            .await
            .unwrap();
        assert_eq!(a.status(), b.status(), "step {step}");
        limited += usize::from(a.status() == StatusCode::TOO_MANY_REQUESTS);
        for h in [
            "ratelimit",
            "ratelimit-policy",
            "retry-after",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
        ] {
            assert_eq!(a.headers().get(h), b.headers().get(h), "{h} at step {step}");
        }
        assert!(a.headers().contains_key("ratelimit"), "step {step}");
    }
    assert!(
        (1..12).contains(&limited),
        "both paths allowed and limited: {limited}"
    );
}
