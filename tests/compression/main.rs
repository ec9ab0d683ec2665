//! CompressionLayer over real HTTP (and, for trailers and executor
//! budgets, with `oneshot`). `negotiation.rs`: which coding a request gets
//! (and the statistics); `rules.rs`: which responses are compressed and
//! the fields they carry (Vary, ETag, Accept-Ranges, Content-Length);
//! `bodies.rs`: how bodies are encoded, whole or streamed, with their
//! frames, trailers and errors. The app the HTTP tests share lives here.

#[path = "../support/mod.rs"]
mod support;

mod bodies;
#[cfg(any(feature = "compression-br", feature = "compression-zstd"))]
mod dictionaries;
mod negotiation;
mod rules;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use std::convert::Infallible;
use support::TestServer;
use tower_perf::compression::CompressionLayer;
use tower_perf::headers::ContentCoding;

pub(crate) fn json_body(n: usize) -> String {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"item {i}\",\"tags\":[\"a\",\"b\"]}},"
        ));
        i += 1;
    }
    s.push(']');
    s
}

fn ok(content_type: &'static str, body: impl Into<Body>) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

/// The app the HTTP tests share, wrapped in `layer`.
fn app(layer: CompressionLayer) -> Router {
    let big = json_body(8 * 1024);
    let big2 = big.clone();
    Router::new()
        .route(
            "/json",
            get(move || async move { ok("application/json", big) }),
        )
        .route(
            "/small",
            get(|| async { ok("application/json", "{\"small\":true}") }),
        )
        .route(
            "/exact",
            get(|| async { ok("text/plain", "x".repeat(1024)) }),
        )
        .route(
            "/just-under",
            get(|| async { ok("text/plain", "x".repeat(1023)) }),
        )
        .route("/png", get(|| async { ok("image/png", vec![0u8; 4096]) }))
        .route(
            "/woff2",
            get(|| async { ok("font/woff2", vec![1u8; 4096]) }),
        )
        .route(
            "/svg",
            get(|| async { ok("image/svg+xml", "<svg></svg>".repeat(200)) }),
        )
        .route(
            "/no-type",
            get(|| async { Response::new(Body::from("x".repeat(4096))) }),
        )
        .route(
            "/grpc",
            get(|| async { ok("application/grpc", vec![0u8; 4096]) }),
        )
        .route(
            "/already",
            get(|| async {
                let mut r = ok("text/plain", "not really br but opaque".repeat(100));
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
                r
            }),
        )
        .route(
            "/no-transform",
            get(|| async {
                let mut r = ok("text/plain", "y".repeat(4096));
                r.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, No-Transform"),
                );
                r
            }),
        )
        .route(
            "/partial",
            get(|| async {
                let mut r = ok("text/plain", "z".repeat(2048));
                *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                r.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_static("bytes 0-2047/10000"),
                );
                r
            }),
        )
        .route(
            "/ranged",
            get(|| async {
                let mut r = ok("text/plain", "z".repeat(2048));
                r.headers_mut()
                    .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                r
            }),
        )
        .route("/no-content", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/vary-origin",
            get(move || async move {
                let mut r = ok("application/json", big2);
                r.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("Origin"));
                r
            }),
        )
        .route(
            "/vary-ae",
            get(|| async {
                let mut r = ok("text/plain", "v".repeat(4096));
                r.headers_mut()
                    .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
                r
            }),
        )
        .route(
            "/vary-star",
            get(|| async {
                let mut r = ok("text/plain", "v".repeat(4096));
                r.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("*"));
                r
            }),
        )
        .route("/etag", get(etag_handler).put(etag_put))
        .route(
            "/weak",
            get(|| async {
                let mut r = ok("text/plain", "w".repeat(4096));
                r.headers_mut()
                    .insert(header::ETAG, HeaderValue::from_static("W/\"weak1\""));
                r
            }),
        )
        .route(
            "/stream-small",
            get(|| async {
                let chunks = ["{\"a\":", "1}", "\n"].map(|s| Ok::<_, Infallible>(Bytes::from(s)));
                ok(
                    "application/json",
                    Body::from_stream(futures_util::stream::iter(chunks)),
                )
            }),
        )
        .route(
            "/stream-large",
            get(|| async {
                let chunks = (0..100).map(|i| {
                    Ok::<_, Infallible>(Bytes::from(format!(
                        "{{\"line\":{i},\"pad\":\"{}\"}}\n",
                        "p".repeat(50)
                    )))
                });
                ok(
                    "application/x-ndjson",
                    Body::from_stream(futures_util::stream::iter(chunks)),
                )
            }),
        )
        .layer(layer)
}

/// A handler with its own validator "abc" that answers If-None-Match with
/// 304 (weak comparison, as RFC 9110 says).
async fn etag_handler(headers: HeaderMap) -> Response<Body> {
    let inm = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let matches = inm
        .split(',')
        .any(|t| t.trim().trim_start_matches("W/") == "\"abc\"");
    let mut r = if matches {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        ok("application/json", json_body(4096))
    };
    r.headers_mut()
        .insert(header::ETAG, HeaderValue::from_static("\"abc\""));
    r
}

/// If-Match with strong comparison against "abc": 412 unless it matches.
async fn etag_put(headers: HeaderMap) -> impl IntoResponse {
    let im = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if im.split(',').any(|t| t.trim() == "\"abc\"") {
        StatusCode::OK
    } else {
        StatusCode::PRECONDITION_FAILED
    }
}

async fn server() -> TestServer {
    TestServer::serve(app(CompressionLayer::new())).await
}

/// The layer offering gzip and deflate only, whatever codings the build
/// has: the negotiation tests' fixed ground.
fn gzip_deflate() -> CompressionLayer {
    CompressionLayer::new().codings([ContentCoding::Gzip, ContentCoding::Deflate])
}
