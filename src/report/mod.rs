//! Performance endpoints, Prometheus text and a live dashboard, over the
//! statistics handles of whichever layers are present.
//!
//! [`Report`] is a framework-agnostic Tower service. Mount it under a base
//! path (default `/performance`; the path may arrive with or without it,
//! so both axum's `nest_service`, which strips it, and a plain route work)
//! and at `/metrics`:
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /performance/summary` | [`Summary`]: every layer's statistics, an overall [`Status`], recommendations |
//! | `GET /performance/cache/stats` | [`CacheSnapshot`](crate::cache::CacheSnapshot) |
//! | `POST /performance/cache/clear` | [`Purged`] (needs the token; `503` and `"complete": false` when Redis could not be reached) |
//! | `POST /performance/cache/purge` | [`Purged`]; body [`PurgeRequest`]: `{"url": …}`, `{"prefix": …}` or `{"tag": …}` (needs the token) |
//! | `GET /performance/compression/stats` | [`CompressionReport`] |
//! | `GET /performance/rate-limit/stats` | [`RateLimitReport`] |
//! | `GET /performance/profile/overview` | [`ProfileOverview`] |
//! | `GET /performance/profile/slowest` | the 10 routes with the highest p99 ([`RouteStats`](crate::timing::RouteStats)) |
//! | `GET /performance/profile/insights` | [`Insight`](crate::timing::Insight)s |
//! | `GET /performance/profile/slow-requests` | [`SlowRequest`](crate::timing::SlowRequest)s |
//! | `GET /performance/dashboard` | a live HTML dashboard, served by the crate (no CDN, no external fetch) |
//! | `GET /metrics` | Prometheus text for every layer present |
//!
//! Endpoints of layers that aren't configured answer 404 with a JSON
//! error; unknown paths 404; other methods 405 with `Allow`.
//!
//! **Auth.** Mutations (`POST`) need `Authorization: Bearer TOKEN` with the
//! [token](ReportBuilder::token) configured; with no token configured they
//! are disabled (403, saying so). Reads can require the token too
//! ([`protect_reads`](ReportBuilder::protect_reads)); `/metrics` and the
//! dashboard page follow that setting (the dashboard then needs a client
//! that sends the header).
//!
//! **Status.** Only what hurts users from the server's side warns:
//! server errors (5xx, inner-service errors, failed bodies), latency over
//! target, N+1 suspects, Redis fallbacks, and requests the rate limiter
//! answered `500` because the server hands it no client address (critical,
//! naming the fix; `rate_limit.missing_key_failures` in the summary,
//! `tower_perf_rate_limit_missing_key_failures_total` in `/metrics`). As
//! OpenTelemetry's HTTP conventions have it, a 4xx is the client's: a high
//! share of them, and clients over a rate limit (429), are reported as
//! information (naming the status, the policy and the most limited key)
//! and never turn the status to warning or critical. The dashboard shows
//! the server error rate, the 4xx rate and the 429s apart, and the Redis
//! circuit breakers' state (per store, with how often and how long they
//! opened) when the report reads a Redis store.
//!
//! **Schema.** JSON bodies are the serde structs of this module (field
//! names are the JSON keys); new fields may be added, existing ones keep
//! their names and meaning. Every answer has `Cache-Control: no-store`.
//!
//! ```
//! # #[cfg(feature = "timing")]
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use http::Request;
//! use http_body_util::{BodyExt, Empty};
//! use bytes::Bytes;
//! use tower::ServiceExt;
//! use tower_perf::report::Report;
//! use tower_perf::timing::TimingLayer;
//!
//! let timing = TimingLayer::new();
//! let report = Report::builder().timing(timing.stats()).build();
//! let resp = report
//!     .oneshot(Request::get("/performance/summary").body(Empty::<Bytes>::new()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(resp.status(), 200);
//! let json = resp.into_body().collect().await.unwrap().to_bytes();
//! assert!(std::str::from_utf8(&json).unwrap().contains("\"status\":\"healthy\""));
//! # }
//! # #[cfg(not(feature = "timing"))] fn main() {}
//! ```

mod metrics;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
#[cfg(feature = "cache")]
use http_body_util::{BodyExt, Limited};
use serde::{Deserialize, Serialize};
use tower_service::Service;

use crate::BoxError;

/// The dashboard page (HTML, CSS and JS in one file, no external fetch).
const DASHBOARD: &str = include_str!("dashboard.html");

/// Largest request body read (purge requests are a few bytes).
#[cfg(feature = "cache")]
const MAX_BODY: usize = 16 * 1024;

/// The body of every [`Report`] response.
#[derive(Debug)]
pub struct ReportBody(Full<Bytes>);

impl Body for ReportBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().0).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// Overall health, from the recommendations: the most severe wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing worth a warning.
    Healthy,
    /// Something worth fixing.
    Warning,
    /// Something hurting users now.
    Critical,
}

/// How much a [`Recommendation`] matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Worth knowing.
    Info,
    /// Worth fixing.
    Warning,
    /// Hurting users now.
    Critical,
}

/// One finding, with what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    /// How much it matters.
    pub level: Level,
    /// The layer or area: `cache`, `compression`, `rate_limit`, `latency`,
    /// `errors` (server errors), `client_errors` (4xx other than 429),
    /// `rate_limited` (429), `n_plus_one`, `aborts`, `redis`.
    pub area: String,
    /// `METHOD route`, when it is about one route.
    pub route: Option<String>,
    /// What was seen, with the numbers.
    pub message: String,
    /// What to do.
    pub recommendation: String,
}

/// Traffic as the timing layer saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Traffic {
    /// Requests completed since start.
    pub total: u64,
    /// Requests completed in the rolling window.
    pub window: u64,
    /// Seconds since the timing layer started.
    pub uptime_secs: f64,
    /// Mean requests per second since start.
    pub per_second: f64,
    /// Server error rate over the window: 5xx, inner-service errors and
    /// failed bodies over requests. 4xx don't count (they are the
    /// client's).
    pub error_rate: f64,
    /// Server errors over the window.
    pub server_errors: u64,
    /// 4xx answers (429 included) over the window.
    pub client_errors: u64,
    /// `client_errors` over requests, over the window.
    pub client_error_rate: f64,
    /// 429 answers over the window (also in `client_errors`).
    pub rate_limited: u64,
    /// Overall p50 over the window, in ms.
    pub p50_ms: Option<f64>,
    /// Overall p95 over the window, in ms.
    pub p95_ms: Option<f64>,
    /// Overall p99 over the window, in ms.
    pub p99_ms: Option<f64>,
    /// Per route, over the window: the figures the dashboard draws.
    pub routes: Vec<RouteLine>,
}

/// One route's figures over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteLine {
    /// Request method.
    pub method: String,
    /// Route label.
    pub route: String,
    /// Requests.
    pub count: u64,
    /// Server error rate (5xx, inner-service errors, failed bodies).
    pub error_rate: f64,
    /// Server errors.
    pub server_errors: u64,
    /// 4xx answers, 429 included.
    pub client_errors: u64,
    /// 429 answers (also in `client_errors`).
    pub rate_limited: u64,
    /// Median, ms.
    pub p50_ms: Option<f64>,
    /// 95th percentile, ms.
    pub p95_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
}

/// The compression layer's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompressionReport {
    /// Responses compressed, per coding.
    pub codings: Vec<CodingReport>,
    /// Responses left alone, by reason.
    pub skipped: Vec<(String, u64)>,
    /// 406 answers (no acceptable coding).
    pub not_acceptable: u64,
    /// Bytes in minus bytes out, all codings.
    pub bytes_saved: u64,
}

/// One coding's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodingReport {
    /// `gzip` or `deflate`.
    pub coding: String,
    /// Responses compressed.
    pub responses: u64,
    /// Bytes before compression.
    pub bytes_in: u64,
    /// Bytes after.
    pub bytes_out: u64,
    /// `bytes_out / bytes_in`, when anything was compressed.
    pub ratio: Option<f64>,
}

/// The cache-control layer's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheControlReport {
    /// ETags computed by hashing a body.
    pub etags_generated: u64,
    /// 304 answers.
    pub not_modified: u64,
    /// 412 answers.
    pub precondition_failed: u64,
    /// Responses that got a Cache-Control from a rule.
    pub policies_applied: u64,
}

/// The rate limiter's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimitReport {
    /// Allowed and limited, per policy.
    #[cfg(feature = "rate-limit")]
    pub policies: Vec<crate::rate_limit::PolicyStats>,
    /// The most limited keys (at most 20), most limited first.
    #[cfg(feature = "rate-limit")]
    pub most_limited: Vec<crate::rate_limit::LimitedKey>,
    /// Limited requests, all policies.
    pub limited: u64,
    /// Allowed requests, all policies.
    pub allowed: u64,
    /// Requests answered `500` because they carried no client address to
    /// count them against
    /// ([`MissingKey::Fail`](crate::rate_limit::MissingKey::Fail)): the
    /// server hands the layer no peer address.
    pub missing_key_failures: u64,
}

/// The Redis stores' figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedisReport {
    /// The rate-limit store, if configured.
    #[cfg(feature = "redis")]
    pub rate_limit: Option<crate::rate_limit::RedisStoreSnapshot>,
    /// The cache store, if configured.
    #[cfg(feature = "redis")]
    pub cache: Option<crate::cache::RedisCacheSnapshot>,
}

/// `GET /performance/summary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The most severe level among the recommendations.
    pub status: Status,
    /// Seconds since the Unix epoch when this was made.
    pub generated_at: u64,
    /// Traffic, from the timing layer.
    pub traffic: Option<Traffic>,
    /// The cache's figures.
    #[cfg(feature = "cache")]
    pub cache: Option<crate::cache::CacheSnapshot>,
    /// The compression layer's figures.
    pub compression: Option<CompressionReport>,
    /// The cache-control layer's figures.
    pub cache_control: Option<CacheControlReport>,
    /// The rate limiter's figures.
    pub rate_limit: Option<RateLimitReport>,
    /// The Redis stores' figures.
    pub redis: Option<RedisReport>,
    /// What stands out, most severe first.
    pub recommendations: Vec<Recommendation>,
}

/// `GET /performance/profile/overview`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileOverview {
    /// Length of the rolling window, in seconds.
    pub window_secs: f64,
    /// Seconds since start.
    pub uptime_secs: f64,
    /// All routes, over the window.
    #[cfg(feature = "timing")]
    pub overall: crate::timing::Stats,
    /// All routes, since start.
    #[cfg(feature = "timing")]
    pub overall_total: crate::timing::Stats,
    /// Per route.
    #[cfg(feature = "timing")]
    pub routes: Vec<crate::timing::RouteStats>,
    /// N+1 suspects.
    #[cfg(feature = "timing")]
    pub n_plus_one: Vec<crate::timing::NPlusOne>,
}

/// The body of `POST /performance/cache/purge`: exactly one field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// A URL (`https://host/path?q`, that host) or a path (`/path?q`, every
    /// host).
    pub url: Option<String>,
    /// A path prefix, starting with `/`.
    pub prefix: Option<String>,
    /// A tag.
    pub tag: Option<String>,
}

/// The answer to a purge or clear: `200` when it reached every tier and
/// replica, `503` when the store failed. With a `TieredStore` and Redis
/// unreachable, a 503 says how many URLs went from this replica's memory,
/// and the store replays the rest when Redis answers again; with a store
/// of one tier, nothing was purged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// URLs dropped (in this process only, when `complete` is false).
    pub purged: u64,
    /// Whether the purge reached every tier and every replica.
    pub complete: bool,
    /// Why it did not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// The statistics handles a [`Report`] reads.
#[derive(Debug, Default, Clone)]
struct Sources {
    #[cfg(feature = "cache")]
    cache: Option<crate::cache::CacheHandle>,
    #[cfg(feature = "compression")]
    compression: Option<crate::compression::CompressionStats>,
    #[cfg(feature = "cache-control")]
    cache_control: Option<crate::cache_control::CacheControlStats>,
    #[cfg(feature = "rate-limit")]
    rate_limit: Option<crate::rate_limit::RateLimitStats>,
    #[cfg(feature = "timing")]
    timing: Option<crate::timing::TimingStats>,
    #[cfg(feature = "redis")]
    redis_rate_limit: Option<crate::rate_limit::RedisStoreStats>,
    #[cfg(feature = "redis")]
    redis_cache: Option<crate::cache::RedisCacheStats>,
}

#[derive(Debug)]
struct Inner {
    sources: Sources,
    token: Option<String>,
    protect_reads: bool,
    base: String,
}

/// Builds a [`Report`].
#[derive(Debug, Clone)]
pub struct ReportBuilder {
    sources: Sources,
    token: Option<String>,
    protect_reads: bool,
    base: String,
}

impl ReportBuilder {
    /// Reads and purges this cache.
    #[cfg(feature = "cache")]
    pub fn cache(mut self, handle: crate::cache::CacheHandle) -> Self {
        self.sources.cache = Some(handle);
        self
    }
    /// Reads this compression layer's statistics.
    #[cfg(feature = "compression")]
    pub fn compression(mut self, stats: crate::compression::CompressionStats) -> Self {
        self.sources.compression = Some(stats);
        self
    }
    /// Reads this cache-control layer's statistics.
    #[cfg(feature = "cache-control")]
    pub fn cache_control(mut self, stats: crate::cache_control::CacheControlStats) -> Self {
        self.sources.cache_control = Some(stats);
        self
    }
    /// Reads this rate limiter's statistics.
    #[cfg(feature = "rate-limit")]
    pub fn rate_limit(mut self, stats: crate::rate_limit::RateLimitStats) -> Self {
        self.sources.rate_limit = Some(stats);
        self
    }
    /// Reads this timing layer's statistics.
    #[cfg(feature = "timing")]
    pub fn timing(mut self, stats: crate::timing::TimingStats) -> Self {
        self.sources.timing = Some(stats);
        self
    }
    /// Reads a Redis rate-limit store's counters.
    #[cfg(feature = "redis")]
    pub fn redis_rate_limit(mut self, stats: crate::rate_limit::RedisStoreStats) -> Self {
        self.sources.redis_rate_limit = Some(stats);
        self
    }
    /// Reads a Redis cache store's counters.
    #[cfg(feature = "redis")]
    pub fn redis_cache(mut self, stats: crate::cache::RedisCacheStats) -> Self {
        self.sources.redis_cache = Some(stats);
        self
    }
    /// The bearer token mutations need (none: mutations are disabled).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        let t = token.into();
        self.token = (!t.is_empty()).then_some(t);
        self
    }
    /// Reads need the token too (default: they don't).
    pub fn protect_reads(mut self, on: bool) -> Self {
        self.protect_reads = on;
        self
    }
    /// The path the endpoints live under (default `/performance`).
    pub fn base_path(mut self, base: &str) -> Self {
        self.base = base.trim_end_matches('/').to_owned();
        self
    }
    /// The service.
    pub fn build(self) -> Report {
        Report {
            inner: Arc::new(Inner {
                sources: self.sources,
                token: self.token,
                protect_reads: self.protect_reads,
                base: self.base,
            }),
        }
    }
}

/// The performance endpoints as a Tower service. See the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct Report {
    inner: Arc<Inner>,
}

impl Report {
    /// A builder with no layer attached, no token, base `/performance`.
    pub fn builder() -> ReportBuilder {
        ReportBuilder {
            sources: Sources::default(),
            token: None,
            protect_reads: false,
            base: "/performance".to_owned(),
        }
    }

    /// The summary, as `GET /performance/summary` serves it.
    pub fn summary(&self) -> Summary {
        self.inner.summary()
    }

    /// The Prometheus text `GET /metrics` serves.
    pub fn prometheus(&self) -> String {
        metrics::render(&self.inner.sources)
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ReportBody> {
    let mut resp = Response::new(ReportBody(Full::new(body.into())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<ReportBody> {
    match serde_json::to_vec(value) {
        Ok(v) => respond(status, "application/json", v),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "serialization failed"),
    }
}

fn error(status: StatusCode, message: &str) -> Response<ReportBody> {
    let body = serde_json::to_vec(&ErrorBody { error: message }).unwrap_or_default();
    respond(status, "application/json", body)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Clients over their limits, named: information, never a warning (a 429
/// is the limiter doing its job, and the client's to handle).
fn rate_limit_info(r: &RateLimitReport) -> Option<Recommendation> {
    let counted = r.allowed + r.limited;
    if counted < 50 || ratio(r.limited, counted) <= 0.1 {
        return None;
    }
    #[allow(unused_mut)]
    let mut which = String::new();
    #[cfg(feature = "rate-limit")]
    if let Some(p) = r
        .policies
        .iter()
        .filter(|p| p.limited > 0)
        .max_by_key(|p| p.limited)
    {
        which = format!(
            "; policy '{}' limited {} of {}",
            p.name,
            p.limited,
            p.allowed + p.limited
        );
        if let Some(k) = r.most_limited.first() {
            which.push_str(&format!(
                ", key {} the most ({} under '{}')",
                k.key, k.limited, k.policy
            ));
        }
    }
    Some(Recommendation {
        level: Level::Info,
        area: "rate_limit".into(),
        route: None,
        message: format!(
            "{:.0}% of rate-limited requests got 429 ({} of {counted}{which})",
            ratio(r.limited, counted) * 100.0,
            r.limited
        ),
        recommendation: "clients over a limit, not a server fault: one key far ahead is likely abusive; many normal clients limited mean the quota is too tight".into(),
    })
}

/// Requests the rate limiter answered 500 for lack of a client address:
/// the server's set-up, failing users now, with one fix to name.
fn missing_address(r: &RateLimitReport) -> Option<Recommendation> {
    let n = r.missing_key_failures;
    (n > 0).then(|| Recommendation {
        level: Level::Critical,
        area: "rate_limit".into(),
        route: None,
        message: format!(
            "{n} requests were answered 500 by the rate limiter: they carried no client address to count them against"
        ),
        recommendation: "serve the app with `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())` \
            (or insert `tower_perf::rate_limit::PeerAddr` in each request) so the rate limiter sees each client's address; \
            or choose `.on_missing_peer_addr(MissingKey::Shared)` (one quota for all of them) or `MissingKey::Allow` on the RateLimitLayer".into(),
    })
}

impl Inner {
    fn authorized(&self, headers: &http::HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return false;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, cred) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| cred.trim())
            })
            // Compare without an early exit on the first differing byte.
            .is_some_and(|cred| {
                cred.len() == token.len()
                    && cred
                        .bytes()
                        .zip(token.bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
            })
    }

    fn unauthorized(&self) -> Response<ReportBody> {
        let mut r = error(StatusCode::UNAUTHORIZED, "a bearer token is required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tower-perf\""),
        );
        r
    }

    /// The path relative to the base (`/summary`), or `/metrics`.
    fn route<'p>(&self, path: &'p str) -> &'p str {
        match path.strip_prefix(self.base.as_str()) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                if rest.is_empty() {
                    "/"
                } else {
                    rest
                }
            }
            _ => path,
        }
    }

    #[allow(unused_mut)]
    fn summary(&self) -> Summary {
        let mut recs: Vec<Recommendation> = Vec::new();
        let mut traffic = None;
        #[cfg(feature = "timing")]
        if let Some(t) = &self.sources.timing {
            let snap = t.snapshot();
            for i in &snap.insights {
                recs.push(Recommendation {
                    level: match i.severity {
                        crate::timing::Severity::Info => Level::Info,
                        crate::timing::Severity::Warning => Level::Warning,
                        crate::timing::Severity::Critical => Level::Critical,
                    },
                    area: i.kind.to_owned(),
                    route: i.route.clone(),
                    message: i.message.clone(),
                    recommendation: i.recommendation.clone(),
                });
            }
            let total = snap.overall_total.count;
            traffic = Some(Traffic {
                total,
                window: snap.overall.count,
                uptime_secs: snap.uptime_secs,
                per_second: if snap.uptime_secs > 0.0 {
                    total as f64 / snap.uptime_secs
                } else {
                    0.0
                },
                error_rate: snap.overall.error_rate,
                server_errors: snap.overall.server_errors,
                client_errors: snap.overall.client_errors,
                client_error_rate: snap.overall.client_error_rate,
                rate_limited: snap.overall.rate_limited,
                p50_ms: snap.overall.p50_ms,
                p95_ms: snap.overall.p95_ms,
                p99_ms: snap.overall.p99_ms,
                routes: snap
                    .routes
                    .iter()
                    .map(|r| RouteLine {
                        method: r.method.clone(),
                        route: r.route.clone(),
                        count: r.window.count,
                        error_rate: r.window.error_rate,
                        server_errors: r.window.server_errors,
                        client_errors: r.window.client_errors,
                        rate_limited: r.window.rate_limited,
                        p50_ms: r.window.p50_ms,
                        p95_ms: r.window.p95_ms,
                        p99_ms: r.window.p99_ms,
                    })
                    .collect(),
            });
        }
        #[cfg(feature = "cache")]
        let cache = self.sources.cache.as_ref().map(|h| h.stats().snapshot());
        #[cfg(feature = "cache")]
        if let Some(c) = &cache {
            let lookups = c.hits
                + c.stale_served
                + c.misses
                + c.revalidated_not_modified
                + c.revalidated_modified;
            if lookups >= 100 && c.hit_rate < 0.5 {
                recs.push(Recommendation {
                    level: Level::Warning,
                    area: "cache".into(),
                    route: None,
                    message: format!("cache hit rate is {:.0}% over {lookups} lookups", c.hit_rate * 100.0),
                    recommendation: "give cacheable routes a max-age (or s-maxage), and check that Vary lists only what the response depends on".into(),
                });
            }
        }
        let compression = self.compression();
        if let Some(c) = &compression {
            let (inp, out): (u64, u64) = c
                .codings
                .iter()
                .fold((0, 0), |(i, o), x| (i + x.bytes_in, o + x.bytes_out));
            let n: u64 = c.codings.iter().map(|x| x.responses).sum();
            if n >= 20 && ratio(out, inp) > 0.8 {
                recs.push(Recommendation {
                    level: Level::Info,
                    area: "compression".into(),
                    route: None,
                    message: format!("compressed responses shrink only to {:.0}% of their size", ratio(out, inp) * 100.0),
                    recommendation: "exclude content types that are already compressed, or raise the minimum size".into(),
                });
            }
        }
        let rate_limit = self.rate_limit();
        if let Some(r) = &rate_limit {
            if let Some(rec) = rate_limit_info(r) {
                recs.push(rec);
            }
            if let Some(rec) = missing_address(r) {
                // First among the critical ones (the sort below is stable):
                // these 500s are also among timing's server errors, whose
                // advice can only point at the handler.
                recs.insert(0, rec);
            }
        }
        let redis = self.redis();
        #[cfg(feature = "redis")]
        if let Some(r) = &redis {
            let falls =
                r.rate_limit.map_or(0, |s| s.fallbacks) + r.cache.map_or(0, |s| s.fallbacks);
            if falls > 0 {
                recs.push(Recommendation {
                    level: Level::Warning,
                    area: "redis".into(),
                    route: None,
                    message: format!("{falls} operations fell back because Redis failed or was slow"),
                    recommendation: "check Redis's health and latency; the layers keep serving meanwhile".into(),
                });
            }
        }
        recs.sort_by_key(|r| std::cmp::Reverse(r.level));
        let status = match recs.first().map(|r| r.level) {
            Some(Level::Critical) => Status::Critical,
            Some(Level::Warning) => Status::Warning,
            _ => Status::Healthy,
        };
        Summary {
            status,
            generated_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            traffic,
            #[cfg(feature = "cache")]
            cache,
            compression,
            cache_control: self.cache_control(),
            rate_limit,
            redis,
            recommendations: recs,
        }
    }

    fn compression(&self) -> Option<CompressionReport> {
        #[cfg(feature = "compression")]
        if let Some(c) = &self.sources.compression {
            let s = c.snapshot();
            let coding = |name: &str, x: crate::compression::CodingSnapshot| CodingReport {
                coding: name.to_owned(),
                responses: x.responses,
                bytes_in: x.bytes_in,
                bytes_out: x.bytes_out,
                ratio: x.ratio(),
            };
            return Some(CompressionReport {
                codings: vec![coding("gzip", s.gzip), coding("deflate", s.deflate)],
                skipped: s
                    .skipped
                    .iter()
                    .map(|(r, n)| (r.as_str().to_owned(), *n))
                    .collect(),
                not_acceptable: s.not_acceptable,
                bytes_saved: s.bytes_saved(),
            });
        }
        None
    }

    fn cache_control(&self) -> Option<CacheControlReport> {
        #[cfg(feature = "cache-control")]
        if let Some(c) = &self.sources.cache_control {
            let s = c.snapshot();
            return Some(CacheControlReport {
                etags_generated: s.etags_generated,
                not_modified: s.not_modified,
                precondition_failed: s.precondition_failed,
                policies_applied: s.policies_applied,
            });
        }
        None
    }

    fn rate_limit(&self) -> Option<RateLimitReport> {
        #[cfg(feature = "rate-limit")]
        if let Some(r) = &self.sources.rate_limit {
            let policies = r.snapshot();
            return Some(RateLimitReport {
                limited: policies.iter().map(|p| p.limited).sum(),
                allowed: policies.iter().map(|p| p.allowed).sum(),
                policies,
                most_limited: r.most_limited(20),
                missing_key_failures: r.missing_key_failures(),
            });
        }
        None
    }

    fn redis(&self) -> Option<RedisReport> {
        #[cfg(feature = "redis")]
        if self.sources.redis_rate_limit.is_some() || self.sources.redis_cache.is_some() {
            return Some(RedisReport {
                rate_limit: self.sources.redis_rate_limit.as_ref().map(|s| s.snapshot()),
                cache: self.sources.redis_cache.as_ref().map(|s| s.snapshot()),
            });
        }
        None
    }

    /// Answers a GET.
    fn read(&self, route: &str) -> Response<ReportBody> {
        let absent = |what: &str| {
            error(
                StatusCode::NOT_FOUND,
                &format!("no {what} layer is attached to this report"),
            )
        };
        match route {
            "/summary" => json(StatusCode::OK, &self.summary()),
            "/dashboard" | "/dashboard/" => {
                respond(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD)
            }
            "/metrics" => respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics::render(&self.sources),
            ),
            "/compression/stats" => match self.compression() {
                Some(c) => json(StatusCode::OK, &c),
                None => absent("compression"),
            },
            "/rate-limit/stats" => match self.rate_limit() {
                Some(r) => json(StatusCode::OK, &r),
                None => absent("rate-limit"),
            },
            "/cache/stats" => {
                #[cfg(feature = "cache")]
                if let Some(h) = &self.sources.cache {
                    return json(StatusCode::OK, &h.stats().snapshot());
                }
                absent("cache")
            }
            p if p.starts_with("/profile/") => {
                #[cfg(feature = "timing")]
                if let Some(t) = &self.sources.timing {
                    let snap = t.snapshot();
                    return match p {
                        "/profile/overview" => json(
                            StatusCode::OK,
                            &ProfileOverview {
                                window_secs: snap.window_secs,
                                uptime_secs: snap.uptime_secs,
                                overall: snap.overall.clone(),
                                overall_total: snap.overall_total.clone(),
                                routes: snap.routes.clone(),
                                n_plus_one: snap.n_plus_one.clone(),
                            },
                        ),
                        "/profile/slowest" => json(StatusCode::OK, &snap.slowest(10)),
                        "/profile/insights" => json(StatusCode::OK, &snap.insights),
                        "/profile/slow-requests" => json(StatusCode::OK, &snap.slow_requests),
                        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
                    };
                }
                absent("timing")
            }
            _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
        }
    }
}

fn is_mutation(route: &str) -> bool {
    matches!(route, "/cache/clear" | "/cache/purge")
}

fn is_read(route: &str) -> bool {
    matches!(
        route,
        "/summary"
            | "/dashboard"
            | "/dashboard/"
            | "/metrics"
            | "/compression/stats"
            | "/rate-limit/stats"
            | "/cache/stats"
            | "/profile/overview"
            | "/profile/slowest"
            | "/profile/insights"
            | "/profile/slow-requests"
    )
}

impl<B> Service<Request<B>> for Report
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ReportBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ReportBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let route = inner.route(req.uri().path()).to_owned();
            let method = req.method().clone();
            if is_mutation(&route) {
                if method != Method::POST {
                    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
                    r.headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("POST"));
                    return Ok(r);
                }
                if inner.token.is_none() {
                    return Ok(error(
                        StatusCode::FORBIDDEN,
                        "cache mutations are disabled: no token is configured",
                    ));
                }
                if !inner.authorized(req.headers()) {
                    return Ok(inner.unauthorized());
                }
                return Ok(mutate(&inner, &route, req).await);
            }
            if !is_read(&route) {
                return Ok(error(StatusCode::NOT_FOUND, "no such endpoint"));
            }
            if method != Method::GET && method != Method::HEAD {
                let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                return Ok(r);
            }
            if inner.protect_reads && !inner.authorized(req.headers()) {
                return Ok(inner.unauthorized());
            }
            // HEAD keeps the body: the server drops it, and the layers
            // outside (compression, ETags) decide from it exactly as for
            // GET, so both get the same header fields.
            Ok(inner.read(&route))
        })
    }
}

#[allow(unused_variables)]
async fn mutate<B>(inner: &Inner, route: &str, req: Request<B>) -> Response<ReportBody>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    #[cfg(feature = "cache")]
    if let Some(handle) = &inner.sources.cache {
        let result = match route {
            "/cache/clear" => handle.clear().await,
            _ => {
                let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => {
                        return error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "the body is too large or unreadable",
                        );
                    }
                };
                let purge: PurgeRequest = match serde_json::from_slice(&body) {
                    Ok(p) => p,
                    Err(e) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            &format!("expected {{\"url\"|\"prefix\"|\"tag\": \"…\"}}: {e}"),
                        );
                    }
                };
                let valid = |s: &str| {
                    !s.is_empty() && s.len() <= 4096 && !s.bytes().any(|b| b.is_ascii_control())
                };
                match (purge.url, purge.prefix, purge.tag) {
                    (Some(u), None, None)
                        if valid(&u)
                            && (u.starts_with('/')
                                || u.starts_with("http://")
                                || u.starts_with("https://"))
                            && u.parse::<http::Uri>().is_ok() =>
                    {
                        handle.purge_url(&u).await
                    }
                    (None, Some(p), None) if valid(&p) && p.starts_with('/') => {
                        handle.purge_prefix(&p).await
                    }
                    (None, None, Some(t))
                        if valid(&t)
                            && !t.bytes().any(|b| b.is_ascii_whitespace() || b == b',') =>
                    {
                        handle.purge_tag(&t).await
                    }
                    (Some(_), None, None) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "url: a path starting with / or an http(s) URL",
                        );
                    }
                    (None, Some(_), None) => {
                        return error(StatusCode::BAD_REQUEST, "prefix: a path starting with /");
                    }
                    (None, None, Some(_)) => {
                        return error(StatusCode::BAD_REQUEST, "tag: one word");
                    }
                    _ => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "give exactly one of url, prefix, tag",
                        );
                    }
                }
            }
        };
        return match result {
            Ok(n) => json(
                StatusCode::OK,
                &Purged {
                    purged: n,
                    complete: true,
                    error: None,
                },
            ),
            Err(e) if e.is_invalid() => error(StatusCode::BAD_REQUEST, &e.message()),
            // What fails now is the store, wholly or in part (a 503 either
            // way: the purge is not done).
            Err(e) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                &Purged {
                    purged: e.purged_here().unwrap_or(0),
                    complete: false,
                    error: Some(e.to_string()),
                },
            ),
        };
    }
    error(
        StatusCode::NOT_FOUND,
        "no cache layer is attached to this report",
    )
}
