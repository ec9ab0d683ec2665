//! Presets by route: what each preset sends, only on safe methods and
//! cacheable statuses; the handler's own policy wins unless overridden;
//! errors get no long-lived policy.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use http_body_util::Full;
use tower_perf::cache_control::{CacheControlLayer, Policy, Rule};

use crate::support::TestResponse;
use crate::{server, server_with};

#[tokio::test]
async fn presets_by_route() {
    let (s, _) = server().await;
    let cc = |r: &TestResponse| r.header("cache-control").map(str::to_owned);
    assert_eq!(
        cc(&s.get("/static/app.js").await).as_deref(),
        Some("max-age=31536000, immutable")
    );
    assert_eq!(
        cc(&s.get("/api/items").await).as_deref(),
        Some("max-age=300")
    );
    assert_eq!(
        cc(&s.get("/performance/stats").await).as_deref(),
        Some("max-age=60")
    );
    assert_eq!(cc(&s.get("/health").await).as_deref(), Some("no-cache"));
    assert_eq!(cc(&s.get("/dated").await), None, "no rule, no policy");
    // Authorization makes the API policy private.
    let r = s
        .get_with("/api/items", &[("authorization", "Bearer t")])
        .await;
    assert_eq!(cc(&r).as_deref(), Some("private, max-age=300"));
}

/// A storable preset goes only on answers a cache could reuse: the 201 to
/// a POST, or a 302, on an `api` route got `public, max-age=300` before.
#[tokio::test]
async fn presets_only_on_safe_methods_and_cacheable_statuses() {
    let (s, _) = server().await;
    let created = s
        .send(
            s.request(Method::POST, "/api/items")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.header("cache-control"), None);
    let authed = s
        .send(
            s.request(Method::POST, "/api/items")
                .header("authorization", "Bearer t")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(authed.header("cache-control"), None);
    let moved = s.get("/api/moved").await;
    assert_eq!(moved.status, StatusCode::FOUND);
    assert_eq!(moved.header("cache-control"), None);
    // GET and HEAD get it, without `public`.
    let got = s.get("/api/items").await;
    assert_eq!(
        (got.status, got.header("cache-control")),
        (StatusCode::OK, Some("max-age=300"))
    );
    let head = s
        .send(
            s.request(Method::HEAD, "/api/items")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(head.header("cache-control"), Some("max-age=300"));
}

#[test]
#[should_panic(expected = "applies only to GET and HEAD")]
fn a_preset_that_could_never_apply_panics_when_added() {
    let _ = CacheControlLayer::new().rule(
        Rule::new("/api/**")
            .methods([Method::POST, Method::PUT])
            .policy(Policy::api(Duration::from_secs(60))),
    );
}

#[tokio::test]
async fn handler_wins_unless_overridden() {
    let (s, _) = server().await;
    assert_eq!(
        s.get("/own").await.header("cache-control"),
        Some("max-age=5")
    );
    assert_eq!(
        s.get("/forced").await.header("cache-control"),
        Some("no-store")
    );
}

#[tokio::test]
async fn errors_get_no_long_lived_policy() {
    let (s, _) = server().await;
    let r = s.get("/static/missing.js").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("cache-control"), None);
    let (s, _) = server_with(
        CacheControlLayer::new().rule(
            Rule::new("/static/**")
                .policy(Policy::static_assets())
                .on_error(Policy::no_store()),
        ),
    )
    .await;
    assert_eq!(
        s.get("/static/missing.js").await.header("cache-control"),
        Some("no-store")
    );
    assert_eq!(
        s.get("/static/app.js").await.header("cache-control"),
        Some("max-age=31536000, immutable")
    );
}
