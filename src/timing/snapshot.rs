//! Reading the statistics: a serde-serializable snapshot.

use std::time::Duration;

use serde::Serialize;

use super::hist::Hist;
use crate::insight::Insight;

/// Latency and status figures of a set of requests. Durations are in
/// milliseconds; they are `None` when no request completed.
///
/// As OpenTelemetry's HTTP conventions have it, only server errors are
/// errors: a 4xx is the client's (a missing resource, a bad request, a
/// client over its rate limit) and is counted apart.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Completed requests.
    pub count: u64,
    /// Responses with a 4xx status, 429 included.
    pub client_errors: u64,
    /// Responses with status 429 Too Many Requests (also in
    /// `client_errors`).
    pub rate_limited: u64,
    /// Server errors: responses with a 5xx status, inner-service errors and
    /// responses whose body failed midway.
    pub server_errors: u64,
    /// Responses whose body failed midway (also in `server_errors`).
    pub failed: u64,
    /// Responses whose body was dropped before its end (client aborts): not
    /// counted in `count`, nor as errors.
    pub aborted: u64,
    /// The server error rate: `server_errors / count`. 4xx don't count.
    pub error_rate: f64,
    /// `client_errors / count`.
    pub client_error_rate: f64,
    /// Fastest.
    pub min_ms: Option<f64>,
    /// Slowest.
    pub max_ms: Option<f64>,
    /// Mean.
    pub mean_ms: Option<f64>,
    /// Population standard deviation.
    pub stddev_ms: Option<f64>,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// 99.9th percentile.
    pub p999_ms: Option<f64>,
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1000.0)
}

impl Stats {
    pub(crate) fn from_hist(h: &Hist) -> Self {
        let rate = |n: u64| {
            if h.count == 0 {
                0.0
            } else {
                n as f64 / h.count as f64
            }
        };
        Self {
            count: h.count,
            client_errors: h.client_errors,
            rate_limited: h.rate_limited,
            server_errors: h.server_errors,
            failed: h.failed,
            aborted: h.aborted,
            error_rate: rate(h.server_errors),
            client_error_rate: rate(h.client_errors),
            min_ms: ms(h.min()),
            max_ms: ms(h.max()),
            mean_ms: h.mean_ns().map(|n| n / 1e6),
            stddev_ms: h.stddev_ns().map(|n| n / 1e6),
            p50_ms: ms(h.quantile(0.5)),
            p90_ms: ms(h.quantile(0.9)),
            p95_ms: ms(h.quantile(0.95)),
            p99_ms: ms(h.quantile(0.99)),
            p999_ms: ms(h.quantile(0.999)),
        }
    }
}

/// One (method, route) pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteStats {
    /// Request method.
    pub method: String,
    /// Route label: the route template, `unmatched` or `other`.
    pub route: String,
    /// Over the rolling window.
    pub window: Stats,
    /// Since the layer started.
    pub total: Stats,
    /// Responses by status code since start, lowest code first (code 0
    /// holds the codes past the 64 a route keeps apart). Failed bodies are
    /// counted under the status their head carried.
    pub status_codes: Vec<StatusCount>,
    /// Sub-timings handlers recorded, by name, since start.
    pub spans: Vec<SpanSummary>,
    /// Requests in flight now: arrived, and neither ended nor dropped.
    pub active_requests: u64,
}

/// Responses of one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatusCount {
    /// The status code.
    pub code: u16,
    /// Responses.
    pub count: u64,
}

/// A route's sub-timings of one name, since start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpanSummary {
    /// The span name (`db`, `cache`…).
    pub name: String,
    /// Requests that recorded this name.
    pub requests: u64,
    /// Spans recorded.
    pub spans: u64,
    /// Spans per request that recorded it.
    pub mean_per_request: f64,
    /// Most spans one request recorded.
    pub max_per_request: u32,
    /// Mean span duration.
    pub mean_ms: f64,
    /// Longest span.
    pub max_ms: f64,
    /// Time in these spans per request that recorded it.
    pub ms_per_request: f64,
    /// Requests at or over the N+1 threshold.
    pub suspect_requests: u64,
}

/// A route whose requests record many spans of one name: likely a query per
/// item (N+1) where one query would do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NPlusOne {
    /// Request method.
    pub method: String,
    /// Route label.
    pub route: String,
    /// The repeated span.
    pub span: String,
    /// Requests at or over the threshold.
    pub suspect_requests: u64,
    /// Requests that recorded the span.
    pub requests: u64,
    /// Most spans one request recorded.
    pub max_per_request: u32,
    /// Spans per request that recorded it.
    pub mean_per_request: f64,
    /// The threshold in force.
    pub threshold: u32,
}

/// One slow request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowRequest {
    /// The request method.
    pub method: String,
    /// The route label.
    pub route: String,
    /// The response status.
    pub status: u16,
    /// Milliseconds from arrival to the end of the response body.
    pub duration_ms: f64,
    /// Seconds since the layer started when the request ended.
    pub at_secs: f64,
}

/// Everything at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimingSnapshot {
    /// Length of the rolling window, in seconds.
    pub window_secs: f64,
    /// Seconds since the layer started.
    pub uptime_secs: f64,
    /// All routes together, over the window.
    pub overall: Stats,
    /// All routes together, since start.
    pub overall_total: Stats,
    /// Requests in flight now, over all routes.
    pub active_requests: u64,
    /// Per route, sorted by method and route.
    pub routes: Vec<RouteStats>,
    /// The most recent slow requests, oldest first.
    pub slow_requests: Vec<SlowRequest>,
    /// Routes whose requests repeat a span at least the threshold's times.
    pub n_plus_one: Vec<NPlusOne>,
    /// What stands out, most severe first, each with a recommendation.
    pub insights: Vec<Insight>,
}

impl TimingSnapshot {
    /// The `n` routes with the highest p99 over the window.
    pub fn slowest(&self, n: usize) -> Vec<&RouteStats> {
        let mut v: Vec<&RouteStats> = self.routes.iter().filter(|r| r.window.count > 0).collect();
        v.sort_by(|a, b| {
            b.window
                .p99_ms
                .partial_cmp(&a.window.p99_ms)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        v.truncate(n);
        v
    }

    /// The `n` routes with the highest server error rate over the window.
    pub fn by_error_rate(&self, n: usize) -> Vec<&RouteStats> {
        let mut v: Vec<&RouteStats> = self.routes.iter().filter(|r| r.window.count > 0).collect();
        v.sort_by(|a, b| {
            b.window
                .error_rate
                .partial_cmp(&a.window.error_rate)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        v.truncate(n);
        v
    }

    /// One route's statistics.
    pub fn route(&self, method: &str, route: &str) -> Option<&RouteStats> {
        self.routes
            .iter()
            .find(|r| r.method == method && r.route == route)
    }
}
