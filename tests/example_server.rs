//! Every route of `examples/server.rs` answers over real HTTP.

mod support;

#[allow(dead_code)]
#[path = "../examples/server.rs"]
mod server;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use server::{DemoConfig, Item};
use support::TestServer;

fn fast() -> DemoConfig {
    DemoConfig {
        slow: (Duration::from_millis(2), Duration::from_millis(4)),
        stream_interval: Duration::from_millis(2),
        stream_lines: 20,
        rate_limit_per_min: Some(100),
        cache: true,
        token: None,
        bare: false,
        export_step: Duration::from_millis(1),
        tasks: server::demo_tasks(),
        history: Duration::from_secs(10),
    }
}

async fn start() -> TestServer {
    TestServer::serve(server::app_with(fast())).await
}

#[tokio::test]
async fn health() {
    let res = start().await.get("/health").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.text(), "ok");
}

#[tokio::test]
async fn items_list_is_deterministic_and_about_8_kib() {
    let a = start().await.get("/api/v1/items").await;
    let b = start().await.get("/api/v1/items").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.body, b.body, "two servers answer byte for byte the same");
    assert!(
        (7 * 1024..=9 * 1024).contains(&a.body.len()),
        "{} bytes",
        a.body.len()
    );
    let items: Vec<Item> = a.json();
    assert_eq!(items.len(), 55);
    assert_eq!(items, server::seed_items());
}

#[tokio::test]
async fn one_item_and_missing_items() {
    let server = start().await;
    let res = server.get("/api/v1/items/7").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json::<Item>().id, 7);
    assert_eq!(
        server.get("/api/v1/items/4000").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.get("/api/v1/items/abc").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn post_adds_an_item_and_the_list_changes() {
    let server = start().await;
    let before = server.get("/api/v1/items").await;
    let req = server
        .request(Method::POST, "/api/v1/items")
        .header("content-type", "application/json")
        .body(Full::from(r#"{"name":"new thing","price_cents":500}"#))
        .unwrap();
    let res = server.send(req).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let item: Item = res.json();
    assert_eq!(
        (item.id, item.name.as_str(), item.price_cents),
        (56, "new thing", 500)
    );
    assert_eq!(res.header("location"), Some("/api/v1/items/56"));

    let after = server.get("/api/v1/items").await;
    assert_ne!(before.body, after.body);
    assert_eq!(after.json::<Vec<Item>>().len(), 56);
    assert_eq!(server.get("/api/v1/items/56").await.json::<Item>(), item);
}

#[tokio::test]
async fn post_rejects_bad_input() {
    let server = start().await;
    for (body, ctype) in [
        (r#"{"name":""}"#, "application/json"),
        (r#"{"name":"   "}"#, "application/json"),
        (r#"{"price_cents":1}"#, "application/json"),
        ("not json", "application/json"),
        (r#"{"name":"x"}"#, "text/plain"),
    ] {
        let req = server
            .request(Method::POST, "/api/v1/items")
            .header("content-type", ctype)
            .body(Full::from(body))
            .unwrap();
        let status = server.send(req).await.status;
        assert!(status.is_client_error(), "{body} / {ctype}: {status}");
    }
    assert_eq!(
        server.get("/api/v1/items").await.json::<Vec<Item>>().len(),
        55
    );
}

#[tokio::test]
async fn slow_waits_within_its_range() {
    let server = start().await;
    for _ in 0..5 {
        let res = server.get("/api/v1/slow").await;
        assert_eq!(res.status, StatusCode::OK);
        let waited: u64 = res.header("x-waited-ms").unwrap().parse().unwrap();
        assert!((2..=4).contains(&waited), "{waited}");
    }
}

#[test]
fn default_slow_range_is_50_to_150_ms() {
    let c = DemoConfig::default();
    assert_eq!(
        c.slow,
        (Duration::from_millis(50), Duration::from_millis(150))
    );
    assert_eq!(
        (c.stream_interval, c.stream_lines),
        (Duration::from_millis(50), 20)
    );
}

#[tokio::test]
async fn static_asset_is_about_30_kib_of_javascript() {
    let res = start().await.get("/static/app.js").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(
        (30 * 1024..=32 * 1024).contains(&res.body.len()),
        "{}",
        res.body.len()
    );
    assert!(res.text().contains("export function widget0"));
}

#[tokio::test]
async fn stream_sends_twenty_lines_as_separate_chunks() {
    let server = start().await;
    let req = server
        .request(Method::GET, "/api/v1/stream")
        .body(Full::<Bytes>::default())
        .unwrap();
    let res = server.send_streaming(req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    assert!(
        res.headers().get("content-length").is_none(),
        "chunked, no length"
    );
    let mut body = res.into_body();
    assert_eq!(body.size_hint().exact(), None);
    let mut frames = 0;
    let mut text = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            frames += 1;
            text.extend_from_slice(&data);
        }
    }
    let text = String::from_utf8(text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 20);
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["seq"], i);
    }
    // Lines are produced over time, so they can't all arrive in one frame.
    assert!(frames >= 2, "{frames} frames");
}

#[test]
fn args() {
    let parse = |a: &[&str]| server_args(a);
    assert_eq!(parse(&[]).unwrap().addr.to_string(), "127.0.0.1:3000");
    assert_eq!(parse(&[]).unwrap().rate_limit_per_min, Some(100));
    assert_eq!(
        parse(&["--addr", "0.0.0.0:8080"]).unwrap().addr.to_string(),
        "0.0.0.0:8080"
    );
    assert_eq!(
        parse(&["--addr=127.0.0.1:1"]).unwrap().addr.to_string(),
        "127.0.0.1:1"
    );
    assert_eq!(
        parse(&["--rate-limit-per-min", "500"])
            .unwrap()
            .rate_limit_per_min,
        Some(500)
    );
    assert_eq!(
        parse(&["--no-rate-limit"]).unwrap().rate_limit_per_min,
        None
    );
    assert!(parse(&["--rate-limit-per-min", "0"]).is_err());
    assert!(parse(&["--rate-limit-per-min", "x"]).is_err());
    assert!(parse(&["--addr"]).is_err());
    assert!(parse(&["--addr", "nope"]).is_err());
    assert!(parse(&["--bogus"]).is_err());
    // `--redis` needs the feature; without it the server says so.
    let redis = parse(&["--redis", "redis://127.0.0.1:6379"]);
    if cfg!(feature = "redis") {
        assert_eq!(
            redis.unwrap().redis.as_deref(),
            Some("redis://127.0.0.1:6379")
        );
    } else {
        assert!(redis.unwrap_err().contains("the `redis` feature"));
    }
    assert!(parse(&["--redis", "127.0.0.1:6379"]).is_err());
    assert!(parse(&[]).unwrap().cache);
    assert!(!parse(&["--no-cache"]).unwrap().cache);
    assert!(parse(&["--bare"]).unwrap().bare);
    // The serving loop's limits (examples/common/serve.rs).
    let limited = parse(&[
        "--max-connections",
        "64",
        "--idle-timeout=30",
        "--h2-max-streams",
        "50",
    ])
    .unwrap();
    assert_eq!(limited.limits.max_connections, 64);
    assert_eq!(limited.limits.idle_timeout, Duration::from_secs(30));
    assert_eq!(limited.limits.h2_max_streams, 50);
    assert_eq!(parse(&[]).unwrap().limits.max_connections, 1024);
    assert!(parse(&["--h1-max-head", "4"]).is_err());
    assert!(parse(&["--header-read-timeout", "0"]).is_err());
}

#[tokio::test]
async fn the_cache_serves_compressed_hits_and_unsafe_methods_invalidate() {
    let server = start().await;
    let gz = [("accept-encoding", "gzip")];
    let first = server.get_with("/api/v1/items", &gz).await;
    assert_eq!(
        first.header("cache-status"),
        Some("tower-perf; fwd=uri-miss; stored")
    );
    let hit = server.get_with("/api/v1/items", &gz).await;
    assert!(
        hit.header("cache-status")
            .unwrap()
            .starts_with("tower-perf; hit; ttl=")
    );
    assert_eq!(hit.header("content-encoding"), Some("gzip"));
    assert_eq!(hit.body, first.body, "the stored encoded bytes");
    assert!(hit.header("age").is_some());
    // Identity is another variant.
    let plain = server.get("/api/v1/items").await;
    assert_eq!(
        plain.header("cache-status"),
        Some("tower-perf; fwd=vary-miss; stored")
    );
    let items: Vec<Item> = plain.json();
    // A POST invalidates the list: the next GET sees the new item.
    let created = server
        .send(
            server
                .request(Method::POST, "/api/v1/items")
                .header("content-type", "application/json")
                .body(Full::from(r#"{"name":"fresh"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let after = server.get("/api/v1/items").await;
    assert!(
        after
            .header("cache-status")
            .unwrap()
            .contains("fwd=uri-miss")
    );
    let after: Vec<Item> = after.json();
    assert_eq!(after.len(), items.len() + 1);
    // /health is no-cache: the demo's cache keeps nothing it would have to
    // validate before each use (`store_validated(false)`: the handler runs
    // for a validation anyway), so it is neither stored nor revalidated.
    let first = server.get("/health").await;
    assert_eq!(
        first.header("cache-status"),
        Some("tower-perf; fwd=uri-miss")
    );
    let second = server.get("/health").await;
    assert_eq!(
        second.header("cache-status"),
        Some("tower-perf; fwd=uri-miss")
    );
}

fn server_args(a: &[&str]) -> Result<server::ServerArgs, String> {
    server::parse_args(a.iter().map(|s| (*s).to_owned()))
}

#[tokio::test]
async fn responses_are_compressed_when_asked() {
    let server = start().await;
    let plain = server.get("/api/v1/items").await;
    // A browser's list: the best coding this build has (br with the
    // `compression-br` feature, else gzip).
    let best = server
        .get_with("/api/v1/items", &[("accept-encoding", "gzip, deflate, br")])
        .await;
    let expected = if cfg!(feature = "compression-br") {
        "br"
    } else {
        "gzip"
    };
    assert_eq!(best.header("content-encoding"), Some(expected));
    let coding = tower_perf::headers::ContentCoding::from_token(expected.as_bytes()).unwrap();
    assert_eq!(support::decode(coding, &best.body), plain.body);
    let gz = server
        .get_with("/api/v1/items", &[("accept-encoding", "gzip, deflate")])
        .await;
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    // With br or zstd the demo also compresses against shared dictionaries
    // (RFC 9842), so what it sends varies on Available-Dictionary too.
    let vary = if cfg!(any(
        feature = "compression-br",
        feature = "compression-zstd"
    )) {
        "accept-encoding, available-dictionary"
    } else {
        "accept-encoding"
    };
    assert_eq!(gz.header("vary"), Some(vary));
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&gz.body[..]),
        &mut unzipped,
    )
    .unwrap();
    assert_eq!(unzipped, plain.body);
    assert!(
        gz.body.len() * 4 < plain.body.len(),
        "{} -> {}",
        plain.body.len(),
        gz.body.len()
    );
    // Tiny bodies are left alone.
    assert_eq!(
        server
            .get_with("/health", &[("accept-encoding", "gzip")])
            .await
            .header("content-encoding"),
        None
    );
    let js = server
        .get_with("/static/app.js", &[("accept-encoding", "deflate")])
        .await;
    assert_eq!(js.header("content-encoding"), Some("deflate"));
}

#[tokio::test]
async fn compressed_stream_still_streams() {
    let server = start().await;
    let req = server
        .request(Method::GET, "/api/v1/stream")
        .header("accept-encoding", "gzip")
        .body(Full::<Bytes>::default())
        .unwrap();
    let res = server.send_streaming(req).await;
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let mut body = res.into_body();
    let (mut frames, mut all) = (0, Vec::new());
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            frames += 1;
            all.extend_from_slice(&data);
        }
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&all[..]), &mut text).unwrap();
    assert_eq!(text.lines().count(), 20);
    assert!(
        frames >= 2,
        "flushed as lines are produced: {frames} frames"
    );
}

#[tokio::test]
async fn route_policies() {
    let server = start().await;
    for (path, cc) in [
        ("/static/app.js", "max-age=31536000, immutable"),
        ("/api/v1/items", "max-age=300"),
        ("/api/v1/items/3", "max-age=300"),
        ("/health", "no-cache"),
    ] {
        assert_eq!(
            server.get(path).await.header("cache-control"),
            Some(cc),
            "{path}"
        );
    }
    let authed = server
        .get_with("/api/v1/items", &[("authorization", "Bearer x")])
        .await;
    assert_eq!(authed.header("cache-control"), Some("private, max-age=300"));
    // A 404 under /api gets no five-minute policy.
    assert_eq!(
        server
            .get("/api/v1/items/99999")
            .await
            .header("cache-control"),
        None
    );
}

#[tokio::test]
async fn every_get_route_revalidates_to_304() {
    let server = start().await;
    for path in [
        "/health",
        "/api/v1/items",
        "/api/v1/items/7",
        "/api/v1/slow",
        "/static/app.js",
        "/api/v1/stream",
    ] {
        for ae in ["identity", "gzip"] {
            let first = server.get_with(path, &[("accept-encoding", ae)]).await;
            assert_eq!(first.status, StatusCode::OK, "{path} {ae}");
            let tag = first
                .header("etag")
                .unwrap_or_else(|| panic!("{path} {ae}: no etag"))
                .to_owned();
            let again = server
                .get_with(path, &[("accept-encoding", ae), ("if-none-match", &tag)])
                .await;
            assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path} {ae}");
            assert_eq!(again.header("etag"), Some(tag.as_str()), "{path} {ae}");
            assert!(again.body.is_empty());
        }
    }
}

#[tokio::test]
async fn timing_sees_every_route_by_its_template() {
    let (app, stats) = server::app_with_stats(fast());
    let server = TestServer::serve(app).await;
    for path in ["/api/v1/items/1", "/api/v1/items/2", "/health", "/nope"] {
        server.get(path).await;
    }
    let snap = stats.snapshot();
    assert_eq!(
        snap.route("GET", "/api/v1/items/{id}")
            .unwrap()
            .window
            .count,
        2
    );
    assert_eq!(snap.route("GET", "/health").unwrap().window.count, 1);
    assert_eq!(
        snap.route("GET", "unmatched").unwrap().window.client_errors,
        1
    );
}

#[tokio::test]
async fn report_is_flagged_as_n_plus_one_and_metrics_are_served() {
    let (app, stats) = server::app_with_stats(fast());
    let server = TestServer::serve(app).await;
    let report = server.get("/api/v1/report").await;
    assert_eq!(report.status, StatusCode::OK);
    assert_eq!(report.json::<serde_json::Value>()["items"], 55);
    server.get("/api/v1/items/3").await;
    let snap = stats.snapshot();
    let n1 = snap
        .n_plus_one
        .iter()
        .find(|n| n.route == "/api/v1/report" && n.span == "db")
        .expect("N+1 flagged");
    assert_eq!((n1.span.as_str(), n1.max_per_request), ("db", 56));
    let item = snap.route("GET", "/api/v1/items/{id}").unwrap();
    assert_eq!(item.spans[0].name, "db");
    assert!(
        snap.n_plus_one
            .iter()
            .all(|n| n.route != "/api/v1/items/{id}")
    );
    let metrics = server.get("/metrics").await;
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(metrics.text().contains("http_route=\"/api/v1/report\""));
}

/// `/api/v1/report` reads through the query cache: a second call queries
/// nothing, a POST empties the namespace and the next call queries again.
#[tokio::test]
async fn the_report_reads_through_the_query_cache_and_a_write_invalidates_it() {
    let (app, stats) = server::app_with_stats(fast());
    let server = TestServer::serve(app).await;
    // `no-cache`: past the response cache, to the handler each time.
    let report = || server.get_with("/api/v1/report", &[("cache-control", "no-cache")]);
    let spans = |name: &str| {
        let snap = stats.snapshot();
        let route = snap.route("GET", "/api/v1/report").unwrap();
        route
            .spans
            .iter()
            .find(|s| s.name == name)
            .map_or(0, |s| s.spans)
    };
    let first = report().await.json::<serde_json::Value>();
    assert_eq!(spans("db"), 56, "the ids, then each of 55 items");
    assert_eq!(spans("cache.miss:items"), 56);
    let second = report().await.json::<serde_json::Value>();
    assert_eq!(first, second);
    assert_eq!(spans("db"), 56, "no query the second time");
    assert_eq!(spans("cache.hit:items"), 56);
    // Only the misses' queries are an N+1 suspect.
    let suspects: Vec<String> = stats
        .snapshot()
        .n_plus_one
        .iter()
        .filter(|n| n.route == "/api/v1/report")
        .map(|n| n.span.clone())
        .collect();
    assert!(
        !suspects.iter().any(|s| s.starts_with("cache.hit")),
        "{suspects:?}"
    );

    let req = server
        .request(Method::POST, "/api/v1/items")
        .header("content-type", "application/json")
        .body(Full::from(r#"{"name":"new thing","price_cents":500}"#))
        .unwrap();
    assert_eq!(server.send(req).await.status, StatusCode::CREATED);
    let third = report().await.json::<serde_json::Value>();
    assert_eq!(third["items"], 56);
    assert_eq!(
        third["total_price_cents"].as_u64(),
        first["total_price_cents"].as_u64().map(|t| t + 500)
    );
    assert_eq!(spans("db"), 56 + 57, "queried again after the write");
    let queries = server
        .get("/performance/cache/queries")
        .await
        .json::<serde_json::Value>();
    let items = &queries["namespaces"][0];
    assert_eq!(
        (items["namespace"].as_str(), items["invalidated"].as_u64()),
        (Some("items"), Some(56))
    );
}

#[tokio::test]
async fn api_is_rate_limited_per_client_and_can_be_turned_off() {
    let server = TestServer::serve(server::app_with(DemoConfig {
        rate_limit_per_min: Some(20),
        ..fast()
    }))
    .await;
    let first = server.get("/api/v1/items/1").await;
    assert_eq!(first.header("ratelimit-policy"), Some("\"api\";q=20;w=60"));
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(server.get("/api/v1/items/1").await.status);
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        6
    );
    // Writes are tighter: 2 a minute here.
    let post = || {
        server
            .request(Method::POST, "/api/v1/items")
            .header("content-type", "application/json")
            .body(Full::from(r#"{"name":"n"}"#))
            .unwrap()
    };
    assert_eq!(server.send(post()).await.status, StatusCode::CREATED);
    assert_eq!(server.send(post()).await.status, StatusCode::CREATED);
    assert_eq!(
        server.send(post()).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // /health is not limited.
    assert_eq!(server.get("/health").await.header("ratelimit"), None);
    let open = TestServer::serve(server::app_with(DemoConfig {
        rate_limit_per_min: None,
        ..fast()
    }))
    .await;
    for _ in 0..50 {
        assert_eq!(open.get("/api/v1/items/1").await.status, StatusCode::OK);
    }
}

/// Two replicas of the demo on one Redis (`--redis`): one quota, one cache.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_limits_and_cache_through_redis() {
    let url = support::redis::redis_url();
    let prefix = format!(
        "tower-perf-test:demo:{}:{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let config = DemoConfig {
        rate_limit_per_min: Some(6),
        ..fast()
    };
    let (a, _) = server::app_with_redis(config.clone(), &url, &prefix)
        .await
        .unwrap();
    let (b, _) = server::app_with_redis(config, &url, &prefix).await.unwrap();
    let (a, b) = (TestServer::serve(a).await, TestServer::serve(b).await);
    // /static is not rate limited: the cache part doesn't touch the quota.
    let first = a.get("/static/app.js").await;
    assert!(first.header("cache-status").unwrap().contains("stored"));
    // B answers from the shared cache once A's write reached Redis (asked
    // for the same host: the host is part of the key).
    use tower_perf::cache::{CacheKey, CacheStore, RedisCacheStore};
    let l2 = RedisCacheStore::new(&url, &format!("{prefix}:cache")).unwrap();
    let host = a.addr().to_string();
    let key = CacheKey::from_text(&format!("{host}/static/app.js"));
    let deadline = std::time::Instant::now() + support::gate::DEADLINE;
    while l2.get(&key).await.ok().flatten().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "A's response never reached Redis"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = b.get_with("/static/app.js", &[("host", &host)]).await;
    assert!(
        r.header("cache-status").unwrap().contains("hit"),
        "replica B never saw A's cached response"
    );
    // One quota of 6 a minute for this client across both replicas.
    let mut statuses = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 { &a } else { &b };
        statuses.push(s.get("/api/v1/items/4").await.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 429, 429]);
    // The report shows the Redis stores.
    let summary: serde_json::Value = a.get("/performance/summary").await.json();
    assert!(
        summary["redis"]["rate_limit"]["checks"].as_u64().unwrap() >= 4,
        "{summary}"
    );
    assert!(summary["redis"]["cache"]["l1_hits"].is_u64(), "{summary}");
}

#[tokio::test]
async fn bare_mode_has_no_layers() {
    let server = TestServer::serve(server::app_with(DemoConfig {
        bare: true,
        ..fast()
    }))
    .await;
    let r = server
        .get_with("/api/v1/items", &[("accept-encoding", "gzip")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    for h in [
        "cache-status",
        "ratelimit",
        "content-encoding",
        "etag",
        "cache-control",
    ] {
        assert!(r.header(h).is_none(), "{h} in bare mode");
    }
}

#[tokio::test]
async fn post_bodies_may_come_compressed_and_bombs_are_refused() {
    use tower_perf::headers::ContentCoding;
    let server = start().await;
    for coding in support::built_codings() {
        let item = format!(
            r#"{{"name":"sent as {}","price_cents":100}}"#,
            coding.as_str()
        );
        let req = server
            .request(Method::POST, "/api/v1/items")
            .header("content-type", "application/json")
            .header("content-encoding", coding.as_str())
            .body(Full::from(support::encode(coding, item.as_bytes())))
            .unwrap();
        let res = server.send(req).await;
        assert_eq!(res.status, StatusCode::CREATED, "{coding:?}");
        assert_eq!(
            res.json::<Item>().name,
            format!("sent as {}", coding.as_str())
        );
    }
    // 10 MB of spaces (valid JSON whitespace) in 10 KB: refused at 64 KiB
    // decoded.
    let bomb = support::encode(ContentCoding::Gzip, &vec![b' '; 10_000_000]);
    let req = server
        .request(Method::POST, "/api/v1/items")
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(Full::from(bomb))
        .unwrap();
    assert_eq!(server.send(req).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    let req = server
        .request(Method::POST, "/api/v1/items")
        .header("content-type", "application/json")
        .header("content-encoding", "compress")
        .body(Full::from("x"))
        .unwrap();
    let res = server.send(req).await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(res.header("accept-encoding").unwrap().contains("gzip"));
}

/// `/static/app.js` is learned as a dictionary (RFC 9842); a client that
/// names it gets the script compressed against it, through the cache.
#[tokio::test]
async fn the_script_is_a_dictionary_for_its_next_versions() {
    if !cfg!(any(
        feature = "compression-br",
        feature = "compression-zstd"
    )) {
        return;
    }
    let server = start().await;
    let first = server
        .get_with("/static/app.js", &[("accept-encoding", "gzip")])
        .await;
    assert_eq!(first.header("content-encoding"), Some("gzip"));
    assert!(first.header("use-as-dictionary").is_some());
    let hash = tower_perf::compression::Dictionaries::new()
        .insert(server::APP_JS.as_ref())
        .unwrap()
        .to_string();
    let res = server
        .get_with(
            "/static/app.js",
            &[
                ("accept-encoding", "gzip, br, zstd, dcb, dcz"),
                ("available-dictionary", hash.as_str()),
            ],
        )
        .await;
    let expected = if cfg!(feature = "compression-zstd") {
        "dcz"
    } else {
        "dcb"
    };
    assert_eq!(res.header("content-encoding"), Some(expected));
    // The same script against itself: little more than the header.
    assert!(res.body.len() < 100, "{} bytes", res.body.len());
    assert_eq!(
        res.header("vary"),
        Some("accept-encoding, available-dictionary")
    );
}

#[tokio::test]
async fn an_export_runs_inline_or_as_a_task_with_progress() {
    let server = TestServer::serve(server::app_with(DemoConfig {
        token: Some("t0ken".to_owned()),
        export_step: Duration::from_millis(30),
        ..fast()
    }))
    .await;
    let post = |prefer: bool| {
        let mut req = server
            .request(Method::POST, "/api/v1/exports")
            .header("accept-encoding", "gzip");
        if prefer {
            req = req.header("prefer", "respond-async");
        }
        req.body(Full::default()).unwrap()
    };
    // Inline: the whole export, compressed like any answer.
    let inline = server.send(post(false)).await;
    assert_eq!(inline.status, StatusCode::OK);
    assert_eq!(inline.header("content-encoding"), Some("gzip"));

    // Deferred: 202 at once, a monitor whose progress moves, the result.
    let accepted = server.send(post(true)).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text());
    assert_eq!(accepted.header("preference-applied"), Some("respond-async"));
    let monitor = accepted.header("location").unwrap().to_owned();
    assert!(monitor.starts_with("/performance/tasks/"), "{monitor}");
    // Progress only grows, to 100 (that it moves mid-way is checked in
    // tests/tasks.rs, with a gate instead of a clock).
    let mut seen = Vec::new();
    let done = tokio::time::timeout(support::gate::DEADLINE, async {
        loop {
            let info: serde_json::Value = server.get(&monitor).await.json();
            if let Some(p) = info["progress"].as_u64() {
                seen.push(p);
            }
            if info["state"] == "completed" {
                break info;
            }
            assert!(
                matches!(info["state"].as_str(), Some("pending" | "running")),
                "{info}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the export completed");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&100));
    assert_eq!(done["message"], "done");
    let result = server
        .get_with(
            done["links"]["result"].as_str().unwrap(),
            &[("accept-encoding", "gzip")],
        )
        .await;
    assert_eq!(result.status, StatusCode::OK);
    // Kept uncompressed, compressed for whoever fetches it.
    assert_eq!(result.header("content-encoding"), Some("gzip"));
    let plain = server.get(done["links"]["result"].as_str().unwrap()).await;
    let export: serde_json::Value = plain.json();
    assert_eq!(export["steps"], 10);
    assert_eq!(export["pages"].as_array().unwrap().len(), 10);
    assert_eq!(plain.header("cache-control"), Some("no-store"));

    // The summary counts it.
    let summary: serde_json::Value = server.get("/performance/summary").await.json();
    assert_eq!(summary["tasks"]["completed"], 1);
}

#[tokio::test]
async fn the_task_monitors_have_their_own_rate_limits() {
    let server = TestServer::serve(server::app_with(DemoConfig {
        token: Some("t0ken".to_owned()),
        ..fast()
    }))
    .await;
    let unknown = "0".repeat(32);
    let delete = || {
        server
            .request(Method::DELETE, &format!("/performance/tasks/{unknown}"))
            .header("authorization", "Bearer t0ken")
            .body(Full::default())
            .unwrap()
    };
    for _ in 0..20 {
        assert_eq!(server.send(delete()).await.status, StatusCode::NOT_FOUND);
    }
    let limited = server.send(delete()).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    // Reading a task isn't counted with the cancels.
    let read = server.get(&format!("/performance/tasks/{unknown}")).await;
    assert_eq!(read.status, StatusCode::NOT_FOUND);
    // The list: 50 a minute.
    let list = || {
        server
            .request(Method::GET, "/performance/tasks")
            .header("authorization", "Bearer t0ken")
            .body(Full::default())
            .unwrap()
    };
    for _ in 0..50 {
        assert_eq!(server.send(list()).await.status, StatusCode::OK);
    }
    assert_eq!(
        server.send(list()).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}
