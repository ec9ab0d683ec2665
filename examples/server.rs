//! The tower-perf demo server.
//!
//! ```text
//! cargo run --release --example server                   # 127.0.0.1:3000
//! cargo run --release --example server -- --addr 0.0.0.0:8080
//! ```
//!
//! Routes:
//!
//! | route                    | answer                                               |
//! |--------------------------|------------------------------------------------------|
//! | `GET /health`            | `ok`                                                 |
//! | `GET /api/v1/items`      | a deterministic JSON list of about 8 KiB             |
//! | `GET /api/v1/items/{id}` | one item, or 404                                     |
//! | `POST /api/v1/items`     | adds an item (`{"name": "…", "price_cents": 100}`)   |
//! | `GET /api/v1/slow`       | answers after 50–150 ms                              |
//! | `GET /static/app.js`     | a JavaScript asset of about 30 KiB                   |
//! | `GET /api/v1/stream`     | 20 NDJSON lines, 50 ms apart, chunked                |
//! | `GET /api/v1/report`     | a summary that reads the items one by one (an N+1) through the query cache: a second call reads nothing |
//! | `POST /api/v1/exports`   | a 2 s export in ten steps; with `Prefer: respond-async`, `202` and a task monitor |
//! | `GET /metrics`           | Prometheus text for every layer                      |
//! | `/performance/*`         | statistics, purge, profile, task monitors, live dashboard (`tower_perf::report`) |
//!
//! It needs nothing else running: everything is in memory.
//!
//! The tower-perf layers wrap every route, in the order the README
//! explains (Timing → RateLimit → Cache → Compression → CacheControl →
//! Async → handlers). Any request with `Prefer: respond-async` runs as a
//! background task (4 at once, 32 queued, 60 s each, results kept a
//! day): `202 Accepted` with `Location: /performance/tasks/{id}`. Wired so far: timing (outermost; per-route latency, slow
//! requests from 100 ms), rate limiting (`/api/**`, 100 a minute per client,
//! writes 10; `--rate-limit-per-min N`, `--no-rate-limit`), the response
//! cache (32 MiB in memory, keyed on the negotiated coding; `--no-cache`),
//! compression (br, gzip and deflate, and zstd with `compression-zstd`,
//! negotiated), cache-control (policies
//! by route, ETags, 304/412), which the cache obeys, and request
//! decompression next to the handlers (a `POST` body may come in any of
//! those codings; decoded, it may be at most 64 KiB), and shared
//! dictionaries (RFC 9842: `/static/app.js` is marked
//! `Use-As-Dictionary`, and a browser that has it gets later versions
//! compressed against it).  With `--redis URL` (feature `redis`), or
//! `--redis-cluster URL,URL,…` for a Redis Cluster's seed nodes, the rate
//! limits, the caches and the task records are shared through Redis by
//! every replica pointed at it:
//!
//! | routes | Cache-Control |
//! |---|---|
//! | `/static/**` | `max-age=31536000, immutable` |
//! | `/api/**` | `max-age=300` (`private, max-age=300` with Authorization) |
//! | `/performance/**` | `max-age=60` |
//!
//! (On GET and HEAD answers with a cacheable status; see
//! `cache_control::Policy::CACHEABLE_STATUSES`.)
//! | `/health` | `no-cache` |
//!
//! Every GET route answers a revalidation with 304.
//!
//! The serving loop (`examples/common/serve.rs`, shared with the proxy)
//! times out slow request heads, idle connections and stalled transfers
//! (a client that stops reading, a request body that stops arriving),
//! caps open connections and HTTP/2 streams and header sizes, and drains
//! on Ctrl-C or SIGTERM; `--help` lists its flags and defaults.

#[path = "common/args.rs"]
mod args;
#[path = "common/items.rs"]
mod items;
pub(crate) use items::{Item, seed_items};
use items::{add_item, error, get_item, list_items, report_items};
#[path = "common/serve.rs"]
pub(crate) mod serve;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::Method;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use tower::ServiceBuilder;
use tower_perf::cache::{CacheLayer, MemoryStore};
use tower_perf::cache_control::{CacheControlLayer, Policy};
use tower_perf::compression::{CompressionLayer, Dictionaries};
use tower_perf::decompression::{DecompressionBody, RequestDecompressionLayer};
use tower_perf::query_cache::QueryCache;
use tower_perf::rate_limit::{Quota, RateLimitLayer, RateLimitStore, RateRule};
use tower_perf::report::{Report, ReportBuilder};
use tower_perf::tasks::{AsyncLayer, TaskBody, TaskProgress};
use tower_perf::timing::{TimingLayer, TimingStats};

/// Items the demo keeps at most, so POSTs can't grow memory without bound.
pub(crate) const MAX_ITEMS: usize = 10_000;
/// The most a request body may decode to (`Content-Encoding` bodies).
pub(crate) const MAX_DECODED_BODY: u64 = 64 * 1024;

/// Timings of the demo routes; tests shorten them.
#[derive(Debug, Clone)]
pub(crate) struct DemoConfig {
    /// `/api/v1/slow` waits between these two.
    pub(crate) slow: (Duration, Duration),
    /// The pause between `/api/v1/stream` lines.
    pub(crate) stream_interval: Duration,
    /// Lines `/api/v1/stream` sends.
    pub(crate) stream_lines: u32,
    /// Requests a minute per client on `/api/**` (writes get a tenth);
    /// `None` turns rate limiting off.
    pub(crate) rate_limit_per_min: Option<u32>,
    /// The response cache (on unless `--no-cache`).
    pub(crate) cache: bool,
    /// The bearer token of `/performance/cache/*` (`--token`); none
    /// disables them.
    pub(crate) token: Option<String>,
    /// `--bare`: the handlers without any tower-perf layer (the baseline
    /// of benches/run.sh).
    pub(crate) bare: bool,
    /// `/api/v1/exports` takes ten of these steps.
    pub(crate) export_step: Duration,
    /// Runs requests that carry `Prefer: respond-async` in the
    /// background; its handle serves the monitors and shuts the tasks
    /// down with the server.
    pub(crate) tasks: AsyncLayer,
    /// How often the report's history takes a point (10 s).
    pub(crate) history: Duration,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            slow: (Duration::from_millis(50), Duration::from_millis(150)),
            stream_interval: Duration::from_millis(50),
            stream_lines: 20,
            rate_limit_per_min: Some(100),
            cache: true,
            token: None,
            bare: false,
            export_step: Duration::from_millis(200),
            tasks: demo_tasks(),
            history: Duration::from_secs(10),
        }
    }
}

/// The demo's task layer: 4 tasks at once, 32 queued, 60 s each; results
/// up to 8 MiB, kept a day.
pub(crate) fn demo_tasks() -> AsyncLayer {
    AsyncLayer::new()
        .concurrency(4)
        .queue(32)
        .timeout(Duration::from_secs(60))
        .retention(Duration::from_secs(24 * 3600))
}

/// What the command line says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerArgs {
    pub(crate) addr: SocketAddr,
    pub(crate) rate_limit_per_min: Option<u32>,
    pub(crate) cache: bool,
    /// `--token T` (or `TOWER_PERF_TOKEN`): enables the cache endpoints.
    pub(crate) token: Option<String>,
    /// `--bare`: no tower-perf layer at all.
    pub(crate) bare: bool,
    /// `--redis URL`: both layers in Redis; with `--redis-cluster
    /// URL,URL,…` the seeds of a Redis Cluster.
    pub(crate) redis: Option<String>,
    /// `redis` names a cluster's seed nodes (`--redis-cluster`).
    pub(crate) redis_cluster: bool,
    /// Timeouts and connection limits of the serving loop.
    pub(crate) limits: serve::Limits,
}

/// The demo's rate limits: per client, on `/api/**`; writes tighter.
pub(crate) fn rate_limit(per_min: u32) -> RateLimitLayer {
    rate_limit_rules(RateLimitLayer::new(), per_min)
}

/// The demo's rules on a layer with any store.
pub(crate) fn rate_limit_rules<St: RateLimitStore>(
    layer: RateLimitLayer<St>,
    per_min: u32,
) -> RateLimitLayer<St> {
    let per_min = per_min.max(1);
    layer
        // The performance endpoints, per client.
        .rule(
            RateRule::new("perf-cache-writes", Quota::per_minute(10))
                .path("/performance/cache/**")
                .methods([Method::POST]),
        )
        // The task monitors: cancel, list, read one (and its result).
        .rule(
            RateRule::new("perf-tasks-cancel", Quota::per_minute(20))
                .path("/performance/tasks/{id}")
                .methods([Method::DELETE]),
        )
        .rule(
            RateRule::new("perf-tasks-list", Quota::per_minute(50))
                .path("/performance/tasks")
                .methods([Method::GET, Method::HEAD]),
        )
        .rule(RateRule::new("perf-tasks", Quota::per_minute(100)).path("/performance/tasks/**"))
        .rule(RateRule::new("perf-dashboard", Quota::per_minute(30)).path("/performance/dashboard"))
        .rule(RateRule::new("perf-stats", Quota::per_minute(100)).path("/performance/**"))
        .rule(
            RateRule::new("api-writes", Quota::per_minute((per_min / 10).max(1)))
                .path("/api/**")
                .methods([Method::POST, Method::PUT, Method::PATCH, Method::DELETE]),
        )
        .rule(RateRule::new("api", Quota::per_minute(per_min)).path("/api/**"))
}

#[derive(Debug)]
struct AppState {
    config: DemoConfig,
    items: RwLock<Vec<Item>>,
    /// What the report reads, item by item (namespace `items`, emptied by
    /// every write).
    queries: QueryCache,
    next_id: AtomicU64,
    jitter: AtomicU64,
}

/// The demo app with the given timings.
pub(crate) fn app_with(config: DemoConfig) -> Router {
    app_with_stats(config).0
}

/// The demo app and its timing statistics.
pub(crate) fn app_with_stats(config: DemoConfig) -> (Router, TimingStats) {
    app_with_cache_layer(config, demo_cache())
}

/// The demo app with `cache`'s settings (benches compare them).
#[allow(dead_code)]
pub(crate) fn app_with_cache(config: DemoConfig, cache: CacheLayer) -> Router {
    app_with_cache_layer(config, cache).0
}

fn app_with_cache_layer(config: DemoConfig, cache: CacheLayer) -> (Router, TimingStats) {
    // No rules (nothing limited) when rate limiting is off.
    let limits = config
        .rate_limit_per_min
        .map_or_else(RateLimitLayer::new, rate_limit);
    // 32 MiB of responses, keyed on the coding the compression layer below
    // picks.
    let cache = config
        .cache
        .then(|| cache.store(MemoryStore::new(32 * 1024 * 1024)));
    build(config, limits, cache, demo_queries().build(), |r| r)
}

/// The demo's query cache settings: 16 MiB of the handlers' query
/// results, a minute each.
fn demo_queries() -> tower_perf::query_cache::QueryCacheBuilder {
    QueryCache::builder()
        .max_bytes(16 << 20)
        .default_ttl(Duration::from_secs(60))
}

/// The demo's cache settings (without its store; `build` keys it on the
/// codings of the compression layer inside it). The origin is this
/// process: responses that could be reused only after validating them
/// (`/health`'s `no-cache`) are not stored, since the handler would run
/// for the validation anyway (`CacheLayer::store_validated`).
pub(crate) fn demo_cache() -> CacheLayer {
    CacheLayer::new().store_validated(false)
}

/// The demo app with both layers in Redis at `target` (`--redis` or
/// `--redis-cluster`): the rate
/// limits shared by every replica, the cache in memory in front of Redis.
/// Starts even when Redis is down (the layers fall back and reconnect).
#[cfg(feature = "redis")]
pub(crate) async fn app_with_redis(
    config: DemoConfig,
    target: impl Into<tower_perf::RedisTarget>,
    prefix: &str,
) -> Result<(Router, TimingStats), String> {
    use tower_perf::cache::{RedisCacheStore, TieredStore};
    use tower_perf::rate_limit::RedisStore;
    let url = &target.into();
    let store = RedisStore::new(url, &format!("{prefix}:rl")).map_err(|e| e.to_string())?;
    let rl_stats = store.stats();
    let limits = rate_limit_rules(
        RateLimitLayer::with_store(store),
        config.rate_limit_per_min.unwrap_or(u32::MAX),
    );
    let l2 = RedisCacheStore::new(url, &format!("{prefix}:cache")).map_err(|e| e.to_string())?;
    let tiered = TieredStore::new(MemoryStore::new(32 * 1024 * 1024), l2).await;
    let cache = config.cache.then(|| demo_cache().store(tiered.clone()));
    // The handlers' query results shared too: a write on one replica
    // invalidates them on all.
    let tier = tower_perf::query_cache::RedisTier::new(url, &format!("{prefix}:queries"))
        .map_err(|e| e.to_string())?;
    let queries = demo_queries().redis(tier).build();
    if !queries.subscribed(Duration::from_secs(1)).await {
        eprintln!(
            "warning: the query cache is not subscribed to Redis's invalidations yet (Redis \
             down?); it keeps trying, and empties its memory when it subscribes"
        );
    }
    // The report shows the Redis stores' errors, timeouts and fallbacks.
    let (rl_stats, cache_stats) = (rl_stats, tiered.stats());
    let extra = move |r: ReportBuilder| r.redis_rate_limit(rl_stats).redis_cache(cache_stats);
    Ok(if config.rate_limit_per_min.is_some() {
        build(config, limits, cache, queries, extra)
    } else {
        build(config, RateLimitLayer::new(), cache, queries, extra)
    })
}

/// The demo's routes under the full stack.
fn build<St>(
    config: DemoConfig,
    limits: RateLimitLayer<St>,
    cache: Option<CacheLayer>,
    queries: QueryCache,
    extra: impl FnOnce(ReportBuilder) -> ReportBuilder,
) -> (Router, TimingStats)
where
    St: RateLimitStore,
    St::Future: Unpin,
{
    let timing = TimingLayer::new()
        .slow_threshold(Some(Duration::from_millis(100)))
        .sub_timings(true);
    let stats = timing.stats();
    let mut compression = CompressionLayer::new();
    if cfg!(any(
        feature = "compression-br",
        feature = "compression-zstd"
    )) {
        // RFC 9842: /static/app.js says it may serve as a dictionary for
        // later versions of itself; a browser that has it gets those
        // compressed against it (dcz, dcb). Learned in memory, 4 MiB at most.
        compression = compression.dictionaries(Dictionaries::new().max_bytes(4 << 20));
    }
    // Keyed on the codings the compression layer below it offers.
    let cache = cache.map(|c| c.codings(compression.offered_codings().iter().copied()));
    let request_decompression = RequestDecompressionLayer::new().max_decoded_size(MAX_DECODED_BODY);
    let cache_control = cache_control();
    let mut report = Report::builder()
        .timing(stats.clone())
        .rate_limit(limits.stats())
        .compression(compression.stats())
        .decompression(request_decompression.stats())
        .cache_control(cache_control.stats())
        .history_interval(Some(config.history));
    if let Some(cache) = &cache {
        report = report.cache(cache.handle());
    }
    if let Some(token) = &config.token {
        report = report.token(token.clone());
    }
    let tasks = config.tasks.clone();
    report = report.tasks(tasks.handle());
    report = report.query_cache(&queries);
    let report = extra(report).build();
    let items = seed_items();
    let next_id = items.len() as u64 + 1;
    let bare = config.bare;
    let state = Arc::new(AppState {
        config,
        items: RwLock::new(items),
        queries,
        next_id: AtomicU64::new(next_id),
        jitter: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
    });
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/api/v1/items", get(list_items).post(add_item))
        .route("/api/v1/items/{id}", get(get_item))
        .route("/api/v1/report", get(report_items))
        .route("/api/v1/slow", get(slow))
        .route("/static/app.js", get(app_js))
        .route("/api/v1/stream", get(stream))
        .route("/api/v1/exports", post(export))
        .route_service("/metrics", report.clone())
        // Routes, not `nest_service`: the endpoints carry a route template
        // (axum's MatchedPath) under /performance, by which timing and the
        // cache label them and the report's history leaves them out.
        .merge(report.routes())
        .with_state(state);
    if bare {
        return (router, stats);
    }
    // Next to the handlers, inside the rate limiter: a client over its
    // quota costs no decoding. Decoded bodies are bounded well below
    // axum's own 2 MiB (an item is a few hundred bytes); the handlers take
    // axum's `Body` again.
    // Deferred requests hand the handlers a body read whole
    // (`TaskBody`), decoded next; axum's `Body` once, at the end.
    let decompression = ServiceBuilder::new()
        .layer(tasks)
        .layer(request_decompression)
        .map_request(
            |req: axum::http::Request<DecompressionBody<TaskBody<Body>>>| req.map(Body::new),
        );
    let router = match cache {
        Some(cache) => router.layer(
            ServiceBuilder::new()
                .layer(timing)
                .layer(limits)
                .layer(cache)
                .layer(compression)
                .layer(cache_control)
                .layer(decompression),
        ),
        None => router.layer(
            ServiceBuilder::new()
                .layer(timing)
                .layer(limits)
                .layer(compression)
                .layer(cache_control)
                .layer(decompression),
        ),
    };
    (router, stats)
}

/// The demo's Cache-Control policies.
pub(crate) fn cache_control() -> CacheControlLayer {
    CacheControlLayer::new()
        .route("/static/**", Policy::static_assets())
        .route("/api/**", Policy::api(Duration::from_secs(300)))
        .route("/performance/**", Policy::monitoring())
        .route("/health", Policy::no_cache())
}

/// A pseudo-random delay in the configured range (splitmix64 over a shared
/// counter: no dependency, no lock).
fn jitter(state: &AppState) -> Duration {
    let mut z = state
        .jitter
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let (lo, hi) = state.config.slow;
    let span = hi.saturating_sub(lo).as_micros() as u64;
    lo + Duration::from_micros(if span == 0 { 0 } else { z % (span + 1) })
}

async fn slow(State(state): State<Arc<AppState>>) -> Response {
    let delay = jitter(&state);
    tokio::time::sleep(delay).await;
    // The wait goes in a header, so the body (and its ETag) is the same
    // every time and revalidation can answer 304.
    let waited = delay.as_millis().to_string();
    (
        [("x-waited-ms", waited)],
        Json(serde_json::json!({ "slow": true })),
    )
        .into_response()
}

/// About 30 KiB of JavaScript, built once.
pub(crate) static APP_JS: LazyLock<Bytes> = LazyLock::new(|| {
    let mut js =
        String::from("// tower-perf demo asset\n\"use strict\";\nconst registry = new Map();\n");
    let mut n = 0;
    while js.len() < 30 * 1024 {
        js.push_str(&format!(
            "export function widget{n}(root, options = {{}}) {{\n  const el = document.createElement(\"div\");\n  \
             el.className = \"widget widget-{n}\";\n  el.textContent = options.label ?? \"Widget {n}\";\n  \
             registry.set({n}, el);\n  root.appendChild(el);\n  return el;\n}}\n"
        ));
        n += 1;
    }
    Bytes::from(js)
});

async fn app_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            // Later versions (`/static/app.v2.js`, …) may be compressed
            // against this one (RFC 9842).
            (
                header::HeaderName::from_static("use-as-dictionary"),
                "match=\"/static/app*.js\"",
            ),
        ],
        APP_JS.clone(),
    )
        .into_response()
}

async fn stream(State(state): State<Arc<AppState>>) -> Response {
    let interval = state.config.stream_interval;
    let lines = state.config.stream_lines;
    let body = futures_util::stream::unfold(0u32, move |i| async move {
        if i >= lines {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        let line = format!("{{\"seq\":{i},\"of\":{lines}}}\n");
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), i + 1))
    });
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_owned()),
            // The stream is the same every time for a given configuration,
            // so its version is a strong validator a client can revalidate.
            (
                header::ETAG,
                format!("\"stream-{lines}-{}ms\"", interval.as_millis()),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Steps of `/api/v1/exports`.
const EXPORT_STEPS: u32 = 10;

/// An export that takes a while: the catalogue, ten times over in ten
/// steps (`export_step` apart, 2 s in all by default), about 80 KiB of
/// JSON. Inline it just takes that long; with `Prefer: respond-async` it
/// runs as a task whose monitor shows each step.
async fn export(State(state): State<Arc<AppState>>, progress: TaskProgress) -> Response {
    let mut pages = Vec::with_capacity(EXPORT_STEPS as usize);
    for step in 0..EXPORT_STEPS {
        progress.set(
            (step * 100 / EXPORT_STEPS) as u8,
            format!("page {} of {EXPORT_STEPS}", step + 1),
        );
        tokio::time::sleep(state.config.export_step).await;
        let page = match state.items.read() {
            Ok(items) => serde_json::to_value(&*items),
            Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "item store poisoned"),
        };
        match page {
            Ok(page) => pages.push(page),
            Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "serialization failed"),
        }
    }
    progress.set(100, "done");
    Json(serde_json::json!({ "pages": pages, "steps": EXPORT_STEPS })).into_response()
}

const USAGE: &str = "usage: server [--addr HOST:PORT] [--rate-limit-per-min N | --no-rate-limit] [--no-cache] [--bare] [--token T] [--redis URL | --redis-cluster URL,URL,...] [connection limits]\n\n  \
--addr HOST:PORT         listen address (default 127.0.0.1:3000)\n  \
--rate-limit-per-min N   requests a minute per client on /api/** (default 100; writes get N/10)\n  \
--no-rate-limit          no rate limiting (for throughput benchmarks)\n  \
--no-cache               no response cache\n  \
--bare                   the handlers alone, without any tower-perf layer (a baseline)\n  \
--token T                bearer token for POST /performance/cache/* (or TOWER_PERF_TOKEN)\n  \
--redis URL              rate limits, cache and task records shared through Redis (feature `redis`)\n  \
--redis-cluster URLS     the same through a Redis Cluster, given by seed nodes (comma-separated)\n";

pub(crate) fn parse_args(args: impl Iterator<Item = String>) -> Result<ServerArgs, String> {
    let mut parsed = ServerArgs {
        addr: ([127, 0, 0, 1], 3000).into(),
        rate_limit_per_min: Some(100),
        cache: true,
        token: None,
        bare: false,
        redis: None,
        redis_cluster: false,
        limits: serve::Limits::default(),
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = args::split(&arg);
        let mut value = |name: &str| args::value(&inline, &mut args, name);
        match flag.as_str() {
            "--addr" => {
                let v = value("--addr")?;
                parsed.addr = v.parse().map_err(|e| format!("--addr {v}: {e}"))?;
            }
            "--rate-limit-per-min" => {
                let v = value("--rate-limit-per-min")?;
                let n: u32 = v
                    .parse()
                    .map_err(|e| format!("--rate-limit-per-min {v}: {e}"))?;
                if n == 0 {
                    return Err(
                        "--rate-limit-per-min must be at least 1 (or use --no-rate-limit)"
                            .to_owned(),
                    );
                }
                parsed.rate_limit_per_min = Some(n);
            }
            "--no-rate-limit" => parsed.rate_limit_per_min = None,
            "--no-cache" => parsed.cache = false,
            "--bare" => parsed.bare = true,
            "--token" => {
                let v = value("--token")?;
                if v.is_empty() || v.bytes().any(|b| !b.is_ascii_graphic()) {
                    return Err("--token: visible ASCII, not empty".to_owned());
                }
                parsed.token = Some(v);
            }
            "--redis" => {
                let v = value("--redis")?;
                if !v.starts_with("redis://") && !v.starts_with("rediss://") {
                    return Err(format!("--redis {v}: a redis:// URL"));
                }
                if cfg!(not(feature = "redis")) {
                    return Err("--redis needs the `redis` feature: cargo run --example server --features redis -- --redis URL".to_owned());
                }
                parsed.redis = Some(v);
                parsed.redis_cluster = false;
            }
            "--redis-cluster" => {
                let v = value("--redis-cluster")?;
                let seeds: Vec<&str> = v.split(',').filter(|s| !s.is_empty()).collect();
                if seeds.is_empty()
                    || seeds
                        .iter()
                        .any(|s| !s.starts_with("redis://") && !s.starts_with("rediss://"))
                {
                    return Err(format!(
                        "--redis-cluster {v}: redis:// URLs of the cluster's nodes, comma-separated"
                    ));
                }
                if cfg!(not(feature = "redis")) {
                    return Err("--redis-cluster needs the `redis` feature: cargo run --example server --features redis -- --redis-cluster URLS".to_owned());
                }
                parsed.redis = Some(seeds.join(","));
                parsed.redis_cluster = true;
            }
            f if serve::Limits::is_flag(f) => {
                let v = value(f)?;
                parsed.limits.set(f, &v)?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(parsed)
}

/// mimalloc, not the system allocator: on two worker threads, glibc's
/// malloc spent 17% of this server's CPU on a cache-miss load (arena locks
/// when one thread frees what another allocated, consolidation), and a
/// miss cost 55.7 µs of CPU against 38.9 µs with mimalloc (BENCHMARKS.md,
/// "The pass-through path, second part"). Any server that stores responses frees on one thread what
/// another allocated; `--bare` uses the same allocator, so the comparisons
/// stay fair.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let args = args::or_exit(
        parse_args(std::env::args().skip(1)),
        &format!("{USAGE}{}", serve::USAGE),
    );
    let addr = args.addr;
    let config = DemoConfig {
        rate_limit_per_min: args.rate_limit_per_min,
        cache: args.cache,
        bare: args.bare,
        token: args.token.or_else(|| {
            std::env::var("TOWER_PERF_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
        }),
        ..DemoConfig::default()
    };
    // With --redis (or --redis-cluster), every replica answers any task's
    // monitor.
    #[cfg(feature = "redis")]
    let target = args.redis.as_deref().map(|url| {
        if args.redis_cluster {
            tower_perf::RedisTarget::cluster(url.split(','))
        } else {
            tower_perf::RedisTarget::server(url)
        }
    });
    #[cfg(feature = "redis")]
    let config = match &target {
        Some(url) => match tower_perf::tasks::RedisTasks::new(url, "tower-perf-demo:tasks") {
            Ok(shared) => DemoConfig {
                tasks: config.tasks.clone().redis(shared),
                ..config
            },
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        },
        None => config,
    };
    let tasks = config.tasks.handle();
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    #[cfg(not(feature = "redis"))]
    let target = args.redis.as_deref();
    let app = match target {
        None => app_with(config),
        #[cfg(feature = "redis")]
        Some(url) => match app_with_redis(config, url, "tower-perf-demo").await {
            Ok((app, _)) => app,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        },
        // parse_args refuses --redis without the feature.
        #[cfg(not(feature = "redis"))]
        Some(_) => std::process::exit(2),
    };
    eprintln!("tower-perf demo listening on http://{addr}");
    // On Ctrl-C or SIGTERM the tasks stop being taken at once, and running
    // ones get the same grace period as the connections draining beside
    // them; those left fail, saying why.
    let grace = args.limits.shutdown_timeout;
    let (stopping_tx, stopping) = tokio::sync::oneshot::channel();
    let shutdown = async move {
        serve::shutdown_signal().await;
        let stopping = tokio::spawn(async move { tasks.shutdown(grace).await });
        let _ = stopping_tx.send(stopping);
    };
    serve::serve(listener, app, args.limits, serve::stderr_log(), shutdown).await;
    if let Ok(stopping) = stopping.await {
        if let Ok(stopped) = stopping.await {
            if stopped > 0 {
                eprintln!("{stopped} running task(s) failed: the server shut down first");
            }
        }
    }
}
