//! Which responses are compressed, and the fields they carry: the minimum
//! size, content types, ranges, `no-transform` and bodiless answers, HEAD,
//! Vary, and ETags per coding that revalidate.

use axum::http::{Method, StatusCode};
use http_body_util::Full;
use tower_perf::compression::CompressionLayer;

use crate::support::{TestServer, gunzip};
use crate::{app, server};

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
