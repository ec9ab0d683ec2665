//! OpenTelemetry metrics (feature `otel`) through the real SDK pipeline:
//! an `SdkMeterProvider` with a periodic reader into the SDK's in-memory
//! exporter, flushed by the test.

mod support;

use std::convert::Infallible;

use axum::Router;
use axum::routing::{get, post};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use opentelemetry::metrics::MeterProvider;
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use support::TestServer;
use tower::{ServiceBuilder, service_fn};
use tower_perf::cache::CacheLayer;
use tower_perf::compression::CompressionLayer;
use tower_perf::rate_limit::{Quota, RateLimitLayer, RateRule};
use tower_perf::report::Report;
use tower_perf::timing::TimingLayer;

struct Pipeline {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

impl Pipeline {
    fn new() -> Self {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        Self { provider, exporter }
    }

    fn meter(&self) -> opentelemetry::metrics::Meter {
        self.provider.meter("tower-perf-test")
    }

    /// Collects now; the last export holds every instrument (cumulative).
    fn collect(&self) -> ResourceMetrics {
        self.exporter.reset();
        self.provider.force_flush().expect("flush");
        self.exporter
            .get_finished_metrics()
            .expect("metrics")
            .pop()
            .expect("one export")
    }
}

/// One data point: its attributes (sorted) and its value or count/sum.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    attributes: Vec<(String, String)>,
    /// A sum's or gauge's value; a histogram's count.
    value: f64,
    /// A histogram's sum.
    sum: f64,
    /// A histogram's bounds.
    bounds: Vec<f64>,
}

fn attrs<'a>(kvs: impl Iterator<Item = &'a KeyValue>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = kvs
        .map(|kv| {
            let val = match &kv.value {
                Value::I64(i) => i.to_string(),
                other => other.as_str().into_owned(),
            };
            (kv.key.as_str().to_owned(), val)
        })
        .collect();
    v.sort();
    v
}

macro_rules! points_of {
    ($data:expr, $to_f64:expr) => {{
        let to_f64 = $to_f64;
        match $data {
            MetricData::Sum(s) => s
                .data_points()
                .map(|p| Point {
                    attributes: attrs(p.attributes()),
                    value: to_f64(p.value()),
                    sum: 0.0,
                    bounds: vec![],
                })
                .collect::<Vec<_>>(),
            MetricData::Gauge(g) => g
                .data_points()
                .map(|p| Point {
                    attributes: attrs(p.attributes()),
                    value: to_f64(p.value()),
                    sum: 0.0,
                    bounds: vec![],
                })
                .collect(),
            MetricData::Histogram(h) => h
                .data_points()
                .map(|p| Point {
                    attributes: attrs(p.attributes()),
                    value: p.count() as f64,
                    sum: to_f64(p.sum()),
                    bounds: p.bounds().collect(),
                })
                .collect(),
            MetricData::ExponentialHistogram(_) => vec![],
        }
    }};
}

/// The data points of the instrument `name`, and its unit.
fn points(rm: &ResourceMetrics, name: &str) -> (String, Vec<Point>) {
    for sm in rm.scope_metrics() {
        for m in sm.metrics() {
            if m.name() != name {
                continue;
            }
            let pts = match m.data() {
                AggregatedMetrics::F64(d) => points_of!(d, |v: f64| v),
                AggregatedMetrics::U64(d) => points_of!(d, |v: u64| v as f64),
                AggregatedMetrics::I64(d) => points_of!(d, |v: i64| v as f64),
            };
            return (m.unit().to_owned(), pts);
        }
    }
    (String::new(), vec![])
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    v
}

fn find<'a>(pts: &'a [Point], pairs: &[(&str, &str)]) -> Option<&'a Point> {
    let want = kv(pairs);
    pts.iter().find(|p| p.attributes == want)
}

#[tokio::test]
async fn the_http_server_instruments_follow_the_semantic_conventions() {
    let pipeline = Pipeline::new();
    let app = Router::new()
        .route("/items/{id}", get(|| async { "hello" }))
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "no") }),
        )
        .route(
            "/upload",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .layer(TimingLayer::new().meter(&pipeline.meter()));
    let s = TestServer::serve(app).await;
    assert_eq!(s.get("/items/1").await.status, StatusCode::OK);
    assert_eq!(s.get("/items/2").await.status, StatusCode::OK);
    assert_eq!(
        s.get("/boom").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(s.get("/nowhere").await.status, StatusCode::NOT_FOUND);
    let upload = s
        .request(Method::POST, "/upload")
        .body(Full::from(vec![b'x'; 300]))
        .unwrap();
    assert_eq!(s.send(upload).await.text(), "300");
    let purge = s
        .request(Method::from_bytes(b"PURGE").unwrap(), "/items/1")
        .body(Full::default())
        .unwrap();
    s.send(purge).await;

    let rm = pipeline.collect();
    let (unit, d) = points(&rm, "http.server.request.duration");
    assert_eq!(unit, "s");
    let items = find(
        &d,
        &[
            ("http.request.method", "GET"),
            ("url.scheme", "http"),
            ("http.route", "/items/{id}"),
            ("http.response.status_code", "200"),
        ],
    )
    .unwrap_or_else(|| panic!("{d:#?}"));
    assert_eq!(items.value, 2.0);
    assert!(
        items.sum > 0.0 && items.sum < 10.0,
        "seconds: {}",
        items.sum
    );
    assert_eq!(
        items.bounds,
        [
            0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0
        ]
    );
    // A 5xx carries its code as error.type; a 404 (the client's) none,
    // and no route: nothing matched.
    assert!(
        find(
            &d,
            &[
                ("http.request.method", "GET"),
                ("url.scheme", "http"),
                ("http.route", "/boom"),
                ("http.response.status_code", "500"),
                ("error.type", "500"),
            ],
        )
        .is_some(),
        "{d:#?}"
    );
    assert!(
        find(
            &d,
            &[
                ("http.request.method", "GET"),
                ("url.scheme", "http"),
                ("http.response.status_code", "404"),
            ],
        )
        .is_some(),
        "{d:#?}"
    );
    // An unknown method is `_OTHER`.
    assert!(
        d.iter().any(|p| p
            .attributes
            .contains(&("http.request.method".into(), "_OTHER".into()))),
        "{d:#?}"
    );
    assert!(
        !d.iter()
            .any(|p| p.attributes.iter().any(|(_, v)| v == "PURGE")),
        "{d:#?}"
    );

    let (unit, req) = points(&rm, "http.server.request.body.size");
    assert_eq!(unit, "By");
    let upload = find(
        &req,
        &[
            ("http.request.method", "POST"),
            ("url.scheme", "http"),
            ("http.route", "/upload"),
            ("http.response.status_code", "200"),
        ],
    )
    .unwrap_or_else(|| panic!("{req:#?}"));
    assert_eq!((upload.value, upload.sum), (1.0, 300.0));
    let (_, res) = points(&rm, "http.server.response.body.size");
    let items = find(
        &res,
        &[
            ("http.request.method", "GET"),
            ("url.scheme", "http"),
            ("http.route", "/items/{id}"),
            ("http.response.status_code", "200"),
        ],
    )
    .unwrap_or_else(|| panic!("{res:#?}"));
    assert_eq!(
        (items.value, items.sum),
        (2.0, 10.0),
        "two bodies of 5 bytes"
    );
}

#[tokio::test]
async fn active_requests_rise_and_fall_with_the_method_and_scheme_only() {
    let pipeline = Pipeline::new();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(Some(rx)));
    let svc = ServiceBuilder::new()
        .layer(
            TimingLayer::new()
                .url_scheme("https")
                .meter(&pipeline.meter()),
        )
        .service(service_fn(move |_req: Request<Full<Bytes>>| {
            let rx = rx.lock().unwrap().take();
            async move {
                if let Some(rx) = rx {
                    let _ = rx.await;
                }
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("done")))
            }
        }));
    let call = tokio::spawn(tower::ServiceExt::oneshot(
        svc,
        Request::get("/wait").body(Full::default()).unwrap(),
    ));
    tokio::task::yield_now().await;
    let active = |rm: &ResourceMetrics| {
        let (unit, p) = points(rm, "http.server.active_requests");
        assert_eq!(unit, "{request}");
        find(
            &p,
            &[("http.request.method", "GET"), ("url.scheme", "https")],
        )
        .map(|p| p.value)
        .unwrap_or_else(|| panic!("{p:#?}"))
    };
    // The handler waits on the channel: the request is in flight.
    for _ in 0..100 {
        if active(&pipeline.collect()) == 1.0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(active(&pipeline.collect()), 1.0);
    tx.send(()).unwrap();
    let res = call.await.unwrap().unwrap();
    res.into_body().collect().await.unwrap();
    assert_eq!(active(&pipeline.collect()), 0.0);
}

#[test]
#[should_panic(expected = "neither \"http\" nor \"https\"")]
fn a_scheme_other_than_http_or_https_is_refused() {
    let _ = TimingLayer::new().url_scheme("ftp");
}

#[tokio::test]
async fn the_report_publishes_the_layers_counters() {
    let pipeline = Pipeline::new();
    let rate = RateLimitLayer::new().rule(RateRule::new("api", Quota::per_minute(3)));
    let cache = CacheLayer::new();
    let compression = CompressionLayer::new();
    let queries = tower_perf::query_cache::QueryCache::new();
    let report = Report::builder()
        .rate_limit(rate.stats())
        .cache(cache.handle())
        .compression(compression.stats())
        .query_cache(&queries)
        .build();
    report.register_otel(&pipeline.meter());
    let page = "x".repeat(4096);
    let svc = ServiceBuilder::new()
        .layer(rate)
        .layer(cache)
        .layer(compression)
        .service(service_fn(move |_req: Request<hyper::body::Incoming>| {
            let page = page.clone();
            async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "text/plain")
                        .header("cache-control", "max-age=60")
                        .body(Full::<Bytes>::from(page))
                        .unwrap(),
                )
            }
        }));
    let s = TestServer::serve(svc).await;
    for _ in 0..4 {
        s.get_with("/page", &[("accept-encoding", "gzip")]).await;
    }
    let rm = pipeline.collect();
    let (_, cache) = points(&rm, "tower_perf.cache.requests");
    let result = |r: &str| find(&cache, &[("tower_perf.cache.result", r)]).map(|p| p.value);
    assert_eq!(result("miss"), Some(1.0), "{cache:#?}");
    assert_eq!(result("hit"), Some(2.0), "{cache:#?}");
    let (_, stores) = points(&rm, "tower_perf.cache.stores");
    assert_eq!(stores[0].value, 1.0);
    let (unit, size) = points(&rm, "tower_perf.cache.size");
    assert_eq!(unit, "By");
    assert!(size[0].value > 0.0);

    let (unit, io) = points(&rm, "tower_perf.compression.io");
    assert_eq!(unit, "By");
    let dir = |d: &str| {
        find(
            &io,
            &[
                ("tower_perf.compression.coding", "gzip"),
                ("tower_perf.compression.direction", d),
            ],
        )
        .map(|p| p.value)
    };
    assert_eq!(dir("input"), Some(4096.0), "{io:#?}");
    assert!(dir("output").unwrap() < 4096.0);

    let (_, rl) = points(&rm, "tower_perf.rate_limit.requests");
    let decision = |d: &str| {
        find(
            &rl,
            &[
                ("tower_perf.rate_limit.policy", "api"),
                ("tower_perf.rate_limit.decision", d),
            ],
        )
        .map(|p| p.value)
    };
    assert_eq!(decision("allowed"), Some(3.0), "{rl:#?}");
    assert_eq!(decision("limited"), Some(1.0), "{rl:#?}");

    // The query cache: a load that fails, one that works, two hits.
    let key = tower_perf::query_cache::QueryKey::new("prices:eu");
    let ttl = std::time::Duration::from_secs(60);
    let _ = queries
        .get_or_insert_with(&key, ttl, || async { Err::<u32, _>("down") })
        .await;
    for _ in 0..3 {
        let _ = queries
            .get_or_insert_with(&key, ttl, || async { Ok::<u32, &str>(7) })
            .await;
    }
    let rm = pipeline.collect();
    let (_, lookups) = points(&rm, "tower_perf.query_cache.lookups");
    let result = |r: &str| {
        find(
            &lookups,
            &[
                ("tower_perf.query_cache.namespace", "prices"),
                ("tower_perf.query_cache.result", r),
            ],
        )
        .map(|p| p.value)
    };
    assert_eq!(
        (result("hit"), result("miss")),
        (Some(2.0), Some(2.0)),
        "{lookups:#?}"
    );
    let (_, loads) = points(&rm, "tower_perf.query_cache.loads");
    let failed = find(
        &loads,
        &[
            ("tower_perf.query_cache.namespace", "prices"),
            ("error.type", "_OTHER"),
        ],
    );
    let ok = find(&loads, &[("tower_perf.query_cache.namespace", "prices")]);
    assert_eq!(
        (ok.map(|p| p.value), failed.map(|p| p.value)),
        (Some(1.0), Some(1.0)),
        "{loads:#?}"
    );
    let (unit, size) = points(&rm, "tower_perf.query_cache.size");
    assert_eq!(unit, "By");
    assert!(size[0].value > 0.0);
}

#[test]
#[should_panic(expected = "register_otel called twice")]
fn registering_twice_is_refused() {
    let pipeline = Pipeline::new();
    let report = Report::builder().build();
    report.register_otel(&pipeline.meter());
    report.clone().register_otel(&pipeline.meter());
}
