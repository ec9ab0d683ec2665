//! Generated ETags: stable, strong or weak or off, kept when the handler
//! has its own; large and streamed bodies pass untouched; a body error
//! while hashing reaches the client; revalidation through both stacking
//! orders with CompressionLayer.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
#[cfg(feature = "compression")]
use axum::http::StatusCode;
use axum::http::{Method, Response};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower::ServiceBuilder;
use tower_perf::cache_control::{CacheControlLayer, EtagMode};
// The test with CompressionLayer needs `compression` too (Cargo.toml
// requires `cache-control` alone): what only it uses is gated.
#[cfg(feature = "compression")]
use tower_perf::compression::CompressionLayer;

use crate::support::TestServer;
#[cfg(feature = "compression")]
use crate::support::gunzip;
#[cfg(feature = "compression")]
use crate::{Doc, routes};
use crate::{layer, server, server_with, text};

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
