//! Custom keys and default lifetimes through `examples/proxy.rs` (issue
//! 20, part 5): query parameters dropped and sorted (in what the origin
//! sees too), a cookie and an extension keyed, a default TTL for
//! responses without freshness, per route. The origin answers with the
//! target it saw and its call number.

mod support;

#[allow(dead_code)]
#[path = "../examples/proxy.rs"]
mod proxy;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{Request, Uri};
use axum::routing::get;
use support::{TestResponse, TestServer};
use tower::ServiceBuilder;
use tower_perf::cache::{CacheLayer, KeyRules};

/// An origin answering `<target> #<call>` with `fields` (none: no
/// freshness at all), and its calls.
async fn origin(fields: &'static [(&'static str, &'static str)]) -> (Uri, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = Router::new().fallback(get(move |uri: Uri| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            let mut res =
                axum::response::Response::new(axum::body::Body::from(format!("{uri} #{n}")));
            for (k, v) in fields {
                res.headers_mut().insert(*k, v.parse().unwrap());
            }
            res
        }
    }));
    let server = TestServer::serve(app).await;
    let uri = format!("http://{}", server.addr()).parse().unwrap();
    std::mem::forget(server);
    (uri, calls)
}

fn text(r: &TestResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// `utm_*` and `fbclid` dropped, the rest sorted: the origin sees the
/// same target the key holds, and differently spelled URLs share it.
#[tokio::test]
async fn query_parameters_are_dropped_and_sorted() {
    let (uri, calls) = origin(&[("cache-control", "max-age=60")]).await;
    let cache = proxy::proxy_cache().key(
        KeyRules::new()
            .ignore_query_params(["utm_*", "fbclid"])
            .sort_query(),
    );
    let proxy = TestServer::serve(proxy::proxy(uri, cache)).await;
    let first = proxy.get("/list?utm_source=mail&b=2&a=1").await;
    assert_eq!(text(&first), "/list?a=1&b=2 #1");
    let again = proxy.get("/list?a=1&fbclid=x&b=2&utm_medium=z").await;
    assert_eq!(text(&again), "/list?a=1&b=2 #1");
    let other = proxy.get("/list?a=2&b=2").await;
    assert_eq!(text(&other), "/list?a=2&b=2 #2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// The user id an authentication layer (here: a `map_request` in front)
/// puts in the extensions, and a cookie, split the entries: each user
/// gets their own, and never another's.
#[tokio::test]
async fn an_extension_and_a_cookie_are_keyed() {
    #[derive(Clone)]
    struct UserId(u32);
    let (uri, calls) = origin(&[("cache-control", "max-age=60")]).await;
    let cache = proxy::proxy_cache().key(
        KeyRules::new()
            .extension("user", |u: &UserId| u.0.to_string())
            .cookie("tenant"),
    );
    let svc = ServiceBuilder::new()
        .map_request(|mut req: Request<hyper::body::Incoming>| {
            let id = req
                .headers()
                .get("x-test-user")
                .and_then(|v| v.to_str().ok()?.parse().ok());
            if let Some(id) = id {
                req.extensions_mut().insert(UserId(id));
            }
            req
        })
        .service(proxy::proxy(uri, cache));
    let proxy = TestServer::serve(svc).await;
    let get = |user: &'static str, tenant: &'static str| {
        let proxy = &proxy;
        async move {
            let cookie = format!("theme=dark; tenant={tenant}");
            text(
                &proxy
                    .get_with("/me", &[("x-test-user", user), ("cookie", &cookie)])
                    .await,
            )
        }
    };
    assert_eq!(get("1", "a").await, "/me #1");
    assert_eq!(get("2", "a").await, "/me #2");
    assert_eq!(get("1", "b").await, "/me #3");
    assert_eq!(get("1", "a").await, "/me #1");
    assert_eq!(get("2", "a").await, "/me #2");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// A response without freshness is reused for the default TTL (off by
/// default: then every request reaches the origin); a route's own TTL
/// wins, and `Duration::ZERO` keeps a route out. Explicit freshness and
/// `no-cache` are the origin's word.
#[tokio::test]
async fn a_default_ttl_applies_to_responses_without_freshness() {
    let (uri, calls) = origin(&[]).await;
    let plain = TestServer::serve(proxy::proxy(uri.clone(), CacheLayer::new())).await;
    plain.get("/a").await;
    plain.get("/a").await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "off by default");

    let cache = CacheLayer::new()
        .default_ttl(Duration::from_secs(300))
        .default_ttl_for("/live/**", Duration::ZERO)
        .default_ttl_for("/items/{id}", Duration::from_secs(30));
    let proxy = TestServer::serve(proxy::proxy(uri, cache)).await;
    let hit = |r: &TestResponse| {
        r.headers
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.to_owned())
            .unwrap_or_default()
    };
    // The ttl a hit reports: the lifetime less the age (a second at most).
    let ttl = |r: &TestResponse| -> u64 {
        let s = hit(r);
        assert!(s.contains("; hit;"), "{s}");
        s.split("ttl=")
            .nth(1)
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{s}"))
    };
    proxy.get("/b").await;
    let t = ttl(&proxy.get("/b").await);
    assert!((299..=300).contains(&t), "{t}");
    proxy.get("/items/7").await;
    let t = ttl(&proxy.get("/items/7").await);
    assert!((29..=30).contains(&t), "the route's own: {t}");
    let before = calls.load(Ordering::SeqCst);
    proxy.get("/live/feed").await;
    proxy.get("/live/feed").await;
    assert_eq!(calls.load(Ordering::SeqCst), before + 2, "kept out");
}

/// The origin's own freshness wins over the default TTL: `no-cache` is
/// validated (stored, with its ETag), `max-age=0` without a validator not
/// even stored, `max-age=5` lives 5 s.
#[tokio::test]
async fn explicit_freshness_wins_over_the_default_ttl() {
    let (uri, calls) = origin(&[("cache-control", "no-cache"), ("etag", "\"e\"")]).await;
    let cache = CacheLayer::new().default_ttl(Duration::from_secs(300));
    let proxy = TestServer::serve(proxy::proxy(uri, cache)).await;
    let first = proxy.get("/c").await;
    assert!(
        first.headers["cache-status"]
            .to_str()
            .unwrap()
            .contains("stored")
    );
    let second = proxy.get("/c").await;
    let status = second.headers["cache-status"].to_str().unwrap();
    assert!(status.contains("fwd=stale"), "{status}");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "no-cache is validated");
    let (uri, _) = origin(&[("cache-control", "max-age=0")]).await;
    let cache = CacheLayer::new().default_ttl(Duration::from_secs(300));
    let proxy = TestServer::serve(proxy::proxy(uri, cache)).await;
    let r = proxy.get("/e").await;
    let status = r.headers["cache-status"].to_str().unwrap();
    assert!(!status.contains("stored"), "stale on arrival: {status}");
    let (uri, _) = origin(&[("cache-control", "max-age=5")]).await;
    let cache = CacheLayer::new().default_ttl(Duration::from_secs(300));
    let proxy = TestServer::serve(proxy::proxy(uri, cache)).await;
    proxy.get("/d").await;
    let r = proxy.get("/d").await;
    let status = r.headers["cache-status"].to_str().unwrap();
    assert!(
        status.contains("ttl=5") || status.contains("ttl=4"),
        "{status}"
    );
}

/// `Duration::ZERO` for a route keeps it out of the layer's default TTL,
/// not out of heuristic freshness (here 10% of a day: 8,640 s).
#[tokio::test]
async fn a_zero_route_ttl_leaves_the_heuristic() {
    let lm = tower_perf::headers::HttpDate::from(
        std::time::SystemTime::now() - Duration::from_secs(86_400),
    )
    .to_string();
    let lm: &'static str = Box::leak(lm.into_boxed_str());
    let fields: &'static [(&'static str, &'static str)] =
        Box::leak(vec![("last-modified", lm)].into_boxed_slice());
    let (uri, _) = origin(fields).await;
    let cache = CacheLayer::new()
        .heuristic_freshness(0.1, Duration::from_secs(86_400))
        .default_ttl(Duration::from_secs(300))
        .default_ttl_for("/live/**", Duration::ZERO);
    let proxy = TestServer::serve(proxy::proxy(uri, cache)).await;
    proxy.get("/live/x").await;
    let r = proxy.get("/live/x").await;
    let status = r.headers["cache-status"].to_str().unwrap();
    let ttl: u64 = status
        .split("ttl=")
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    assert!((8_630..=8_640).contains(&ttl), "{status}");
}
