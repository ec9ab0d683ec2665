//! Per-route request timing over a rolling window.
//!
//! [`TimingLayer`] times every request from its arrival until its response
//! body ends (not when the headers leave), per route and method, and keeps:
//!
//! - count, min, max, mean, standard deviation and p50/p90/p95/p99/p99.9,
//!   over a rolling window (24 hours in 96 slots by default) and since
//!   start, per route and overall;
//! - server errors (5xx, inner-service errors, bodies that failed midway)
//!   and their rate, which is what `error_rate` means; client errors (4xx)
//!   and 429s counted apart, as OpenTelemetry's HTTP conventions have it: a
//!   4xx is the client's, so a burst of 404s or of rate-limited clients
//!   never reads as a server fault;
//! - responses whose body was dropped before its end (client aborts),
//!   counted apart and kept out of the latencies;
//! - the last slow requests (1 s and more by default) in a bounded ring.
//!
//! **Route labels** come from axum's `MatchedPath` when present (feature
//! `axum`, on by default), else from your
//! [`classifier`](TimingLayer::classifier), else the constant `unmatched`:
//! never the raw path, so scanners can't create series. At most
//! [`max_routes`](TimingLayer::max_routes) pairs are tracked; the rest fold
//! into `other`.
//!
//! **Cost**: recording takes no lock or counter shared by all requests in
//! the common case: each thread records into its own shard of the route
//! (merged when read) and finds the route through a per-thread cache.
//! Latencies go into a log-linear histogram (16 buckets per power of two:
//! percentiles within ±3.2%). `benches/timing.rs` measures the overhead,
//! with and without sub-timings; BENCHMARKS.md (section Timing) has the
//! figures and says where the time goes.
//!
//! **Sub-timings** (turn them on with
//! [`sub_timings(true)`](TimingLayer::sub_timings)): handlers find a
//! [`Timings`] extension and record named
//! spans (`timings.start("db")` returns a guard; `record(name, duration)`
//! takes a measured one). They are aggregated per route and name since
//! start; a route whose requests record [`n_plus_one_threshold`]
//! (default 10) or more spans of one name is reported as an N+1 suspect,
//! unless the name starts with `cache.hit:` (the query cache's hits: cached
//! repetitions, not queries).
//!
//! **Server-Timing** (W3C): off by default, since it tells clients about
//! internals; [`server_timing`](TimingLayer::server_timing) turns it on
//! with an allow-list of span names (`total` is always sent).
//!
//! **Output**: [`TimingStats::snapshot`] (serde-serializable: overall and
//! per-route figures, slowest routes, routes by error rate, N+1 suspects,
//! insights with a severity and a recommendation: server errors, latency
//! and N+1 suspects warn; a high share of 4xx or 429s is information) and
//! [`TimingStats::prometheus`] (`http_server_request_duration_seconds` as
//! OpenTelemetry's HTTP conventions name, label and bucket it; checked
//! with `promtool check metrics`).
//!
//! **Errors in the Prometheus text** follow OpenTelemetry's HTTP server
//! conventions for `error.type` (label `error_type`): a 5xx response
//! carries its status code (`error_type="503"`); a response whose body
//! failed midway carries `_OTHER` (the fallback value: the layer can't name
//! the cause) next to the status code its head carried; an inner-service
//! error carries `_OTHER` and no `http_response_status_code`, since no
//! response was sent (the snapshot counts it as a 500); a 4xx, 429
//! included, carries none: it is the client's. The series with an
//! `error_type` are exactly the server errors.
//!
//! [`n_plus_one_threshold`]: TimingLayer::n_plus_one_threshold
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_perf::timing::TimingLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let timing = TimingLayer::new()
//!     .classifier(|_method, uri, _ext| uri.path().starts_with("/api/").then(|| "/api/*".to_owned()));
//! let stats = timing.stats();
//! let svc = ServiceBuilder::new().layer(timing).service(service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok")))
//! }));
//! let res = svc.oneshot(Request::get("/api/users/42").body(Full::default())?).await?;
//! res.into_body().collect().await?; // timing stops when the body ends
//!
//! let snap = stats.snapshot();
//! let route = snap.route("GET", "/api/*").unwrap();
//! assert_eq!(route.window.count, 1);
//! assert!(route.window.p99_ms.is_some());
//! # Ok(())
//! # }
//! ```

mod body;
mod future;
mod guard;
mod hist;
mod insights;
mod layer;
#[cfg(feature = "otel")]
mod otel;
mod prometheus;
mod registry;
mod route;
mod server_timing;
mod service;
mod sizes;
mod snapshot;
mod spans;
mod stats;

#[cfg(feature = "report")]
pub(crate) use self::hist::Hist;

#[doc(inline)]
pub use self::{
    body::ResponseBody,
    future::ResponseFuture,
    layer::{Classifier, TimingLayer},
    registry::{OTHER, UNMATCHED},
    service::Timing,
    snapshot::{
        NPlusOne, RouteStats, SlowRequest, SpanSummary, Stats, StatusCount, TimingSnapshot,
    },
    spans::{SpanGuard, Timings},
    stats::TimingStats,
};
