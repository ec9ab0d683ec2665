//! The query cache inside a timed axum app: lookups as sub-timings (the
//! N+1 report leaves cached repetitions out), and its counters in the
//! report (endpoint, summary findings, Prometheus text).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::FromRef;
use axum::{Router, routing::get};
use serde_json::Value;
use support::TestServer;
use tower_perf::query_cache::{QueryCache, QueryKey};
use tower_perf::report::Report;
use tower_perf::timing::TimingLayer;

#[derive(Clone)]
struct App {
    queries: QueryCache,
    db_calls: Arc<AtomicUsize>,
}

impl FromRef<App> for QueryCache {
    fn from_ref(app: &App) -> QueryCache {
        app.queries.clone()
    }
}

/// Reads twelve items through the query cache: twelve `db` loads the
/// first time, twelve hits after.
async fn items(
    queries: QueryCache,
    axum::extract::State(app): axum::extract::State<App>,
) -> String {
    let mut total = 0;
    for id in 0..12u64 {
        let calls = app.db_calls.clone();
        let v = queries
            .get_or_insert_with(
                &QueryKey::with_params("items", &id),
                Duration::from_secs(60),
                move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok::<u64, String>(id * 10)
                },
            )
            .await
            .unwrap();
        total += *v;
    }
    total.to_string()
}

#[tokio::test]
async fn lookups_are_sub_timings_and_cached_repetitions_are_not_n_plus_one() {
    let timing = TimingLayer::new().sub_timings(true);
    let stats = timing.stats();
    let queries = QueryCache::new();
    let report = Report::builder()
        .timing(timing.stats())
        .query_cache(&queries)
        .build();
    let app = App {
        queries: queries.clone(),
        db_calls: Arc::default(),
    };
    let router = Router::new()
        .route("/items", get(items))
        .with_state(app.clone())
        .layer(timing)
        .merge(report.routes());
    let s = TestServer::serve(router).await;
    assert_eq!(s.get("/items").await.body, "660");
    assert_eq!(s.get("/items").await.body, "660");
    assert_eq!(s.get("/items").await.body, "660");
    assert_eq!(app.db_calls.load(Ordering::SeqCst), 12, "loaded once");

    let snap = stats.snapshot();
    let route = snap.route("GET", "/items").unwrap();
    let span = |name: &str| {
        route
            .spans
            .iter()
            .find(|x| x.name == name)
            .unwrap_or_else(|| panic!("{name}: {:?}", route.spans))
    };
    let (miss, hit) = (span("cache.miss:items"), span("cache.hit:items"));
    assert_eq!((miss.requests, miss.spans), (1, 12));
    assert_eq!((hit.requests, hit.spans, hit.max_per_request), (2, 24, 12));
    // Twelve misses in one request are twelve real loads: an N+1
    // suspect. Twelve hits per request are not.
    let suspects: Vec<&str> = snap.n_plus_one.iter().map(|n| n.span.as_str()).collect();
    assert_eq!(suspects, ["cache.miss:items"]);

    // The endpoint and the summary.
    let body: Value =
        serde_json::from_slice(&s.get("/performance/cache/queries").await.body).unwrap();
    let items = body["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["namespace"] == "items")
        .unwrap()
        .clone();
    assert_eq!(
        (
            items["hits"].as_u64(),
            items["misses"].as_u64(),
            items["loads"].as_u64()
        ),
        (Some(24), Some(12), Some(12))
    );
    assert_eq!(items["entries"].as_u64(), Some(12));
    let summary: Value = serde_json::from_slice(&s.get("/performance/summary").await.body).unwrap();
    assert_eq!(summary["queries"]["namespaces"][0]["namespace"], "items");

    // Prometheus text, valid for promtool.
    let text = String::from_utf8(s.get("/performance/metrics").await.body.to_vec()).unwrap();
    assert!(
        text.contains(r#"tower_perf_query_cache_lookups_total{namespace="items",result="hit"} 24"#),
        "{text}"
    );
    assert!(text.contains(r#"tower_perf_query_cache_loads_total{namespace="items"} 12"#));
    assert!(text.contains(r#"tower_perf_query_cache_entries{namespace="items"} 12"#));
    assert!(text.contains(r#"tower_perf_query_cache_not_stored_total{namespace="items"} 0"#));
    support::promtool(&text);

    // The index lists the endpoint.
    let index: Value = serde_json::from_slice(&s.get("/performance/").await.body).unwrap();
    assert!(index.to_string().contains("/cache/queries"), "{index}");
}

#[tokio::test]
async fn the_summary_recommends_on_low_hit_rates_and_slow_loads() {
    let queries = QueryCache::new();
    let report = Report::builder().query_cache(&queries).build();
    // 120 distinct keys asked once each: nothing is ever hit.
    for i in 0..120u32 {
        let _ = queries
            .get_or_insert_with(
                &QueryKey::with_params("search", &i),
                Duration::from_secs(60),
                move || async move { Ok::<u32, String>(i) },
            )
            .await;
    }
    // Slow loads: ten of 120 ms.
    for i in 0..10u32 {
        let _ = queries
            .get_or_insert_with(
                &QueryKey::with_params("reports", &i),
                Duration::from_secs(60),
                move || async move {
                    tokio::time::sleep(Duration::from_millis(120)).await;
                    Ok::<u32, String>(i)
                },
            )
            .await;
    }
    let summary = serde_json::to_value(report.summary()).unwrap();
    let recs: Vec<String> = summary["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["area"] == "query_cache")
        .map(|r| r["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert!(
        recs.iter()
            .any(|m| m.contains("'search' answers 0% of 120 lookups")),
        "{recs:?}"
    );
    assert!(
        recs.iter().any(|m| m.contains("'reports' loads take")),
        "{recs:?}"
    );
    // Without a query cache, the endpoint says so.
    let bare = Report::builder().build();
    let s = TestServer::serve(Router::new().merge(bare.routes())).await;
    assert_eq!(s.get("/performance/cache/queries").await.status, 404);
}
