//! Preconditions on unsafe methods: checked before the handler runs when
//! the layer wraps the whole router and probes, left to the handler (in
//! its extensions) otherwise; what the statistics count.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::routing::get;
use tower::ServiceBuilder;
use tower_perf::cache_control::CacheControlLayer;

use crate::support::TestServer;
use crate::{Doc, layer, put, routes, text};

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
