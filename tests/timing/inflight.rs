//! Requests in flight and body sizes: the snapshot's `active_requests`
//! and the Prometheus gauge and histograms.

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_perf::timing::TimingLayer;

use super::by_path;

/// The value of the series that starts with `prefix` (labels included).
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
}

#[tokio::test]
async fn a_request_is_in_flight_until_its_body_ends_or_is_dropped() {
    let layer = by_path();
    let stats = layer.stats();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(1);
    let rx = std::sync::Arc::new(std::sync::Mutex::new(Some(rx)));
    let svc =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(move |req: Request<Full<Bytes>>| {
                let rx = if req.uri().path() == "/stream" {
                    rx.lock().unwrap().take()
                } else {
                    None
                };
                async move {
                    let body = match rx {
                        Some(rx) => {
                            let s = futures_util::stream::unfold(rx, |mut rx| async move {
                                rx.recv().await.map(|f| (f, rx))
                            });
                            StreamBody::new(s).boxed()
                        }
                        None => StreamBody::new(futures_util::stream::pending()).boxed(),
                    };
                    Ok::<_, Infallible>(Response::new(body))
                }
            }));
    let get = |p: &str| Request::get(p).body(Full::<Bytes>::default()).unwrap();

    let streaming = svc.clone().oneshot(get("/stream")).await.unwrap();
    let hanging = svc.clone().oneshot(get("/hang")).await.unwrap();
    let snap = stats.snapshot();
    assert_eq!(snap.active_requests, 2);
    assert_eq!(snap.route("GET", "/stream").unwrap().active_requests, 1);
    let text = stats.prometheus();
    assert_eq!(
        value(
            &text,
            r#"http_server_active_requests{http_request_method="GET",http_route="/hang"}"#
        ),
        Some(1.0),
        "{text}"
    );

    // The client that goes away leaves the gauge at once (axum-prometheus's
    // pending gauge leaks here).
    drop(hanging);
    assert_eq!(stats.snapshot().active_requests, 1);
    assert_eq!(
        stats
            .snapshot()
            .route("GET", "/hang")
            .unwrap()
            .active_requests,
        0
    );

    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"abc"))))
        .await
        .unwrap();
    drop(tx);
    streaming.into_body().collect().await.unwrap();
    let snap = stats.snapshot();
    assert_eq!(snap.active_requests, 0);
    assert_eq!(snap.overall.count, 1);
    assert_eq!(snap.overall.aborted, 1);
}

#[tokio::test]
async fn a_stalled_handler_dropped_before_its_response_leaves_the_gauge() {
    let layer = TimingLayer::new();
    let stats = layer.stats();
    let svc =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|_req: Request<Full<Bytes>>| {
                std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>()
            }));
    let mut fut = Box::pin(svc.oneshot(Request::get("/").body(Full::default()).unwrap()));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert_eq!(stats.snapshot().active_requests, 1);
    drop(fut);
    assert_eq!(stats.snapshot().active_requests, 0);
}

#[tokio::test]
async fn body_sizes_are_histograms_in_bytes() {
    let layer = by_path();
    let stats = layer.stats();
    // Answers in two frames of `n` bytes each, `n` taken from the path.
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |req: Request<Full<Bytes>>| async move {
            let n: usize = req.uri().path()[1..].parse().unwrap_or(0);
            let frames = vec![
                Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(vec![b'x'; n]))),
                Ok(http_body::Frame::data(Bytes::from(vec![b'y'; n]))),
            ];
            Ok::<_, Infallible>(Response::new(StreamBody::new(futures_util::stream::iter(
                frames,
            ))))
        },
    ));
    for (path, body) in [("/100", 300usize), ("/100", 0), ("/5000", 10_000)] {
        let req = Request::post(path)
            .body(Full::new(Bytes::from(vec![0u8; body])))
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        res.into_body().collect().await.unwrap();
    }
    let text = stats.prometheus();
    let route = |r: &str| format!(r#"http_request_method="POST",http_route="{r}""#);
    let req = |r: &str, le: &str| {
        value(
            &text,
            &format!(
                "http_server_request_body_size_bytes_bucket{{{},le=\"{le}\"}}",
                route(r)
            ),
        )
    };
    let res = |r: &str, le: &str| {
        value(
            &text,
            &format!(
                "http_server_response_body_size_bytes_bucket{{{},le=\"{le}\"}}",
                route(r)
            ),
        )
    };
    // Requests: 0 and 300 bytes on /100, 10,000 on /5000.
    assert_eq!(req("/100", "0"), Some(1.0), "{text}");
    assert_eq!(req("/100", "128"), Some(1.0));
    assert_eq!(req("/100", "512"), Some(2.0));
    assert_eq!(req("/5000", "8192"), Some(0.0));
    assert_eq!(req("/5000", "32768"), Some(1.0));
    assert_eq!(
        value(
            &text,
            &format!(
                "http_server_request_body_size_bytes_sum{{{}}}",
                route("/100")
            )
        ),
        Some(300.0)
    );
    // Responses: both frames counted (200 and 10,000 bytes).
    assert_eq!(res("/100", "128"), Some(0.0));
    assert_eq!(res("/100", "512"), Some(2.0));
    assert_eq!(res("/5000", "8192"), Some(0.0));
    assert_eq!(res("/5000", "+Inf"), Some(1.0));
    assert_eq!(
        value(
            &text,
            &format!(
                "http_server_response_body_size_bytes_sum{{{}}}",
                route("/5000")
            )
        ),
        Some(10_000.0)
    );
    super::support::promtool(&text);
}
