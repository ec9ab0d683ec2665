//! HEAD gets exactly the header fields GET would (RFC 9110 §9.3.2) from
//! CompressionLayer, alone and under CacheControlLayer's ETags as the
//! example server stacks them (`Router::layer`), over real HTTP, empty
//! bodies included; with `oneshot`, what a HEAD whose body the inner
//! service already dropped gets; and the one documented exception, a
//! streamed body's HEAD under layers that wrap the whole router.
// Cargo.toml requires `compression`; the tests under CacheControlLayer also
// need `cache-control`.

mod support;

use std::convert::Infallible;
#[cfg(feature = "cache-control")]
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use axum::routing::get;
use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use support::{TestResponse, TestServer};
use tower::{ServiceBuilder, ServiceExt, service_fn};
#[cfg(feature = "cache-control")]
use tower_perf::cache_control::{CacheControlLayer, Policy};
use tower_perf::compression::CompressionLayer;

fn json_body(n: usize) -> String {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!("{{\"id\":{i},\"name\":\"item {i}\"}},"));
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

fn stream_of(chunks: Vec<String>) -> Body {
    let chunks = chunks
        .into_iter()
        .map(|c| Ok::<_, Infallible>(Bytes::from(c)));
    Body::from_stream(futures_util::stream::iter(chunks))
}

/// Each route, and what a GET with `Accept-Encoding: gzip` gets from the
/// compression layer: (path, compressed, Content-Length sent).
const ROUTES: [(&str, bool, bool); 8] = [
    // Below the 1 KiB threshold: identity, as axum sends it (no header).
    ("/small", false, true),
    // Below the threshold, the handler says how long it is.
    ("/small-cl", false, true),
    // Compressed whole: the exact compressed length.
    ("/large", true, true),
    // Streamed through the encoder: no length.
    ("/huge", true, false),
    // Already compressed content type.
    ("/png", false, true),
    // Unknown length, past the threshold.
    ("/stream", true, false),
    // Unknown length, ends below the threshold: held back, then its length.
    ("/stream-small", false, true),
    // Unknown length, pauses before the threshold (a live stream).
    ("/stream-live", true, false),
];

fn routes() -> Router {
    let large = json_body(8 * 1024);
    let huge = json_body(100 * 1024);
    Router::new()
        .route("/small", get(|| async { ok("text/plain", "ok") }))
        .route(
            "/small-cl",
            get(|| async {
                let mut r = ok("application/json", "{\"small\":true}");
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from_static("14"));
                r
            }),
        )
        .route(
            "/large",
            get(move || async move { ok("application/json", large) }),
        )
        .route(
            "/huge",
            get(move || async move { ok("application/json", huge) }),
        )
        .route("/png", get(|| async { ok("image/png", vec![7u8; 4096]) }))
        .route(
            "/stream",
            get(|| async {
                let lines =
                    (0..100).map(|i| format!("{{\"line\":{i},\"pad\":\"{}\"}}\n", "p".repeat(40)));
                ok("application/x-ndjson", stream_of(lines.collect()))
            }),
        )
        .route(
            "/stream-small",
            get(|| async {
                let parts = ["{\"a\":", "1}", "\n"].map(String::from);
                ok("application/json", stream_of(parts.to_vec()))
            }),
        )
        .route(
            "/stream-live",
            get(|| async {
                let stream = futures_util::stream::unfold(0u32, |i| async move {
                    if i == 3 {
                        return None;
                    }
                    if i > 0 {
                        // A pause the layer sees as Pending (yield_now
                        // returns Pending once, then wakes): a live stream.
                        tokio::task::yield_now().await;
                    }
                    Some((
                        Ok::<_, Infallible>(Bytes::from(format!("event {i}\n"))),
                        i + 1,
                    ))
                });
                ok("text/plain", Body::from_stream(stream))
            }),
        )
}

/// The header fields of a response but Date (a clock reading) and
/// Transfer-Encoding (hyper frames a GET of unknown length as chunked and
/// sends no framing for a HEAD: RFC 9112 §6.1 lets a server leave it out).
fn fields(res: &TestResponse) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = res
        .headers
        .iter()
        .filter(|(n, _)| *n != header::DATE && *n != header::TRANSFER_ENCODING)
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    out.sort();
    out
}

/// GETs and HEADs every route with each Accept-Encoding and checks that
/// they carry the same fields; returns the GETs with `gzip`.
async fn assert_head_matches_get(s: &TestServer) -> Vec<TestResponse> {
    let mut gzip_gets = Vec::new();
    for ae in ["gzip", "deflate, gzip;q=0.5", "identity"] {
        for (path, _, _) in ROUTES {
            let (get, head) = get_and_head(s, path, ae).await;
            assert_eq!(get.status, StatusCode::OK, "{path} {ae}");
            assert_eq!(head.status, StatusCode::OK, "{path} {ae}");
            assert!(head.body.is_empty(), "{path} {ae}");
            assert_eq!(fields(&head), fields(&get), "{path}, Accept-Encoding: {ae}");
            if ae == "gzip" {
                gzip_gets.push(get);
            }
        }
    }
    // The routes cover what they are meant to: each GET took its branch.
    for ((path, compressed, has_length), get) in ROUTES.iter().zip(&gzip_gets) {
        let coding = get.header("content-encoding");
        assert_eq!(coding.is_some(), *compressed, "{path}: {coding:?}");
        let length = get.header("content-length");
        assert_eq!(length.is_some(), *has_length, "{path}: {length:?}");
        if let Some(len) = length {
            assert_eq!(len, get.body.len().to_string(), "{path}");
        }
        if *path != "/png" {
            assert_eq!(get.header("vary"), Some("accept-encoding"), "{path}");
        }
    }
    gzip_gets
}

#[tokio::test]
async fn head_gets_the_fields_of_get_from_the_compression_layer() {
    let s = TestServer::serve(routes().layer(CompressionLayer::new())).await;
    assert_head_matches_get(&s).await;
}

/// As the example server stacks them (README): compression outside
/// cache-control, whose ETags hash the bodies of known length.
#[cfg(feature = "cache-control")]
#[tokio::test]
async fn head_gets_the_fields_of_get_under_cache_control_etags() {
    let layers = ServiceBuilder::new()
        .layer(CompressionLayer::new())
        .layer(CacheControlLayer::new().route("/**", Policy::api(Duration::from_secs(300))));
    let s = TestServer::serve(routes().layer(layers)).await;
    let gets = assert_head_matches_get(&s).await;
    // The ETags are there to compare, with the coding suffix exactly when
    // the GET is compressed.
    for ((path, compressed, _), get) in ROUTES.iter().zip(&gets) {
        if path.starts_with("/stream") {
            continue;
        }
        let etag = get
            .header("etag")
            .unwrap_or_else(|| panic!("{path}: no ETag"));
        assert_eq!(etag.ends_with("-gzip\""), *compressed, "{path}: {etag}");
    }
}

/// How the inner service answers a HEAD without its body.
#[derive(Debug, Clone, Copy)]
enum Dropped {
    /// An empty body that says so (`Empty`, as axum's router and hyper's
    /// client give).
    Empty,
    /// A body of unknown length that ends without data.
    EndedStream,
    /// A few bytes that aren't the GET's body (they disagree with
    /// Content-Length).
    Other,
}

/// A HEAD whose inner service sent no body (as a server may: RFC 9110
/// §9.3.2) is judged by its Content-Length; it never gets a length it
/// can't know.
#[tokio::test]
async fn head_with_a_dropped_body_is_judged_by_its_content_length() {
    async fn call(length: Option<usize>, method: Method, dropped: Dropped) -> HeaderMap {
        let svc = service_fn(move |req: Request<Full<Bytes>>| async move {
            let body = match (req.method() == Method::HEAD, dropped) {
                (true, Dropped::Empty) => Empty::new().map_err(|e| match e {}).boxed(),
                (true, Dropped::EndedStream) => {
                    let none =
                        futures_util::stream::iter(Vec::<Result<Frame<Bytes>, Infallible>>::new());
                    StreamBody::new(none).boxed()
                }
                (true, Dropped::Other) => Full::new(Bytes::from_static(b"head"))
                    .map_err(|e| match e {})
                    .boxed(),
                (false, _) => Full::new(Bytes::from(json_body(length.unwrap_or(8192))))
                    .map_err(|e| match e {})
                    .boxed(),
            };
            let mut res = Response::new(body);
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
            if let Some(n) = length {
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            Ok::<_, Infallible>(res)
        });
        let req = Request::builder()
            .method(&method)
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Full::default())
            .unwrap();
        let res = ServiceBuilder::new()
            .layer(CompressionLayer::new())
            .service(svc)
            .oneshot(req)
            .await
            .unwrap();
        let (parts, body) = res.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        if method == Method::HEAD {
            assert!(body.is_empty(), "{dropped:?} {length:?}");
        }
        parts.headers
    }
    fn field(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
        h.get(name).and_then(|v| v.to_str().ok())
    }

    for dropped in [Dropped::Empty, Dropped::EndedStream] {
        // Small by its Content-Length: identity, as GET.
        let head = call(Some(100), Method::HEAD, dropped).await;
        assert_eq!(
            head,
            call(Some(100), Method::GET, dropped).await,
            "{dropped:?}"
        );
        assert_eq!(field(&head, header::CONTENT_LENGTH), Some("100"));

        // Large by its Content-Length: compressed, as GET, without the
        // compressed length only compressing tells (a HEAD may leave
        // Content-Length out, never send the identity length with gzip).
        let head = call(Some(8192), Method::HEAD, dropped).await;
        let get = call(Some(8192), Method::GET, dropped).await;
        for name in [header::CONTENT_ENCODING, header::ETAG, header::VARY] {
            assert_eq!(field(&head, name.clone()), field(&get, name), "{dropped:?}");
        }
        assert_eq!(field(&head, header::CONTENT_ENCODING), Some("gzip"));
        assert_eq!(field(&head, header::ETAG), Some("\"v1-gzip\""));
        assert_eq!(field(&head, header::CONTENT_LENGTH), None);
    }

    // No length at all, and a body of unknown length that ends without
    // data: the size is unknown, decided as for a GET stream that reaches
    // the threshold: compressed, no length (never `Content-Length: 0`).
    let head = call(None, Method::HEAD, Dropped::EndedStream).await;
    assert_eq!(field(&head, header::CONTENT_ENCODING), Some("gzip"));
    assert_eq!(field(&head, header::ETAG), Some("\"v1-gzip\""));
    assert_eq!(field(&head, header::VARY), Some("accept-encoding"));
    assert_eq!(field(&head, header::CONTENT_LENGTH), None);

    // No length, and a body that says it is exactly empty: taken for an
    // empty body (as the same GET's would be, and as it is behind axum's
    // `Router::layer`), never compressed: only an inner service that drops
    // a HEAD body of unknown length this way gets fields its GET lacks.
    let head = call(None, Method::HEAD, Dropped::Empty).await;
    assert_eq!(field(&head, header::CONTENT_ENCODING), None);
    assert_eq!(field(&head, header::ETAG), Some("\"v1\""));
    assert_eq!(field(&head, header::VARY), Some("accept-encoding"));

    // A HEAD body that disagrees with Content-Length isn't the GET's: it
    // is not compressed to make up a length.
    let head = call(Some(8192), Method::HEAD, Dropped::Other).await;
    assert_eq!(field(&head, header::CONTENT_ENCODING), Some("gzip"));
    assert_eq!(field(&head, header::CONTENT_LENGTH), None);
}

/// Layers around the whole router see a HEAD's body after axum dropped it
/// (`Body::empty()`, with Content-Length only when the length was known),
/// so the HEAD lacks what only the body could tell (the documented
/// exception; `Router::layer` has none): the ETag hashed from it, the
/// Content-Length of a body compressed whole or of a short stream held
/// back, and, for a stream of unknown length (whose dropped body can't be
/// told from an empty one), the coding. It never gets a field its GET
/// lacks, and no ETag is hashed from the dropped body.
#[cfg(feature = "cache-control")]
#[tokio::test]
async fn head_whose_body_the_router_dropped_lacks_only_what_the_body_told() {
    let layers = ServiceBuilder::new()
        .map_request(|req: Request<hyper::body::Incoming>| req.map(Body::new))
        .layer(CompressionLayer::new())
        .layer(CacheControlLayer::new().route("/**", Policy::api(Duration::from_secs(300))));
    let s = TestServer::serve(layers.service(routes())).await;
    for (path, _, _) in ROUTES {
        let (get, head) = get_and_head(&s, path, "gzip").await;
        let (g, h) = (fields(&get), fields(&head));
        let get_only: Vec<&str> = g
            .iter()
            .filter(|f| !h.contains(f))
            .map(|(n, _)| n.as_str())
            .collect();
        let expected: &[&str] = match path {
            "/small" | "/small-cl" | "/huge" | "/png" => &["etag"],
            "/large" => &["content-length", "etag"],
            "/stream-small" => &["content-length"],
            "/stream" | "/stream-live" => &["content-encoding"],
            _ => unreachable!("{path}"),
        };
        assert_eq!(get_only, expected, "{path}");
        assert!(h.iter().all(|f| g.contains(f)), "{path}: {h:?} vs {g:?}");
    }
}

/// Empty bodies get no ETag, on GET or HEAD, whether or not they say
/// `Content-Length: 0` (an ETag of nothing buys nothing: a 304 saves no
/// bytes), and are never compressed.
#[cfg(feature = "cache-control")]
#[tokio::test]
async fn an_empty_body_gets_no_etag_on_get_or_head() {
    let app = Router::new()
        .route(
            "/empty",
            get(|| async {
                let mut r = ok("text/plain", "");
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                r
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(CompressionLayer::new())
                .layer(CacheControlLayer::new()),
        );
    let s = TestServer::serve(app).await;
    let get = s.get_with("/empty", &[("accept-encoding", "gzip")]).await;
    let req = s
        .request(Method::HEAD, "/empty")
        .header("accept-encoding", "gzip")
        .body(Full::default())
        .unwrap();
    let head = s.send(req).await;
    assert_eq!(get.header("etag"), None);
    assert_eq!(get.header("content-encoding"), None);
    assert_eq!(fields(&head), fields(&get));
}

/// The common empty answers of axum handlers (`""`, `()`, a bare status),
/// behind `Router::layer` with both layers as the example server stacks
/// them: HEAD gets exactly GET's header fields (neither an ETag nor a
/// coding that only one of them would get).
#[cfg(feature = "cache-control")]
#[tokio::test]
async fn empty_axum_answers_get_the_same_fields_on_head() {
    use axum::response::IntoResponse;
    let app = Router::new()
        .route("/str", get(|| async { "" }))
        .route("/unit", get(|| async {}))
        .route("/ok", get(|| async { StatusCode::OK }))
        .route("/no-content", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], "").into_response() }),
        )
        .layer(
            ServiceBuilder::new().layer(CompressionLayer::new()).layer(
                CacheControlLayer::new().route("/**", Policy::api(Duration::from_secs(300))),
            ),
        );
    let s = TestServer::serve(app).await;
    for path in ["/str", "/unit", "/ok", "/no-content", "/json"] {
        for ae in ["gzip", "identity"] {
            let (get, head) = get_and_head(&s, path, ae).await;
            assert!(get.body.is_empty(), "{path}");
            assert!(head.body.is_empty(), "{path}");
            assert_eq!(head.status, get.status, "{path}");
            assert_eq!(get.header("etag"), None, "{path} {ae}");
            assert_eq!(get.header("content-encoding"), None, "{path} {ae}");
            assert_eq!(
                fields_but_204_length(&head),
                fields_but_204_length(&get),
                "{path}, Accept-Encoding: {ae}"
            );
        }
    }
    // The one field the 204 differs in is hyper's, not the layers': axum
    // writes `Content-Length: 0` on every empty answer, and hyper leaves it
    // out of a GET's 204 (there is no body to frame) but not a HEAD's. A
    // router without the layers differs the same way.
    let bare = TestServer::serve(
        Router::new().route("/no-content", get(|| async { StatusCode::NO_CONTENT })),
    )
    .await;
    let (get, head) = get_and_head(&bare, "/no-content", "gzip").await;
    assert_eq!(get.header("content-length"), None);
    assert_eq!(head.header("content-length"), Some("0"));
}

/// A GET and a HEAD of `path`, each with `Accept-Encoding: ae`.
async fn get_and_head(s: &TestServer, path: &str, ae: &str) -> (TestResponse, TestResponse) {
    let get = s.get_with(path, &[("accept-encoding", ae)]).await;
    let req = s
        .request(Method::HEAD, path)
        .header("accept-encoding", ae)
        .body(Full::default())
        .unwrap();
    (get, s.send(req).await)
}

/// [`fields`] but a 204's `Content-Length: 0` (see its caller).
#[cfg(feature = "cache-control")]
fn fields_but_204_length(res: &TestResponse) -> Vec<(String, String)> {
    let mut f = fields(res);
    if res.status == StatusCode::NO_CONTENT {
        f.retain(|(n, v)| !(n == "content-length" && v == "0"));
    }
    f
}

/// An empty body is never compressed, even with no minimum size: on GET
/// and on HEAD it goes out as it is (a coding would only add its framing).
#[tokio::test]
async fn an_empty_body_is_never_compressed() {
    for method in [Method::GET, Method::HEAD] {
        let svc = service_fn(|_req: Request<Full<Bytes>>| async {
            let mut res = Response::new(Full::new(Bytes::new()));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok::<_, Infallible>(res)
        });
        let req = Request::builder()
            .method(&method)
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Full::default())
            .unwrap();
        let res = ServiceBuilder::new()
            .layer(CompressionLayer::new().min_size(0))
            .service(svc)
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(
            res.headers().get(header::CONTENT_ENCODING),
            None,
            "{method}"
        );
        assert_eq!(res.headers()[header::VARY], "accept-encoding", "{method}");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty(), "{method}");
    }
}
