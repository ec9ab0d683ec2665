//! The Redis stores against a real Redis: the one at `REDIS_URL` (or, when
//! it is not set, a `redis-server` started for this test process), each
//! test under its own key prefix, and, for
//! the outage tests, a `redis-server` each test starts on its own port.
//! (Cargo.toml: needs feature `redis`; the report tests also `report`.)

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use support::redis::{OwnRedis, free_port, prefix, redis_url};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_perf::rate_limit::{
    FailurePolicy, KeySource, PeerAddr, Quota, RateLimitLayer, RateRule, RedisStore,
};

type Svc = tower::util::BoxCloneService<
    Request<Full<Bytes>>,
    Response<tower_perf::rate_limit::ResponseBody<Full<Bytes>>>,
    Infallible,
>;

fn limited(store: RedisStore, quota: Quota) -> Svc {
    let layer = RateLimitLayer::with_store(store).rule(
        RateRule::new("api", quota)
            .path("/api/**")
            .key(KeySource::PeerIp),
    );
    tower::util::BoxCloneService::new(ServiceBuilder::new().layer(layer).service(service_fn(
        |_req: Request<Full<Bytes>>| async { Ok::<_, Infallible>(Response::new(Full::from("ok"))) },
    )))
}

async fn get(
    svc: &mut Svc,
    peer: [u8; 4],
) -> Response<tower_perf::rate_limit::ResponseBody<Full<Bytes>>> {
    let mut req = Request::get("/api/items").body(Full::default()).unwrap();
    req.extensions_mut()
        .insert(PeerAddr(SocketAddr::from((peer, 4000))));
    svc.ready().await.unwrap().call(req).await.unwrap()
}

#[tokio::test]
async fn two_replicas_share_one_quota() {
    share_one_quota(&redis_url()).await;
}

#[tokio::test]
async fn two_replicas_share_one_quota_on_a_cluster() {
    share_one_quota(&support::cluster::cluster_url()).await;
}

async fn share_one_quota(url: &str) {
    let p = prefix("share");
    let quota = Quota::per_minute(4);
    let mut a = limited(RedisStore::new(url, &p).unwrap(), quota);
    let mut b = limited(RedisStore::new(url, &p).unwrap(), quota);
    let client = [198, 51, 100, 7];
    let mut statuses = Vec::new();
    for i in 0..6 {
        let svc = if i % 2 == 0 { &mut a } else { &mut b };
        statuses.push(get(svc, client).await.status());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 429, 429].map(|s| StatusCode::from_u16(s).unwrap())
    );
    let denied = get(&mut a, client).await;
    let retry: u64 = denied.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=15).contains(&retry), "{retry}");
    // Another client has its own quota.
    assert_eq!(
        get(&mut b, [198, 51, 100, 8]).await.status(),
        StatusCode::OK
    );
    // The key lives while the quota refills, no longer.
    let mut conn = support::cluster::admin(url).await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("{p}:api:198.51.100.7"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 0 && pttl <= 60_001, "{pttl}");
}

#[tokio::test]
async fn the_script_is_loaded_again_after_noscript() {
    let p = prefix("noscript");
    let mut svc = limited(
        RedisStore::new(redis_url(), &p).unwrap(),
        Quota::per_minute(100),
    );
    assert_eq!(get(&mut svc, [192, 0, 2, 1]).await.status(), StatusCode::OK);
    let mut conn = support::cluster::admin(&redis_url()).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let r = get(&mut svc, [192, 0, 2, 1]).await;
    assert_eq!(r.status(), StatusCode::OK);
    // Counted in Redis, not let through by the failure policy.
    let remaining = r.headers()["ratelimit"].to_str().unwrap().to_owned();
    assert!(remaining.contains("r=98"), "{remaining}");
}

#[tokio::test]
async fn the_deny_cache_spares_round_trips() {
    let p = prefix("deny");
    let store = RedisStore::new(redis_url(), &p).unwrap().deny_cache(true);
    let stats = store.stats();
    let mut svc = limited(store, Quota::per_minute(2));
    for _ in 0..2 {
        assert_eq!(get(&mut svc, [192, 0, 2, 9]).await.status(), StatusCode::OK);
    }
    assert_eq!(
        get(&mut svc, [192, 0, 2, 9]).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let checks = stats.snapshot().checks;
    for _ in 0..5 {
        assert_eq!(
            get(&mut svc, [192, 0, 2, 9]).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    let s = stats.snapshot();
    assert_eq!(s.checks, checks, "no round trip while denied locally");
    assert_eq!(s.local_denials, 5);
}

#[tokio::test]
async fn an_unreachable_redis_fails_open_or_closed_as_configured() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let open = RedisStore::new(&url, "x").unwrap();
    let stats = open.stats();
    let mut svc = limited(open, Quota::per_minute(1));
    for _ in 0..3 {
        assert_eq!(get(&mut svc, [192, 0, 2, 3]).await.status(), StatusCode::OK);
    }
    let s = stats.snapshot();
    assert_eq!(s.fallbacks, 3);
    assert_eq!(s.errors + s.timeouts, 3);

    let closed = RedisStore::new(&url, "x")
        .unwrap()
        .failure_policy(FailurePolicy::Closed);
    let mut svc = limited(closed, Quota::per_minute(1000));
    let r = get(&mut svc, [192, 0, 2, 3]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "1");
}

/// Issue 17: a Redis that accepts and never answers (a black hole). The
/// first checks each wait the store's timeout; then the circuit breaker
/// opens and checks fall back at once, by the failure policy, with one
/// probe per window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redis_costs_a_timeout_per_window_not_per_request() {
    // Accepts, reads nothing, answers nothing.
    let (port, held) = support::silent_listener().await;
    let timeout = Duration::from_millis(50);
    let store = RedisStore::new(format!("redis://127.0.0.1:{port}"), "x")
        .unwrap()
        .timeout(timeout);
    let stats = store.stats();
    let mut svc = limited(store, Quota::per_minute(1));
    let n = 200;
    let started = Instant::now();
    for _ in 0..n {
        // Fail open: every request goes through.
        assert_eq!(get(&mut svc, [192, 0, 2, 9]).await.status(), StatusCode::OK);
    }
    let took = started.elapsed();
    let s = stats.snapshot();
    // Every check was answered by the policy; only the first three and
    // one probe per window reached the socket.
    assert_eq!(s.fallbacks, n, "{s:?}");
    assert!(s.breaker.opened >= 1, "{s:?}");
    assert_eq!(s.errors + s.timeouts, 3 + (s.breaker.opened - 1), "{s:?}");
    assert_eq!(
        s.breaker.short_circuited + s.errors + s.timeouts,
        n,
        "{s:?}"
    );
    assert_ne!(s.breaker.state, tower_perf::breaker::BreakerState::Closed);
    // Without the breaker: 200 timeouts, 10 s.
    assert!(took < timeout * (n as u32) / 2, "{took:?}");
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiting_survives_a_redis_restart() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let server = OwnRedis::start(port).await;
    let store = RedisStore::new(&url, &prefix("restart")).unwrap();
    let stats = store.stats();
    let mut svc = limited(store, Quota::per_minute(1000));
    for _ in 0..20 {
        assert_eq!(get(&mut svc, [192, 0, 2, 4]).await.status(), StatusCode::OK);
    }
    assert_eq!(stats.snapshot().fallbacks, 0);
    // Redis goes away mid-traffic: fail open, no request fails.
    drop(server);
    for _ in 0..20 {
        assert_eq!(get(&mut svc, [192, 0, 2, 4]).await.status(), StatusCode::OK);
    }
    assert!(stats.snapshot().fallbacks > 0);
    // The breaker opened: later checks did not wait for the dead Redis.
    assert!(
        stats.snapshot().breaker.opened >= 1,
        "{:?}",
        stats.snapshot()
    );
    // It comes back (empty: it keeps nothing on disk); the store
    // reconnects by itself and counts in Redis again.
    let _server = OwnRedis::start(port).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = stats.snapshot().fallbacks;
        let r = get(&mut svc, [192, 0, 2, 4]).await;
        assert_eq!(r.status(), StatusCode::OK);
        if stats.snapshot().fallbacks == before {
            break;
        }
        assert!(Instant::now() < deadline, "the store never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = stats.snapshot().breaker;
    assert_eq!(s.state, tower_perf::breaker::BreakerState::Closed, "{s:?}");
    assert!(s.closed >= 1 && s.open_ms > 0, "{s:?}");
    let mut limited_again = limited(
        RedisStore::new(&url, &prefix("restart2")).unwrap(),
        Quota::per_minute(1),
    );
    assert_eq!(
        get(&mut limited_again, [192, 0, 2, 5]).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&mut limited_again, [192, 0, 2, 5]).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[cfg(feature = "report")]
#[tokio::test]
async fn the_report_flags_redis_fallbacks() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let store = RedisStore::new(&url, "x").unwrap();
    let report = tower_perf::report::Report::builder()
        .redis_rate_limit(store.stats())
        .build();
    assert_eq!(report.summary().status, tower_perf::report::Status::Healthy);
    let mut svc = limited(store, Quota::per_minute(10));
    assert_eq!(
        get(&mut svc, [192, 0, 2, 77]).await.status(),
        StatusCode::OK
    );
    let summary = report.summary();
    assert_eq!(summary.status, tower_perf::report::Status::Warning);
    let rec = &summary.recommendations[0];
    assert_eq!(rec.kind, "redis");
    assert!(
        rec.message.starts_with("1 operations fell back"),
        "{}",
        rec.message
    );
    assert!(
        report
            .prometheus()
            .contains("tower_perf_redis_rate_limit_operations_total{outcome=\"fallback\"} 1")
    );
    // Two more failures open the breaker: the summary and the metrics
    // say so (issue 17).
    for _ in 0..2 {
        get(&mut svc, [192, 0, 2, 77]).await;
    }
    let summary = serde_json::to_value(report.summary()).unwrap();
    let breaker = &summary["redis"]["rate_limit"]["breaker"];
    assert_eq!(breaker["state"], "open", "{summary}");
    assert_eq!(breaker["opened"], 1, "{summary}");
    let text = report.prometheus();
    assert!(
        text.contains("tower_perf_redis_breaker_open{store=\"rate_limit\"} 1"),
        "{text}"
    );
    assert!(text.contains(
        "tower_perf_redis_breaker_transitions_total{store=\"rate_limit\",state=\"open\"} 1"
    ));
    support::promtool(&text);
}
