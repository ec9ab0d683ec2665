//! CacheLayer over real HTTP, against a test origin that counts its calls
//! (`support::cache`): coalescing: concurrent misses share one origin call,
//! uncacheable answers release the waiters, and waiters stop waiting after
//! the timeout.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use support::TestServer;
use support::cache::{Reply, resp, serve};
use tower_perf::cache::CacheLayer;

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
