//! The dashboard (`/performance/dashboard`): self-contained, and in
//! headless Chromium against live traffic on the example server with every
//! layer: its charts drawn from the server's history, its tables, a
//! screenshot, and the Redis breakers' badges.

mod support;

#[allow(dead_code)]
#[path = "../examples/server.rs"]
mod server;

use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::Full;
use server::DemoConfig;
use support::TestServer;

async fn start() -> TestServer {
    TestServer::serve(server::app_with(DemoConfig {
        rate_limit_per_min: Some(1000),
        export_step: Duration::from_millis(1),
        // Points every 200 ms: the dashboard's test sees several.
        history: Duration::from_millis(200),
        ..DemoConfig::default()
    }))
    .await
}

#[tokio::test]
async fn the_dashboard_is_self_contained() {
    let s = start().await;
    let r = s.get("/performance/dashboard").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let html = r.text();
    // uPlot, inlined (its licence comment names its home, nothing loads it).
    assert!(html.contains("var uPlot="), "uPlot is inlined");
    for external in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "fetch(\"http",
        "<script src",
        "<link",
        "@import",
    ] {
        assert!(
            !html.contains(external),
            "the page must not fetch {external}"
        );
    }
}

/// A numeric `name="…"` attribute of the dumped page (the first one).
fn attr(dom: &str, name: &str) -> Option<u32> {
    let key = format!("{name}=\"");
    let at = dom.find(&key)? + key.len();
    dom[at..].split('"').next()?.parse().ok()
}

/// The dashboard in headless Chromium against live traffic: no console
/// errors, every chart drawn from the server's history with its axes and
/// legend, every route named in the routes table without overlapping
/// labels, the 5xx and 4xx rates filled in, no breaker panel without a
/// Redis store; and a screenshot of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_its_charts_in_chromium() {
    let Some(chromium) = support::chromium::find("the dashboard in a browser") else {
        return;
    };
    let s = std::sync::Arc::new(start().await);
    // Traffic all along, with some 429s (one client over a tight quota is
    // simulated by hammering the dashboard's own limit).
    let load = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0u32.. {
                s.get(&format!("/api/v1/items/{}", i % 7 + 1)).await;
                s.get_with("/static/app.js", &[("accept-encoding", "gzip")])
                    .await;
                // Real time is the point: traffic spread over the seconds
                // the dashboard samples, not one burst.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // One request body decoded, for the codings table.
    let gz = support::encode(
        tower_perf::headers::ContentCoding::Gzip,
        br#"{"name":"decoded","price_cents":1}"#,
    );
    let req = s
        .request(Method::POST, "/api/v1/items")
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(Full::from(gz))
        .unwrap();
    assert_eq!(s.send(req).await.status, StatusCode::CREATED);
    // The report route twice, for the query cache's table (56 loads,
    // then 56 hits).
    for _ in 0..2 {
        let r = s
            .get_with("/api/v1/report", &[("cache-control", "no-cache")])
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // One export deferred and done, for the tasks table.
    let req = s
        .request(Method::POST, "/api/v1/exports")
        .header("prefer", "respond-async")
        .body(Full::default())
        .unwrap();
    let accepted = s.send(req).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let monitor = accepted.header("location").unwrap().to_owned();
    tokio::time::timeout(support::gate::DEADLINE, async {
        loop {
            let info: serde_json::Value = s.get(&monitor).await.json();
            if info["state"] == "completed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the export completed");
    // Points with traffic in the history (one every 200 ms), before the
    // page loads: it draws them at once.
    tokio::time::timeout(support::gate::DEADLINE, async {
        loop {
            let h: serde_json::Value = s.get("/performance/history").await.json();
            let busy = h["points"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["requests"].as_u64() > Some(0))
                .count();
            if busy >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("three points with traffic");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    support::chromium::screenshot(
        chromium,
        s.uri("/performance/dashboard").to_string(),
        "shot",
        &shot,
    )
    .await;
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        png.len() > 20_000,
        "a page, not a blank: {} bytes",
        png.len()
    );
    let dom = support::chromium::dump_dom(
        chromium,
        s.uri("/performance/dashboard").to_string(),
        "charts",
    )
    .await;
    load.abort();
    assert_eq!(attr(&dom, "data-errors"), Some(0), "console errors:\n{dom}");
    assert!(
        attr(&dom, "data-samples").unwrap_or(0) >= 3,
        "too few points:\n{dom}"
    );
    assert_eq!(attr(&dom, "data-charts"), Some(6), "charts drawn:\n{dom}");
    // Six charts, each with a time axis and a value axis; legends with
    // every series (throughput 4, latency 3, the routes', hit rate 1,
    // saved 1, in flight 3 with the task queue).
    assert_eq!(attr(&dom, "data-axes"), Some(12), "{dom}");
    assert!(
        attr(&dom, "data-legends").unwrap_or(0) >= 4 + 3 + 2 + 1 + 1 + 3,
        "{dom}"
    );
    // Every route with traffic named once in the routes table, none of the
    // report's own; no two labels (table or legends) overlap.
    assert!(attr(&dom, "data-route-labels").unwrap_or(0) >= 2, "{dom}");
    for route in ["GET /api/v1/items/{id}", "GET /static/app.js"] {
        assert!(
            dom.contains(&format!("<td class=\"route-label\">{route}</td>")),
            "{route} in the routes table:\n{dom}"
        );
        assert!(
            dom.contains(&format!("<div class=\"u-label\">{route}</div>")),
            "{route} in the per-route chart's legend:\n{dom}"
        );
    }
    assert!(
        !dom.contains("<td class=\"route-label\">GET /performance"),
        "{dom}"
    );
    assert_eq!(attr(&dom, "data-overlaps"), Some(0), "{dom}");
    // Both latency charts on a log scale; every chart on a time axis.
    assert_eq!(attr(&dom, "data-log-scales"), Some(2), "{dom}");
    assert_eq!(attr(&dom, "data-time-axes"), Some(6), "{dom}");
    assert!(dom.contains("id=\"status\""));
    // The server error rate and the 4xx rate, apart (Chromium's own
    // /favicon.ico is a 404: the 4xx rate is not 0).
    assert!(dom.contains("id=\"t-err\">0.0 %<"), "{dom}");
    let four = dom
        .split("id=\"t-4xx\">")
        .nth(1)
        .and_then(|v| v.split(" %<").next())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(four.is_some(), "no 4xx rate:\n{dom}");
    // A row per coding the build has (compression and request
    // decompression know the same ones); gzip's shows the responses
    // compressed and the one request body decoded.
    let built = support::built_codings().len() as u32;
    assert_eq!(attr(&dom, "data-codings"), Some(built), "{dom}");
    // The query cache's namespace, with its hit rate.
    assert_eq!(attr(&dom, "data-queries"), Some(1), "{dom}");
    assert!(
        dom.contains("<td class=\"route-label\">items</td><td>50.0 %</td>"),
        "{dom}"
    );
    // The cache's hit rates per route: items and app.js at least.
    assert!(attr(&dom, "data-cache-routes").unwrap_or(0) >= 2, "{dom}");
    assert!(
        dom.contains("<td class=\"route-label\">/api/v1/items/{id}</td>"),
        "{dom}"
    );
    assert!(
        !dom.contains("<td class=\"route-label\">/performance"),
        "{dom}"
    );
    let gzip_row: Vec<&str> = dom
        .split("<td>gzip</td>")
        .nth(1)
        .expect("a gzip row")
        .split("</tr>")
        .next()
        .unwrap_or("")
        .split("<td>")
        .skip(1)
        .map(|c| c.trim_end_matches("</td>"))
        .collect();
    assert_eq!(gzip_row.len(), 5, "{gzip_row:?}");
    assert!(gzip_row[0].parse::<u64>().unwrap() > 0, "{gzip_row:?}");
    assert_eq!(gzip_row[3], "1", "requests decoded: {gzip_row:?}");
    assert!(
        dom.contains("request bodies refused: 0 unsupported"),
        "{dom}"
    );
    // The tasks table: the export, completed.
    assert_eq!(attr(&dom, "data-tasks"), Some(1), "{dom}");
    let task_row: Vec<&str> = dom
        .split("<tbody id=\"task-rows\">")
        .nth(1)
        .and_then(|t| t.split("</tr>").next())
        .unwrap_or("")
        .split("<td>")
        .skip(1)
        .map(|c| c.trim_end_matches("</td>"))
        .collect();
    assert_eq!(task_row.len(), 10, "{dom}");
    assert_eq!(task_row[2], "1", "completed: {task_row:?}");
    assert!(task_row[7].ends_with(" ms"), "run p50: {task_row:?}");
    // No Redis store: no breaker panel.
    assert_eq!(attr(&dom, "data-breakers"), Some(0), "{dom}");
    assert!(
        dom.contains("<section id=\"breakers\" hidden=\"\">"),
        "{dom}"
    );
}

/// With a Redis store whose breaker opened (three failed checks against a
/// port nobody listens on), the dashboard shows a badge for it: the state,
/// how often it opened and how long it stayed open.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_redis_breakers_in_chromium() {
    use tower::{ServiceBuilder, ServiceExt, service_fn};
    use tower_perf::rate_limit::{
        KeySource, PeerAddr, Quota, RateLimitLayer, RateRule, RedisStore,
    };
    let Some(chromium) = support::chromium::find("the dashboard in a browser") else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = RedisStore::new(format!("redis://127.0.0.1:{port}"), "dashboard").unwrap();
    let stats = store.stats();
    let svc = ServiceBuilder::new()
        .layer(
            RateLimitLayer::with_store(store).rule(
                RateRule::new("api", Quota::per_minute(10))
                    .path("/api/**")
                    .key(KeySource::PeerIp),
            ),
        )
        .service(service_fn(
            |_req: http::Request<Full<bytes::Bytes>>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::<bytes::Bytes>::from(
                    "ok",
                )))
            },
        ));
    for _ in 0..3 {
        let mut req = http::Request::get("/api/x").body(Full::default()).unwrap();
        req.extensions_mut()
            .insert(PeerAddr(std::net::SocketAddr::from(([192, 0, 2, 9], 4000))));
        svc.clone().oneshot(req).await.unwrap();
    }
    let breaker = stats.snapshot().breaker;
    assert_eq!(breaker.opened, 1, "{breaker:?}");
    let report = tower_perf::report::Report::builder()
        .redis_rate_limit(stats)
        .build();
    let s = TestServer::serve(axum::Router::new().nest_service("/performance", report)).await;
    let dom = support::chromium::dump_dom(
        chromium,
        s.uri("/performance/dashboard").to_string(),
        "breakers",
    )
    .await;
    assert_eq!(attr(&dom, "data-errors"), Some(0), "console errors:\n{dom}");
    assert_eq!(attr(&dom, "data-breakers"), Some(1), "{dom}");
    assert!(dom.contains("<section id=\"breakers\">"), "{dom}");
    let badge = dom
        .split("class=\"breaker\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no breaker badge:\n{dom}"));
    assert!(badge.starts_with(" data-state=\"open\""), "{badge}");
    assert!(badge.contains("rate-limit store"), "{badge}");
    assert!(badge.contains(">open<"), "{badge}");
    assert!(badge.contains("opened 1×"), "{badge}");
}

/// A report that keeps no history: the dashboard says so above the
/// charts, fills its tiles from the summary's window, and fails nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_history_the_dashboard_says_so_and_fills_its_tiles() {
    let Some(chromium) = support::chromium::find("the dashboard in a browser") else {
        return;
    };
    let timing = tower_perf::timing::TimingLayer::new();
    let report = tower_perf::report::Report::builder()
        .timing(timing.stats())
        .history_interval(None)
        .build();
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hi" }))
        .merge(report.routes())
        .layer(timing);
    let s = TestServer::serve(app).await;
    for _ in 0..5 {
        assert_eq!(s.get("/hello").await.status, StatusCode::OK);
    }
    let dom = support::chromium::dump_dom(
        chromium,
        s.uri("/performance/dashboard").to_string(),
        "no-history",
    )
    .await;
    assert_eq!(attr(&dom, "data-errors"), Some(0), "console errors:\n{dom}");
    assert!(dom.contains("No history to draw"), "{dom}");
    assert!(
        !dom.contains("id=\"charts-note\" style=\"padding:12px 20px 0\" hidden"),
        "{dom}"
    );
    assert!(dom.contains("id=\"t-err\">0.0 %<"), "{dom}");
    assert!(!dom.contains("id=\"t-rps\">–<"), "{dom}");
    // The routes table still names the route.
    assert!(
        dom.contains("<td class=\"route-label\">GET /hello</td>"),
        "{dom}"
    );
}
