//! CacheLayer over real HTTP, against a test origin that counts its calls
//! (`support::cache`): validation (RFC 9111 §4.3) and the client's
//! conditional requests (RFC 9110 §13): 304s that freshen stored responses,
//! the 304s the cache answers and the preconditions that bypass it.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use support::TestResponse;
use support::cache::{clocked, ok, serve, status, status_of, validating};
use support::gate::until;
use tower::{Layer, ServiceExt};
use tower_perf::cache::{
    CacheKey, CacheLayer, CacheStore, CachedResponse, MemoryStore, Purge, StoreFuture, StoreUsage,
    Variants,
};

#[tokio::test]
async fn stale_entries_are_revalidated_and_freshened_by_304() {
    let (layer, clock) = clocked();
    let stats = layer.stats();
    let (server, origin) = serve(layer, |p, n| validating(p, n, "max-age=10")).await;
    server.get("/").await;
    clock.advance(Duration::from_secs(15));
    let r = server.get("/").await;
    assert_eq!(r.text(), "body-v1");
    assert_eq!(status(&r), "tower-perf; fwd=stale; fwd-status=304; ttl=10");
    assert_eq!(
        r.header("x-validated"),
        Some("2"),
        "304 fields replace stored ones"
    );
    assert_eq!(r.header("age"), Some("0"));
    let sent = origin.request(2);
    assert_eq!(sent.headers["if-none-match"], "\"v1\"");
    // Freshened: a hit again.
    clock.advance(Duration::from_secs(5));
    let hit = server.get("/").await;
    assert!(status(&hit).contains("hit"));
    assert_eq!(hit.header("x-validated"), Some("2"));
    assert_eq!(origin.calls(), 2);
    assert_eq!(stats.snapshot().revalidated_not_modified, 1);
}

#[tokio::test]
async fn response_no_cache_is_validated_before_each_reuse() {
    let (server, origin) = serve(CacheLayer::new(), |p, n| validating(p, n, "no-cache")).await;
    server.get("/").await;
    for i in 2..=4 {
        let r = server.get("/").await;
        assert_eq!(r.text(), "body-v1");
        assert_eq!(origin.calls(), i);
        assert_eq!(origin.request(i).headers["if-none-match"], "\"v1\"");
    }
}

/// `store_validated(false)`: what could be reused only after validation
/// (`no-cache`, or `max-age=0` with an `ETag`) is not stored, and goes
/// straight to the origin each time, unconditionally; a response with a
/// lifetime or a stale window still is.
#[tokio::test]
async fn responses_reusable_only_after_validation_can_be_left_out() {
    for cc in ["no-cache", "max-age=0"] {
        let layer = CacheLayer::new().store_validated(false);
        let stats = layer.stats();
        let (server, origin) = serve(layer, move |p, n| validating(p, n, cc)).await;
        let first = server.get("/").await;
        assert_eq!(status(&first), "tower-perf; fwd=uri-miss", "{cc}");
        let second = server.get("/").await;
        assert_eq!(second.text(), "body-v1");
        assert_eq!(origin.calls(), 2, "{cc}");
        assert!(origin.request(2).headers.get("if-none-match").is_none());
        assert_eq!(stats.snapshot().stores, 0, "{cc}");
    }
    for cc in ["max-age=60", "max-age=0, stale-while-revalidate=60"] {
        let layer = CacheLayer::new().store_validated(false);
        let (server, _) = serve(layer, move |p, n| validating(p, n, cc)).await;
        let first = server.get("/").await;
        assert!(
            status(&first).contains("stored"),
            "{cc}: {}",
            status(&first)
        );
    }
}

/// A stored response that a 304 makes reusable only after validation
/// (`max-age=0` now) is dropped, not kept, with `store_validated(false)`.
#[tokio::test]
async fn a_304_that_leaves_only_validation_drops_the_entry() {
    let (layer, clock) = clocked();
    let (server, origin) = serve(layer.store_validated(false), |p, _| {
        fresh_then_304(p, "cache-control", "max-age=0")
    })
    .await;
    server.get("/").await;
    clock.advance(Duration::from_secs(15));
    let validated = server.get("/").await;
    assert_eq!(validated.text(), "body-v1");
    assert_eq!(origin.calls(), 2);
    assert!(origin.request(2).headers.contains_key("if-none-match"));
    server.get("/").await;
    assert_eq!(origin.calls(), 3);
    assert!(
        !origin.request(3).headers.contains_key("if-none-match"),
        "nothing stored to validate"
    );
}

#[tokio::test]
async fn client_conditionals() {
    let layer = CacheLayer::new();
    let stats = layer.stats();
    let (server, origin) = serve(layer, |p, n| validating(p, n, "max-age=60")).await;
    // On a miss the cache asks unconditionally, stores, and answers 304.
    let r = server.get_with("/", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(origin.request(1).headers.get("if-none-match").is_none());
    assert_eq!(r.header("etag"), Some("\"v1\""));
    // Once the body has reached the store in the background, a hit.
    until("the miss's body stored", || stats.snapshot().stores == 1).await;
    let full = server.get("/").await;
    assert_eq!(full.text(), "body-v1");
    assert!(status(&full).contains("hit"));
    let hit304 = server
        .get_with("/", &[("if-none-match", "W/\"v1\", \"zz\"")])
        .await;
    assert_eq!(hit304.status, StatusCode::NOT_MODIFIED);
    assert!(hit304.body.is_empty());
    assert_eq!(hit304.header("cache-control"), Some("max-age=60"));
    let other = server.get_with("/", &[("if-none-match", "\"zz\"")]).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(origin.calls(), 1);
}

/// RFC 9110 §15.4.5, the rule `CacheControlLayer` follows too: a 304
/// carries what a 200 would, less the content's metadata; Last-Modified
/// only when there is no ETag to validate with. Whether the cache answers
/// from the store or from a response it just fetched.
#[tokio::test]
async fn a_304_carries_the_fields_of_a_200_less_content_metadata() {
    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    let layer = CacheLayer::new();
    let stats = layer.stats();
    let (server, origin) = serve(layer, |p, _| {
        let tagged = p.uri.path() == "/tagged";
        let mut fields = vec![
            ("cache-control", "max-age=60"),
            ("last-modified", LM),
            ("content-type", "text/plain"),
            ("content-language", "en"),
            ("x-custom", "kept"),
        ];
        if tagged {
            fields.push(("etag", "\"v1\""));
        }
        ok(&fields, "body")
    })
    .await;
    let check = |r: &TestResponse, tagged: bool, what: &str| {
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{what}");
        assert!(r.body.is_empty(), "{what}");
        assert_eq!(r.header("cache-control"), Some("max-age=60"), "{what}");
        assert_eq!(r.header("x-custom"), Some("kept"), "{what}");
        assert!(r.header("date").is_some(), "{what}");
        assert!(r.header("cache-status").is_some(), "{what}");
        assert_eq!(r.header("content-type"), None, "{what}");
        assert_eq!(r.header("content-language"), None, "{what}");
        if tagged {
            assert_eq!(r.header("etag"), Some("\"v1\""), "{what}");
            assert_eq!(r.header("last-modified"), None, "{what}: ETag present");
        } else {
            assert_eq!(r.header("last-modified"), Some(LM), "{what}: no ETag");
        }
    };
    let miss = server
        .get_with("/tagged", &[("if-none-match", "\"v1\"")])
        .await;
    check(&miss, true, "tagged, miss");
    let miss = server
        .get_with("/dated", &[("if-modified-since", LM)])
        .await;
    check(&miss, false, "dated, miss");
    // The bodies reach the store in the background.
    until("both bodies stored", || stats.snapshot().stores == 2).await;
    let calls = origin.calls();
    let hit = server
        .get_with("/tagged", &[("if-none-match", "\"v1\"")])
        .await;
    check(&hit, true, "tagged, hit");
    assert!(hit.header("age").is_some());
    let hit = server
        .get_with("/dated", &[("if-modified-since", LM)])
        .await;
    check(&hit, false, "dated, hit");
    assert_eq!(origin.calls(), calls, "both answered from the store");
}

/// The cache evaluates a client's conditions as `CacheControlLayer` does
/// (RFC 9110 §13.1.2, §13.1.3): `If-None-Match: *` fails on any stored
/// representation, with or without an ETag; an `If-Modified-Since` sent
/// twice has more than one member and is ignored.
#[tokio::test]
async fn client_conditions_follow_rfc_9110() {
    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    let layer = CacheLayer::new();
    let stats = layer.stats();
    let (server, origin) = serve(layer, |_, _| {
        ok(
            &[("cache-control", "max-age=60"), ("last-modified", LM)],
            "body",
        )
    })
    .await;
    let miss = server.get_with("/", &[("if-none-match", "*")]).await;
    assert_eq!(miss.status, StatusCode::NOT_MODIFIED, "miss");
    until("the miss's body stored", || stats.snapshot().stores == 1).await;
    let hit = server.get_with("/", &[("if-none-match", "*")]).await;
    assert_eq!(hit.status, StatusCode::NOT_MODIFIED, "hit");
    assert!(status(&hit).contains("hit"));
    let one = server.get_with("/", &[("if-modified-since", LM)]).await;
    assert_eq!(one.status, StatusCode::NOT_MODIFIED);
    let twice = server
        .get_with("/", &[("if-modified-since", LM), ("if-modified-since", LM)])
        .await;
    assert_eq!(twice.status, StatusCode::OK, "a list of dates is ignored");
    assert_eq!(twice.text(), "body");
    assert_eq!(origin.calls(), 1);
}

/// A byte range is answered from the store (tests/proxy_ranges.rs has
/// the rest); a range of another unit, `If-Match` and
/// `If-Unmodified-Since` go to the origin.
#[tokio::test]
async fn ranges_are_served_and_other_preconditions_bypass() {
    let (server, origin) = serve(CacheLayer::new(), |_, _| {
        ok(&[("cache-control", "max-age=60")], "abc")
    })
    .await;
    server.get("/").await;
    let r = server.get_with("/", &[("range", "bytes=0-1")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.text(), "ab");
    assert_eq!(status(&r), "tower-perf; hit; ttl=60");
    let r = server.get_with("/", &[("range", "lines=0-1")]).await;
    assert_eq!(status(&r), "tower-perf; fwd=bypass");
    server.get_with("/", &[("if-match", "\"x\"")]).await;
    server
        .get_with(
            "/",
            &[("if-unmodified-since", "Sun, 06 Nov 1994 08:49:37 GMT")],
        )
        .await;
    assert_eq!(origin.calls(), 4);
    assert!(status(&server.get("/").await).contains("hit"));
}

/// A 304 whose fields now say `no-store` or `private` (in Cache-Control
/// or CDN-Cache-Control) answers this request, and the stored response
/// goes: the next request reaches the origin (RFC 9111 §3, §4.3.4).
#[tokio::test]
async fn a_304_that_forbids_storing_removes_the_entry() {
    for (name, value) in [
        ("cache-control", "no-store"),
        ("cache-control", "private"),
        ("cdn-cache-control", "no-store"),
    ] {
        let (layer, clock) = clocked();
        let (server, origin) = serve(layer, move |p, _| fresh_then_304(p, name, value)).await;
        server.get("/").await;
        clock.advance(Duration::from_secs(15));
        let r = server.get("/").await;
        assert_eq!(r.text(), "body-v1", "{name}: {value}");
        assert_eq!(origin.calls(), 2);
        let r = server.get("/").await;
        assert_eq!(r.text(), "body-v1");
        assert_eq!(origin.calls(), 3, "{name}: {value}: not stored any more");
        assert!(!status(&r).contains("hit"), "{}", status(&r));
    }
}

/// `max-age=10` with `ETag: "v1"`; to a conditional request, a 304 that
/// brings `name: value`.
fn fresh_then_304(
    p: &http::request::Parts,
    name: &'static str,
    value: &'static str,
) -> support::cache::Reply {
    if p.headers.contains_key("if-none-match") {
        return support::cache::Reply::Ok(
            http::Response::builder()
                .status(304)
                .header("etag", "\"v1\"")
                .header(name, value)
                .body(axum::body::Body::empty())
                .unwrap(),
        );
    }
    ok(
        &[("cache-control", "max-age=10"), ("etag", "\"v1\"")],
        "body-v1",
    )
}

/// A memory store that does what it is asked only after the task yields
/// once, as a network store would: what the cache leaves to the
/// background shows as not done yet when the response is in.
#[derive(Debug, Clone)]
struct Slow(MemoryStore);

impl Slow {
    fn later<T: Send + 'static>(
        &self,
        op: impl FnOnce(&MemoryStore) -> StoreFuture<T> + Send + 'static,
    ) -> StoreFuture<T> {
        let store = self.0.clone();
        StoreFuture::new(async move {
            tokio::task::yield_now().await;
            op(&store).await
        })
    }
}

impl CacheStore for Slow {
    fn get(&self, key: &CacheKey) -> StoreFuture<Option<Variants>> {
        let key = key.clone();
        self.later(move |s| s.get(&key))
    }
    fn put(&self, key: CacheKey, response: Arc<CachedResponse>, ttl: Duration) -> StoreFuture<()> {
        self.later(move |s| s.put(key, response, ttl))
    }
    fn remove(&self, key: &CacheKey) -> StoreFuture<bool> {
        let key = key.clone();
        self.later(move |s| s.remove(&key))
    }
    fn purge(&self, purge: &Purge) -> StoreFuture<u64> {
        let purge = purge.clone();
        self.later(move |s| s.purge(&purge))
    }
    fn usage(&self) -> StoreUsage {
        self.0.usage()
    }
}

/// A 304 that names another representation than the stored one (RFC
/// 9111 §4.3.4: it updates nothing): the stored response is removed, and
/// is gone by the time the answer is, even from a store that answers
/// later. The client gets that 304 only when its own condition holds for
/// it; one that asked for no condition gets a 502, not an answer to the
/// cache's question.
#[tokio::test]
async fn a_304_for_another_representation_removes_the_entry_and_answers_only_its_askers() {
    let memory = MemoryStore::new(1 << 20);
    let (layer, clock) = clocked();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let origin = tower::service_fn(move |req: http::Request<String>| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        let conditional = req.headers().contains_key("if-none-match");
        async move {
            let r = if conditional {
                http::Response::builder()
                    .status(304)
                    .header("etag", "\"v2\"")
                    .body(String::new())
            } else {
                http::Response::builder()
                    .header("cache-control", "max-age=10")
                    .header("etag", "\"v1\"")
                    .body(format!("body-{n}"))
            };
            Ok::<_, std::convert::Infallible>(r.unwrap())
        }
    });
    let svc = layer.store(Slow(memory.clone())).layer(origin);
    let get = || {
        http::Request::get("http://example.com/a")
            .header("host", "example.com")
            .body(String::new())
            .unwrap()
    };
    let first = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let _ = first.into_body().collect().await;
    // Stored once its body is read, and the store's put has run.
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    memory.sync();
    assert_eq!(memory.usage().entries, 1);
    clock.advance(Duration::from_secs(15));
    let second = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The client asked for no condition: not the 304 of the cache's own
    // question, but a 502 that says what happened.
    assert_eq!(second.status(), StatusCode::BAD_GATEWAY);
    assert!(status_of(&second).contains("detail=validation-mismatch"));
    // No yield since the answer came: nothing in the background could
    // have run.
    memory.sync();
    assert_eq!(
        memory.usage().entries,
        0,
        "the entry the 304 did not validate is gone with the answer ({:?})",
        second.headers().get("cache-status")
    );
    // Nothing stored: the next request asks unconditionally, and stores.
    let third = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(third.status(), StatusCode::OK);
    assert!(
        status_of(&third).contains("stored"),
        "{}",
        status_of(&third)
    );
    let _ = third.into_body().collect().await;
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    // A client whose own condition the origin's 304 meets gets it.
    clock.advance(Duration::from_secs(15));
    let mut conditional = get();
    conditional
        .headers_mut()
        .insert("if-none-match", http::HeaderValue::from_static("\"v2\""));
    let fourth = svc.clone().oneshot(conditional).await.unwrap();
    assert_eq!(fourth.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    // That 304 says nothing of whether the URL's answers can be kept: the
    // URL isn't marked uncacheable, and the next answer is stored.
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    let fifth = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(fifth.status(), StatusCode::OK);
    assert!(
        status_of(&fifth).contains("stored"),
        "{}",
        status_of(&fifth)
    );
}

/// A URL marked uncacheable whose stale copy is validated: when the
/// answer turns storable, it goes unstored (the request kept no fields to
/// key it by) and takes the stale copy with it, so nothing older than the
/// origin's word is left to serve (stale-if-error, say); the next request
/// stores the new one.
#[tokio::test]
async fn a_marked_url_drops_its_stale_copy_when_the_answer_turns_storable() {
    let memory = MemoryStore::new(1 << 20);
    let (layer, clock) = clocked();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let origin = tower::service_fn(move |_req: http::Request<String>| {
        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            let b = http::Response::builder();
            let r = match n {
                1 => b
                    .header("cache-control", "max-age=10")
                    .header("etag", "\"v1\""),
                // The revalidation finds it private now: not stored, the
                // URL marked, the stale copy still there.
                2 => b.header("cache-control", "private"),
                _ => b
                    .header("cache-control", "max-age=10")
                    .header("etag", "\"v3\""),
            };
            Ok::<_, std::convert::Infallible>(r.body(format!("body-{n}")).unwrap())
        }
    });
    let svc = layer
        .max_entry_size(256 << 10)
        .store(memory.clone())
        .layer(origin);
    let get = || async {
        let req = http::Request::get("http://example.com/m")
            .header("host", "example.com")
            .body(String::new())
            .unwrap();
        let r = svc.clone().oneshot(req).await.unwrap();
        let status = status_of(&r);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        memory.sync();
        (String::from_utf8_lossy(&body).into_owned(), status)
    };
    assert_eq!(get().await.0, "body-1");
    assert_eq!(memory.usage().entries, 1);
    clock.advance(Duration::from_secs(15));
    assert_eq!(get().await.0, "body-2");
    assert_eq!(memory.usage().entries, 1, "the stale copy stays");
    let (body, status) = get().await;
    assert_eq!(body, "body-3");
    assert!(!status.contains("stored"), "{status}");
    assert_eq!(memory.usage().entries, 0, "the stale copy went with it");
    let (body, status) = get().await;
    assert_eq!(body, "body-4");
    assert!(status.contains("stored"), "{status}");
    let (body, status) = get().await;
    assert_eq!(body, "body-4");
    assert!(status.contains("hit"), "{status}");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}
