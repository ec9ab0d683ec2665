//! CacheLayer over real HTTP, against a test origin that counts its calls
//! (`support::cache`): the `Cache-Status` field (RFC 9211): renamed, turned
//! off, after the members of the caches before this one.

mod support;

use std::time::Duration;

use support::cache::{clocked, ok, serve};

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
