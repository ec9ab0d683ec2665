//! Ranges from the cache through `examples/proxy.rs` (issue 20, part 2;
//! RFC 9110 §14, RFC 9111 §3.3–3.4): single, suffix and open ranges
//! served from a stored response as 206, 416 with `bytes */len`,
//! `If-Range`, several ranges answered whole, 206 responses stored and
//! combined into the complete response, ranges of a stored compressed
//! variant. The origin answers ranges itself and counts its calls.

mod support;

#[allow(dead_code)]
#[path = "../examples/proxy.rs"]
mod proxy;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Response, StatusCode};
use axum::routing::get;
use support::{TestResponse, TestServer};
use tower_perf::headers::{ByteRanges, ContentRange};

/// The representation: 100 bytes, `a` to `z` over and over.
fn content() -> Vec<u8> {
    (0..100u8).map(|i| b'a' + i % 26).collect()
}

const ETAG: &str = "\"v1\"";

/// The origin: `content()` with a strong `ETag` and `max-age=60`,
/// ranged as RFC 9110 asks when the request has a `Range` (and its
/// `If-Range` matches); `extra` adds fields. Also answers `/gzip` with a
/// body it says is gzip (the cache never decodes it).
async fn start(extra: &'static [(&'static str, &'static str)]) -> (TestServer, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = Router::new().route(
        "/{*path}",
        get(move |headers: HeaderMap| {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let mut res = answer(&headers, extra);
                res.headers_mut().insert("x-call", n.into());
                res
            }
        }),
    );
    let origin = TestServer::serve(app).await;
    let origin_uri = format!("http://{}", origin.addr()).parse().unwrap();
    let proxy = TestServer::serve(proxy::proxy(origin_uri, proxy::proxy_cache())).await;
    // The origin server lives as long as the test's runtime.
    std::mem::forget(origin);
    (proxy, calls)
}

fn answer(headers: &HeaderMap, extra: &[(&str, &str)]) -> Response<Body> {
    let body = content();
    let mut res = Response::builder().header("etag", ETAG).header(
        "x-saw-range",
        if headers.contains_key("range") {
            "yes"
        } else {
            "no"
        },
    );
    if !extra.iter().any(|(n, _)| *n == "cache-control") {
        res = res.header("cache-control", "max-age=60");
    }
    for (n, v) in extra {
        res = res.header(*n, *v);
    }
    let if_range_ok = headers.get("if-range").is_none_or(|v| {
        v.as_bytes() == ETAG.as_bytes()
            || extra
                .iter()
                .any(|(n, lm)| *n == "last-modified" && v.as_bytes() == lm.as_bytes())
    });
    let range = ByteRanges::from_headers(headers)
        .and_then(Result::ok)
        .filter(|r| !r.is_several() && if_range_ok);
    let Some(range) = range else {
        return res.body(Body::from(body)).unwrap();
    };
    match range.first().resolve(body.len() as u64) {
        Some(r) => {
            let cr = ContentRange::Bytes {
                first: *r.start(),
                last: *r.end(),
                complete: Some(100),
            };
            res.status(StatusCode::PARTIAL_CONTENT)
                .header("content-range", cr.to_header_value())
                .body(Body::from(
                    body[*r.start() as usize..=*r.end() as usize].to_vec(),
                ))
                .unwrap()
        }
        None => res
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header("content-range", "bytes */100")
            .body(Body::empty())
            .unwrap(),
    }
}

fn header<'a>(r: &'a TestResponse, name: &str) -> &'a str {
    r.headers.get(name).map_or("", |v| v.to_str().unwrap_or(""))
}

/// `HEAD path`, with `range` if given.
async fn head(proxy: &TestServer, path: &str, range: Option<&str>) -> TestResponse {
    let mut req = proxy.request(http::Method::HEAD, path);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    proxy.send(req.body(Default::default()).unwrap()).await
}

fn cache_status(r: &TestResponse) -> &str {
    header(r, "cache-status")
}

/// A stored 200 answers single ranges in every form, and 416 past the
/// end, without asking the origin again.
#[tokio::test]
async fn a_stored_response_answers_single_ranges() {
    let (proxy, calls) = start(&[]).await;
    let whole = proxy.get("/r").await;
    assert_eq!(whole.status, StatusCode::OK);
    let all = content();
    for (range, first, last) in [
        ("bytes=0-9", 0, 9),
        ("bytes=90-", 90, 99),
        ("bytes=-5", 95, 99),
        ("bytes=-500", 0, 99),
        ("bytes=50-1000", 50, 99),
        ("BYTES=007-007", 7, 7),
    ] {
        let r = proxy.get_with("/r", &[("range", range)]).await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header(&r, "content-range"),
            format!("bytes {first}-{last}/100"),
            "{range}"
        );
        assert_eq!(&r.body[..], &all[first..=last], "{range}");
        assert_eq!(header(&r, "content-length"), (last - first + 1).to_string());
        assert!(cache_status(&r).contains("hit"), "{range}");
        assert_eq!(header(&r, "etag"), ETAG);
    }
    for range in ["bytes=100-", "bytes=-0"] {
        let r = proxy.get_with("/r", &[("range", range)]).await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(header(&r, "content-range"), "bytes */100");
        assert!(r.body.is_empty());
    }
    // HEAD ignores Range (RFC 9110 §14.2: GET only).
    let head = head(&proxy, "/r", Some("bytes=0-9")).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// `If-Range` with the stored strong `ETag` ranges; another tag, a weak
/// one or a date that is no strong validator gets the whole response.
/// Several ranges get the whole response too (this cache's choice: RFC
/// 9110 §14.2 lets a server ignore `Range`); a range of another unit
/// goes to the origin.
#[tokio::test]
async fn if_range_and_what_is_answered_whole() {
    let (proxy, calls) = start(&[]).await;
    proxy.get("/r").await;
    let ranged = proxy
        .get_with("/r", &[("range", "bytes=0-1"), ("if-range", ETAG)])
        .await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    for if_range in [
        "\"v0\"",
        "W/\"v1\"",
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "junk",
    ] {
        let r = proxy
            .get_with("/r", &[("range", "bytes=0-1"), ("if-range", if_range)])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{if_range}");
        assert_eq!(r.body.len(), 100);
        assert!(cache_status(&r).contains("hit"));
    }
    let several = proxy.get_with("/r", &[("range", "bytes=0-1, 5-6")]).await;
    assert_eq!(several.status, StatusCode::OK);
    assert_eq!(several.body.len(), 100);
    assert!(cache_status(&several).contains("hit"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let other_unit = proxy.get_with("/r", &[("range", "items=0-1")]).await;
    assert!(cache_status(&other_unit).contains("fwd=bypass"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A range the store can't answer goes to the origin as asked; the 206
/// is stored as a part, answers the ranges it holds, and combines with
/// the next part into the complete response (RFC 9111 §3.4), which then
/// answers a plain GET. A part never answers a request for the whole.
#[tokio::test]
async fn parts_are_stored_and_combined() {
    let (proxy, calls) = start(&[]).await;
    let all = content();
    let first = proxy.get_with("/p", &[("range", "bytes=0-49")]).await;
    assert_eq!(first.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&first.body[..], &all[..50]);
    assert!(cache_status(&first).contains("stored"), "{first:?}");
    let inside = proxy.get_with("/p", &[("range", "bytes=10-20")]).await;
    assert_eq!(inside.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&inside, "content-range"), "bytes 10-20/100");
    assert_eq!(&inside.body[..], &all[10..=20]);
    assert!(cache_status(&inside).contains("hit"), "{inside:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The rest: the two parts make the whole.
    let rest = proxy.get_with("/p", &[("range", "bytes=50-")]).await;
    assert_eq!(&rest.body[..], &all[50..]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let whole = proxy.get("/p").await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(&whole.body[..], &all[..]);
    assert!(cache_status(&whole).contains("hit"), "{whole:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // A part alone does not answer a plain GET, nor a range it lacks.
    proxy.get_with("/q", &[("range", "bytes=0-9")]).await;
    let plain = proxy.get("/q").await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.body.len(), 100);
    assert!(!cache_status(&plain).contains("hit"));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

/// What the origin answers to a forwarded range other than 200 or 206
/// (a 416 here, with `max-age`) is never stored: it answered one range.
#[tokio::test]
async fn an_origin_416_is_not_stored() {
    let (proxy, calls) = start(&[]).await;
    let r = proxy.get_with("/n", &[("range", "bytes=500-")]).await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let plain = proxy.get("/n").await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A 206 of the representation the store holds whole updates its fields
/// (RFC 9111 §3.4). A request with `Authorization` reaches the origin
/// (the cache does not answer it from the store) and its `public` 206 is
/// combined with the stored 200.
#[tokio::test]
async fn a_part_updates_the_stored_fields() {
    let (proxy, calls) = start(&[("cache-control", "public, max-age=60")]).await;
    proxy.get("/u").await;
    let auth = proxy
        .get_with(
            "/u",
            &[("range", "bytes=0-1"), ("authorization", "Bearer x")],
        )
        .await;
    assert_eq!(auth.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The stored 200 now has the 206's fields, the body it had.
    let hit = proxy.get("/u").await;
    assert_eq!(hit.status, StatusCode::OK);
    assert_eq!(&hit.body[..], &content()[..]);
    assert_eq!(header(&hit, "x-call"), "2");
    assert_eq!(header(&hit, "content-length"), "100");
    assert!(header(&hit, "content-range").is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A stored compressed variant is ranged as the bytes it holds, with its
/// `Content-Encoding`, and only for requests that accept that coding
/// (here without `Vary`, so only the coding check keeps it from them).
#[tokio::test]
async fn a_compressed_variant_is_ranged_as_stored() {
    let (proxy, calls) = start(&[("content-encoding", "gzip")]).await;
    proxy.get_with("/z", &[("accept-encoding", "gzip")]).await;
    let r = proxy
        .get_with("/z", &[("accept-encoding", "gzip"), ("range", "bytes=0-3")])
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-encoding"), "gzip");
    assert_eq!(header(&r, "content-range"), "bytes 0-3/100");
    assert_eq!(&r.body[..], &content()[..4], "the stored bytes");
    assert!(cache_status(&r).contains("hit"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let identity = proxy.get_with("/z", &[("range", "bytes=0-3")]).await;
    assert!(!cache_status(&identity).contains("hit"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// The client's `If-None-Match` is evaluated before `Range` (RFC 9110
/// §13.2.2): a match is a 304.
#[tokio::test]
async fn a_304_wins_over_a_range() {
    let (proxy, calls) = start(&[]).await;
    proxy.get("/c").await;
    let r = proxy
        .get_with("/c", &[("if-none-match", ETAG), ("range", "bytes=0-1")])
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A stale stored response is validated for the whole representation
/// (the origin sees no `Range`); what comes back answers the client.
#[tokio::test]
async fn validating_for_a_range_asks_for_the_whole() {
    let (proxy, calls) = start(&[("cache-control", "max-age=0")]).await;
    proxy.get("/s").await;
    let r = proxy.get_with("/s", &[("range", "bytes=0-1")]).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(header(&r, "x-saw-range"), "no");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), 100);
}

/// `If-Range` with the stored `Last-Modified` (a strong validator: the
/// response's `Date` is much later) ranges; another date does not.
#[tokio::test]
async fn if_range_by_date() {
    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    let (proxy, _) = start(&[("last-modified", LM)]).await;
    proxy.get("/d").await;
    let r = proxy
        .get_with("/d", &[("range", "bytes=0-1"), ("if-range", LM)])
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    let other = proxy
        .get_with(
            "/d",
            &[
                ("range", "bytes=0-1"),
                ("if-range", "Mon, 07 Nov 1994 08:49:37 GMT"),
            ],
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);
}

/// A part is not what a HEAD asks for, and a 206 the origin marks
/// `no-store` is not stored.
#[tokio::test]
async fn heads_and_parts_that_may_not_be_stored() {
    let (proxy, calls) = start(&[]).await;
    proxy.get_with("/h", &[("range", "bytes=0-9")]).await;
    let head = head(&proxy, "/h", None).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(cache_status(&head).contains("fwd=partial"), "{head:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let (proxy, calls) = start(&[("cache-control", "no-store")]).await;
    let first = proxy.get_with("/n", &[("range", "bytes=0-9")]).await;
    assert!(!cache_status(&first).contains("stored"));
    proxy.get_with("/n", &[("range", "bytes=0-9")]).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
