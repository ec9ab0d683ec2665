//! CompressionLayer over real HTTP (and, for trailers and executor
//! budgets, with `oneshot`).

mod support;

use std::convert::Infallible;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use bytes::Bytes;
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use support::{TestServer, gunzip, inflate};
use tokio::sync::mpsc;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_perf::compression::{CompressionLayer, SkipReason};
use tower_perf::headers::ContentCoding;

fn json_body(n: usize) -> String {
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

/// A channel-fed streaming body and its sender.
fn channel_body() -> (mpsc::Sender<Result<Bytes, std::io::Error>>, Body) {
    let (tx, rx) = mpsc::channel(8);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, Body::from_stream(stream))
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

#[tokio::test]
async fn gzip_round_trips_and_sets_headers() {
    let s = server().await;
    let plain = s.get("/json").await;
    let res = s.get_with("/json", &[("accept-encoding", "gzip")]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-encoding"), Some("gzip"));
    assert_eq!(res.header("vary"), Some("accept-encoding"));
    // Small enough to compress whole: the exact compressed length is sent.
    let len = res.body.len().to_string();
    assert_eq!(res.header("content-length"), Some(len.as_str()));
    assert!(
        res.body.len() < plain.body.len() / 3,
        "{} vs {}",
        res.body.len(),
        plain.body.len()
    );
    assert_eq!(gunzip(&res.body), plain.body);
}

/// Small bodies held whole go through the one-shot encoder, the others
/// (and level 1) through zlib-rs; both decode. The gzip header's OS byte
/// tells them apart: the one-shot encoder writes 255 ("unknown"), zlib-rs
/// its platform's code.
#[tokio::test]
async fn small_whole_bodies_take_the_one_shot_encoder() {
    let os = |body: &[u8]| body[9];
    let s = server().await;
    let plain_small = s.get("/exact").await.body;
    let plain_big = s.get("/json").await.body;
    // The default level takes bodies up to 16 KiB: 1 KiB and 8 KiB.
    for (path, plain) in [("/exact", &plain_small), ("/json", &plain_big)] {
        let res = s.get_with(path, &[("accept-encoding", "gzip")]).await;
        assert_eq!(os(&res.body), 255, "{path}");
        assert_eq!(&gunzip(&res.body), plain);
    }
    let zlib = s
        .get_with("/exact", &[("accept-encoding", "deflate")])
        .await;
    assert_eq!(zlib.header("content-encoding"), Some("deflate"));
    assert_eq!(inflate(&zlib.body), plain_small);
    // Level 6 takes up to 4 KiB: 8 KiB goes to zlib-rs.
    let s6 = TestServer::serve(app(CompressionLayer::new().level(ContentCoding::Gzip, 6))).await;
    let small = s6.get_with("/exact", &[("accept-encoding", "gzip")]).await;
    assert_eq!(os(&small.body), 255);
    let big = s6.get_with("/json", &[("accept-encoding", "gzip")]).await;
    assert_ne!(os(&big.body), 255);
    assert_eq!(gunzip(&big.body), plain_big);
    // Level 1 stays with zlib-rs's quick strategy.
    let s1 = TestServer::serve(app(CompressionLayer::new().level(ContentCoding::Gzip, 1))).await;
    let quick = s1.get_with("/exact", &[("accept-encoding", "gzip")]).await;
    assert_ne!(os(&quick.body), 255);
    assert_eq!(gunzip(&quick.body), plain_small);
}

/// A body of known length in several frames.
struct KnownLength(std::collections::VecDeque<Bytes>);

impl http_body::Body for KnownLength {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}

/// A small body of known length that arrives in several frames is joined
/// and compressed whole by the one-shot encoder: exact Content-Length, and
/// it decodes to the frames in order.
#[tokio::test]
async fn a_small_body_in_several_frames_is_compressed_whole() {
    let text = json_body(6 * 1024);
    let parts: Vec<Bytes> = text
        .as_bytes()
        .chunks(2_500)
        .map(Bytes::copy_from_slice)
        .collect();
    assert_eq!(parts.len(), 3);
    let svc = ServiceBuilder::new()
        .layer(CompressionLayer::new())
        .service(service_fn(move |_req: Request<()>| {
            let body = KnownLength(parts.clone().into());
            async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(body)
                        .unwrap(),
                )
            }
        }));
    let req = Request::get("/")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let len = res.headers()[header::CONTENT_LENGTH].clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(len.to_str().unwrap(), body.len().to_string());
    assert_eq!(body[9], 255, "the one-shot encoder's gzip header");
    assert_eq!(gunzip(&body), text.as_bytes());
}

#[tokio::test]
async fn large_bodies_stream_without_content_length() {
    let big = json_body(200 * 1024);
    let app = Router::new()
        .route(
            "/big",
            get(move || async move { ok("application/json", big) }),
        )
        .layer(CompressionLayer::new());
    let s = TestServer::serve(app).await;
    let res = s.get_with("/big", &[("accept-encoding", "gzip")]).await;
    assert_eq!(res.header("content-encoding"), Some("gzip"));
    assert_eq!(res.header("content-length"), None);
    assert_eq!(gunzip(&res.body), json_body(200 * 1024).as_bytes());
}

#[tokio::test]
async fn deflate_is_zlib_wrapped() {
    let s = server().await;
    let plain = s.get("/json").await;
    let res = s.get_with("/json", &[("accept-encoding", "deflate")]).await;
    assert_eq!(res.header("content-encoding"), Some("deflate"));
    assert_eq!(inflate(&res.body), plain.body);
}

#[tokio::test]
async fn q_value_negotiation() {
    let s = server().await;
    let cases: [(&str, Option<&str>); 14] = [
        ("gzip;q=0, deflate", Some("deflate")),
        ("gzip;q=0.5, deflate;q=0.9", Some("deflate")),
        ("deflate, gzip", Some("gzip")),
        ("*", Some("gzip")),
        ("*;q=0.1, deflate;q=0.2", Some("deflate")),
        ("x-gzip", Some("gzip")),
        ("GZIP;Q=1.0", Some("gzip")),
        ("br", None),
        ("identity", None),
        ("gzip;q=0.5, identity", None),
        ("", None),
        ("gzip;q=0", None),
        ("gzip;q=1.5, deflate;q=0.001", Some("deflate")),
        ("identity;q=0, *;q=0", None),
    ];
    for (ae, expected) in cases {
        let res = s.get_with("/json", &[("accept-encoding", ae)]).await;
        assert_eq!(res.status, StatusCode::OK, "{ae}");
        assert_eq!(
            res.header("content-encoding"),
            expected,
            "accept-encoding: {ae:?}"
        );
        assert_eq!(res.header("vary"), Some("accept-encoding"), "{ae}");
    }
    // Several header lines form one list.
    let mut req = s.request(Method::GET, "/json");
    req = req
        .header("accept-encoding", "gzip;q=0.1")
        .header("accept-encoding", "deflate");
    let res = s.send(req.body(Full::default()).unwrap()).await;
    assert_eq!(res.header("content-encoding"), Some("deflate"));
}

#[tokio::test]
async fn server_preference_is_configurable() {
    let s = TestServer::serve(app(
        CompressionLayer::new().codings([ContentCoding::Deflate, ContentCoding::Gzip])
    ))
    .await;
    let res = s
        .get_with("/json", &[("accept-encoding", "gzip, deflate")])
        .await;
    assert_eq!(res.header("content-encoding"), Some("deflate"));
    // The client's weights still come first.
    let res = s
        .get_with("/json", &[("accept-encoding", "gzip, deflate;q=0.5")])
        .await;
    assert_eq!(res.header("content-encoding"), Some("gzip"));
}

#[tokio::test]
async fn nothing_acceptable_gets_identity_or_406() {
    let s = server().await;
    let res = s
        .get_with("/json", &[("accept-encoding", "br, identity;q=0")])
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-encoding"), None);
    let strict = TestServer::serve(app(CompressionLayer::new().reject_unacceptable(true))).await;
    let res = strict
        .get_with("/json", &[("accept-encoding", "br, identity;q=0")])
        .await;
    assert_eq!(res.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(res.header("vary"), Some("accept-encoding"));
    assert!(res.text().contains("content codings"));
    let res = strict
        .get_with(
            "/json",
            &[("accept-encoding", "br, gzip;q=0.1, identity;q=0")],
        )
        .await;
    assert_eq!(res.header("content-encoding"), Some("gzip"));
}

#[tokio::test]
async fn malformed_accept_encoding_never_panics() {
    let s = server().await;
    for ae in [
        ";;;",
        ",,,",
        "q=1",
        "gzip;q=",
        "gzip;q=\"1\"",
        "*;q=abc",
        "gzip;;q=0.5",
        "\"gzip\"",
        "gzip; q = 0.5",
    ] {
        // Whatever the layer makes of the field, the client gets the body
        // it asked for, in a coding it can read, and a cache is told the
        // answer depends on the field.
        let identity = s.get("/json").await.body;
        let res = s.get_with("/json", &[("accept-encoding", ae)]).await;
        assert_eq!(res.status, StatusCode::OK, "{ae}");
        let body = match res.header("content-encoding") {
            None => res.body.to_vec(),
            Some("gzip") => support::gunzip(&res.body),
            Some("deflate") => support::inflate(&res.body),
            Some(other) => panic!("{ae}: answered in {other}"),
        };
        assert_eq!(body, identity, "{ae}");
        assert_eq!(res.header("vary"), Some("accept-encoding"), "{ae}");
    }
    // Bytes no client library would send.
    let raw = s
        .send_raw(b"GET /json HTTP/1.1\r\nHost: x\r\nAccept-Encoding: \xff\xfe, gzip;q=\xc3\xa9\r\nConnection: close\r\n\r\n")
        .await;
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn minimum_size() {
    let s = server().await;
    let res = s.get_with("/small", &[("accept-encoding", "gzip")]).await;
    assert_eq!(res.header("content-encoding"), None);
    assert_eq!(res.header("vary"), Some("accept-encoding"));
    assert_eq!(res.header("content-length"), Some("14"));
    assert_eq!(
        s.get_with("/just-under", &[("accept-encoding", "gzip")])
            .await
            .header("content-encoding"),
        None
    );
    let res = s.get_with("/exact", &[("accept-encoding", "gzip")]).await;
    assert_eq!(res.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&res.body), "x".repeat(1024).as_bytes());
}

#[tokio::test]
async fn unknown_length_bodies_are_held_back_to_decide() {
    let s = server().await;
    let res = s
        .get_with("/stream-small", &[("accept-encoding", "gzip")])
        .await;
    assert_eq!(res.header("content-encoding"), None);
    assert_eq!(res.text(), "{\"a\":1}\n");
    // The whole body was seen, so its length is known.
    assert_eq!(res.header("content-length"), Some("8"));
    let res = s
        .get_with("/stream-large", &[("accept-encoding", "gzip")])
        .await;
    assert_eq!(res.header("content-encoding"), Some("gzip"));
    let text = String::from_utf8(gunzip(&res.body)).unwrap();
    assert_eq!(text.lines().count(), 100);
}

#[tokio::test]
async fn content_type_rules() {
    let s = server().await;
    for (path, compressed) in [
        ("/png", false),
        ("/woff2", false),
        ("/no-type", false),
        ("/grpc", false),
        ("/svg", true),
        ("/json", true),
    ] {
        let res = s.get_with(path, &[("accept-encoding", "gzip")]).await;
        assert_eq!(
            res.header("content-encoding").is_some(),
            compressed,
            "{path}"
        );
        // Types we never compress don't depend on Accept-Encoding.
        assert_eq!(res.header("vary").is_some(), compressed, "{path}");
    }
    let grpc = TestServer::serve(app(CompressionLayer::new().compress_grpc(true))).await;
    assert_eq!(
        grpc.get_with("/grpc", &[("accept-encoding", "gzip")])
            .await
            .header("content-encoding"),
        Some("gzip")
    );
    let custom = TestServer::serve(app(
        CompressionLayer::new().content_type_filter(|t| t == "image/png")
    ))
    .await;
    assert_eq!(
        custom
            .get_with("/png", &[("accept-encoding", "gzip")])
            .await
            .header("content-encoding"),
        Some("gzip")
    );
    assert_eq!(
        custom
            .get_with("/json", &[("accept-encoding", "gzip")])
            .await
            .header("content-encoding"),
        None
    );
}

#[tokio::test]
async fn never_recompress_ranges_no_transform_or_bodyless() {
    let s = server().await;
    let ae = [("accept-encoding", "gzip")];
    let res = s.get_with("/already", &ae).await;
    assert_eq!(res.header_all("content-encoding"), ["br"]);
    assert_eq!(res.header("vary"), None);
    let res = s.get_with("/no-transform", &ae).await;
    assert_eq!(res.header("content-encoding"), None);
    assert_eq!(res.body.len(), 4096);
    let res = s.get_with("/partial", &ae).await;
    assert_eq!(res.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.header("content-encoding"), None);
    assert_eq!(
        res.header("vary"),
        Some("accept-encoding"),
        "206 carries the Vary of the 200"
    );
    let res = s.get_with("/no-content", &ae).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(res.header("content-encoding"), None);
}

#[tokio::test]
async fn accept_ranges_dropped_only_when_compressing() {
    let s = server().await;
    let res = s.get_with("/ranged", &[("accept-encoding", "gzip")]).await;
    assert_eq!(res.header("content-encoding"), Some("gzip"));
    assert_eq!(res.header("accept-ranges"), None);
    assert_eq!(
        s.get("/ranged").await.header("accept-ranges"),
        Some("bytes")
    );
}

#[tokio::test]
async fn head_gets_the_headers_of_get() {
    let s = server().await;
    for ae in ["gzip", "identity"] {
        let get = s.get_with("/json", &[("accept-encoding", ae)]).await;
        let req = s
            .request(Method::HEAD, "/json")
            .header("accept-encoding", ae)
            .body(Full::default())
            .unwrap();
        let head = s.send(req).await;
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.body.is_empty());
        for h in ["content-encoding", "vary", "content-type"] {
            assert_eq!(head.header(h), get.header(h), "{ae}: {h}");
        }
        // The HEAD's body is the GET's (axum drops it after the layers), so
        // the layer compresses it as for GET to send the same length
        // (tests/compression_head.rs covers every kind of body).
        assert!(get.header("content-length").is_some(), "{ae}");
        assert_eq!(
            head.header("content-length"),
            get.header("content-length"),
            "{ae}"
        );
    }
}

#[tokio::test]
async fn vary_is_merged_never_duplicated() {
    let s = server().await;
    let ae = [("accept-encoding", "gzip")];
    assert_eq!(
        s.get_with("/vary-origin", &ae).await.header_all("vary"),
        ["Origin, accept-encoding"]
    );
    assert_eq!(
        s.get_with("/vary-ae", &ae).await.header_all("vary"),
        ["Accept-Encoding"]
    );
    assert_eq!(
        s.get_with("/vary-star", &ae).await.header_all("vary"),
        ["*"]
    );
    // Identity responses of compressible types vary too.
    assert_eq!(
        s.get("/vary-origin").await.header_all("vary"),
        ["Origin, accept-encoding"]
    );
}

#[tokio::test]
async fn etags_are_distinct_per_coding_and_revalidate() {
    let s = server().await;
    let gz = s.get_with("/etag", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.header("etag"), Some("\"abc-gzip\""));
    let df = s.get_with("/etag", &[("accept-encoding", "deflate")]).await;
    assert_eq!(df.header("etag"), Some("\"abc-deflate\""));
    let id = s.get("/etag").await;
    assert_eq!(id.header("etag"), Some("\"abc\""));

    // Revalidating with the tag received gets a 304 that carries it and Vary.
    let res = s
        .get_with(
            "/etag",
            &[
                ("accept-encoding", "gzip"),
                ("if-none-match", "\"abc-gzip\""),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED);
    assert_eq!(res.header("etag"), Some("\"abc-gzip\""));
    assert_eq!(res.header("vary"), Some("accept-encoding"));
    assert!(res.body.is_empty());
    let res = s.get("/etag").await;
    assert_eq!(res.status, StatusCode::OK);
    let res = s.get_with("/etag", &[("if-none-match", "\"abc\"")]).await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED);
    assert_eq!(res.header("etag"), Some("\"abc\""));
    assert_eq!(res.header("vary"), Some("accept-encoding"));
    // A gzip tag presented for a deflate response doesn't match.
    let res = s
        .get_with(
            "/etag",
            &[
                ("accept-encoding", "deflate"),
                ("if-none-match", "\"abc-gzip\""),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("etag"), Some("\"abc-deflate\""));
    // If-Match with the suffixed strong tag passes the handler's strong check.
    let req = s
        .request(Method::PUT, "/etag")
        .header("accept-encoding", "gzip")
        .header("if-match", "\"abc-gzip\"")
        .body(Full::default())
        .unwrap();
    assert_eq!(s.send(req).await.status, StatusCode::OK);
    // Weak tags are left alone.
    assert_eq!(
        s.get_with("/weak", &[("accept-encoding", "gzip")])
            .await
            .header("etag"),
        Some("W/\"weak1\"")
    );
}

/// A decoder fed chunk by chunk, to see what a client can read so far.
struct PartialGunzip(flate2::write::GzDecoder<Vec<u8>>);

impl PartialGunzip {
    fn feed(&mut self, chunk: &[u8]) -> &[u8] {
        self.0.write_all(chunk).unwrap();
        self.0.flush().unwrap();
        self.0.get_ref()
    }
}

#[tokio::test]
async fn streams_reach_the_client_before_they_end() {
    let (tx, body) = channel_body();
    let body = std::sync::Arc::new(std::sync::Mutex::new(Some(body)));
    let handler = service_fn(move |_req: Request<hyper::body::Incoming>| {
        let body = body.lock().unwrap().take().unwrap_or_else(Body::empty);
        async move { Ok::<_, Infallible>(ok("application/x-ndjson", body)) }
    });
    let svc = ServiceBuilder::new()
        .layer(CompressionLayer::new())
        .service(handler);
    let s = TestServer::serve(svc).await;
    let req = s
        .request(Method::GET, "/")
        .header("accept-encoding", "gzip")
        .body(Full::default())
        .unwrap();
    let (first, rest) = ("{\"event\":1}\n", "{\"event\":2}\n");
    tx.send(Ok(Bytes::from(first))).await.unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), s.send_streaming(req))
        .await
        .expect("headers sent while the stream is open");
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let mut body = res.into_body();
    let mut dec = PartialGunzip(flate2::write::GzDecoder::new(Vec::new()));
    // The first line arrives, decodable, while the handler still holds the stream open.
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("first line flushed")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            if dec.feed(&data) == first.as_bytes() {
                break;
            }
        }
    }
    tx.send(Ok(Bytes::from(rest))).await.unwrap();
    drop(tx);
    let mut all = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            all.extend_from_slice(&data);
        }
    }
    dec.feed(&all);
    let done = dec
        .0
        .finish()
        .expect("a complete gzip stream with its trailer");
    assert_eq!(done, format!("{first}{rest}").as_bytes());
}

#[tokio::test]
async fn stats_count_what_happened() {
    let layer = CompressionLayer::new();
    let stats = layer.stats();
    let s = TestServer::serve(app(layer)).await;
    let plain = s.get("/json").await;
    let gz = s.get_with("/json", &[("accept-encoding", "gzip")]).await;
    let df = s.get_with("/json", &[("accept-encoding", "deflate")]).await;
    s.get_with("/small", &[("accept-encoding", "gzip")]).await;
    s.get_with("/png", &[("accept-encoding", "gzip")]).await;
    s.get_with("/already", &[("accept-encoding", "gzip")]).await;
    let snap = stats.snapshot();
    assert_eq!(snap.gzip.responses, 1);
    assert_eq!(snap.deflate.responses, 1);
    assert_eq!(snap.gzip.bytes_in, plain.body.len() as u64);
    assert_eq!(snap.gzip.bytes_out, gz.body.len() as u64);
    assert_eq!(snap.deflate.bytes_out, df.body.len() as u64);
    assert_eq!(snap.skipped(SkipReason::NotAccepted), 1);
    assert_eq!(snap.skipped(SkipReason::TooSmall), 1);
    assert_eq!(snap.skipped(SkipReason::ContentType), 1);
    assert_eq!(snap.skipped(SkipReason::AlreadyEncoded), 1);
    assert_eq!(snap.compressed(), 2);
    assert!(snap.bytes_saved() > 0);
    assert!(snap.gzip.ratio().unwrap() < 0.3);
}

// ---- without a server: trailers, executor budget, errors ----

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn frames_body(
    frames: Vec<Result<Frame<Bytes>, BoxError>>,
) -> StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, BoxError>>>> {
    StreamBody::new(futures_util::stream::iter(frames))
}

#[tokio::test]
async fn trailers_are_kept() {
    let svc = ServiceBuilder::new()
        .layer(CompressionLayer::new())
        .service(service_fn(|_req: Request<Full<Bytes>>| async {
            let mut trailers = HeaderMap::new();
            trailers.insert("x-checksum", HeaderValue::from_static("42"));
            let body = frames_body(vec![
                Ok(Frame::data(Bytes::from(json_body(4096)))),
                Ok(Frame::trailers(trailers)),
            ]);
            Ok::<_, Infallible>(
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .unwrap(),
            )
        }));
    let req = Request::get("/")
        .header("accept-encoding", "gzip")
        .body(Full::default())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let collected = res.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-checksum"], "42");
    assert_eq!(gunzip(&collected.to_bytes()), json_body(4096).as_bytes());
}

/// Polls a body by hand and counts frames and the pauses it asks for.
struct Polled {
    frames: usize,
    yields: usize,
    data: Vec<u8>,
}

async fn poll_all<B: http_body::Body<Data = Bytes> + Unpin>(mut body: B) -> Polled
where
    B::Error: std::fmt::Debug,
{
    let mut p = Polled {
        frames: 0,
        yields: 0,
        data: Vec::new(),
    };
    std::future::poll_fn(|cx: &mut Context<'_>| {
        loop {
            match Pin::new(&mut body).poll_frame(cx) {
                Poll::Ready(Some(frame)) => {
                    p.frames += 1;
                    if let Ok(d) = frame.unwrap().into_data() {
                        p.data.extend_from_slice(&d);
                    }
                }
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => {
                    p.yields += 1;
                    return Poll::Pending;
                }
            }
        }
    })
    .await;
    p
}

#[tokio::test]
async fn a_10_mb_chunk_is_compressed_in_bounded_steps() {
    let big = Bytes::from(json_body(10 * 1024 * 1024));
    let big2 = big.clone();
    let svc = ServiceBuilder::new()
        .layer(CompressionLayer::new())
        .service(service_fn(move |_req: Request<Full<Bytes>>| {
            let big = big2.clone();
            async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Full::new(big))
                        .unwrap(),
                )
            }
        }));
    let req = Request::get("/")
        .header("accept-encoding", "gzip")
        .body(Full::default())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let body = res.into_body();
    assert_eq!(body.size_hint().exact(), None);
    let polled = poll_all(body).await;
    // 10 MiB in 32 KiB steps: one frame or one yield per step at least.
    assert!(
        polled.frames + polled.yields >= 10 * 1024 / 32,
        "{} frames, {} yields",
        polled.frames,
        polled.yields
    );
    assert_eq!(gunzip(&polled.data), big);
}

#[tokio::test]
async fn an_inner_error_midway_is_not_a_complete_gzip() {
    let svc = ServiceBuilder::new()
        .layer(CompressionLayer::new())
        .service(service_fn(|_req: Request<Full<Bytes>>| async {
            let body = frames_body(vec![
                Ok(Frame::data(Bytes::from(json_body(4096)))),
                Err("backend went away".into()),
            ]);
            Ok::<_, Infallible>(
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .unwrap(),
            )
        }));
    let req = Request::get("/")
        .header("accept-encoding", "gzip")
        .body(Full::default())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let err = res.into_body().collect().await.unwrap_err();
    assert!(err.to_string().contains("backend went away"));
}

#[test]
fn services_futures_and_bodies_are_send_and_sync() {
    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}
    assert_send::<tower_perf::compression::ResponseBody<Full<Bytes>>>();
    assert_sync::<tower_perf::compression::ResponseBody<Full<Bytes>>>();
    assert_send::<
        tower_perf::compression::Compression<
            tower::util::BoxCloneService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>,
        >,
    >();
    assert_send::<
        tower_perf::compression::ResponseFuture<
            std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
            Full<Bytes>,
        >,
    >();
    assert_sync::<CompressionLayer>();
}

#[tokio::test]
async fn works_behind_route_layer() {
    let app = Router::new()
        .route("/a", get(|| async { ok("text/plain", "a".repeat(4096)) }))
        .route_layer(CompressionLayer::new())
        .route("/b", put(|| async { ok("text/plain", "b".repeat(4096)) }));
    let s = TestServer::serve(app).await;
    assert_eq!(
        s.get_with("/a", &[("accept-encoding", "gzip")])
            .await
            .header("content-encoding"),
        Some("gzip")
    );
    let req = s
        .request(Method::PUT, "/b")
        .header("accept-encoding", "gzip")
        .body(Full::default())
        .unwrap();
    assert_eq!(s.send(req).await.header("content-encoding"), None);
}
