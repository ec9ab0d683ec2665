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
        routes.iter().any(|r| r["route"] == "/performance/*"),
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

#[tokio::test]
async fn the_dashboard_is_self_contained() {
    let s = start(None).await;
    let r = s.get("/performance/dashboard").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let html = r.text();
    assert!(html.contains("<canvas"));
    for external in ["http://", "https://", "<script src", "<link", "@import"] {
        assert!(
            !html.contains(external),
            "the page must not fetch {external}"
        );
    }
}

/// The dashboard in headless Chromium against live traffic: no console
/// errors, every chart drawn with data. `.ci/run` installs Chromium and
/// sets TOWER_PERF_REQUIRE_CHROMIUM=1; elsewhere the test is skipped when
/// it is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_its_charts_in_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok()
        })
    else {
        assert!(
            std::env::var_os("TOWER_PERF_REQUIRE_CHROMIUM").is_none(),
            "chromium required"
        );
        eprintln!("skipped: chromium not installed");
        return;
    };
    let s = std::sync::Arc::new(start(None).await);
    // Traffic all along, with some 429s (one client over a tight quota is
    // simulated by hammering the dashboard's own limit).
    let load = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0u32.. {
                s.get(&format!("/api/v1/items/{}", i % 7 + 1)).await;
                s.get_with("/static/app.js", &[("accept-encoding", "gzip")])
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let url = s.uri("/performance/dashboard").to_string();
    let profile = std::env::temp_dir().join(format!("tower-perf-chromium-{}", std::process::id()));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1280,1600",
                &format!("--user-data-dir={}", profile.display()),
                "--virtual-time-budget=9000",
                "--dump-dom",
                &url,
            ])
            .output()
    })
    .await
    .unwrap()
    .expect("chromium runs");
    load.abort();
    let dom = String::from_utf8_lossy(&out.stdout);
    let attr = |name: &str| -> Option<u32> {
        let key = format!("{name}=\"");
        let at = dom.find(&key)? + key.len();
        dom[at..].split('"').next()?.parse().ok()
    };
    assert_eq!(attr("data-errors"), Some(0), "console errors:\n{dom}");
    assert!(
        attr("data-samples").unwrap_or(0) >= 2,
        "too few samples:\n{dom}"
    );
    assert_eq!(attr("data-charts"), Some(5), "charts drawn:\n{dom}");
    assert!(dom.contains("id=\"status\""));
}
