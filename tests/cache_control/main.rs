//! CacheControlLayer over real HTTP. `policies.rs`: presets by route and
//! rule precedence; `etags.rs`: generated ETags, the bodies they are
//! hashed from, and the interplay with CompressionLayer in both orders;
//! `conditionals.rs`: every precondition of RFC 9110 §13 on GET and HEAD
//! and their order (§13.2.2); `unsafe_methods.rs`: preconditions on
//! unsafe methods, probed or left to the handler, and the statistics.
//! The routes and the layer the tests share live here.

#[path = "../support/mod.rs"]
mod support;

mod conditionals;
mod etags;
mod policies;
mod unsafe_methods;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, Response, StatusCode, header};
use axum::routing::get;
use http_body_util::Full;
use support::{TestResponse, TestServer};
use tower_perf::cache_control::{CacheControlLayer, Policy, Rule};

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
