//! CacheLayer over real HTTP, against a test origin that counts its calls
//! (`support::cache`): coalescing: concurrent misses share one origin call,
//! uncacheable answers release the waiters, and waiters stop waiting after
//! the timeout. The origin holds its answers at a `Gate` until every
//! request the test needs is waiting, so requests overlap for certain.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use support::TestServer;
use support::cache::{Reply, resp, serve};
use support::gate::{Gate, until};
use tower_perf::cache::CacheLayer;

#[tokio::test]
async fn concurrent_misses_coalesce_into_one_origin_call() {
    let layer = CacheLayer::new();
    let stats = layer.stats();
    let gate = Gate::new();
    let g = gate.clone();
    let (server, origin) = serve(layer, move |_, n| {
        Reply::Held(
            g.clone(),
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
    // The leader at the origin, the 49 others waiting for it.
    gate.arrived(1).await;
    until("49 requests wait for the leader", || {
        stats.snapshot().coalesced == 49
    })
    .await;
    gate.open();
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
    // A coalescing timeout no test run reaches: a waiter that was not
    // released by the leader's answer would hang the test.
    let layer = CacheLayer::new().coalesce(true, Duration::from_secs(3600));
    let stats = layer.stats();
    let gate = Gate::new();
    let g = gate.clone();
    let (server, origin) = serve(layer, move |_, n| {
        Reply::Held(
            g.clone(),
            resp(&[("cache-control", "no-store")], format!("v{n}")),
        )
    })
    .await;
    let server = Arc::new(server);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let s = server.clone();
            tokio::spawn(async move { s.get("/x").await })
        })
        .collect();
    gate.arrived(1).await;
    until("9 requests wait for the leader", || {
        stats.snapshot().coalesced == 9
    })
    .await;
    gate.open();
    for t in tasks {
        let r = tokio::time::timeout(support::gate::DEADLINE, t)
            .await
            .expect("the leader's uncacheable answer released the waiters");
        assert_eq!(r.unwrap().status, StatusCode::OK);
    }
    assert_eq!(origin.calls(), 10);
    assert_eq!(stats.snapshot().coalesce_timeouts, 0);
}

#[tokio::test]
async fn uncacheable_urls_skip_coalescing_afterwards() {
    let layer = CacheLayer::new();
    let stats = layer.stats();
    // One gate per burst: calls 1-5 are the first burst's, 6-10 the second's.
    let gates = [Gate::new(), Gate::new()];
    let g = gates.clone();
    let (server, origin) = serve(layer, move |_, n| {
        Reply::Held(
            g[(n - 1) / 5].clone(),
            resp(&[("cache-control", "private")], format!("v{n}")),
        )
    })
    .await;
    let server = Arc::new(server);
    let burst = |server: Arc<TestServer>| {
        (0..5)
            .map(|_| {
                let s = server.clone();
                tokio::spawn(async move { s.get("/private").await })
            })
            .collect::<Vec<_>>()
    };
    // The first burst learns the URL is uncacheable: its waiters queue
    // behind the leader once, then go to the origin.
    let first = burst(server.clone());
    gates[0].arrived(1).await;
    until("4 requests wait for the leader", || {
        stats.snapshot().coalesced == 4
    })
    .await;
    assert_eq!(gates[0].count(), 1, "only the leader at the origin");
    gates[0].open();
    for t in first {
        t.await.unwrap();
    }
    // The second goes to the origin in parallel: all five are there at
    // once, none waiting for another.
    let second = burst(server.clone());
    gates[1].arrived(5).await;
    gates[1].open();
    for t in second {
        t.await.unwrap();
    }
    assert_eq!(
        stats.snapshot().coalesced,
        4,
        "the second burst never waited"
    );
    assert_eq!(origin.calls(), 10);
}

#[tokio::test]
async fn waiters_go_to_the_origin_after_the_coalescing_timeout() {
    // The coalescing timeout is real time (the point of the test).
    let layer = CacheLayer::new().coalesce(true, Duration::from_millis(100));
    let stats = layer.stats();
    // The first fetch is held until the second request has its answer.
    let gate = Gate::new();
    let g = gate.clone();
    let (server, origin) = serve(layer, move |_, n| {
        let r = resp(&[("cache-control", "max-age=60")], format!("v{n}"));
        if n == 1 {
            Reply::Held(g.clone(), r)
        } else {
            Reply::Ok(r)
        }
    })
    .await;
    let server = Arc::new(server);
    let a = tokio::spawn({
        let s = server.clone();
        async move { s.get("/slow").await }
    });
    gate.arrived(1).await;
    let b = server.get("/slow").await;
    assert_eq!(b.text(), "v2", "gave up waiting and fetched itself");
    gate.open();
    assert_eq!(a.await.unwrap().text(), "v1");
    assert_eq!(origin.calls(), 2);
    assert_eq!(stats.snapshot().coalesce_timeouts, 1);
}

/// A URL marked uncacheable keeps no request fields for its answers (it
/// seldom stores one). When its answer turns storable, that first one
/// goes through unstored and lifts the mark; the next is stored, and the
/// one after is a hit.
#[tokio::test]
async fn a_marked_url_that_turns_cacheable_is_stored_the_next_time() {
    let layer = CacheLayer::new();
    let stats = layer.stats();
    let (server, origin) = serve(layer, move |_, n| {
        let cc = if n == 1 { "private" } else { "max-age=60" };
        Reply::Ok(resp(&[("cache-control", cc)], format!("v{n}")))
    })
    .await;
    // 1: private, not stored; the URL is marked.
    let r = server.get("/turns").await;
    assert_eq!(r.text(), "v1");
    // 2: storable now, but this request came marked: not stored.
    let r = server.get("/turns").await;
    assert_eq!(r.text(), "v2");
    assert!(
        !r.header("cache-status").unwrap_or("").contains("stored"),
        "{:?}",
        r.header("cache-status")
    );
    // 3: the mark is gone: stored.
    let r = server.get("/turns").await;
    assert_eq!(r.text(), "v3");
    assert!(
        r.header("cache-status").unwrap_or("").contains("stored"),
        "{:?}",
        r.header("cache-status")
    );
    // 4: a hit.
    let r = server.get("/turns").await;
    assert_eq!(r.text(), "v3");
    assert!(r.header("cache-status").unwrap_or("").contains("hit"));
    assert_eq!(origin.calls(), 3);
    assert_eq!(stats.snapshot().hits, 1);
}
