//! The performance endpoints over real HTTP, on the example server with
//! every layer: numbers after known traffic, auth on mutations, method and
//! input errors, Prometheus text checked by promtool, and the dashboard in
//! headless Chromium.

mod support;

#[allow(dead_code)]
#[path = "../examples/server.rs"]
mod server;

use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use server::DemoConfig;
use support::{TestResponse, TestServer};

const TOKEN: &str = "s3cret-token";

fn config(token: Option<&str>) -> DemoConfig {
    DemoConfig {
        slow: (Duration::from_millis(110), Duration::from_millis(120)),
        stream_interval: Duration::from_millis(2),
        stream_lines: 3,
        rate_limit_per_min: Some(1000),
        cache: true,
        token: token.map(str::to_owned),
        bare: false,
        export_step: Duration::from_millis(1),
        tasks: server::demo_tasks(),
        // Points every 200 ms: the dashboard's test sees several.
        history: Duration::from_millis(200),
    }
}

async fn start(token: Option<&str>) -> TestServer {
    TestServer::serve(server::app_with(config(token))).await
}

async fn json(s: &TestServer, path: &str) -> Value {
    let r = s.get(path).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
    r.json()
}

async fn post(s: &TestServer, path: &str, token: Option<&str>, body: &str) -> TestResponse {
    let mut req = s
        .request(Method::POST, path)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    s.send(req.body(Full::from(body.to_owned())).unwrap()).await
}

/// Known traffic: two identical GETs (a miss, then a hit), a gzip GET, a
/// slow request, a 404.
async fn traffic(s: &TestServer) {
    s.get("/api/v1/items/3").await;
    s.get("/api/v1/items/3").await;
    s.get_with("/static/app.js", &[("accept-encoding", "gzip")])
        .await;
    s.get("/api/v1/slow").await;
    s.get("/api/v1/items/99999").await;
}

#[tokio::test]
async fn stats_endpoints_count_the_traffic() {
    let s = start(None).await;
    traffic(&s).await;

    let cache = json(&s, "/performance/cache/stats").await;
    assert_eq!(cache["hits"], 1, "{cache}");
    // Item 3, app.js and the slow answer (an /api policy of 300 s); the
    // 404 gets no policy, so it isn't stored.
    assert_eq!(cache["stores"], 3, "{cache}");
    assert_eq!(cache["not_stored"], 1, "{cache}");
    assert!(cache["misses"].as_u64().unwrap() >= 3, "{cache}");
    // Per route template: the item route had its miss and its hit.
    let routes = json(&s, "/performance/cache/routes").await;
    let item = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/api/v1/items/{id}")
        .unwrap_or_else(|| panic!("no item route: {routes}"));
    assert_eq!(item["hits"], 1, "{item}");
    assert_eq!(item["misses"], 2, "item 3, then 99999: {item}");
    let summary = json(&s, "/performance/summary").await;
    // The same routes, but for the report's own (this read is one more).
    let not_own = |v: &Value| -> Vec<Value> {
        v.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["route"] != "/performance/{*endpoint}")
            .cloned()
            .collect()
    };
    assert_eq!(not_own(&summary["cache_routes"]), not_own(&routes));

    let comp = json(&s, "/performance/compression/stats").await;
    let gzip = comp["codings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["coding"] == "gzip")
        .unwrap();
    assert_eq!(gzip["responses"], 1, "{comp}");
    assert!(comp["bytes_saved"].as_u64().unwrap() > 20_000, "{comp}");

    let rl = json(&s, "/performance/rate-limit/stats").await;
    let api = rl["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "api")
        .unwrap();
    assert_eq!(api["allowed"], 4, "{rl}"); // the four /api requests
    assert_eq!(rl["limited"], 0);

    let overview = json(&s, "/performance/profile/overview").await;
    let routes = overview["routes"].as_array().unwrap();
    let item = routes
        .iter()
        .find(|r| r["route"] == "/api/v1/items/{id}")
        .unwrap();
    assert_eq!(item["total"]["count"], 3, "{overview}");
    assert_eq!(item["total"]["client_errors"], 1);
    // The endpoints themselves are timed under one label, never raw paths.
    assert!(
        routes
            .iter()
            .any(|r| r["route"] == "/performance/{*endpoint}"),
        "{overview}"
    );
    assert!(
        !routes
            .iter()
            .any(|r| r["route"].as_str().unwrap().starts_with("/performance/c"))
    );

    let slow = json(&s, "/performance/profile/slow-requests").await;
    let slow = slow.as_array().unwrap();
    assert_eq!(slow.len(), 1, "{slow:?}");
    assert_eq!(slow[0]["route"], "/api/v1/slow");
    assert!(slow[0]["duration_ms"].as_f64().unwrap() >= 100.0);

    let slowest = json(&s, "/performance/profile/slowest").await;
    assert_eq!(slowest[0]["route"], "/api/v1/slow", "{slowest}");

    let summary = json(&s, "/performance/summary").await;
    assert_eq!(summary["cache"]["hits"], 1);
    assert!(summary["traffic"]["total"].as_u64().unwrap() >= 5);
    assert!(["healthy", "warning", "critical"].contains(&summary["status"].as_str().unwrap()));
    assert!(summary["traffic"]["routes"].as_array().unwrap().len() >= 3);
}

#[tokio::test]
async fn the_summary_recommends_and_sets_the_status() {
    let s = start(None).await;
    // /api/v1/report reads items one by one: an N+1 suspect once there are
    // enough requests; /api/v1/slow breaks the 100 ms p99 target.
    for _ in 0..12 {
        s.get_with("/api/v1/report", &[("cache-control", "no-cache")])
            .await;
        s.get_with("/api/v1/slow", &[("cache-control", "no-cache")])
            .await;
    }
    let summary = json(&s, "/performance/summary").await;
    let recs = summary["recommendations"].as_array().unwrap();
    let areas: Vec<&str> = recs.iter().map(|r| r["area"].as_str().unwrap()).collect();
    assert!(areas.contains(&"n_plus_one"), "{summary}");
    assert!(areas.contains(&"latency"), "{summary}");
    // The insights endpoint says the same, route by route.
    let insights = json(&s, "/performance/profile/insights").await;
    let kinds: Vec<(&str, &str)> = insights
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap(),
                i["route"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("n_plus_one", "GET /api/v1/report")),
        "{insights}"
    );
    assert!(
        kinds.contains(&("latency", "GET /api/v1/slow")),
        "{insights}"
    );
    assert_eq!(summary["status"], "warning", "{summary}");
}

/// A 4xx is the client's (OpenTelemetry's HTTP conventions): a burst of
/// 404s, then of 429s from the server's own limiter, leaves the status
/// healthy and the server error rate 0, with the 4xx and 429 figures right
/// and informational recommendations that say what happened.
#[tokio::test]
async fn a_burst_of_404s_and_429s_leaves_the_status_healthy() {
    let s = TestServer::serve(server::app_with(DemoConfig {
        rate_limit_per_min: Some(20),
        ..config(None)
    }))
    .await;
    let (mut missing, mut limited) = (0u64, 0u64);
    for _ in 0..60 {
        match s.get("/api/v1/items/99999").await.status {
            StatusCode::NOT_FOUND => missing += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    // 20 at once, then one every 3 s: most of the 60 are limited.
    assert!(
        missing >= 20 && limited >= 10,
        "{missing} 404, {limited} 429"
    );
    let summary = json(&s, "/performance/summary").await;
    assert_eq!(summary["status"], "healthy", "{summary}");
    let t = &summary["traffic"];
    assert_eq!(t["error_rate"], 0.0, "{summary}");
    assert_eq!(t["server_errors"], 0);
    assert_eq!(t["client_errors"], 60);
    assert_eq!(t["rate_limited"], limited);
    assert_eq!(t["client_error_rate"], 1.0);
    let item = t["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/api/v1/items/{id}")
        .unwrap();
    assert_eq!(
        (
            &item["error_rate"],
            &item["client_errors"],
            &item["rate_limited"]
        ),
        (&Value::from(0.0), &Value::from(60), &Value::from(limited)),
        "{item}"
    );
    let recs = summary["recommendations"].as_array().unwrap();
    assert!(recs.iter().all(|r| r["level"] == "info"), "{summary}");
    let rec = |area: &str| {
        recs.iter()
            .find(|r| r["area"] == area)
            .unwrap_or_else(|| panic!("no {area}: {summary}"))
    };
    let four = rec("client_errors");
    assert_eq!(four["route"], "GET /api/v1/items/{id}");
    assert!(
        four["message"].as_str().unwrap().contains("404 Not Found"),
        "{four}"
    );
    let r429 = rec("rate_limited");
    assert_eq!(r429["route"], "GET /api/v1/items/{id}");
    assert!(
        r429["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{limited} of 60 ")),
        "{r429}"
    );
    // The limiter's own figures name the limit being hit.
    let policy = rec("rate_limit");
    assert!(
        policy["message"]
            .as_str()
            .unwrap()
            .contains(&format!("policy 'api' limited {limited} of 60")),
        "{policy}"
    );
}

/// Server errors still warn, and turn critical past five times the target,
/// whatever share of 4xx surrounds them.
#[tokio::test]
async fn server_errors_still_warn_and_turn_critical() {
    use tower::{ServiceBuilder, ServiceExt, service_fn};
    use tower_perf::report::Status;
    let timing =
        tower_perf::timing::TimingLayer::new().classifier(|_, uri, _| Some(uri.path().to_owned()));
    let report = tower_perf::report::Report::builder()
        .timing(timing.stats())
        .build();
    let svc = ServiceBuilder::new().layer(timing).service(service_fn(
        |req: http::Request<Full<bytes::Bytes>>| async move {
            let code: u16 = req
                .uri()
                .query()
                .and_then(|q| q.parse().ok())
                .unwrap_or(200);
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(code)
                    .body(Full::<bytes::Bytes>::from("x"))
                    .unwrap(),
            )
        },
    ));
    let hit = |path: String| {
        let svc = svc.clone();
        async move {
            let res = svc
                .oneshot(http::Request::get(path).body(Full::default()).unwrap())
                .await
                .unwrap();
            support::body_bytes(res.into_body()).await;
        }
    };
    // One 500 among 40 answers, 30 of them 404s: 2.5% server errors, over
    // the 1% target but under five times it.
    for i in 0..40 {
        let code = match i {
            0 => 500,
            1..=30 => 404,
            _ => 200,
        };
        hit(format!("/a?{code}")).await;
    }
    let summary = report.summary();
    assert_eq!(summary.status, Status::Warning, "{summary:#?}");
    let traffic = &summary.traffic.as_ref().unwrap().overall;
    assert!((traffic.error_rate - 0.025).abs() < 1e-9, "{traffic:?}");
    assert_eq!((traffic.server_errors, traffic.client_errors), (1, 30));
    let errors = summary
        .recommendations
        .iter()
        .find(|r| r.kind == "errors")
        .unwrap();
    assert!(
        errors
            .message
            .starts_with("2.5% of GET /a responses are server errors (1 of 40)"),
        "{}",
        errors.message
    );
    for _ in 0..20 {
        hit("/b?503".to_owned()).await;
    }
    assert_eq!(report.summary().status, Status::Critical);
}

#[tokio::test]
async fn mutations_need_the_token() {
    let s = start(Some(TOKEN)).await;
    s.get("/api/v1/items/3").await;
    assert!(
        s.get("/api/v1/items/3")
            .await
            .header("cache-status")
            .unwrap()
            .contains("hit")
    );

    let none = post(
        &s,
        "/performance/cache/purge",
        None,
        r#"{"url":"/api/v1/items/3"}"#,
    )
    .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(
        none.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    let wrong = post(
        &s,
        "/performance/cache/purge",
        Some("nope"),
        r#"{"url":"/api/v1/items/3"}"#,
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

    let ok = post(
        &s,
        "/performance/cache/purge",
        Some(TOKEN),
        r#"{"url":"/api/v1/items/3"}"#,
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(ok.json::<Value>()["purged"], 1);
    assert!(
        !s.get("/api/v1/items/3")
            .await
            .header("cache-status")
            .unwrap()
            .contains("hit")
    );

    s.get("/static/app.js").await;
    let p = post(
        &s,
        "/performance/cache/purge",
        Some(TOKEN),
        r#"{"prefix":"/static/"}"#,
    )
    .await;
    assert_eq!(p.json::<Value>()["purged"], 1);
    let t = post(
        &s,
        "/performance/cache/purge",
        Some(TOKEN),
        r#"{"tag":"nothing-tagged"}"#,
    )
    .await;
    assert_eq!(t.json::<Value>()["purged"], 0);
    let clear = post(&s, "/performance/cache/clear", Some(TOKEN), "").await;
    assert_eq!(clear.status, StatusCode::OK);
    assert_eq!(clear.json::<Value>()["purged"], 1); // item 3, stored again above
    assert_eq!(json(&s, "/performance/cache/stats").await["purged"], 3);
}

#[tokio::test]
async fn malformed_purges_get_a_clear_400() {
    // (A server of its own: the cache endpoints allow 10 writes a minute.)
    let s = start(Some(TOKEN)).await;
    for body in [
        "not json",
        r#"{"url":"/a","tag":"b"}"#,
        r#"{}"#,
        r#"{"prefix":"static"}"#,
        r#"{"tag":"two words"}"#,
        r#"{"url":"ftp://x/y"}"#,
        r#"{"unknown":"field"}"#,
    ] {
        let r = post(&s, "/performance/cache/purge", Some(TOKEN), body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text());
        assert!(r.json::<Value>()["error"].is_string());
    }
    let big = format!(r#"{{"tag":"{}"}}"#, "x".repeat(20_000));
    let r = post(&s, "/performance/cache/purge", Some(TOKEN), &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn without_a_token_mutations_are_disabled_and_say_so() {
    let s = start(None).await;
    let r = post(&s, "/performance/cache/clear", Some("anything"), "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("no token is configured"), "{}", r.text());
}

#[tokio::test]
async fn methods_and_unknown_paths() {
    let s = start(Some(TOKEN)).await;
    let r = s.get("/performance/cache/clear").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("POST"));
    let r = post(&s, "/performance/summary", Some(TOKEN), "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(
        s.get("/performance/nope").await.status,
        StatusCode::NOT_FOUND
    );
    let head = s
        .send(
            s.request(Method::HEAD, "/performance/summary")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    // HEAD gets the header fields GET gets, compressed or not (issue 17);
    // only the remaining quota differs. The dashboard: the JSON endpoints
    // change between two requests.
    let path = "/performance/dashboard";
    let fields = |m: Method| {
        let req = s
            .request(m, path)
            .header("accept-encoding", "gzip")
            .body(Full::default())
            .unwrap();
        async {
            let mut h = s.send(req).await.headers;
            for skip in ["date", "transfer-encoding", "ratelimit"] {
                h.remove(skip);
            }
            h
        }
    };
    let get = fields(Method::GET).await;
    let head = fields(Method::HEAD).await;
    assert_eq!(get, head, "{path}");
}

#[tokio::test]
async fn reads_can_be_protected() {
    use tower::ServiceExt;
    let report = tower_perf::report::Report::builder()
        .token(TOKEN)
        .protect_reads(true)
        .build();
    let get = |auth: Option<&str>| {
        let mut b = http::Request::get("/performance/summary");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        report
            .clone()
            .oneshot(b.body(Full::<bytes::Bytes>::default()).unwrap())
    };
    assert_eq!(get(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(Some("Bearer wrong")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(Some(&format!("bearer {TOKEN}")))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_performance_endpoints_are_rate_limited_per_client() {
    let s = start(Some(TOKEN)).await;
    let mut last = StatusCode::OK;
    for _ in 0..11 {
        last = post(&s, "/performance/cache/clear", Some(TOKEN), "")
            .await
            .status;
    }
    assert_eq!(
        last,
        StatusCode::TOO_MANY_REQUESTS,
        "10 cache writes a minute"
    );
    for _ in 0..30 {
        assert_eq!(s.get("/performance/dashboard").await.status, StatusCode::OK);
    }
    assert_eq!(
        s.get("/performance/dashboard").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn metrics_cover_every_layer_and_promtool_accepts_them() {
    let s = start(None).await;
    traffic(&s).await;
    let r = s.get("/metrics").await;
    let text = r.text().to_owned();
    for needle in [
        "http_server_request_duration_seconds_bucket",
        "tower_perf_cache_requests_total{result=\"hit\"} 1",
        "tower_perf_cache_stores_total 3",
        "tower_perf_cache_route_requests_total{http_route=\"/api/v1/items/{id}\",result=\"hit\"} 1",
        "tower_perf_compression_responses_total{coding=\"gzip\"} 1",
        "tower_perf_rate_limit_requests_total{policy=\"api\",decision=\"allowed\"} 4",
        "tower_perf_cache_control_etags_total",
        "tower_perf_compression_responses_total{coding=\"deflate\"} 0",
        "tower_perf_compression_not_acceptable_total 0",
        "# TYPE tower_perf_cache_entries gauge",
        "# TYPE tower_perf_cache_size_bytes gauge",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    // Each family carries its own figure: compression shrank the bytes.
    let value = |prefix: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix}:\n{text}"))
    };
    let bytes_in = value("tower_perf_compression_input_bytes_total{coding=\"gzip\"}");
    let bytes_out = value("tower_perf_compression_output_bytes_total{coding=\"gzip\"}");
    assert!(
        bytes_out > 0 && bytes_out < bytes_in,
        "{bytes_in} in, {bytes_out} out"
    );
    assert!(value("tower_perf_cache_entries ") >= 1);
    assert!(value("tower_perf_cache_size_bytes ") > 0);
    support::promtool(&text);
}

/// Request decompression's figures reach the summary and `/metrics`: a
/// gzip POST decoded, a `compress` one refused with 415.
#[tokio::test]
async fn decompression_is_in_the_summary_and_the_metrics() {
    use tower_perf::headers::ContentCoding;
    let s = start(None).await;
    let item = br#"{"name":"sent gzipped","price_cents":100}"#;
    let gz = support::encode(ContentCoding::Gzip, item);
    for (coding, body, status) in [
        ("gzip", gz.clone(), StatusCode::CREATED),
        (
            "compress",
            item.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        ("gzip", b"not gzip".to_vec(), StatusCode::BAD_REQUEST),
    ] {
        let req = s
            .request(Method::POST, "/api/v1/items")
            .header("content-type", "application/json")
            .header("content-encoding", coding)
            .body(Full::from(body))
            .unwrap();
        assert_eq!(s.send(req).await.status, status, "{coding}");
    }
    let summary = json(&s, "/performance/summary").await;
    let d = &summary["decompression"];
    let gzip = d["codings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["coding"] == "gzip")
        .unwrap();
    assert_eq!(gzip["requests"], 2, "{d}");
    assert_eq!(gzip["bytes_in"], gz.len(), "{d}");
    assert_eq!(gzip["bytes_out"], item.len(), "{d}");
    assert_eq!(d["unsupported"], 1, "{d}");
    assert_eq!(d["too_large"], 0, "{d}");
    assert_eq!(d["malformed"], 1, "{d}");
    assert_eq!(json(&s, "/performance/decompression/stats").await, *d);

    let text = s.get("/metrics").await.text().to_owned();
    for needle in [
        "tower_perf_decompression_requests_total{coding=\"gzip\"} 2".to_owned(),
        format!(
            "tower_perf_decompression_input_bytes_total{{coding=\"gzip\"}} {}",
            gz.len()
        ),
        format!(
            "tower_perf_decompression_output_bytes_total{{coding=\"gzip\"}} {}",
            item.len()
        ),
        "tower_perf_decompression_rejected_total{reason=\"unsupported\"} 1".to_owned(),
        "tower_perf_decompression_rejected_total{reason=\"too_large\"} 0".to_owned(),
        "tower_perf_decompression_rejected_total{reason=\"malformed\"} 1".to_owned(),
    ] {
        assert!(text.contains(&needle), "missing {needle}:\n{text}");
    }
    support::promtool(&text);
}
