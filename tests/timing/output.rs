//! What TimingLayer reads out: the Prometheus text (OpenTelemetry's names,
//! labels and `error_type`, checked by promtool) and the insights.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_perf::clock::ManualClock;
use tower_perf::timing::TimingLayer;

use crate::support::{self, TestServer};
use crate::{by_path, get_req, hit, n_plus_one_app};

/// `error_type` follows OpenTelemetry's `error.type` on a server: a 5xx
/// carries its status code, a 4xx (429 included) none, a body that failed
/// midway `_OTHER` next to the status its head carried, and an
/// inner-service error (no response, no status sent) `_OTHER` without
/// `http_response_status_code`.
#[tokio::test]
async fn prometheus_error_type_follows_opentelemetry() {
    let layer = by_path();
    let stats = layer.stats();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |req: Request<Full<Bytes>>| async move {
            let status = match req.uri().path() {
                "/error" => return Err(std::io::Error::other("inner service failed")),
                "/unavailable" => StatusCode::SERVICE_UNAVAILABLE,
                "/missing" => StatusCode::NOT_FOUND,
                "/limited" => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::OK,
            };
            let mut frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> =
                vec![Ok(http_body::Frame::data(Bytes::from_static(b"body")))];
            if req.uri().path() == "/broken" {
                frames.push(Err(std::io::Error::other("upstream closed")));
            }
            let body = StreamBody::new(futures_util::stream::iter(frames));
            let mut res = Response::new(body);
            *res.status_mut() = status;
            Ok(res)
        },
    ));
    for path in ["/ok", "/unavailable", "/missing", "/limited", "/broken"] {
        let res = svc.clone().oneshot(get_req(path)).await.unwrap();
        let read = res.into_body().collect().await;
        assert_eq!(read.is_err(), path == "/broken", "{path}");
    }
    assert!(svc.clone().oneshot(get_req("/error")).await.is_err());

    let text = stats.prometheus();
    let count = |route: &str| -> Vec<&str> {
        let needle = format!("http_route=\"{route}\"");
        text.lines()
            .filter(|l| {
                l.starts_with("http_server_request_duration_seconds_count{") && l.contains(&needle)
            })
            .collect()
    };
    let series = |route: &str, rest: &str| {
        format!(
            "http_server_request_duration_seconds_count{{http_request_method=\"GET\",http_route=\"{route}\"{rest}}} 1"
        )
    };
    assert_eq!(
        count("/ok"),
        [series("/ok", ",http_response_status_code=\"200\"")],
        "{text}"
    );
    assert_eq!(
        count("/unavailable"),
        [series(
            "/unavailable",
            ",http_response_status_code=\"503\",error_type=\"503\""
        )]
    );
    assert_eq!(
        count("/missing"),
        [series("/missing", ",http_response_status_code=\"404\"")]
    );
    assert_eq!(
        count("/limited"),
        [series("/limited", ",http_response_status_code=\"429\"")]
    );
    assert_eq!(
        count("/broken"),
        [series(
            "/broken",
            ",http_response_status_code=\"200\",error_type=\"_OTHER\""
        )]
    );
    assert_eq!(
        count("/error"),
        [series("/error", ",error_type=\"_OTHER\"")]
    );
    support::promtool(&text);

    // The snapshot still counts the inner-service error as a 500, with the
    // server errors; the 4xx stay the client's.
    let snap = stats.snapshot();
    let error = snap.route("GET", "/error").unwrap();
    assert_eq!(
        error.status_codes,
        [tower_perf::timing::StatusCount {
            code: 500,
            count: 1
        }]
    );
    let o = &snap.overall;
    assert_eq!(
        (o.count, o.server_errors, o.client_errors, o.failed),
        (6, 3, 2, 1)
    );
}

#[cfg(feature = "axum")] // route labels from axum's MatchedPath
#[tokio::test]
async fn prometheus_text() {
    let layer = TimingLayer::new();
    let stats = layer.stats();
    let app = Router::new()
        .route("/a/{id}", get(|| async { "a" }))
        .route(
            "/b",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "b") }),
        )
        .layer(layer);
    let s = TestServer::serve(app).await;
    s.get("/a/1").await;
    s.get("/a/2").await;
    s.get("/b").await;
    let text = stats.prometheus();
    assert!(text.contains("# TYPE http_server_request_duration_seconds histogram\n"));
    let a = "http_request_method=\"GET\",http_route=\"/a/{id}\",http_response_status_code=\"200\"";
    assert!(
        text.contains(&format!(
            "http_server_request_duration_seconds_bucket{{{a},le=\"10\"}} 2\n"
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "http_server_request_duration_seconds_bucket{{{a},le=\"+Inf\"}} 2\n"
    )));
    assert!(text.contains(&format!(
        "http_server_request_duration_seconds_count{{{a}}} 2\n"
    )));
    assert!(text.contains("http_response_status_code=\"503\""));
    // Every sample line: name{labels} value, buckets cumulative.
    let mut last: Option<(String, u64)> = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
        assert!(series.contains('{') && series.ends_with('}'), "{line}");
        if let Some(prefix) = series
            .split(",le=")
            .next()
            .filter(|_| series.contains(",le="))
        {
            let v: u64 = value.parse().unwrap();
            if let Some((p, lv)) = &last {
                if p == prefix {
                    assert!(v >= *lv, "cumulative: {line}");
                }
            }
            last = Some((prefix.to_owned(), v));
        }
    }
}

#[tokio::test]
async fn insights_name_the_problem_and_the_fix() {
    use tower_perf::insight::Severity;
    let clock = ManualClock::new();
    let layer = by_path().clock(clock.clone()).slow_threshold(None);
    let stats = layer.stats();
    let c = clock.clone();
    let svc =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(move |req: Request<Full<Bytes>>| {
                let c = c.clone();
                async move {
                    let path = req.uri().path().to_owned();
                    let status = match path.as_str() {
                        "/slow" => {
                            c.advance(Duration::from_millis(148));
                            200
                        }
                        "/glacial" => {
                            c.advance(Duration::from_millis(900));
                            200
                        }
                        "/flaky" => 500,
                        "/missing" => 404,
                        "/limited" => 429,
                        _ => 200,
                    };
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .body(Full::<Bytes>::from("x"))
                            .unwrap(),
                    )
                }
            }));
    for path in [
        "/slow", "/glacial", "/flaky", "/fine", "/missing", "/limited",
    ] {
        for _ in 0..20 {
            hit(&svc, path).await;
        }
    }
    let snap = stats.snapshot();
    let by_route = |r: &str| {
        snap.insights
            .iter()
            .filter(|i| i.route.as_deref() == Some(r))
            .collect::<Vec<_>>()
    };
    let slow = by_route("GET /slow");
    assert_eq!(slow.len(), 1);
    assert_eq!(slow[0].severity, Severity::Warning);
    assert_eq!(
        slow[0].message,
        "p99 of GET /slow is 148 ms, over the 100 ms target"
    );
    assert!(!slow[0].recommendation.is_empty());
    assert_eq!(by_route("GET /glacial")[0].severity, Severity::Critical);
    let flaky = by_route("GET /flaky");
    assert_eq!(
        (flaky[0].kind, flaky[0].severity),
        ("errors", Severity::Critical)
    );
    assert!(by_route("GET /fine").is_empty());
    // 4xx are the client's: information that names the status, and the
    // 429s get their own, never a warning.
    let missing = by_route("GET /missing");
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(
        (missing[0].kind, missing[0].severity),
        ("client_errors", Severity::Info)
    );
    assert!(
        missing[0].message.contains("404 Not Found"),
        "{}",
        missing[0].message
    );
    assert!(
        missing[0].recommendation.contains("missing resources"),
        "{}",
        missing[0].recommendation
    );
    let limited = by_route("GET /limited");
    assert_eq!(limited.len(), 1, "{limited:?}");
    assert_eq!(
        (limited[0].kind, limited[0].severity),
        ("rate_limited", Severity::Info)
    );
    assert!(
        limited[0].message.contains("20 of 20"),
        "{}",
        limited[0].message
    );
    // Most severe first.
    assert!(
        snap.insights
            .windows(2)
            .all(|w| w[0].severity >= w[1].severity)
    );
    let json = serde_json::to_value(&snap.insights[0]).unwrap();
    assert_eq!(json["severity"], "critical");
}

#[tokio::test]
async fn n_plus_one_becomes_an_insight() {
    let layer = TimingLayer::new().sub_timings(true);
    let stats = layer.stats();
    let s = TestServer::serve(n_plus_one_app(layer)).await;
    s.get("/report").await;
    let snap = stats.snapshot();
    let i = snap
        .insights
        .iter()
        .find(|i| i.kind == "n_plus_one")
        .unwrap();
    assert!(
        i.message.contains("up to 12 'db' spans per request"),
        "{}",
        i.message
    );
    assert!(i.recommendation.contains("one call"));
}

/// `promtool check metrics` accepts the exposition. `.ci/run` installs
/// promtool (Debian package `prometheus`) and sets
/// TOWER_PERF_REQUIRE_PROMTOOL=1; elsewhere the test says it was skipped.
#[tokio::test]
async fn promtool_accepts_the_metrics() {
    let layer = TimingLayer::new();
    let stats = layer.stats();
    let app = Router::new()
        .route("/a/{id}", get(|| async { "a" }))
        .route("/q\"uote", get(|| async { "q" }))
        .layer(layer);
    let s = TestServer::serve(app).await;
    s.get("/a/1").await;
    s.get("/q%22uote").await;
    s.get("/missing").await;
    support::promtool(&stats.prometheus());
}

/// Methods the conventions don't know are all `_OTHER`: two of them on one
/// route make one series of each family, never two lines with the same
/// labels (which would make the exposition invalid).
#[tokio::test]
async fn unknown_methods_on_one_route_are_one_series() {
    let layer = TimingLayer::new().classifier(|_, _, _| Some("/dav".to_owned()));
    let stats = layer.stats();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok")))
        },
    ));
    for m in ["PROPFIND", "MKCOL", "PROPFIND"] {
        let req = Request::builder()
            .method(http::Method::from_bytes(m.as_bytes()).unwrap())
            .uri("/dav/x")
            .body(Full::default())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        res.into_body().collect().await.unwrap();
    }
    let text = stats.prometheus();
    let lines =
        |prefix: &str| -> Vec<&str> { text.lines().filter(|l| l.starts_with(prefix)).collect() };
    let count = lines(
        "http_server_request_duration_seconds_count{http_request_method=\"_OTHER\",http_route=\"/dav\",http_response_status_code=\"200\"}",
    );
    assert_eq!(count, [count[0]], "{text}");
    assert!(count[0].ends_with(" 3"), "{text}");
    assert_eq!(
        lines("http_server_active_requests{http_request_method=\"_OTHER\",http_route=\"/dav\"}")
            .len(),
        1,
        "{text}"
    );
    assert_eq!(
        lines(
            "http_server_request_aborted_total{http_request_method=\"_OTHER\",http_route=\"/dav\"}"
        )
        .len(),
        1,
        "{text}"
    );
    support::promtool(&text);
    // A client inventing methods grows nothing: one route for them all.
    for i in 0..300 {
        let req = Request::builder()
            .method(http::Method::from_bytes(format!("X{i}").as_bytes()).unwrap())
            .uri("/dav/x")
            .body(Full::default())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        res.into_body().collect().await.unwrap();
    }
    let snap = stats.snapshot();
    assert_eq!(
        snap.routes.len(),
        1,
        "{:?}",
        snap.routes.iter().map(|r| &r.method).collect::<Vec<_>>()
    );
    assert_eq!(snap.routes[0].method, "_OTHER");
}
