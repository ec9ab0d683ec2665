//! TimingLayer: body-end timing, aborts, status classes, route labels and
//! their cap, the rolling window with a controlled clock, slow requests,
//! the stats handle through builder calls, sub-timings and Server-Timing.
//! `output.rs`: what the layer reads out, the Prometheus text and the
//! insights.

#[path = "../support/mod.rs"]
mod support;

mod inflight;
mod output;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use support::TestServer;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_perf::clock::ManualClock;
use tower_perf::timing::TimingLayer;

fn ok() -> Response<Full<Bytes>> {
    Response::new(Full::from("ok"))
}

fn get_req(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::default()).unwrap()
}

/// One request through `svc`, read to the end of its body.
async fn hit<S, B>(svc: &S, path: &str)
where
    S: tower::Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let res = svc.clone().oneshot(get_req(path)).await.unwrap();
    res.into_body().collect().await.unwrap();
}

fn by_path() -> TimingLayer {
    TimingLayer::new().classifier(|_, uri, _| Some(uri.path().to_owned()))
}

#[tokio::test]
async fn timing_stops_when_the_body_ends() {
    let clock = ManualClock::new();
    let layer = by_path().clock(clock.clone());
    let stats = layer.stats();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(4);
    let rx = Arc::new(Mutex::new(Some(rx)));
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        move |_req: Request<Full<Bytes>>| {
            let rx = rx.lock().unwrap().take().unwrap();
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|f| (f, rx))
            });
            async move { Ok::<_, Infallible>(Response::new(StreamBody::new(stream))) }
        },
    ));
    let res = svc.oneshot(get_req("/stream")).await.unwrap();
    // Headers are out, the body is not: nothing recorded yet.
    clock.advance(Duration::from_millis(40));
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"a"))))
        .await
        .unwrap();
    clock.advance(Duration::from_millis(60));
    drop(tx);
    assert_eq!(stats.snapshot().overall.count, 0);
    res.into_body().collect().await.unwrap();
    let snap = stats.snapshot();
    let r = snap.route("GET", "/stream").unwrap();
    assert_eq!(r.window.count, 1);
    let ms = r.window.max_ms.unwrap();
    assert!(
        (ms - 100.0).abs() < 1e-6,
        "timed to the body's end: {ms} ms"
    );
}

#[tokio::test]
async fn aborted_bodies_are_counted_apart() {
    let layer = by_path();
    let stats = layer.stats();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |_req: Request<Full<Bytes>>| async {
            let stream =
                futures_util::stream::pending::<Result<http_body::Frame<Bytes>, Infallible>>();
            Ok::<_, Infallible>(Response::new(StreamBody::new(stream)))
        },
    ));
    let res = svc.oneshot(get_req("/hang")).await.unwrap();
    drop(res); // the client went away mid-body
    // A request dropped before its response (the handler stalls) too.
    let stalled_layer = TimingLayer::new();
    let stalled_stats = stalled_layer.stats();
    let stalled = ServiceBuilder::new()
        .layer(stalled_layer)
        .service(service_fn(|_req: Request<Full<Bytes>>| {
            std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>()
        }));
    let fut = stalled.oneshot(get_req("/stall"));
    assert!(
        futures_util::FutureExt::now_or_never(fut).is_none(),
        "polled once, then dropped"
    );
    assert_eq!(stalled_stats.snapshot().overall.aborted, 1);
    let snap = stats.snapshot();
    let r = snap.route("GET", "/hang").unwrap();
    assert_eq!(r.window.aborted, 1);
    assert_eq!(r.window.count, 0);
    assert_eq!(r.window.p99_ms, None);
}

#[tokio::test]
async fn bodyless_responses_end_with_their_head() {
    let layer = by_path();
    let stats = layer.stats();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |req: Request<Full<Bytes>>| async move {
            let status = if req.uri().path() == "/none" {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::OK
            };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(Full::<Bytes>::from("x"))
                    .unwrap(),
            )
        },
    ));
    // Neither body is ever polled (as hyper does for 204 and HEAD).
    drop(svc.clone().oneshot(get_req("/none")).await.unwrap());
    drop(
        svc.oneshot(Request::head("/h").body(Full::default()).unwrap())
            .await
            .unwrap(),
    );
    let snap = stats.snapshot();
    assert_eq!(snap.route("GET", "/none").unwrap().window.count, 1);
    assert_eq!(snap.route("HEAD", "/h").unwrap().window.count, 1);
    assert_eq!(snap.overall.aborted, 0);
}

#[tokio::test]
async fn status_classes_and_error_rate() {
    let layer = by_path();
    let stats = layer.stats();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |req: Request<Full<Bytes>>| async move {
            let code: u16 = req
                .uri()
                .query()
                .and_then(|q| q.parse().ok())
                .unwrap_or(200);
            Ok::<_, Infallible>(
                Response::builder()
                    .status(code)
                    .body(Full::<Bytes>::from("x"))
                    .unwrap(),
            )
        },
    ));
    for code in [200, 200, 404, 429, 503] {
        hit(&svc, &format!("/s?{code}")).await;
    }
    let w = stats.snapshot().route("GET", "/s").unwrap().window.clone();
    assert_eq!(
        (w.count, w.client_errors, w.rate_limited, w.server_errors),
        (5, 2, 1, 1)
    );
    // Only the 503 is an error (OpenTelemetry: a 4xx is the client's).
    assert!((w.error_rate - 0.2).abs() < 1e-9, "{w:?}");
    assert!((w.client_error_rate - 0.4).abs() < 1e-9, "{w:?}");
}

/// A burst of 404s and 429s is no server error: the error rate stays 0,
/// no warning; the 4xx and 429 figures are right.
#[tokio::test]
async fn client_errors_are_not_server_errors() {
    let layer = by_path();
    let stats = layer.stats();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |req: Request<Full<Bytes>>| async move {
            let status = match req.uri().path() {
                "/limited" => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::NOT_FOUND,
            };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(Full::<Bytes>::from("x"))
                    .unwrap(),
            )
        },
    ));
    for _ in 0..30 {
        hit(&svc, "/missing").await;
        hit(&svc, "/limited").await;
    }
    let snap = stats.snapshot();
    let o = &snap.overall;
    assert_eq!(
        (o.count, o.client_errors, o.rate_limited, o.server_errors),
        (60, 60, 30, 0)
    );
    assert_eq!(o.error_rate, 0.0);
    assert_eq!(o.client_error_rate, 1.0);
    assert!(
        snap.by_error_rate(5)
            .iter()
            .all(|r| r.window.error_rate == 0.0)
    );
    let missing = snap.route("GET", "/missing").unwrap();
    assert_eq!(
        missing.status_codes,
        [tower_perf::timing::StatusCount {
            code: 404,
            count: 30
        }]
    );
    assert!(
        snap.insights
            .iter()
            .all(|i| i.severity == tower_perf::insight::Severity::Info),
        "{:#?}",
        snap.insights
    );
    assert!(!snap.insights.iter().any(|i| i.kind == "errors"));
}

/// A body that fails midway is a server error (the response the client got
/// is broken), not a client abort; a client that drops the body is.
#[tokio::test]
async fn a_body_that_fails_midway_is_a_server_error() {
    let layer = by_path();
    let stats = layer.stats();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |_req: Request<Full<Bytes>>| async {
            let frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = vec![
                Ok(http_body::Frame::data(Bytes::from_static(b"half"))),
                Err(std::io::Error::other("upstream closed")),
            ];
            Ok::<_, Infallible>(Response::new(StreamBody::new(futures_util::stream::iter(
                frames,
            ))))
        },
    ));
    let res = svc.oneshot(get_req("/broken")).await.unwrap();
    assert!(res.into_body().collect().await.is_err());
    let snap = stats.snapshot();
    let w = &snap.route("GET", "/broken").unwrap().window;
    assert_eq!(
        (
            w.count,
            w.server_errors,
            w.failed,
            w.aborted,
            w.client_errors
        ),
        (1, 1, 1, 0, 0)
    );
    assert_eq!(w.error_rate, 1.0);
    // Prometheus: OpenTelemetry's error.type on the failed response.
    let text = stats.prometheus();
    assert!(
        text.contains(
            "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_route=\"/broken\",http_response_status_code=\"200\",error_type=\"_OTHER\"} 1\n"
        ),
        "{text}"
    );
    support::promtool(&text);
}

#[tokio::test]
async fn the_window_rolls_and_totals_stay() {
    let clock = ManualClock::new();
    // A 60 s window in 6 slots of 10 s.
    let layer = by_path()
        .clock(clock.clone())
        .window(Duration::from_secs(60), 6);
    let stats = layer.stats();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |_req: Request<Full<Bytes>>| async { Ok::<_, Infallible>(ok()) },
    ));
    let hit = || async {
        hit(&svc, "/w").await;
    };
    hit().await;
    hit().await;
    clock.advance(Duration::from_secs(35));
    hit().await;
    let snap = stats.snapshot();
    assert_eq!(snap.route("GET", "/w").unwrap().window.count, 3);
    assert_eq!(snap.window_secs, 60.0);
    // 70 s after the first two: they left the window, the third has not.
    clock.advance(Duration::from_secs(35));
    let snap = stats.snapshot();
    let r = snap.route("GET", "/w").unwrap();
    assert_eq!(r.window.count, 1);
    assert_eq!(r.total.count, 3);
    assert_eq!(snap.overall_total.count, 3);
    // Far later, the window is empty and the totals remain.
    clock.advance(Duration::from_secs(3600));
    let r = stats.snapshot().route("GET", "/w").unwrap().clone();
    assert_eq!((r.window.count, r.total.count), (0, 3));
}

#[tokio::test]
async fn routes_are_capped_and_never_raw_paths() {
    let layer = by_path().max_routes(3);
    let stats = layer.stats();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |_req: Request<Full<Bytes>>| async { Ok::<_, Infallible>(ok()) },
    ));
    for i in 0..50 {
        hit(&svc, &format!("/scan/{i}")).await;
    }
    let snap = stats.snapshot();
    assert_eq!(snap.routes.len(), 4, "three routes and `other`");
    assert_eq!(snap.route("GET", "other").unwrap().window.count, 47);
    // Without a classifier or MatchedPath: one constant label.
    let layer = TimingLayer::new();
    let stats = layer.stats();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |_req: Request<Full<Bytes>>| async { Ok::<_, Infallible>(ok()) },
    ));
    for i in 0..10 {
        hit(&svc, &format!("/x/{i}")).await;
    }
    let snap = stats.snapshot();
    assert_eq!(snap.routes.len(), 1);
    assert_eq!(snap.route("GET", "unmatched").unwrap().window.count, 10);
}

#[cfg(feature = "axum")] // route labels from axum's MatchedPath
#[tokio::test]
async fn axum_matched_path_labels_routes_over_http() {
    let layer = TimingLayer::new();
    let stats = layer.stats();
    let app = Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .route("/health", get(|| async { "ok" }))
        .layer(layer);
    let s = TestServer::serve(app).await;
    for path in ["/items/1", "/items/2", "/items/3", "/health", "/nope"] {
        s.get(path).await;
    }
    let snap = stats.snapshot();
    assert_eq!(snap.route("GET", "/items/{id}").unwrap().window.count, 3);
    assert_eq!(snap.route("GET", "/health").unwrap().window.count, 1);
    assert_eq!(
        snap.route("GET", "unmatched").unwrap().window.client_errors,
        1
    );
    assert!(snap.routes.iter().all(|r| !r.route.starts_with("/items/1")));
    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json["overall"]["count"], 5);
}

#[tokio::test]
async fn slow_requests_are_kept_in_a_bounded_ring() {
    let clock = ManualClock::new();
    let layer = by_path()
        .clock(clock.clone())
        .slow_threshold(Some(Duration::from_millis(100)))
        .slow_requests_kept(2);
    let stats = layer.stats();
    let c = clock.clone();
    let svc =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(move |req: Request<Full<Bytes>>| {
                let c = c.clone();
                async move {
                    let ms: u64 = req.uri().query().and_then(|q| q.parse().ok()).unwrap_or(0);
                    c.advance(Duration::from_millis(ms));
                    Ok::<_, Infallible>(ok())
                }
            }));
    for ms in [150, 10, 200, 300] {
        hit(&svc, &format!("/slow?{ms}")).await;
    }
    let snap = stats.snapshot();
    let slow: Vec<f64> = snap.slow_requests.iter().map(|s| s.duration_ms).collect();
    assert_eq!(slow, [200.0, 300.0], "the last two slow ones");
    assert_eq!(snap.slowest(1)[0].route, "/slow");
    assert_eq!(snap.by_error_rate(5).len(), 1);
}

/// A handle taken from the layer before its builder calls reads what the
/// configured layer records (the builder used to start new statistics on
/// each call that changes how they are kept: the handle read zero).
#[tokio::test]
async fn a_stats_handle_taken_first_follows_the_builder_calls() {
    let clock = ManualClock::new();
    let layer = TimingLayer::new();
    let stats = layer.stats();
    let c = clock.clone();
    let layer = layer
        .clock(clock.clone())
        .window(Duration::from_secs(60), 6)
        .max_routes(10)
        .slow_threshold(Some(Duration::from_millis(50)))
        .slow_requests_kept(5)
        .n_plus_one_threshold(3)
        .p99_target(Duration::from_millis(20))
        .error_rate_target(0.5)
        .classifier(|_, uri, _| Some(uri.path().to_owned()))
        .sub_timings(true)
        .server_timing(["db"]);
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        move |_req: Request<Full<Bytes>>| {
            c.advance(Duration::from_millis(80));
            async { Ok::<_, Infallible>(ok()) }
        },
    ));
    // Ten: enough for the insights to judge the route.
    for _ in 0..10 {
        hit(&svc, "/a").await;
    }
    let snap = stats.snapshot();
    let a = snap.route("GET", "/a").map(|r| r.window.count);
    assert_eq!(a, Some(10), "{snap:?}");
    // Read with the configuration the builder calls set.
    assert_eq!(snap.window_secs, 60.0);
    assert_eq!(snap.slow_requests.len(), 5);
    assert!(
        snap.insights
            .iter()
            .any(|i| i.kind == "latency" && i.message.contains("over the 20 ms target")),
        "{:?}",
        snap.insights
    );

    // A clone changed while the original lives on is a different layer:
    // it records apart, and the original's handles stay with the original.
    let layer = TimingLayer::new();
    let stats = layer.stats();
    let other = layer.clone().max_routes(5);
    let other_stats = other.stats();
    let ok_svc =
        |layer: TimingLayer| {
            ServiceBuilder::new().layer(layer).service(service_fn(
                |_req: Request<Full<Bytes>>| async { Ok::<_, Infallible>(ok()) },
            ))
        };
    hit(&ok_svc(layer), "/b").await;
    let other = ok_svc(other);
    hit(&other, "/c").await;
    hit(&other, "/c").await;
    assert_eq!(stats.snapshot().overall.count, 1);
    assert_eq!(other_stats.snapshot().overall.count, 2);
}

/// A handle stays with the services a layer already made: a builder call
/// after that (even with the clone that made them gone, as axum drops its
/// own) makes a new layer that records apart.
#[tokio::test]
async fn a_stats_handle_stays_with_the_services_made_before_a_builder_call() {
    let layer = TimingLayer::new();
    let stats = layer.stats();
    let handler = service_fn(|_req: Request<Full<Bytes>>| async { Ok::<_, Infallible>(ok()) });
    let first = ServiceBuilder::new().layer(layer.clone()).service(handler);
    let later = layer.max_routes(5);
    let later_stats = later.stats();
    hit(&first, "/a").await;
    hit(&first, "/a").await;
    assert_eq!(stats.snapshot().overall.count, 2);
    assert_eq!(later_stats.snapshot().overall.count, 0);
}

#[tokio::test]
async fn many_threads_record_without_losing_counts() {
    let layer = by_path();
    let stats = layer.stats();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |_req: Request<Full<Bytes>>| async { Ok::<_, Infallible>(ok()) },
    ));
    let mut handles = Vec::new();
    for t in 0..4 {
        let svc = svc.clone();
        handles.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                for _ in 0..500 {
                    hit(&svc, if t % 2 == 0 { "/a" } else { "/b" }).await;
                }
            });
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    let snap = stats.snapshot();
    assert_eq!(snap.overall.count, 2000);
    assert_eq!(snap.route("GET", "/a").unwrap().window.count, 1000);
}

#[test]
fn services_futures_and_bodies_are_send_and_sync() {
    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}
    assert_send::<tower_perf::timing::ResponseBody<Full<Bytes>>>();
    assert_sync::<tower_perf::timing::ResponseBody<Full<Bytes>>>();
    assert_send::<
        tower_perf::timing::ResponseFuture<
            std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
        >,
    >();
    assert_send::<TimingLayer>();
    assert_sync::<TimingLayer>();
    let _ = Method::GET;
}

/// A handler that records one `db` span per item: an N+1 on purpose.
fn n_plus_one_app(layer: TimingLayer) -> Router {
    use axum::Extension;
    use tower_perf::timing::Timings;
    Router::new()
        .route(
            "/report",
            get(|t: Option<Extension<Timings>>| async move {
                if let Some(Extension(t)) = t {
                    for _ in 0..12 {
                        t.record("db", Duration::from_millis(2));
                    }
                    t.record("render", Duration::from_millis(1));
                }
                "report"
            }),
        )
        .route(
            "/item",
            get(|t: Option<Extension<Timings>>| async move {
                if let Some(Extension(t)) = t {
                    let _span = t.start("db");
                }
                "item"
            }),
        )
        .layer(layer)
}

#[cfg(feature = "axum")] // route labels from axum's MatchedPath
#[tokio::test]
async fn sub_timings_and_n_plus_one() {
    let layer = TimingLayer::new().sub_timings(true);
    let stats = layer.stats();
    let s = TestServer::serve(n_plus_one_app(layer)).await;
    s.get("/report").await;
    s.get("/report").await;
    s.get("/item").await;
    let snap = stats.snapshot();
    let report = snap.route("GET", "/report").unwrap();
    let db = report.spans.iter().find(|x| x.name == "db").unwrap();
    assert_eq!(
        (
            db.requests,
            db.spans,
            db.max_per_request,
            db.suspect_requests
        ),
        (2, 24, 12, 2)
    );
    assert!((db.mean_ms - 2.0).abs() < 1e-9 && (db.ms_per_request - 24.0).abs() < 1e-9);
    let item = snap.route("GET", "/item").unwrap();
    assert_eq!(item.spans[0].spans, 1);
    assert_eq!(snap.n_plus_one.len(), 1, "{:?}", snap.n_plus_one);
    let n1 = &snap.n_plus_one[0];
    assert_eq!(
        (
            n1.route.as_str(),
            n1.span.as_str(),
            n1.max_per_request,
            n1.threshold
        ),
        ("/report", "db", 12, 10)
    );
    // Sub-timings are off by default; no extension then, nothing recorded.
    let layer = TimingLayer::new();
    let stats = layer.stats();
    let s = TestServer::serve(n_plus_one_app(layer)).await;
    s.get("/report").await;
    assert!(
        stats
            .snapshot()
            .route("GET", "/report")
            .unwrap()
            .spans
            .is_empty()
    );
}

#[tokio::test]
async fn server_timing_is_off_by_default_and_allow_listed() {
    let s = TestServer::serve(n_plus_one_app(TimingLayer::new())).await;
    assert_eq!(s.get("/report").await.header("server-timing"), None);
    let s = TestServer::serve(n_plus_one_app(
        TimingLayer::new().sub_timings(true).server_timing(["db"]),
    ))
    .await;
    let res = s.get("/report").await;
    let v = res.header("server-timing").unwrap().to_owned();
    // W3C syntax: metric *( ";" param ) list; only allowed names appear.
    let parts: Vec<&str> = v.split(", ").collect();
    assert_eq!(parts.len(), 2, "{v}");
    assert!(parts[0].starts_with("total;dur="), "{v}");
    assert_eq!(parts[1], "db;dur=24.000;desc=\"12\"");
    assert!(!v.contains("render"));
    for p in parts {
        let dur = p.split(";dur=").nth(1).unwrap().split(';').next().unwrap();
        assert!(dur.parse::<f64>().unwrap() >= 0.0);
    }
}

/// `Timing::new` records with the default settings, and the service reads
/// the statistics of its layer's services.
#[tokio::test]
async fn the_service_constructor_records() {
    use tower_perf::timing::Timing;
    let svc = Timing::new(service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(ok())
    }));
    hit(&svc, "/a").await;
    hit(&svc, "/b").await;
    assert_eq!(svc.stats().snapshot().overall.count, 2);
    let layered = tower::Layer::layer(
        &Timing::<()>::layer(),
        service_fn(|_req: Request<Full<Bytes>>| async { Ok::<_, Infallible>(ok()) }),
    );
    hit(&layered, "/a").await;
    assert_eq!(layered.stats().snapshot().overall.count, 1);
}
