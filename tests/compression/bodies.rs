//! How bodies are encoded: small ones whole by libdeflate,
//! large ones streamed without Content-Length, unknown lengths held back
//! to decide, live streams flushed as they come; without a server:
//! trailers, the executor budget of a 10 MB chunk, errors midway.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use axum::routing::get;
use bytes::Bytes;
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::sync::mpsc;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_perf::compression::CompressionLayer;
use tower_perf::headers::ContentCoding;

use crate::support::{BoxError, TestServer, built_codings, decode, decode_prefix, gunzip, inflate};
use crate::{app, json_body, ok, server};

/// A channel-fed streaming body and its sender.
fn channel_body() -> (mpsc::Sender<Result<Bytes, std::io::Error>>, Body) {
    let (tx, rx) = mpsc::channel(8);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, Body::from_stream(stream))
}

/// Bodies held whole (known length, up to 32 KiB at the default level,
/// 16 KiB at level 6) go through libdeflate at every level, streams and
/// larger bodies through zlib-rs; both decode. The gzip header's OS byte
/// tells them apart: libdeflate writes 255 ("unknown"), zlib-rs its
/// platform's code.
#[tokio::test]
async fn whole_bodies_take_libdeflate() {
    let os = |body: &[u8]| body[9];
    let s = server().await;
    let plain_small = s.get("/exact").await.body;
    let plain_big = s.get("/json").await.body;
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
    for level in [1, 6, 9] {
        let s = TestServer::serve(app(
            CompressionLayer::new().level(ContentCoding::Gzip, level)
        ))
        .await;
        let small = s.get_with("/exact", &[("accept-encoding", "gzip")]).await;
        assert_eq!(os(&small.body), 255, "level {level}");
        assert_eq!(gunzip(&small.body), plain_small);
    }
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
/// and compressed whole by libdeflate: exact Content-Length, and
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
    assert_eq!(body[9], 255, "libdeflate's gzip header");
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
    assert_ne!(res.body[9], 255, "zlib-rs's gzip header");
    assert_eq!(gunzip(&res.body), json_body(200 * 1024).as_bytes());
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

/// Every coding the build has streams: the first line reaches the client,
/// decodable, while the handler holds the stream open (the body of
/// unknown length goes through the streaming encoder, flushed when the
/// inner body waits), and the whole decodes at the end.
#[tokio::test]
async fn every_coding_streams_before_the_end() {
    for coding in built_codings() {
        let (tx, body) = channel_body();
        let body = std::sync::Arc::new(std::sync::Mutex::new(Some(body)));
        let handler = service_fn(move |_req: Request<hyper::body::Incoming>| {
            let body = body.lock().unwrap().take().unwrap_or_else(Body::empty);
            async move { Ok::<_, Infallible>(ok("application/x-ndjson", body)) }
        });
        let svc = ServiceBuilder::new()
            .layer(CompressionLayer::new().codings([coding]))
            .service(handler);
        let s = TestServer::serve(svc).await;
        let req = s
            .request(Method::GET, "/")
            .header("accept-encoding", coding.as_str())
            .body(Full::default())
            .unwrap();
        let first = json_body(3000);
        tx.send(Ok(Bytes::from(first.clone()))).await.unwrap();
        let res = tokio::time::timeout(Duration::from_secs(5), s.send_streaming(req))
            .await
            .expect("headers sent while the stream is open");
        assert_eq!(res.headers()["content-encoding"], coding.as_str());
        assert!(!res.headers().contains_key("content-length"), "{coding:?}");
        let mut body = res.into_body();
        let mut got = Vec::new();
        while decode_prefix(coding, &got) != first.as_bytes() {
            let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
                .await
                .unwrap_or_else(|_| panic!("{coding:?}: first part flushed"))
                .unwrap()
                .unwrap();
            if let Ok(data) = frame.into_data() {
                got.extend_from_slice(&data);
            }
        }
        let rest = json_body(50_000);
        tx.send(Ok(Bytes::from(rest.clone()))).await.unwrap();
        drop(tx);
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                got.extend_from_slice(&data);
            }
        }
        assert_eq!(
            decode(coding, &got),
            format!("{first}{rest}").as_bytes(),
            "{coding:?}"
        );
    }
}

/// A body held whole gets its exact Content-Length in every coding.
#[tokio::test]
async fn every_coding_sends_the_length_of_a_body_held_whole() {
    for coding in built_codings() {
        let s = TestServer::serve(app(CompressionLayer::new().codings([coding]))).await;
        let plain = s.get("/json").await;
        let res = s
            .get_with("/json", &[("accept-encoding", coding.as_str())])
            .await;
        assert_eq!(res.header("content-encoding"), Some(coding.as_str()));
        assert_eq!(
            res.header("content-length"),
            Some(res.body.len().to_string().as_str()),
            "{coding:?}"
        );
        assert_eq!(decode(coding, &res.body), plain.body, "{coding:?}");
    }
}

fn frames_body(
    frames: Vec<Result<Frame<Bytes>, BoxError>>,
) -> StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, BoxError>>>> {
    StreamBody::new(futures_util::stream::iter(frames))
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

/// A JSON response of the given frames (no length: the streaming
/// encoder), asked for in `coding`.
async fn stream_frames(
    coding: ContentCoding,
    frames: Vec<Result<Frame<Bytes>, BoxError>>,
) -> Response<
    tower_perf::compression::ResponseBody<impl http_body::Body<Data = Bytes, Error = BoxError>>,
> {
    let body = std::sync::Mutex::new(Some(frames_body(frames)));
    let svc = ServiceBuilder::new()
        .layer(CompressionLayer::new().codings([coding]))
        .service(service_fn(move |_req: Request<Full<Bytes>>| {
            let body = body.lock().unwrap().take().expect("one request");
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
        .header("accept-encoding", coding.as_str())
        .body(Full::default())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["content-encoding"], coding.as_str());
    res
}

/// Trailers come after the compressed data, in every coding.
#[tokio::test]
async fn trailers_are_kept() {
    for coding in built_codings() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", HeaderValue::from_static("42"));
        let res = stream_frames(
            coding,
            vec![
                Ok(Frame::data(Bytes::from(json_body(4096)))),
                Ok(Frame::trailers(trailers)),
            ],
        )
        .await;
        let collected = res.into_body().collect().await.unwrap();
        assert_eq!(
            collected.trailers().unwrap()["x-checksum"],
            "42",
            "{coding:?}"
        );
        assert_eq!(
            decode(coding, &collected.to_bytes()),
            json_body(4096).as_bytes()
        );
    }
}

/// An inner error midway ends the stream with that error, never with a
/// well-formed but truncated compressed body, in every coding.
#[tokio::test]
async fn an_inner_error_midway_is_not_a_complete_stream() {
    for coding in built_codings() {
        let res = stream_frames(
            coding,
            vec![
                Ok(Frame::data(Bytes::from(json_body(4096)))),
                Err("backend went away".into()),
            ],
        )
        .await;
        let err = res.into_body().collect().await.unwrap_err();
        assert!(err.to_string().contains("backend went away"), "{coding:?}");
    }
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
