//! Which coding a request gets: Accept-Encoding with its weights, the
//! server's preference, nothing acceptable, malformed fields; the
//! statistics; the layer behind `route_layer`.

use axum::Router;
use axum::http::{Method, StatusCode};
use axum::routing::{get, put};
use http_body_util::Full;
use tower_perf::compression::{CompressionLayer, SkipReason};
use tower_perf::headers::ContentCoding;

#[cfg(all(feature = "compression-br", feature = "compression-zstd"))]
use crate::support::decode;
use crate::support::{self, TestServer, gunzip, inflate};
use crate::{app, gzip_deflate, ok, server};

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
    let s = TestServer::serve(app(gzip_deflate())).await;
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
    let s = TestServer::serve(app(gzip_deflate())).await;
    let res = s
        .get_with("/json", &[("accept-encoding", "br, identity;q=0")])
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-encoding"), None);
    let strict = TestServer::serve(app(gzip_deflate().reject_unacceptable(true))).await;
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

/// With brotli and zstd built in, the default preference among equal
/// weights is zstd, br, gzip, deflate; the client's weights come first,
/// and each coding's body decodes to the original.
#[cfg(all(feature = "compression-br", feature = "compression-zstd"))]
#[tokio::test]
async fn brotli_and_zstd_are_negotiated() {
    let s = server().await;
    let plain = s.get("/json").await;
    let cases = [
        ("gzip, deflate, br, zstd", "zstd"),
        ("*", "zstd"),
        ("gzip, br", "br"),
        ("br;q=0.5, gzip", "gzip"),
        ("zstd;q=0.1, br;q=0.2", "br"),
        ("BR", "br"),
        ("zstd", "zstd"),
    ];
    for (ae, expected) in cases {
        let res = s.get_with("/json", &[("accept-encoding", ae)]).await;
        assert_eq!(res.header("content-encoding"), Some(expected), "{ae}");
        assert_eq!(res.header("vary"), Some("accept-encoding"), "{ae}");
        let coding = ContentCoding::from_token(expected.as_bytes()).unwrap();
        assert_eq!(decode(coding, &res.body), plain.body, "{ae}");
    }
}

/// Behind the cache, each new coding is a variant of its own: a client is
/// served only a coding it accepts, from the cache once stored.
#[cfg(all(
    feature = "cache",
    feature = "compression-br",
    feature = "compression-zstd"
))]
#[tokio::test]
async fn the_cache_keeps_a_variant_per_new_coding() {
    use tower_perf::cache::CacheLayer;
    let cache = CacheLayer::new();
    let stats = cache.stats();
    let app = Router::new()
        .route(
            "/doc",
            get(|| async {
                let mut r = ok("application/json", crate::json_body(8 * 1024));
                r.headers_mut().insert(
                    axum::http::header::CACHE_CONTROL,
                    axum::http::HeaderValue::from_static("max-age=60"),
                );
                r
            }),
        )
        .layer(CompressionLayer::new())
        .layer(cache);
    let s = TestServer::serve(app).await;
    let plain = s.get_with("/doc", &[("accept-encoding", "identity")]).await;
    for round in 0..2 {
        for (ae, expected) in [
            ("br", "br"),
            ("gzip", "gzip"),
            ("zstd, br", "zstd"),
            ("br, gzip", "br"),
        ] {
            let res = s.get_with("/doc", &[("accept-encoding", ae)]).await;
            assert_eq!(
                res.header("content-encoding"),
                Some(expected),
                "round {round}: {ae}"
            );
            let coding = ContentCoding::from_token(expected.as_bytes()).unwrap();
            assert_eq!(decode(coding, &res.body), plain.body, "round {round}: {ae}");
        }
    }
    // identity, br, gzip, zstd fetched and stored once each; `br, gzip`
    // hit the br variant at once, and the second round hit throughout.
    let snap = stats.snapshot();
    assert_eq!((snap.misses, snap.stores), (4, 4), "{snap:?}");
    assert_eq!(snap.hits, 5, "{snap:?}");
}

/// A coding the layer could never send is refused when the layer is
/// configured, naming what is missing, instead of being dropped in silence.
#[test]
fn codings_the_build_cannot_produce_are_refused() {
    let refused = |c: ContentCoding| {
        std::panic::catch_unwind(|| CompressionLayer::new().codings([ContentCoding::Gzip, c]))
            .err()
            .map(|e| e.downcast_ref::<String>().cloned().unwrap_or_default())
    };
    let identity = refused(ContentCoding::Identity).expect("identity refused");
    assert!(identity.contains("not a compression coding"), "{identity}");
    let br = refused(ContentCoding::Br);
    if cfg!(feature = "compression-br") {
        assert!(br.is_none(), "{br:?}");
    } else {
        assert!(br.expect("br refused").contains("compression-br"));
    }
    let zstd = refused(ContentCoding::Zstd);
    if cfg!(feature = "compression-zstd") {
        assert!(zstd.is_none(), "{zstd:?}");
    } else {
        assert!(zstd.expect("zstd refused").contains("compression-zstd"));
    }
    // Repeats count once, in first-seen order: no panic, same preference.
    let _ = CompressionLayer::new().codings([ContentCoding::Deflate, ContentCoding::Deflate]);
}
