//! The report's history (`/performance/history`) and its index
//! (`/performance/`), on the example server with every layer.

mod support;

#[allow(dead_code)]
#[path = "../examples/server.rs"]
mod server;

use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use server::DemoConfig;
use support::TestServer;

fn config() -> DemoConfig {
    DemoConfig {
        rate_limit_per_min: Some(1000),
        history: Duration::from_millis(100),
        ..DemoConfig::default()
    }
}

fn points(h: &Value) -> &Vec<Value> {
    h["points"].as_array().expect("points")
}

/// Sums `field` over every point.
fn sum(h: &Value, field: &str) -> u64 {
    points(h)
        .iter()
        .map(|p| p[field].as_u64().unwrap_or(0))
        .sum()
}

/// The history once it has two points and one came after `after` (ms
/// since the epoch): everything done before `after` is in it.
async fn history_after(s: &TestServer, after: u64) -> Value {
    tokio::time::timeout(support::gate::DEADLINE, async {
        loop {
            let h: Value = s.get("/performance/history").await.json();
            if points(&h).len() >= 2
                && points(&h)
                    .last()
                    .is_some_and(|p| p["t"].as_u64().unwrap_or(0) > after)
            {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a point after the traffic")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn the_history_counts_the_traffic_and_leaves_the_reports_own_out() {
    let s = TestServer::serve(server::app_with(config())).await;
    for i in 0..6 {
        s.get(&format!("/api/v1/items/{}", i % 3 + 1)).await;
    }
    assert_eq!(
        s.get("/api/v1/items/99999").await.status,
        StatusCode::NOT_FOUND
    );
    // A dashboard polling hard: none of it may show.
    for _ in 0..30 {
        s.get("/performance/summary").await;
    }
    let done = now_ms();
    let h = history_after(&s, done).await;
    assert_eq!(h["resolution_secs"].as_f64(), Some(0.1));
    // Every request made is in exactly one interval.
    assert_eq!(sum(&h, "requests"), 7, "{h:#}");
    assert_eq!(sum(&h, "client_errors"), 1, "{h:#}");
    assert_eq!(sum(&h, "server_errors"), 0, "{h:#}");
    let routes: Vec<&str> = points(&h)
        .iter()
        .flat_map(|p| p["routes"].as_array().unwrap())
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    assert!(routes.contains(&"GET /api/v1/items/{id}"), "{routes:?}");
    assert!(
        routes.iter().all(|r| !r.contains("/performance")),
        "the report's own requests: {routes:?}"
    );
    let busy = points(&h)
        .iter()
        .find(|p| p["requests"].as_u64() > Some(0))
        .unwrap();
    assert!(busy["p50_ms"].as_f64().unwrap() > 0.0, "{busy:#}");
    assert!(busy["rps"].as_f64().unwrap() > 0.0, "{busy:#}");
    // The cache saw six lookups of three items: three misses, three hits
    // (and the 404's miss).
    assert_eq!(sum(&h, "cache_lookups"), 7, "{h:#}");
    assert_eq!(sum(&h, "cache_hits"), 3, "{h:#}");
    // The task queue and in-flight gauge are sampled, idle now.
    let last = points(&h).last().unwrap();
    assert_eq!(last["tasks_queued"].as_u64(), Some(0), "{last:#}");
    assert_eq!(last["active_requests"].as_u64(), Some(0), "{last:#}");

    // `since` keeps the later points only.
    let cut = points(&h)[0]["t"].as_u64().unwrap();
    let later: Value = s
        .get(&format!("/performance/history?since={cut}"))
        .await
        .json();
    assert!(
        points(&later)
            .iter()
            .all(|p| p["t"].as_u64().unwrap() > cut)
    );
    assert!(!points(&later).is_empty());
    // The coarse resolution: six steps.
    let coarse: Value = s.get("/performance/history?resolution=coarse").await.json();
    let step = coarse["resolution_secs"].as_f64().unwrap();
    assert!((step - 0.6).abs() < 1e-9, "{step}");
    for bad in ["since=yesterday", "resolution=hourly", "from=1"] {
        let r = s.get(&format!("/performance/history?{bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            r.text().contains("since") || r.text().contains("resolution"),
            "{}",
            r.text()
        );
    }
}

#[tokio::test]
async fn the_index_lists_the_endpoints_for_browsers_and_programs() {
    let s = TestServer::serve(server::app_with(config())).await;
    let index: Value = s.get("/performance/").await.json();
    let paths: Vec<&str> = index["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    for p in [
        "/performance/dashboard",
        "/performance/summary",
        "/performance/history",
        "/performance/metrics",
        "/performance/profile/overview",
        "/performance/cache/stats",
        "/performance/tasks",
    ] {
        assert!(paths.contains(&p), "{p}: {paths:?}");
    }
    // No token: the mutations are disabled, so not listed.
    assert!(!paths.contains(&"/performance/cache/purge"), "{paths:?}");
    let html = s
        .get_with(
            "/performance",
            &[("accept", "text/html,application/xhtml+xml")],
        )
        .await;
    assert!(
        html.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        html.text()
            .contains("<a href=\"/performance/history\"><code>/performance/history</code></a>"),
        "{}",
        html.text()
    );
}

#[tokio::test]
async fn a_report_without_history_says_so() {
    let report = tower_perf::report::Report::builder()
        .history_interval(None)
        .build();
    assert!(
        report
            .history(tower_perf::report::HistoryResolution::Fine, None)
            .is_none()
    );
    let s = TestServer::serve(axum::Router::new().nest_service("/performance", report)).await;
    let r = s.get("/performance/history").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text().contains("history_interval"), "{}", r.text());
}

#[test]
#[should_panic(expected = "use 100 ms to 1 hour")]
fn a_history_step_too_short_is_refused() {
    let _ = tower_perf::report::Report::builder().history_interval(Some(Duration::from_millis(10)));
}
