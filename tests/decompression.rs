//! RequestDecompressionLayer: request bodies in every coding the build
//! decodes, bombs in each answered 413 after bounded work, 415 and 400,
//! behind axum's extractors and behind a plain service.

#[path = "support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use support::{built_codings, encode};
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tower_perf::decompression::{DecompressionBody, RequestDecompressionLayer};
use tower_perf::headers::ContentCoding;

fn post_with(coding: Option<&str>, body: Vec<u8>) -> Request<Full<Bytes>> {
    let mut b = Request::post("/items").header(header::CONTENT_LENGTH, body.len());
    if let Some(c) = coding {
        b = b.header(header::CONTENT_ENCODING, c);
    }
    b.body(Full::new(Bytes::from(body))).unwrap()
}

async fn text<B>(res: Response<B>) -> String
where
    B: Body,
    B::Error: std::fmt::Debug,
{
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// How often the inner service was called.
#[derive(Debug, Default)]
struct Seen {
    calls: AtomicUsize,
}

/// A plain service (not axum) that reads the whole body and answers with
/// its length, the request's Content-Encoding and Content-Length, and
/// whether trailers came; or 500 when it cannot read the body: it does not
/// tell a client's fault from its own.
fn reader(
    seen: Arc<Seen>,
) -> impl tower::Service<
    Request<DecompressionBody<Full<Bytes>>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(move |req: Request<DecompressionBody<Full<Bytes>>>| {
        let seen = seen.clone();
        async move {
            seen.calls.fetch_add(1, Ordering::SeqCst);
            let fields = format!(
                "{:?} {:?}",
                req.headers().get(header::CONTENT_ENCODING),
                req.headers().get(header::CONTENT_LENGTH)
            );
            Ok(match req.into_body().collect().await {
                Ok(b) => {
                    let trailers = b.trailers().is_some();
                    let n = b.to_bytes().len();
                    Response::new(Full::new(Bytes::from(format!("{n} {fields} {trailers}"))))
                }
                Err(e) => Response::builder()
                    .status(StatusCode::INTERNAL_SERVER_ERROR)
                    .body(Full::new(Bytes::from(e.to_string())))
                    .unwrap(),
            })
        }
    })
}

fn json(n: usize) -> Vec<u8> {
    let items: Vec<String> = (0..n)
        .map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\",\"tags\":[\"a\",\"b\"]}}"))
        .collect();
    format!("[{}]", items.join(",")).into_bytes()
}

#[tokio::test]
async fn every_coding_reaches_an_axum_handler_decoded() {
    async fn count(body: axum::Json<Vec<serde_json::Value>>) -> String {
        body.0.len().to_string()
    }
    let layer = RequestDecompressionLayer::new();
    let stats = layer.stats();
    let app = Router::new().route("/items", post(count)).layer(layer);
    let data = json(500);
    for coding in built_codings() {
        let mut req = post_with(Some(coding.as_str()), encode(coding, &data));
        req.headers_mut()
            .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{coding:?}");
        assert_eq!(text(res).await, "500", "{coding:?}");
        let s = *stats.snapshot().coding(coding).unwrap();
        assert_eq!(
            (s.requests, s.bytes_out),
            (1, data.len() as u64),
            "{coding:?}"
        );
        assert_eq!(s.bytes_in, encode(coding, &data).len() as u64, "{coding:?}");
    }
}

#[tokio::test]
async fn the_handler_sees_no_coding_and_no_length() {
    let seen = Arc::new(Seen::default());
    let svc = ServiceBuilder::new()
        .layer(RequestDecompressionLayer::new())
        .service(reader(seen.clone()));
    let data = json(50);
    let res = svc
        .clone()
        .oneshot(post_with(Some("gzip"), encode(ContentCoding::Gzip, &data)))
        .await
        .unwrap();
    assert_eq!(text(res).await, format!("{} None None false", data.len()));

    // No Content-Encoding, or only identity: the body and its fields pass.
    let res = svc
        .clone()
        .oneshot(post_with(None, data.clone()))
        .await
        .unwrap();
    let n = data.len();
    assert_eq!(text(res).await, format!("{n} None Some(\"{n}\") false"));
    let res = svc
        .oneshot(post_with(Some("identity"), data.clone()))
        .await
        .unwrap();
    assert_eq!(
        text(res).await,
        format!("{n} Some(\"identity\") Some(\"{n}\") false")
    );
}

/// 10 MB of zeros in each coding, against a 1 MiB limit: 413, and no more
/// than the limit and one byte decoded, whatever the inner service made of
/// the error (here a 500).
#[tokio::test]
async fn bombs_are_answered_413_after_bounded_work() {
    const LIMIT: u64 = 1024 * 1024;
    let zeros = vec![0u8; 10_000_000];
    for coding in built_codings() {
        let bomb = encode(coding, &zeros);
        assert!(bomb.len() < 100_000, "{coding:?}: {}", bomb.len());
        let seen = Arc::new(Seen::default());
        let layer = RequestDecompressionLayer::new().max_decoded_size(LIMIT);
        let stats = layer.stats();
        let svc = ServiceBuilder::new().layer(layer).service(reader(seen));
        let res = svc
            .oneshot(post_with(Some(coding.as_str()), bomb))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "{coding:?}");
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let snap = stats.snapshot();
        let s = snap.coding(coding).unwrap();
        assert_eq!(s.bytes_out, LIMIT + 1, "{coding:?}");
        assert_eq!(snap.too_large, 1, "{coding:?}");
    }
}

/// With the defaults behind axum, axum's own 2 MiB body limit (over the
/// decoded bytes) stops the bomb first, and decoding stops with it.
#[tokio::test]
async fn behind_axum_its_body_limit_counts_decoded_bytes() {
    async fn take(body: Bytes) -> String {
        body.len().to_string()
    }
    let layer = RequestDecompressionLayer::new();
    let stats = layer.stats();
    let app = Router::new().route("/items", post(take)).layer(layer);
    let zeros = vec![0u8; 10_000_000];
    for coding in built_codings() {
        let res = app
            .clone()
            .oneshot(post_with(Some(coding.as_str()), encode(coding, &zeros)))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "{coding:?}");
        let out = stats.snapshot().coding(coding).unwrap().bytes_out;
        assert!(out <= 2 * 1024 * 1024 + 32 * 1024, "{coding:?}: {out}");
    }
}

#[tokio::test]
async fn unsupported_codings_get_415_before_the_handler() {
    let seen = Arc::new(Seen::default());
    let layer = RequestDecompressionLayer::new().codings([ContentCoding::Gzip]);
    let stats = layer.stats();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(reader(seen.clone()));
    let gz = encode(ContentCoding::Gzip, b"hello");
    for coding in ["compress", "deflate", "gzip, gzip", "gzip;q=1"] {
        let res = svc
            .clone()
            .oneshot(post_with(Some(coding), gz.clone()))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{coding}");
        assert_eq!(res.headers()[header::ACCEPT_ENCODING], "gzip");
    }
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
    assert_eq!(stats.snapshot().unsupported, 4);

    // Nothing to decode: an empty Accept-Encoding says so.
    let svc = ServiceBuilder::new()
        .layer(RequestDecompressionLayer::new().codings([]))
        .service(reader(seen));
    let res = svc.oneshot(post_with(Some("gzip"), gz)).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(res.headers()[header::ACCEPT_ENCODING], "");
}

#[tokio::test]
async fn malformed_bodies_get_400() {
    for coding in built_codings() {
        let good = encode(coding, &json(100));
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        let cases = [
            ("truncated", good[..good.len() - 4].to_vec()),
            ("garbage", b"this is not compressed at all".to_vec()),
            ("trailing", trailing),
        ];
        for (what, body) in cases {
            let layer = RequestDecompressionLayer::new();
            let stats = layer.stats();
            let svc = ServiceBuilder::new()
                .layer(layer)
                .service(reader(Arc::default()));
            let res = svc
                .oneshot(post_with(Some(coding.as_str()), body))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{coding:?} {what}");
            assert_eq!(stats.snapshot().malformed, 1, "{coding:?} {what}");
        }
    }
}

#[tokio::test]
async fn an_answer_given_without_reading_stands() {
    let svc = ServiceBuilder::new()
        .layer(RequestDecompressionLayer::new().max_decoded_size(10))
        .service(service_fn(
            |_req: Request<DecompressionBody<Full<Bytes>>>| async {
                let mut res = Response::new(Full::<Bytes>::default());
                *res.status_mut() = StatusCode::ACCEPTED;
                Ok::<_, Infallible>(res)
            },
        ));
    let bomb = encode(ContentCoding::Gzip, &[0u8; 100_000]);
    let res = svc.oneshot(post_with(Some("gzip"), bomb)).await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn an_empty_body_stays_empty() {
    let svc = ServiceBuilder::new()
        .layer(RequestDecompressionLayer::new())
        .service(reader(Arc::default()));
    for coding in built_codings() {
        let res = svc
            .clone()
            .oneshot(post_with(Some(coding.as_str()), Vec::new()))
            .await
            .unwrap();
        assert_eq!(text(res).await, "0 None None false", "{coding:?}");
    }
}

type Frames = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn frames(data: &[u8], step: usize, trailers: bool) -> Frames {
    let mut f: Vec<Result<Frame<Bytes>, Infallible>> = data
        .chunks(step)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    if trailers {
        let mut t = HeaderMap::new();
        t.insert("x-checksum", "abc".parse().unwrap());
        f.push(Ok(Frame::trailers(t)));
    }
    StreamBody::new(stream::iter(f))
}

/// Sends `req` through `RequestDecompressionLayer::new()` to a service
/// that reads the decoded body with `read`, and returns what `read` made
/// of it.
async fn read_through<B, T, F, Fut>(req: Request<B>, read: F) -> T
where
    B: Body + 'static,
    B::Error: Into<BoxError>,
    F: FnOnce(DecompressionBody<B>) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = T>,
    T: 'static,
{
    let got = Arc::new(Mutex::new(None));
    let sink = got.clone();
    let svc = ServiceBuilder::new()
        .layer(RequestDecompressionLayer::new())
        .service(service_fn(move |req: Request<DecompressionBody<B>>| {
            let (sink, read) = (sink.clone(), read.clone());
            async move {
                *sink.lock().unwrap() = Some(read(req.into_body()).await);
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
            }
        }));
    svc.oneshot(req).await.unwrap();
    let value = got.lock().unwrap().take();
    value.expect("the inner service read the body")
}

#[tokio::test]
async fn frames_of_any_size_decode_and_trailers_pass() {
    let data = json(300);
    for coding in built_codings() {
        let encoded = encode(coding, &data);
        for step in [1, 7, 1000] {
            let req = Request::post("/")
                .header(header::CONTENT_ENCODING, coding.as_str())
                .body(frames(&encoded, step, true))
                .unwrap();
            let (body, trailers) = read_through(req, |body| async move {
                let collected = body.collect().await.expect("a valid stream");
                let trailers = collected.trailers().cloned();
                (collected.to_bytes(), trailers)
            })
            .await;
            assert!(body == data, "{coding:?} step {step}");
            assert_eq!(trailers.unwrap()["x-checksum"], "abc", "{coding:?}");
        }
    }
}

/// A gzip body of 2 MB that decodes to nothing (400,000 empty stored
/// blocks): each poll decodes at most 256 KiB of it before yielding, so
/// an always-ready body still gives the executor its turn.
#[tokio::test]
async fn input_without_output_yields_to_the_executor() {
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    for _ in 0..400_000 {
        gz.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
    }
    // A final empty fixed block, then the CRC-32 and length of nothing.
    gz.extend_from_slice(&[0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
    let req = Request::post("/")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Full::new(Bytes::from(gz)))
        .unwrap();
    let (pending, data) = read_through(req, |mut body| async move {
        let (mut pending, mut data) = (0, 0);
        std::future::poll_fn(|cx| {
            loop {
                match Pin::new(&mut body).poll_frame(cx) {
                    Poll::Pending => {
                        pending += 1;
                        return Poll::Pending;
                    }
                    Poll::Ready(Some(Ok(f))) => data += f.into_data().map_or(0, |d| d.len()),
                    Poll::Ready(Some(Err(e))) => panic!("{e}"),
                    Poll::Ready(None) => return Poll::Ready(()),
                }
            }
        })
        .await;
        (pending, data)
    })
    .await;
    assert_eq!(data, 0);
    assert!(pending >= 7, "{pending} yields for 2 MB");
}

/// An inner service that fails with an error (not an answer) when its body
/// fails still gets the client its 413; one that answers 2xx despite the
/// error keeps its answer.
#[tokio::test]
async fn the_verdict_replaces_errors_but_not_successes() {
    let bomb = encode(ContentCoding::Gzip, &[0u8; 100_000]);
    let failing = ServiceBuilder::new()
        .layer(RequestDecompressionLayer::new().max_decoded_size(1000))
        .service(service_fn(
            |req: Request<DecompressionBody<Full<Bytes>>>| async move {
                req.into_body().collect().await?;
                Ok::<_, BoxError>(Response::new(Full::<Bytes>::default()))
            },
        ));
    let res = failing
        .oneshot(post_with(Some("gzip"), bomb.clone()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let tolerant = ServiceBuilder::new()
        .layer(RequestDecompressionLayer::new().max_decoded_size(1000))
        .service(service_fn(
            |req: Request<DecompressionBody<Full<Bytes>>>| async move {
                let read = req.into_body().collect().await.is_ok();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(read.to_string()))))
            },
        ));
    let res = tolerant
        .oneshot(post_with(Some("gzip"), bomb))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(text(res).await, "false");
}

/// After the body failed at the limit, polling it again decodes nothing
/// more: it is over.
#[tokio::test]
async fn a_body_past_the_limit_is_fused() {
    let layer = RequestDecompressionLayer::new().max_decoded_size(1000);
    let stats = layer.stats();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |req: Request<DecompressionBody<Full<Bytes>>>| async move {
            let mut body = req.into_body();
            let mut seen = Vec::new();
            for _ in 0..10 {
                match body.frame().await {
                    Some(Ok(_)) => seen.push("data"),
                    Some(Err(_)) => seen.push("error"),
                    None => seen.push("end"),
                }
            }
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(seen.join(",")))))
        },
    ));
    let bomb = encode(ContentCoding::Gzip, &[0u8; 1_000_000]);
    let res = svc.oneshot(post_with(Some("gzip"), bomb)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the service answered");
    let seen = text(res).await;
    assert_eq!(
        seen, "error,end,end,end,end,end,end,end,end,end",
        "the frame that passes the limit is the error, then nothing"
    );
    assert_eq!(stats.snapshot().gzip.bytes_out, 1001);
}

/// A body that decodes to nothing cannot be sent forever: its encoded size
/// is limited too (about the decoded limit), answered 413.
#[tokio::test]
async fn the_encoded_size_is_limited_too() {
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    for _ in 0..20_000 {
        gz.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
    }
    gz.extend_from_slice(&[0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
    let svc = |limit| {
        ServiceBuilder::new()
            .layer(RequestDecompressionLayer::new().max_decoded_size(limit))
            .service(reader(Arc::default()))
    };
    // 100 KB of empty blocks: over a 64 KiB limit's encoded bound...
    let res = svc(64 * 1024)
        .oneshot(post_with(Some("gzip"), gz.clone()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // ...and within a 1 MiB one, where it decodes to an empty body.
    let res = svc(1024 * 1024)
        .oneshot(post_with(Some("gzip"), gz))
        .await
        .unwrap();
    assert_eq!(text(res).await, "0 None None false");
}

/// Many tiny input frames make few output frames: decoded bytes are
/// gathered into one buffer until it is full or the input waits or ends.
#[tokio::test]
async fn tiny_frames_are_gathered() {
    let data = json(2_000);
    let encoded = encode(ContentCoding::Gzip, &data);
    let req = Request::post("/")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(frames(&encoded, 1, false))
        .unwrap();
    let (frames, bytes) = read_through(req, |mut body| async move {
        let (mut frames, mut bytes) = (0, 0);
        while let Some(f) = body.frame().await {
            frames += 1;
            bytes += f
                .expect("a valid stream")
                .into_data()
                .map_or(0, |d| d.len());
        }
        (frames, bytes)
    })
    .await;
    assert_eq!(bytes, data.len());
    // One frame per 256 input frames at most (the per-poll budget), never
    // one per input byte.
    assert!(
        frames <= encoded.len() / 256 + data.len() / (32 * 1024) + 2,
        "{frames} frames for {} input bytes",
        encoded.len()
    );
}

#[tokio::test]
async fn too_many_gzip_members_get_400() {
    let one = encode(ContentCoding::Gzip, b"");
    let layer = RequestDecompressionLayer::new();
    let stats = layer.stats();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(reader(Arc::default()));
    let res = svc
        .oneshot(post_with(Some("gzip"), one.repeat(1_001)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(stats.snapshot().malformed, 1);
}
