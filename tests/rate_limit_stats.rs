//! The rate limiter's statistics: the snapshot, and handles that stay
//! attached through builder calls and clones.

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use support::rate_limit::{counts, status_from};
use tower::{Layer, ServiceBuilder, service_fn};
use tower_perf::rate_limit::{MemoryStore, MissingKey, Quota, RateLimitLayer, RateRule};

/// A statistics handle taken before the layer's last builder calls reads
/// what the finished layer counts (the calls used to rebuild the
/// counters, and the early handle read zero forever).
#[tokio::test]
async fn a_stats_handle_taken_before_builder_calls_stays_attached() {
    let layer = RateLimitLayer::new();
    let stats = layer.stats();
    let layer = layer
        .rule(RateRule::new("api", Quota::per_minute(1)))
        .on_missing_peer_addr(MissingKey::Deny)
        .headers(false)
        .ipv6_prefix(48);
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok")))
        },
    ));
    assert_eq!(status_from(&svc, [203, 0, 113, 7]).await, StatusCode::OK);
    assert_eq!(
        status_from(&svc, [203, 0, 113, 7]).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let snapshot = stats.snapshot().policies;
    let got: Vec<(&str, u64, u64)> = snapshot
        .iter()
        .map(|p| (p.name.as_str(), p.allowed, p.limited))
        .collect();
    assert_eq!(got, [("api", 1, 1)]);
    let top = stats.most_limited(5);
    let got: Vec<(&str, &str, u64)> = top
        .iter()
        .map(|k| (k.policy.as_str(), k.key.as_str(), k.limited))
        .collect();
    assert_eq!(got, [("api", "203.0.113.7", 1)]);
}

/// A handle stays with the services a layer already made: a builder call
/// after that (even with the clone that made them gone, as axum drops its
/// own) makes a new layer that counts apart.
#[tokio::test]
async fn a_stats_handle_stays_with_the_services_made_before_a_builder_call() {
    let layer = RateLimitLayer::new().rule(RateRule::new("api", Quota::per_minute(1)));
    let stats = layer.stats();
    let handler = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok")))
    });
    let first = ServiceBuilder::new().layer(layer.clone()).service(handler);
    let later = layer.headers(false);
    let _second = ServiceBuilder::new().layer(later).service(handler);
    assert_eq!(status_from(&first, [203, 0, 113, 7]).await, StatusCode::OK);
    assert_eq!(
        status_from(&first, [203, 0, 113, 7]).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(counts(&stats), [("api".to_owned(), 1, 1)]);
}

/// Two layers made from one base by different builder calls count their
/// statistics apart, each in the handle taken from it; a handle taken from
/// the base stays with the base. They share the base's store, as
/// documented: with the memory store the first policy of each shares the
/// buckets, so a client that used up `one`'s quota is limited by `two`.
#[tokio::test]
async fn layers_made_from_one_base_keep_their_own_stats() {
    let base = RateLimitLayer::new().headers(false);
    let from_base = base.stats();
    let one = base
        .clone()
        .rule(RateRule::new("one", Quota::per_minute(1)));
    let two = base
        .clone()
        .rule(RateRule::new("two", Quota::per_minute(1)));
    let (one_stats, two_stats) = (one.stats(), two.stats());
    let handler = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok")))
    });
    let one = ServiceBuilder::new().layer(one).service(handler);
    let two = ServiceBuilder::new().layer(two).service(handler);
    assert_eq!(status_from(&one, [198, 51, 100, 1]).await, StatusCode::OK);
    for _ in 0..2 {
        assert_eq!(
            status_from(&two, [198, 51, 100, 1]).await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    // Another client is not touched by the first one's use.
    assert_eq!(status_from(&two, [198, 51, 100, 2]).await, StatusCode::OK);
    assert_eq!(counts(&one_stats), [("one".to_owned(), 1, 0)]);
    assert_eq!(counts(&two_stats), [("two".to_owned(), 1, 2)]);
    assert_eq!(counts(&from_base), []);
}

/// Layers that must limit apart get a store each.
#[tokio::test]
async fn layers_with_a_store_each_limit_apart() {
    let one = RateLimitLayer::with_store(MemoryStore::new())
        .rule(RateRule::new("one", Quota::per_minute(1)));
    let two = RateLimitLayer::with_store(MemoryStore::new())
        .rule(RateRule::new("two", Quota::per_minute(1)));
    let handler = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok")))
    });
    let one = ServiceBuilder::new().layer(one).service(handler);
    let two = ServiceBuilder::new().layer(two).service(handler);
    assert_eq!(status_from(&one, [198, 51, 100, 1]).await, StatusCode::OK);
    assert_eq!(status_from(&two, [198, 51, 100, 1]).await, StatusCode::OK);
}

/// Taking the handle builds nothing: a layer not finished yet (here a
/// missing-address choice before any rule keyed on addresses, which
/// building would reject) gives a handle that reads what the finished
/// layer's services count.
#[tokio::test]
async fn a_handle_taken_before_the_rules_reads_the_finished_layer() {
    let layer = RateLimitLayer::new().on_missing_peer_addr(MissingKey::Deny);
    let stats = layer.stats();
    let layer = layer.rule(RateRule::new("api", Quota::per_minute(1)));
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok")))
        },
    ));
    assert_eq!(status_from(&svc, [203, 0, 113, 7]).await, StatusCode::OK);
    assert_eq!(
        status_from(&svc, [203, 0, 113, 7]).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(counts(&stats), [("api".to_owned(), 1, 1)]);
}

/// `RateLimit::new` is the one-rule layer, and a service reads the
/// statistics its layer's services count.
#[tokio::test]
async fn the_service_constructor_limits_and_counts() {
    use tower_perf::rate_limit::RateLimit;
    let inner = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::from("ok")))
    });
    let svc = RateLimit::new(inner, RateRule::new("q", Quota::per_minute(1)));
    assert_eq!(status_from(&svc, [1, 1, 1, 1]).await, StatusCode::OK);
    assert_eq!(
        status_from(&svc, [1, 1, 1, 1]).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let snap = svc.stats().snapshot();
    assert_eq!(snap.policies.len(), 1);
    assert_eq!((snap.policies[0].allowed, snap.policies[0].limited), (1, 1));
    // The totals and the most limited keys come with it.
    assert_eq!((snap.allowed, snap.limited, snap.shadow), (1, 1, false));
    assert_eq!(snap.policy("q"), snap.policies.first());
    assert_eq!(snap.most_limited.len(), 1);
    assert_eq!(snap.most_limited[0].limited, 1);
    // The builder the service names is the layer's own.
    let layered = RateLimit::<(), MemoryStore>::layer()
        .rule(RateRule::new("q", Quota::per_minute(1)))
        .layer(inner);
    assert_eq!(status_from(&layered, [1, 1, 1, 1]).await, StatusCode::OK);
    assert_eq!(layered.stats().snapshot().policies[0].allowed, 1);
}
