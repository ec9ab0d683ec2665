//! Freshness through `examples/proxy.rs` (issue 20, part 4): the fields a
//! cache reads to decide whether a stored response is fresh, read as RFC
//! 9110 and RFC 9111 ask: `Age` lists, lenient dates, request `max-stale`,
//! and the proxy's heuristic freshness. The origin answers each path with
//! the fields the test gives it and a body counting its calls, so a body
//! seen twice was served from the cache.

mod support;

#[allow(dead_code)]
#[path = "../examples/proxy.rs"]
mod proxy;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use support::TestServer;
use tower_perf::headers::HttpDate;

/// The fields the origin sends for a path (`STATUS`: the status instead).
type Fields = fn(&str) -> Vec<(&'static str, String)>;

/// Not a field: the status the origin answers with.
const STATUS: &str = "x-test-status";

/// The proxy (with the settings its `main` uses) in front of an origin
/// answering with `fields`; the origin's calls.
async fn start(fields: Fields) -> (TestServer, TestServer, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = Router::new().route(
        "/{*path}",
        get(move |uri: Uri| {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let mut res = format!("call #{n}").into_response();
                for (name, value) in fields(uri.path()) {
                    if name == STATUS {
                        *res.status_mut() = value.parse().unwrap();
                        continue;
                    }
                    res.headers_mut().append(
                        HeaderName::from_static(name),
                        HeaderValue::from_str(&value).unwrap(),
                    );
                }
                res
            }
        }),
    );
    let origin = TestServer::serve(app).await;
    let origin_uri = format!("http://{}", origin.addr()).parse().unwrap();
    let proxy = TestServer::serve(proxy::proxy(origin_uri, proxy::proxy_cache())).await;
    (proxy, origin, calls)
}

fn date(offset_secs: i64) -> String {
    let now = SystemTime::now();
    let t = if offset_secs >= 0 {
        now + Duration::from_secs(offset_secs.unsigned_abs())
    } else {
        now - Duration::from_secs(offset_secs.unsigned_abs())
    };
    HttpDate::from(t).to_string()
}

/// `Age: 7200, 0` (two caches chaining the field) is 7200 seconds, not
/// an invalid value read as 0: with `max-age=60` the response is stale on
/// arrival and the next request goes to the origin.
#[tokio::test]
async fn an_age_list_counts_its_first_member() {
    let (proxy, _origin, calls) = start(|path| {
        let age = if path == "/old" {
            "7200, 0"
        } else {
            "30, 7200"
        };
        vec![("cache-control", "max-age=60".into()), ("age", age.into())]
    })
    .await;
    proxy.get("/old").await;
    let again = proxy.get("/old").await;
    assert_eq!(again.text(), "call #2", "stale on arrival");
    proxy.get("/young").await;
    let hit = proxy.get("/young").await;
    assert_eq!(hit.text(), "call #3", "fresh: 30 of 60 seconds");
    let age: u64 = hit.header("age").unwrap().parse().unwrap();
    assert!((30..60).contains(&age), "Age {age}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// RFC 9110 §5.6.7: an `Expires` with names in the wrong case and a
/// weekday that is not the date's still says when it expires; one that
/// is no date at all means already expired (RFC 9111 §5.3).
#[tokio::test]
async fn expires_is_read_leniently_and_an_invalid_one_is_stale() {
    let (proxy, _origin, calls) = start(|path| {
        let expires = match path {
            "/lenient" => {
                // An hour ahead, upper case, the weekday of another day.
                let text = date(3600).to_uppercase();
                let wrong = if text.starts_with("MON") {
                    "TUE"
                } else {
                    "MON"
                };
                format!("{wrong}{}", &text[3..])
            }
            _ => "next tuesday".to_owned(),
        };
        vec![("date", date(0)), ("expires", expires)]
    })
    .await;
    proxy.get("/lenient").await;
    let hit = proxy.get("/lenient").await;
    assert_eq!(hit.text(), "call #1", "fresh for an hour");
    assert!(hit.header("cache-status").unwrap().contains("hit"));
    proxy.get("/invalid").await;
    let again = proxy.get("/invalid").await;
    assert_eq!(again.text(), "call #3", "invalid Expires: stale");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// A request's `max-stale` takes a stored response that much past its
/// freshness (RFC 9111 §5.2.1.2); without a value, however stale. (The
/// cache holds a stale response while it has a validator, for
/// `validator_grace`, or a stale window: the origin sends an `ETag`.)
#[tokio::test]
async fn max_stale_takes_stale_responses_within_its_limit() {
    // Stale by 40 seconds on arrival: max-age 60, Age 100.
    let (proxy, _origin, calls) = start(|_| {
        vec![
            ("cache-control", "max-age=60".into()),
            ("age", "100".into()),
            ("etag", "\"v1\"".into()),
        ]
    })
    .await;
    proxy.get("/s").await;
    for (cc, from_cache) in [
        ("max-stale=3600", true),
        ("max-stale", true),
        ("max-stale=10", false),
    ] {
        let before = calls.load(Ordering::SeqCst);
        let r = proxy.get_with("/s", &[("cache-control", cc)]).await;
        let served_stale = calls.load(Ordering::SeqCst) == before;
        assert_eq!(
            served_stale,
            from_cache,
            "{cc}: {:?}",
            r.header("cache-status")
        );
    }
}

/// The proxy gives a response with `Last-Modified` and no explicit
/// freshness 10% of its age, at most a day (RFC 9111 §4.2.2); not to a
/// status that is not cacheable by default, nor with `no-cache`.
#[tokio::test]
async fn the_proxy_applies_heuristic_freshness() {
    let (proxy, _origin, calls) = start(|path| {
        // Modified 10 days ago: fresh for a day.
        let mut fields = vec![("date", date(0)), ("last-modified", date(-10 * 86_400))];
        if path == "/no-cache" {
            fields.push(("cache-control", "no-cache".into()));
        }
        fields
    })
    .await;
    proxy.get("/page").await;
    let hit = proxy.get("/page").await;
    assert_eq!(hit.text(), "call #1");
    assert!(hit.header("cache-status").unwrap().contains("hit"));
    proxy.get("/no-cache").await;
    let again = proxy.get("/no-cache").await;
    assert_ne!(again.text(), "call #2", "no-cache: validated each time");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// The origin is down for the test below once this is set.
static DOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// RFC 9111 §4.2.4: an origin answering 503 (down for maintenance,
/// overloaded) gets its stale copy served, within the proxy's
/// `stale_if_unreachable` (a day by default); `must-revalidate` forbids
/// it.
#[tokio::test]
async fn a_stale_copy_answers_while_the_origin_is_down() {
    // Stale by 40 seconds on arrival: max-age 60, Age 100.
    let (proxy, _origin, _calls) = start(|path| {
        if DOWN.load(Ordering::SeqCst) {
            return vec![(STATUS, "503".into())];
        }
        let cc = if path == "/must" {
            "max-age=60, must-revalidate"
        } else {
            "max-age=60"
        };
        vec![("cache-control", cc.into()), ("age", "100".into())]
    })
    .await;
    proxy.get("/page").await;
    proxy.get("/must").await;
    DOWN.store(true, Ordering::SeqCst);
    let r = proxy.get("/page").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "call #1"));
    let status = r.header("cache-status").unwrap();
    assert!(
        status.contains("fwd-status=503") && status.contains("detail=origin-unreachable"),
        "{status}"
    );
    let r = proxy.get("/must").await;
    assert_eq!(r.status.as_u16(), 503, "must-revalidate: never stale");
}

/// RFC 9213: the proxy's cache obeys `CDN-Cache-Control` (its default
/// target list) over `Cache-Control` and `Expires`, in both directions;
/// an invalid or empty one is as if absent; both fields reach the client
/// as the origin sent them.
#[tokio::test]
async fn cdn_cache_control_governs_this_cache() {
    let (proxy, _origin, calls) = start(|path| {
        let (cc, cdn): (&str, &str) = match path {
            "/longer" => ("no-store", "max-age=600"),
            "/private" => ("max-age=60", "private"),
            "/no-store" => ("max-age=60", "no-store"),
            "/no-cache" => ("max-age=60", "no-cache"),
            "/invalid" => ("max-age=60", "max-age=60,"),
            "/empty" => ("max-age=60", ""),
            _ => ("", "must-revalidate"),
        };
        let mut fields = vec![
            ("cdn-cache-control", cdn.to_owned()),
            ("x-sent-cdn", format!("[{cdn}]")),
        ];
        if cc.is_empty() {
            // Expires an hour ahead, which the targeted field overrides.
            fields.push(("expires", date(3600)));
        } else {
            fields.push(("cache-control", cc.to_owned()));
        }
        fields
    })
    .await;
    for (path, cached) in [
        ("/longer", true),
        ("/private", false),
        ("/no-store", false),
        ("/no-cache", false),
        ("/invalid", true),
        ("/empty", true),
        ("/expires", false),
    ] {
        let first = proxy.get(path).await;
        let before = calls.load(Ordering::SeqCst);
        let second = proxy.get(path).await;
        let from_cache = calls.load(Ordering::SeqCst) == before;
        assert_eq!(
            from_cache,
            cached,
            "{path}: {:?}",
            second.header("cache-status")
        );
        // Forwarded untouched, for the caches after this one.
        for r in [&first, &second] {
            let sent = r.header("x-sent-cdn").unwrap();
            let got = format!("[{}]", r.header("cdn-cache-control").unwrap_or("-"));
            assert_eq!(got, sent, "{path}");
        }
    }
    let r = proxy.get("/longer").await;
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("cdn-cache-control"), Some("max-age=600"));
}
