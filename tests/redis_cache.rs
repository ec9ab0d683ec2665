//! The tiered response cache against a real Redis: replicas sharing one
//! Redis, purges reaching all of them, and convergence after outages (a
//! `redis-server` each outage test starts on its own port, killed, paused,
//! restarted, or cut off behind a black-holing proxy).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;
use support::redis::{BlackHole, OwnRedis, free_port, prefix, redis_url};
use tower::ServiceExt;
use tower_perf::cache::{
    CacheHandle, CacheKey, CacheLayer, CacheStore, MemoryStore, RedisCacheStore, TieredStore,
};

use support::cache::CountingSvc as CacheSvc;

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
    let (svc, handle) = support::cache::counting(
        CacheLayer::new().store(store.clone()),
        calls,
        "all products",
    );
    (svc, handle, store)
}

async fn fetch(svc: &CacheSvc, method: http::Method, path: &str) -> (String, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "shop.test")
        .body(Full::default())
        .unwrap();
    let resp = svc.clone().oneshot(req).await.unwrap();
    let status = support::cache::status_of(&resp);
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
    share_one_cache(&redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_cluster_and_purges_reach_both() {
    share_one_cache(&support::cluster::cluster_url()).await;
}

async fn share_one_cache(url: &str) {
    let (url, p) = (url.to_owned(), prefix("cache-share"));
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, handle_a, _store_a) = replica(&url, &p, calls.clone()).await;
    let (b, _handle_b, store_b) = replica(&url, &p, calls.clone()).await;
    let l2 = RedisCacheStore::new(&url, &p).unwrap();

    let (body, status) = fetch(&a, http::Method::GET, "/products/1").await;
    assert_eq!(
        (body.as_str(), status.as_str()),
        ("/products/1 #1", "tower-perf; fwd=uri-miss; stored")
    );
    until_stored(&l2, "/products/1", true, support::gate::DEADLINE).await;
    // Replica B answers from Redis, then from its own memory.
    let (body, status) = fetch(&b, http::Method::GET, "/products/1").await;
    assert_eq!(body, "/products/1 #1");
    assert!(status.contains("hit"), "{status}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let s = store_b.stats().snapshot();
    assert_eq!(s.l2_hits, 1);
    fetch(&b, http::Method::GET, "/products/1").await;
    assert_eq!(store_b.stats().snapshot().l1_hits, 1);

    // A purge by tag on A reaches B's memory tier (pushed: B's copy would
    // otherwise live its 600 s). How fast is printed, not asserted: a busy
    // two-core machine can exceed any tight bound.
    let started = Instant::now();
    assert!(handle_a.purge_tag("products").await.unwrap() >= 1);
    let took = started.elapsed()
        + until_stored(&store_b, "/products/1", false, support::gate::DEADLINE).await;
    eprintln!("purge by tag reached the other replica's memory in {took:?}");
    let (body, _) = fetch(&b, http::Method::GET, "/products/1").await;
    assert_eq!(body, "/products/1 #2");

    // An unsafe method on B invalidates A's copy too.
    until_stored(&l2, "/products/1", true, support::gate::DEADLINE).await;
    let (_, status) = fetch(&a, http::Method::GET, "/products/1").await;
    assert!(status.contains("hit"), "{status}");
    fetch(&b, http::Method::POST, "/products/1").await;
    until_stored(&_store_a, "/products/1", false, support::gate::DEADLINE).await;
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
    server.signal("-STOP");
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
    server.signal("-CONT");
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
    until_stored(&l2, "/products/1", true, support::gate::DEADLINE).await;
    let (body, status) = fetch(&b, http::Method::GET, "/products/1").await;
    assert_eq!(body, "/products/1 #1");
    assert!(status.contains("hit"), "{status}");

    match kind {
        "restart" => drop(server.take()),
        _ => server.as_ref().unwrap().signal("-STOP"),
    }
    // The purge does not claim success: A's memory is purged, the
    // rest waits for Redis.
    let err = handle_a.purge_tag("products").await.unwrap_err();
    assert_eq!(err.purged_here(), Some(1), "{err}");
    assert!(err.to_string().contains("when Redis answers"), "{err}");
    assert_eq!(store_a.stats().snapshot().invalidations_pending, 1);
    assert_eq!(handle_a.stats().snapshot().purged, 1);
    // B still serves its memory copy (it cannot know yet).
    let (body, _) = fetch(&b, http::Method::GET, "/products/1").await;
    assert_eq!(body, "/products/1 #1");

    match kind {
        "restart" => server = Some(OwnRedis::start(port).await),
        _ => server.as_ref().unwrap().signal("-CONT"),
    }
    // A, with nothing in memory, never serves Redis's copy (still
    // there after a pause) before its purge is replayed: asked until the
    // replay, and once after it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let replayed = store_a.stats().snapshot().invalidations_pending == 0;
        let (body, _) = fetch(&a, http::Method::GET, "/products/1").await;
        assert_ne!(body, "/products/1 #1", "{kind}: A served what it purged");
        if replayed {
            break;
        }
        assert!(Instant::now() < deadline, "the purge was never replayed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Redis is back: within a few seconds B no longer serves the copy
    // (a resubscription empties its memory; the replayed purge reaches
    // it even when its subscription never broke), nor does Redis hold
    // it.
    loop {
        let (body, _) = fetch(&b, http::Method::GET, "/products/1").await;
        if body != "/products/1 #1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{kind}: B still serves the purged copy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sb = store_b.stats().snapshot();
    assert!(sb.l1_dropped + sb.invalidations_received >= 1, "{sb:?}");
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
        .body(Full::new(bytes::Bytes::from_static(
            br#"{"url":"/products/1"}"#,
        )))
        .unwrap();
    let resp = report.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::SERVICE_UNAVAILABLE);
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
    // A URL the cache would never key (userinfo) is the caller's mistake:
    // 400, not a store failure.
    let req = Request::post("/performance/cache/purge")
        .header("authorization", "Bearer t")
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from_static(
            br#"{"url":"http://user@shop.test/products/1"}"#,
        )))
        .unwrap();
    let resp = report.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::BAD_REQUEST);
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

/// Issue 17: a replica whose subscription connection dies without a word
/// (the peer gone behind a proxy, a partition) notices within seconds by
/// its ping, subscribes again and drops its memory copies, instead of
/// serving what other replicas purged until it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_subscription_is_noticed_and_memory_dropped() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let _server = OwnRedis::start(port).await;
    let proxy = BlackHole::start(port).await;
    let via_proxy = format!("redis://127.0.0.1:{}", proxy.port);
    let calls = Arc::new(AtomicUsize::new(0));
    let p = prefix("cache-black-hole");
    let (a, handle_a, _store_a) = replica(&url, &p, calls.clone()).await;
    let (b, _handle_b, store_b) = replica(&via_proxy, &p, calls.clone()).await;
    let l2 = RedisCacheStore::new(&url, &p).unwrap();
    fetch(&a, http::Method::GET, "/products/1").await;
    until_stored(&l2, "/products/1", true, support::gate::DEADLINE).await;
    let (body, status) = fetch(&b, http::Method::GET, "/products/1").await;
    assert_eq!(body, "/products/1 #1");
    assert!(status.contains("hit"), "{status}");

    // B's connections go silent for good; A's purge reaches Redis but
    // not B's dead subscription.
    proxy.cut();
    assert!(handle_a.purge_tag("products").await.unwrap() >= 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (body, _) = fetch(&b, http::Method::GET, "/products/1").await;
        if body != "/products/1 #1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B still serves the purged copy: {:?}",
            store_b.stats().snapshot()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(store_b.stats().snapshot().l1_dropped >= 1);
}
