//! Performance endpoints, Prometheus text and a live dashboard, over the
//! statistics handles of whichever layers are present.
//!
//! [`Report`] is a framework-agnostic Tower service. Mount it under a base
//! path (default `/performance`; the path may arrive with or without it,
//! so both axum's `nest_service`, which strips it, and a plain route work)
//! and at `/metrics`. With axum, prefer [`Report::routes`]
//! (`app.merge(report.routes())`): its routes give the report's requests a
//! route template, so timing, the cache and the history tell them apart
//! from your traffic; under `nest_service` they carry none.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /performance/` | the endpoints this report serves: an HTML page of links when the client accepts `text/html` (a browser), else JSON |
//! | `GET /performance/history?since=&resolution=` | [`History`]: a [`HistoryPoint`] per interval, sampled on the server (below) |
//! | `GET /performance/summary` | [`Summary`]: every layer's statistics, an overall [`Status`], recommendations ([`Insight`](crate::insight::Insight)s) |
//! | `GET /performance/cache/stats` | [`CacheSnapshot`](crate::cache::CacheSnapshot) |
//! | `GET /performance/cache/routes` | hit rates per route template, a list of [`RouteSnapshot`](crate::cache::RouteSnapshot) |
//! | `POST /performance/cache/clear` | [`Purged`] (needs the token; `503` and `"complete": false` when Redis could not be reached) |
//! | `POST /performance/cache/purge` | [`Purged`]; body [`PurgeRequest`]: `{"url": …}`, `{"prefix": …}` or `{"tag": …}` (needs the token) |
//! | `GET /performance/compression/stats` | [`CompressionSnapshot`](crate::compression::CompressionSnapshot) |
//! | `GET /performance/decompression/stats` | [`DecompressionSnapshot`](crate::decompression::DecompressionSnapshot) |
//! | `GET /performance/rate-limit/stats` | [`RateLimitSnapshot`](crate::rate_limit::RateLimitSnapshot) |
//! | `GET /performance/profile/overview` | [`ProfileOverview`] |
//! | `GET /performance/profile/slowest` | the 10 routes with the highest p99 ([`RouteStats`](crate::timing::RouteStats)) |
//! | `GET /performance/profile/insights` | [`Insight`](crate::insight::Insight)s |
//! | `GET /performance/profile/slow-requests` | [`SlowRequest`](crate::timing::SlowRequest)s |
//! | `GET /performance/dashboard` | a live HTML dashboard, served by the crate (uPlot inlined: no CDN, no external fetch) |
//! | `GET /performance/tasks/{id}` | [`TaskInfo`](crate::tasks::TaskInfo): a deferred request's state, progress, timings, error |
//! | `GET /performance/tasks/{id}/result` | the task's kept response (`409` while it runs, `404` for an unknown id) |
//! | `DELETE /performance/tasks/{id}` | cancels the task (needs the token): `200` cancelled, `409` it had ended, `404` unknown; shared through Redis, `202` when another replica runs it and hasn't confirmed within a second, `503` when Redis can't be reached |
//! | `GET /performance/tasks?state=…&limit=…` | [`TaskList`](crate::tasks::TaskList): the tasks kept, newest first, every replica's when shared through Redis (needs the token: it shows every id) |
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
//! the server error rate, the 4xx rate and the 429s apart, a table of
//! content codings (responses compressed and request bodies decoded, per
//! coding), and the Redis circuit breakers' state (per store, with how
//! often and how long they opened) when the report reads a Redis store.
//!
//! **History.** The report samples the layers every
//! [`history_interval`](ReportBuilder::history_interval) (10 s by default;
//! a tokio task, started when the report is built on a runtime or first
//! serves a request) and keeps the differences: a point per step for the
//! last hour and one per six steps for the last day
//! (`?resolution=coarse`), bounded (720 and 1,440 points, the busiest 20
//! routes per point). Each point has throughput, 5xx, 4xx and 429 counts,
//! p50/p95/p99 overall and per route (from the timing layer's histograms,
//! within ±3.2%), cache hits and lookups, compression's bytes, requests in
//! flight, open Redis breakers and the task queue. The report's own routes
//! are left out of the timing and cache figures, so the dashboard's
//! polling never shows in what it draws. They are told apart by their route
//! template (under the base path), which [`Report::routes`] gives them;
//! mounted with `nest_service`, or behind a service that sets no
//! `MatchedPath` and no timing classifier, they count as traffic.
//!
//! **Dashboard.** Drawn with uPlot (vendored, MIT): throughput, latency
//! (overall and the busiest routes' p95, on log scales), cache hit rate,
//! compression savings and requests in flight, each on a wall-clock time
//! axis with a legend that reads the values under the cursor; the history
//! is drawn at once on load (last hour or last day), then extended every
//! two seconds. A table names every route with its window figures.
//!
//! **Schema.** JSON bodies are the serde structs of this module and the
//! layers' snapshots (field names are the JSON keys, except where a type's
//! docs say how it serializes:
//! [`CompressionSnapshot`](crate::compression::CompressionSnapshot) and
//! [`DecompressionSnapshot`](crate::decompression::DecompressionSnapshot)
//! list their codings by name); new fields may be added, existing ones keep their
//! names and meaning. A layer's types, and its key in the summary, exist in
//! builds with that layer's feature. The summary's recommendations are
//! [`Insight`](crate::insight::Insight)s, written with the keys `level`
//! (the severity) and `area` (the kind). Every answer has
//! `Cache-Control: no-store`.
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

mod body;
mod builder;
mod history;
mod index;
mod metrics;
#[cfg(feature = "otel")]
mod otel;
#[cfg(feature = "cache")]
mod purge;
mod schema;
mod service;
mod summary;
#[cfg(feature = "tasks")]
mod tasks;

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use self::purge::{PurgeRequest, Purged};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::schema::RedisReport;
#[cfg(feature = "timing")]
#[cfg_attr(docsrs, doc(cfg(feature = "timing")))]
pub use self::schema::{ProfileOverview, RouteLine, Traffic};
#[doc(inline)]
pub use self::{
    body::ReportBody,
    builder::ReportBuilder,
    history::{History, HistoryPoint, HistoryResolution, ROUTES_PER_POINT, RoutePoint},
    schema::{Status, Summary},
    service::Report,
};
