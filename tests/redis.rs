//! The Redis stores against a real Redis: the one at `REDIS_URL` (default
//! `redis://127.0.0.1:6379`), each test under its own key prefix, and, for
//! the outage tests, a `redis-server` each test starts on its own port.
//! (Cargo.toml: needs feature `redis`; the report tests also `report`.)

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_perf::rate_limit::{
    FailurePolicy, KeySource, PeerAddr, Quota, RateLimitLayer, RateRule, RedisStore,
};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test (or run) uses.
fn prefix(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "tower-perf-test:{test}:{}:{nanos}:{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn admin(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("a Redis at REDIS_URL")
}

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
    let p = prefix("share");
    let quota = Quota::per_minute(4);
    let mut a = limited(RedisStore::new(&redis_url(), &p).unwrap(), quota);
    let mut b = limited(RedisStore::new(&redis_url(), &p).unwrap(), quota);
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
    let mut conn = admin(&redis_url()).await;
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
        RedisStore::new(&redis_url(), &p).unwrap(),
        Quota::per_minute(100),
    );
    assert_eq!(get(&mut svc, [192, 0, 2, 1]).await.status(), StatusCode::OK);
    let mut conn = admin(&redis_url()).await;
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
    let store = RedisStore::new(&redis_url(), &p).unwrap().deny_cache(true);
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
    let store = RedisStore::new(&format!("redis://127.0.0.1:{port}"), "x")
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server of this test's own, on `port`; killed when dropped.
struct OwnRedis {
    child: Child,
}

impl OwnRedis {
    async fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let url = format!("redis://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(c) = redis::Client::open(url.as_str()) {
                if let Ok(mut conn) = c.get_multiplexed_async_connection().await {
                    let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
                    if pong.is_ok() {
                        break;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { child }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

// ---------------------------------------------------------------- cache

mod cache {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use tower_perf::cache::{
        CacheBody, CacheHandle, CacheKey, CacheLayer, CacheStore, MemoryStore, RedisCacheStore,
        TieredStore,
    };

    type CacheSvc = tower::util::BoxCloneService<
        Request<Full<Bytes>>,
        Response<CacheBody<Full<Bytes>>>,
        Infallible,
    >;

    /// One replica: a tiered store on `url` under `prefix`, in front of an
    /// origin whose calls `calls` counts.
    async fn replica(
        url: &str,
        prefix: &str,
        calls: Arc<AtomicUsize>,
    ) -> (CacheSvc, CacheHandle, TieredStore) {
        let l2 = RedisCacheStore::new(url, prefix)
            .unwrap()
            .timeout(Duration::from_millis(100));
        let store = TieredStore::new(MemoryStore::new(8 << 20), l2).await;
        let layer = CacheLayer::new().store(store.clone());
        let handle = layer.handle();
        let svc = ServiceBuilder::new().layer(layer).service(service_fn(
            move |req: Request<Full<Bytes>>| {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                let path = req.uri().path().to_owned();
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("cache-control", "max-age=600")
                            .header("surrogate-key", "all products")
                            .body(Full::from(format!("{path} #{n}")))
                            .unwrap(),
                    )
                }
            },
        ));
        (tower::util::BoxCloneService::new(svc), handle, store)
    }

    async fn fetch(svc: &CacheSvc, method: http::Method, path: &str) -> (String, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "shop.test")
            .body(Full::default())
            .unwrap();
        let resp = svc.clone().oneshot(req).await.unwrap();
        let status = resp
            .headers()
            .get("cache-status")
            .map_or(String::new(), |v| v.to_str().unwrap().to_owned());
        let body = support::body_bytes(resp.into_body()).await;
        (String::from_utf8(body.to_vec()).unwrap(), status)
    }

    /// Waits until `store` holds `path` (or not), at most `limit`; how
    /// long it took, or `None` (a failing store reads as "absent").
    async fn wait_stored(
        store: &impl CacheStore,
        path: &str,
        present: bool,
        limit: Duration,
    ) -> Option<Duration> {
        let key = CacheKey::from_text(&format!("shop.test{path}"));
        let started = Instant::now();
        loop {
            let found = store.get(&key).await.ok().flatten().is_some();
            if found == present {
                return Some(started.elapsed());
            }
            if started.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn until_stored(
        store: &impl CacheStore,
        path: &str,
        present: bool,
        limit: Duration,
    ) -> Duration {
        wait_stored(store, path, present, limit)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "{path}: still {}",
                    if present { "absent" } else { "present" }
                )
            })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_share_one_cache_and_purges_reach_both() {
        let (url, p) = (redis_url(), prefix("cache-share"));
        let calls = Arc::new(AtomicUsize::new(0));
        let (a, handle_a, _store_a) = replica(&url, &p, calls.clone()).await;
        let (b, _handle_b, store_b) = replica(&url, &p, calls.clone()).await;
        let l2 = RedisCacheStore::new(&url, &p).unwrap();

        let (body, status) = fetch(&a, http::Method::GET, "/products/1").await;
        assert_eq!(
            (body.as_str(), status.as_str()),
            ("/products/1 #1", "tower-perf; fwd=uri-miss; stored")
        );
        until_stored(&l2, "/products/1", true, Duration::from_secs(2)).await;
        // Replica B answers from Redis, then from its own memory.
        let (body, status) = fetch(&b, http::Method::GET, "/products/1").await;
        assert_eq!(body, "/products/1 #1");
        assert!(status.contains("hit"), "{status}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let s = store_b.stats().snapshot();
        assert_eq!(s.l2_hits, 1);
        fetch(&b, http::Method::GET, "/products/1").await;
        assert_eq!(store_b.stats().snapshot().l1_hits, 1);

        // A purge by tag on A reaches B's memory tier within 100 ms.
        let started = Instant::now();
        assert!(handle_a.purge_tag("products").await.unwrap() >= 1);
        let took = started.elapsed()
            + until_stored(&store_b, "/products/1", false, Duration::from_millis(500)).await;
        assert!(took < Duration::from_millis(100), "{took:?}");
        let (body, _) = fetch(&b, http::Method::GET, "/products/1").await;
        assert_eq!(body, "/products/1 #2");

        // An unsafe method on B invalidates A's copy too.
        until_stored(&l2, "/products/1", true, Duration::from_secs(2)).await;
        let (_, status) = fetch(&a, http::Method::GET, "/products/1").await;
        assert!(status.contains("hit"), "{status}");
        fetch(&b, http::Method::POST, "/products/1").await;
        until_stored(&_store_a, "/products/1", false, Duration::from_millis(500)).await;
        let (body, _) = fetch(&a, http::Method::GET, "/products/1").await;
        assert!(body.ends_with("#4"), "{body}");
        assert!(store_b.stats().snapshot().invalidations_received >= 1);
    }

    /// Issue 17: a paused Redis (SIGSTOP: connections open, no answers).
    /// Lookups time out until the breaker opens, then answer from memory
    /// or the origin at once; after SIGCONT the Redis tier is used again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_paused_redis_is_skipped_by_the_breaker() {
        let port = free_port();
        let url = format!("redis://127.0.0.1:{port}");
        let server = OwnRedis::start(port).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let p = prefix("cache-paused");
        let (a, _h, store) = replica(&url, &p, calls.clone()).await;
        fetch(&a, http::Method::GET, "/warm").await;
        let pid = server.child.id().to_string();
        let signal = |sig: &str| {
            let ok = Command::new("kill")
                .args([sig, pid.as_str()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill {sig} {pid}");
        };
        signal("-STOP");
        let n = 100;
        let started = Instant::now();
        for i in 0..n {
            let (body, _) = fetch(&a, http::Method::GET, &format!("/cold/{i}")).await;
            assert!(body.starts_with("/cold/"), "{body}");
        }
        let took = started.elapsed();
        let s = store.stats().snapshot();
        assert!(s.breaker.opened >= 1, "{s:?}");
        assert!(s.breaker.short_circuited > 0, "{s:?}");
        // The replica's timeout is 100 ms: 100 lookups waiting for it
        // would take 10 s.
        assert!(took < Duration::from_secs(5), "{took:?}");
        // Memory still answers what it holds.
        let (body, status) = fetch(&a, http::Method::GET, "/warm").await;
        assert_eq!(body, "/warm #1");
        assert!(status.contains("hit"), "{status}");
        signal("-CONT");
        // Back: a probe closes the breaker and lookups reach Redis again.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut i = 0;
        loop {
            fetch(&a, http::Method::GET, &format!("/back/{i}")).await;
            i += 1;
            let b = store.stats().snapshot().breaker;
            if b.state == tower_perf::breaker::BreakerState::Closed && b.closed >= 1 {
                break;
            }
            assert!(Instant::now() < deadline, "the breaker never closed: {b:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(server);
    }

    /// Issue 17: two replicas hold `/products/1`; Redis goes away (killed
    /// and restarted empty, or paused); A purges meanwhile. The purge says
    /// it did not reach everywhere, and once Redis is back neither replica
    /// serves the purged copy.
    async fn purge_during_outage(kind: &str) {
        let port = free_port();
        let url = format!("redis://127.0.0.1:{port}");
        let mut server = Some(OwnRedis::start(port).await);
        let calls = Arc::new(AtomicUsize::new(0));
        let p = prefix(&format!("cache-converge-{kind}"));
        let (a, handle_a, store_a) = replica(&url, &p, calls.clone()).await;
        let (b, _handle_b, store_b) = replica(&url, &p, calls.clone()).await;
        let l2 = RedisCacheStore::new(&url, &p).unwrap();
        fetch(&a, http::Method::GET, "/products/1").await;
        until_stored(&l2, "/products/1", true, Duration::from_secs(2)).await;
        let (body, status) = fetch(&b, http::Method::GET, "/products/1").await;
        assert_eq!(body, "/products/1 #1");
        assert!(status.contains("hit"), "{status}");

        let pid = server.as_ref().unwrap().child.id().to_string();
        let signal = |sig: &str| {
            let ok = Command::new("kill")
                .args([sig, pid.as_str()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill {sig} {pid}");
        };
        match kind {
            "restart" => drop(server.take()),
            _ => signal("-STOP"),
        }
        // The purge does not claim success: A's memory is purged, the
        // rest waits for Redis.
        let err = handle_a.purge_tag("products").await.unwrap_err();
        assert_eq!(err.purged_here(), Some(1), "{err}");
        assert!(err.to_string().contains("when Redis answers"), "{err}");
        assert_eq!(store_a.stats().snapshot().invalidations_pending, 1);
        assert_eq!(handle_a.stats().snapshot().purged, 1);
        // A fetches afresh; B still serves its memory copy (it cannot
        // know yet).
        let (body, _) = fetch(&a, http::Method::GET, "/products/1").await;
        assert_eq!(body, "/products/1 #2");
        let (body, _) = fetch(&b, http::Method::GET, "/products/1").await;
        assert_eq!(body, "/products/1 #1");

        match kind {
            "restart" => server = Some(OwnRedis::start(port).await),
            _ => signal("-CONT"),
        }
        // Redis is back: within a few seconds B no longer holds the copy
        // (a resubscription empties its memory; the replayed purge reaches
        // it even when its subscription never broke), nor does Redis.
        until_stored(&store_b, "/products/1", false, Duration::from_secs(10)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while store_a.stats().snapshot().invalidations_pending > 0 {
            assert!(Instant::now() < deadline, "the purge was never replayed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (body, _) = fetch(&b, http::Method::GET, "/products/1").await;
        assert!(
            body != "/products/1 #1",
            "{kind}: B served the purged copy: {body}"
        );
        let s = store_a.stats().snapshot();
        assert!(s.invalidations_replayed >= 1, "{s:?}");
        drop(server);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_purge_during_a_restart_converges() {
        purge_during_outage("restart").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_purge_during_a_pause_converges() {
        purge_during_outage("pause").await;
    }

    /// Issue 17: the purge endpoint answers 503 with what was done when
    /// Redis is unreachable, never `200 {"purged": 0}`.
    #[cfg(feature = "report")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_purge_endpoint_reports_an_incomplete_purge() {
        let url = format!("redis://127.0.0.1:{}", free_port());
        let calls = Arc::new(AtomicUsize::new(0));
        let (a, handle, store) = replica(&url, &prefix("cache-503"), calls).await;
        fetch(&a, http::Method::GET, "/products/1").await;
        let report = tower_perf::report::Report::builder()
            .token("t")
            .cache(handle)
            .redis_cache(store.stats())
            .build();
        let req = Request::post("/performance/cache/purge")
            .header("authorization", "Bearer t")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(br#"{"url":"/products/1"}"#)))
            .unwrap();
        let resp = report.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value =
            serde_json::from_slice(&support::body_bytes(resp.into_body()).await).unwrap();
        assert_eq!(body["purged"], 1, "{body}");
        assert_eq!(body["complete"], false, "{body}");
        assert!(body["error"].as_str().unwrap().contains("redis"), "{body}");
        // The purge waits for replay, and the metrics say so.
        let text = report.prometheus();
        assert!(
            text.contains("tower_perf_redis_cache_invalidations_pending 1"),
            "{text}"
        );
        support::promtool(&text);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cache_keeps_serving_while_redis_restarts() {
        let port = free_port();
        let url = format!("redis://127.0.0.1:{port}");
        let server = OwnRedis::start(port).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let p = prefix("cache-restart");
        let (a, _h, store) = replica(&url, &p, calls.clone()).await;
        fetch(&a, http::Method::GET, "/warm").await;
        drop(server);
        // No request fails: L1 answers what it has, the origin the rest.
        for i in 0..20 {
            let (body, _) = fetch(&a, http::Method::GET, &format!("/cold/{}", i % 5)).await;
            assert!(body.starts_with("/cold/"));
            let (body, status) = fetch(&a, http::Method::GET, "/warm").await;
            assert_eq!(body, "/warm #1");
            assert!(status.contains("hit"));
        }
        let s = store.stats().snapshot();
        assert!(s.errors + s.timeouts > 0, "{s:?}");
        // Five distinct cold URLs fell back to the origin once each, then
        // came from memory.
        assert_eq!(s.fallbacks, 5, "{s:?}");
        // Redis comes back (empty): the tier works again by itself. A
        // second replica, with nothing in memory, answers from Redis what
        // the first stored after the restart.
        let _server = OwnRedis::start(port).await;
        let (b, _hb, _sb) = replica(&url, &p, calls.clone()).await;
        let l2 = RedisCacheStore::new(&url, &p).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        for i in 0.. {
            let path = format!("/after/{i}");
            fetch(&a, http::Method::GET, &path).await;
            if wait_stored(&l2, &path, true, Duration::from_millis(300))
                .await
                .is_some()
            {
                let (_, status) = fetch(&b, http::Method::GET, &path).await;
                assert!(status.contains("hit"), "{status}");
                break;
            }
            assert!(Instant::now() < deadline, "the Redis tier never came back");
        }
    }
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
    assert_eq!(rec.area, "redis");
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
