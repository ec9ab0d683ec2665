//! CacheControlLayer over real HTTP: presets, rule precedence, generated
//! ETags, every precondition of RFC 9110 §13 and their order (§13.2.2),
//! and the interplay with CompressionLayer in both orders.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, Response, StatusCode, header};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
#[cfg(feature = "compression")]
use support::gunzip;
use support::{TestResponse, TestServer};
use tower::ServiceBuilder;
use tower_perf::cache_control::{CacheControlLayer, EtagMode, Policy, Rule};
// Only the test with CompressionLayer needs `compression` (Cargo.toml
// requires `cache-control` alone).
#[cfg(feature = "compression")]
use tower_perf::compression::CompressionLayer;

const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
const BEFORE: &str = "Sat, 05 Nov 1994 08:49:37 GMT";
const AFTER: &str = "Mon, 07 Nov 1994 08:49:37 GMT";

#[derive(Default)]
struct Doc {
    body: std::sync::Mutex<String>,
    puts: AtomicUsize,
}

fn text(content_type: &'static str, body: impl Into<Body>) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

fn routes(doc: Arc<Doc>) -> Router {
    Router::new()
        .route(
            "/static/app.js",
            get(|| async { text("text/javascript", "console.log(1);\n".repeat(200)) }),
        )
        .route(
            "/static/missing.js",
            get(|| async { (StatusCode::NOT_FOUND, "no such file") }),
        )
        .route(
            "/api/items",
            get(|| async { text("application/json", "[1,2,3]") }).post(|| async {
                let mut r = text("application/json", "{\"id\":4}");
                *r.status_mut() = StatusCode::CREATED;
                r
            }),
        )
        .route(
            "/api/moved",
            get(|| async {
                Response::builder()
                    .status(StatusCode::FOUND)
                    .header(header::LOCATION, "/api/items")
                    .body(Body::empty())
                    .unwrap()
            }),
        )
        .route(
            "/performance/stats",
            get(|| async { text("application/json", "{\"p99\":1}") }),
        )
        .route("/health", get(|| async { "ok" }))
        .route(
            "/own",
            get(|| async {
                let mut r = text("text/plain", "own policy");
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
                r
            }),
        )
        .route(
            "/forced",
            get(|| async {
                let mut r = text("text/plain", "forced policy");
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
                r
            }),
        )
        .route(
            "/big",
            get(|| async { text("application/octet-stream", vec![7u8; 2 * 1024 * 1024]) }),
        )
        .route(
            "/tagged",
            get(|| async {
                let mut r = text("text/plain", "tagged");
                r.headers_mut()
                    .insert(header::ETAG, HeaderValue::from_static("\"v7\""));
                r.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("accept-language"));
                r.headers_mut()
                    .insert(header::EXPIRES, HeaderValue::from_static(AFTER));
                r.headers_mut().insert(
                    header::CONTENT_LOCATION,
                    HeaderValue::from_static("/tagged.txt"),
                );
                r.headers_mut()
                    .insert(header::LAST_MODIFIED, HeaderValue::from_static(LM));
                r
            }),
        )
        .route(
            "/dated",
            get(|| async {
                let mut r = text("text/plain", "dated");
                r.headers_mut()
                    .insert(header::LAST_MODIFIED, HeaderValue::from_static(LM));
                r
            }),
        )
        .route(
            "/doc",
            get(|State(doc): State<Arc<Doc>>| async move {
                let body = doc.body.lock().unwrap().clone();
                if body.is_empty() {
                    (StatusCode::NOT_FOUND, String::new())
                } else {
                    (StatusCode::OK, body)
                }
            })
            .put(|State(doc): State<Arc<Doc>>, body: String| async move {
                doc.puts.fetch_add(1, Ordering::SeqCst);
                let created = {
                    let mut b = doc.body.lock().unwrap();
                    let created = b.is_empty();
                    *b = body;
                    created
                };
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::NO_CONTENT
                }
            }),
        )
        .with_state(doc)
}

fn layer() -> CacheControlLayer {
    CacheControlLayer::new()
        .route("/static/**", Policy::static_assets())
        .route("/api/**", Policy::api(Duration::from_secs(300)))
        .route("/performance/**", Policy::monitoring())
        .route("/health", Policy::no_cache())
        .route("/own", Policy::static_assets())
        .rule(
            Rule::new("/forced")
                .policy(Policy::no_store())
                .override_handler(),
        )
}

async fn server_with(layer: CacheControlLayer) -> (TestServer, Arc<Doc>) {
    let doc = Arc::new(Doc::default());
    (
        TestServer::serve(routes(doc.clone()).layer(layer)).await,
        doc,
    )
}

async fn server() -> (TestServer, Arc<Doc>) {
    server_with(layer()).await
}

async fn put(
    s: &TestServer,
    path: &str,
    body: &'static str,
    headers: &[(&str, &str)],
) -> TestResponse {
    let mut req = s.request(Method::PUT, path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    s.send(req.body(Full::from(body)).unwrap()).await
}

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

#[tokio::test]
async fn etags_are_generated_and_stable() {
    let (s, _) = server().await;
    let a = s.get("/static/app.js").await;
    let b = s.get("/static/app.js").await;
    let tag = a.header("etag").expect("generated etag").to_owned();
    assert!(tag.starts_with('"') && tag.len() == 34, "{tag}");
    assert_eq!(b.header("etag"), Some(tag.as_str()));
    assert_ne!(s.get("/api/items").await.header("etag"), Some(tag.as_str()));
    // The handler's own validator is kept.
    assert_eq!(s.get("/tagged").await.header("etag"), Some("\"v7\""));
    // HEAD carries the GET's validator.
    let head = s
        .send(
            s.request(Method::HEAD, "/static/app.js")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(head.header("etag"), Some(tag.as_str()));
    let (w, _) = server_with(layer().etags(EtagMode::Weak)).await;
    assert!(
        w.get("/static/app.js")
            .await
            .header("etag")
            .unwrap()
            .starts_with("W/\"")
    );
    let (off, _) = server_with(layer().etags(EtagMode::Off)).await;
    assert_eq!(off.get("/static/app.js").await.header("etag"), None);
}

#[tokio::test]
async fn large_and_streamed_bodies_pass_untouched() {
    let (s, _) = server().await;
    let big = s.get("/big").await;
    assert_eq!(big.header("etag"), None);
    assert_eq!(big.body.len(), 2 * 1024 * 1024);
    // A streamed body is neither hashed nor held back.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let rx = Arc::new(std::sync::Mutex::new(Some(rx)));
    let app = Router::new()
        .route(
            "/stream",
            get(move || {
                let rx = rx.lock().unwrap().take();
                async move {
                    let stream = futures_util::stream::unfold(rx, |rx| async move {
                        let mut rx = rx?;
                        let item = rx.recv().await?;
                        Some((item, Some(rx)))
                    });
                    text("text/plain", Body::from_stream(stream))
                }
            }),
        )
        .layer(CacheControlLayer::new());
    let s = TestServer::serve(app).await;
    tx.send(Ok(Bytes::from_static(b"first"))).await.unwrap();
    let res = s
        .send_streaming(
            s.request(Method::GET, "/stream")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert!(res.headers().get("etag").is_none());
    let mut body = res.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first chunk before the end");
    assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "first");
    drop(tx);
}

#[tokio::test]
async fn if_none_match_gives_304_with_the_right_headers() {
    let (s, _) = server().await;
    let r = s.get_with("/tagged", &[("if-none-match", "\"v7\"")]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    for (h, v) in [
        ("etag", "\"v7\""),
        ("vary", "accept-language"),
        ("expires", AFTER),
        ("content-location", "/tagged.txt"),
    ] {
        assert_eq!(r.header(h), Some(v), "{h}");
    }
    assert_eq!(r.header("content-type"), None);
    assert_eq!(
        r.header("last-modified"),
        None,
        "ETag present: Last-Modified not needed"
    );
    // Weak comparison, lists and `*`.
    for inm in ["W/\"v7\"", "\"a\", \"v7\"", "*"] {
        assert_eq!(
            s.get_with("/tagged", &[("if-none-match", inm)])
                .await
                .status,
            StatusCode::NOT_MODIFIED,
            "{inm}"
        );
    }
    assert_eq!(
        s.get_with("/tagged", &[("if-none-match", "\"v8\"")])
            .await
            .status,
        StatusCode::OK
    );
    // HEAD revalidates like GET.
    let head = s
        .request(Method::HEAD, "/tagged")
        .header("if-none-match", "\"v7\"")
        .body(Full::default())
        .unwrap();
    assert_eq!(s.send(head).await.status, StatusCode::NOT_MODIFIED);
    // With a generated tag, and keeping the route policy on the 304.
    let tag = s
        .get("/static/app.js")
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let r = s
        .get_with("/static/app.js", &[("if-none-match", &tag)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(
        r.header("cache-control"),
        Some("max-age=31536000, immutable")
    );
    assert_eq!(r.header("etag"), Some(tag.as_str()));
}

#[tokio::test]
async fn if_modified_since() {
    let (s, _) = server().await;
    assert_eq!(
        s.get_with("/dated", &[("if-modified-since", LM)])
            .await
            .status,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        s.get_with("/dated", &[("if-modified-since", AFTER)])
            .await
            .status,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        s.get_with("/dated", &[("if-modified-since", BEFORE)])
            .await
            .status,
        StatusCode::OK
    );
    // The obsolete date formats are read too.
    let r = s
        .get_with(
            "/dated",
            &[("if-modified-since", "Sunday, 06-Nov-94 08:49:37 GMT")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.header("etag").is_some(), "the generated validator");
    assert_eq!(
        r.header("last-modified"),
        None,
        "with an ETag, Last-Modified is left out"
    );
    let (no_tags, _) = server_with(layer().etags(EtagMode::Off)).await;
    let r = no_tags
        .get_with("/dated", &[("if-modified-since", LM)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(
        r.header("last-modified"),
        Some(LM),
        "no ETag: Last-Modified stays"
    );
    // Invalid dates are ignored.
    assert_eq!(
        s.get_with("/dated", &[("if-modified-since", "yesterday")])
            .await
            .status,
        StatusCode::OK
    );
    // Ignored when If-None-Match is present (§13.2.2 step 4).
    let r = s
        .get_with(
            "/tagged",
            &[("if-none-match", "\"other\""), ("if-modified-since", AFTER)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Without Last-Modified there is nothing to compare.
    assert_eq!(
        s.get_with("/api/items", &[("if-modified-since", AFTER)])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn if_match_and_if_unmodified_since_on_get() {
    let (s, _) = server().await;
    assert_eq!(
        s.get_with("/tagged", &[("if-match", "\"v7\"")])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        s.get_with("/tagged", &[("if-match", "*")]).await.status,
        StatusCode::OK
    );
    let r = s.get_with("/tagged", &[("if-match", "\"v1\"")]).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.header("etag"), Some("\"v7\""));
    // Strong comparison: a weak tag never matches.
    assert_eq!(
        s.get_with("/tagged", &[("if-match", "W/\"v7\"")])
            .await
            .status,
        StatusCode::PRECONDITION_FAILED
    );
    // An unreadable If-Match fails; an unreadable If-None-Match is ignored.
    assert_eq!(
        s.get_with("/tagged", &[("if-match", "v7")]).await.status,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        s.get_with("/tagged", &[("if-none-match", "v7")])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        s.get_with("/dated", &[("if-unmodified-since", BEFORE)])
            .await
            .status,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        s.get_with("/dated", &[("if-unmodified-since", LM)])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn precedence_of_rfc_9110_13_2_2() {
    let (s, _) = server().await;
    // 1 before 3: If-Match failing wins over a matching If-None-Match (412, not 304).
    let r = s
        .get_with(
            "/tagged",
            &[("if-match", "\"v1\""), ("if-none-match", "\"v7\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    // 1 replaces 2: with If-Match present, If-Unmodified-Since is not evaluated.
    let r = s
        .get_with(
            "/tagged",
            &[("if-match", "\"v7\""), ("if-unmodified-since", BEFORE)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // 2 before 3: If-Unmodified-Since failing wins over a matching If-None-Match.
    let r = s
        .get_with(
            "/tagged",
            &[("if-unmodified-since", BEFORE), ("if-none-match", "\"v7\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    // 3 before 4: a matching If-None-Match gives 304 whatever If-Modified-Since says.
    let r = s
        .get_with(
            "/tagged",
            &[("if-none-match", "\"v7\""), ("if-modified-since", BEFORE)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    // Passing 1 and 2 leads on to 3.
    let r = s
        .get_with(
            "/tagged",
            &[("if-match", "\"v7\""), ("if-none-match", "\"v7\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    // Preconditions only apply to 2xx: a 404 stays a 404.
    let r = s
        .get_with("/static/missing.js", &[("if-match", "\"x\"")])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// The layer around the whole router (method routing inside it), probing
/// unsafe requests. `Incoming` becomes axum's `Body`, which has a `Default`.
async fn whole_router_server() -> (TestServer, Arc<Doc>) {
    let doc = Arc::new(Doc::default());
    let svc = ServiceBuilder::new()
        .map_request(|r: axum::http::Request<hyper::body::Incoming>| r.map(Body::new))
        .layer(layer().probe_unsafe_methods(true))
        .service(routes(doc.clone()));
    (TestServer::serve(svc).await, doc)
}

#[tokio::test]
async fn unsafe_methods_are_checked_before_the_handler_runs() {
    let (s, doc) = whole_router_server().await;
    // Create-only: If-None-Match: * on a missing resource passes…
    assert_eq!(
        put(&s, "/doc", "v1 body", &[("if-none-match", "*")])
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(doc.puts.load(Ordering::SeqCst), 1);
    // …and fails once it exists, without running the handler.
    assert_eq!(
        put(&s, "/doc", "v2 body", &[("if-none-match", "*")])
            .await
            .status,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(doc.puts.load(Ordering::SeqCst), 1);
    // If-Match with the current (generated) tag passes; a stale one fails.
    let tag = s.get("/doc").await.header("etag").unwrap().to_owned();
    let stale = put(&s, "/doc", "x", &[("if-match", "\"stale\"")]).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        stale.header("etag"),
        Some(tag.as_str()),
        "412 tells the current tag"
    );
    assert_eq!(doc.puts.load(Ordering::SeqCst), 1);
    assert_eq!(
        put(&s, "/doc", "v2 body", &[("if-match", &tag)])
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(doc.puts.load(Ordering::SeqCst), 2);
    // The old tag is stale now: lost update prevented.
    assert_eq!(
        put(&s, "/doc", "v3 body", &[("if-match", &tag)])
            .await
            .status,
        StatusCode::PRECONDITION_FAILED
    );
    // If-None-Match matching on PUT is 412, not 304.
    let now = s.get("/doc").await.header("etag").unwrap().to_owned();
    assert_eq!(
        put(&s, "/doc", "v3 body", &[("if-none-match", &now)])
            .await
            .status,
        StatusCode::PRECONDITION_FAILED
    );
    // If-Match: * needs an existing representation.
    assert_eq!(
        put(&s, "/nowhere", "x", &[("if-match", "*")]).await.status,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(doc.puts.load(Ordering::SeqCst), 2);
    assert_eq!(s.get("/doc").await.text(), "v2 body");
}

#[tokio::test]
async fn without_probes_unsafe_preconditions_are_the_handlers() {
    // Behind `Router::layer` the layer must not guess: the PUT handler runs
    // and finds the parsed preconditions in its extensions.
    use axum::Extension;
    use tower_perf::headers::EntityTag;
    use tower_perf::headers::{Precondition, Preconditions};
    let puts = Arc::new(AtomicUsize::new(0));
    let counter = puts.clone();
    let app = Router::new()
        .route(
            "/v",
            get(|| async { text("text/plain", "version 3") }).put(
                move |pre: Option<Extension<Preconditions>>| {
                    let counter = counter.clone();
                    async move {
                        let current = EntityTag::strong("v3").unwrap();
                        if let Some(Extension(pre)) = pre {
                            if pre.evaluate(&Method::PUT, true, Some(&current), None)
                                != Precondition::Proceed
                            {
                                return StatusCode::PRECONDITION_FAILED;
                            }
                        }
                        counter.fetch_add(1, Ordering::SeqCst);
                        StatusCode::NO_CONTENT
                    }
                },
            ),
        )
        .layer(CacheControlLayer::new());
    let s = TestServer::serve(app).await;
    assert_eq!(
        put(&s, "/v", "x", &[("if-match", "\"v2\"")]).await.status,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        put(&s, "/v", "x", &[("if-match", "\"v3\"")]).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(put(&s, "/v", "x", &[]).await.status, StatusCode::NO_CONTENT);
    assert_eq!(puts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn stats_count() {
    let l = layer().probe_unsafe_methods(true);
    let stats = l.stats();
    let doc = Arc::new(Doc::default());
    let svc = ServiceBuilder::new()
        .map_request(|r: axum::http::Request<hyper::body::Incoming>| r.map(Body::new))
        .layer(l)
        .service(routes(doc));
    let s = TestServer::serve(svc).await;
    let tag = s
        .get("/static/app.js")
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    s.get_with("/static/app.js", &[("if-none-match", &tag)])
        .await;
    s.get_with("/tagged", &[("if-match", "\"nope\"")]).await;
    put(&s, "/doc", "x", &[("if-match", "\"nope\"")]).await;
    let snap = stats.snapshot();
    assert_eq!(snap.not_modified, 1);
    assert_eq!(snap.precondition_failed, 2);
    assert_eq!(snap.probes, 1);
    // Two hashed 200s of app.js (the second answered 304); /tagged has its own tag.
    assert_eq!(snap.etags_generated, 2);
    assert_eq!(
        snap.policies_applied, 2,
        "/static/** twice; /tagged and /doc have no rule"
    );
}

/// Revalidation through both stacking orders of CacheControl and Compression.
#[cfg(feature = "compression")]
#[tokio::test]
async fn with_compression_in_both_orders() {
    let doc = Arc::new(Doc::default());
    let outside = routes(doc.clone()).layer(
        ServiceBuilder::new()
            .layer(layer())
            .layer(CompressionLayer::new()),
    );
    let inside = routes(doc).layer(
        ServiceBuilder::new()
            .layer(CompressionLayer::new())
            .layer(layer()),
    );
    for (name, app) in [
        ("cache-control outside", outside),
        ("cache-control inside", inside),
    ] {
        let s = TestServer::serve(app).await;
        let gz = s
            .get_with("/static/app.js", &[("accept-encoding", "gzip")])
            .await;
        let id = s.get("/static/app.js").await;
        assert_eq!(gz.header("content-encoding"), Some("gzip"), "{name}");
        assert_eq!(gunzip(&gz.body), id.body, "{name}");
        let (gz_tag, id_tag) = (
            gz.header("etag").unwrap().to_owned(),
            id.header("etag").unwrap().to_owned(),
        );
        assert_ne!(gz_tag, id_tag, "{name}: each coding has its own validator");
        assert!(
            !gz_tag.starts_with("W/") && !id_tag.starts_with("W/"),
            "{name}"
        );
        // Revalidating with the tag received gives a 304 that carries Vary.
        for (ae, tag) in [("gzip", &gz_tag), ("identity", &id_tag)] {
            let r = s
                .get_with(
                    "/static/app.js",
                    &[("accept-encoding", ae), ("if-none-match", tag)],
                )
                .await;
            assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{name} {ae}");
            assert_eq!(r.header("vary"), Some("accept-encoding"), "{name} {ae}");
            assert_eq!(r.header("etag"), Some(tag.as_str()), "{name} {ae}");
            assert!(r.body.is_empty());
        }
        // A gzip tag doesn't validate the identity variant.
        let r = s
            .get_with("/static/app.js", &[("if-none-match", &gz_tag)])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{name}");
    }
}

#[tokio::test]
async fn a_body_error_while_hashing_reaches_the_client() {
    use tower::{ServiceExt, service_fn};
    let svc = ServiceBuilder::new()
        .layer(CacheControlLayer::new())
        .service(service_fn(|_req: axum::http::Request<Full<Bytes>>| async {
            let frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = vec![
                Ok(http_body::Frame::data(Bytes::from_static(b"part"))),
                Err(std::io::Error::other("broken")),
            ];
            let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
            // A lying size hint: claims 8 bytes.
            let body = http_body_util::BodyExt::boxed(SizedBody(body, 8));
            Ok::<_, std::convert::Infallible>(Response::new(body))
        }));
    let res = svc
        .oneshot(axum::http::Request::get("/").body(Full::default()).unwrap())
        .await
        .unwrap();
    assert!(
        res.headers().get("etag").is_none(),
        "no tag for a body that failed"
    );
    assert!(res.into_body().collect().await.is_err());
}

/// Wraps a body with an exact size hint.
struct SizedBody<B>(B, u64);

impl<B: http_body::Body + Unpin> http_body::Body for SizedBody<B> {
    type Data = B::Data;
    type Error = B::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        std::pin::Pin::new(&mut self.0).poll_frame(cx)
    }
    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.1)
    }
}

#[test]
fn services_futures_and_bodies_are_send() {
    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}
    assert_send::<tower_perf::cache_control::ResponseBody<Full<Bytes>>>();
    assert_sync::<CacheControlLayer>();
    type Svc = tower::util::BoxCloneService<
        axum::http::Request<Body>,
        Response<Full<Bytes>>,
        std::convert::Infallible,
    >;
    assert_send::<tower_perf::cache_control::CacheControl<Svc>>();
}
