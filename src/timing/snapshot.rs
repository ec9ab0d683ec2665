//! Reading the statistics: a serde-serializable snapshot.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::hist::Hist;
use super::insights::{Insight, insights};
use super::prometheus::PROM_BOUNDS;
use super::registry::Registry;
use super::route::{End, RouteTotals};
use crate::prometheus::escape;

/// A cheap, cloneable handle to a [`TimingLayer`](super::TimingLayer)'s
/// statistics.
#[derive(Debug, Clone)]
pub struct TimingStats {
    pub(crate) registry: Arc<Registry>,
}

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

fn span_summaries(totals: &RouteTotals) -> Vec<SpanSummary> {
    totals
        .spans
        .iter()
        .map(|(name, st)| {
            let per = |x: f64| {
                if st.requests == 0 {
                    0.0
                } else {
                    x / st.requests as f64
                }
            };
            SpanSummary {
                name: name.to_string(),
                requests: st.requests,
                spans: st.spans,
                mean_per_request: per(st.spans as f64),
                max_per_request: st.max_per_request,
                mean_ms: if st.spans == 0 {
                    0.0
                } else {
                    st.total_ns as f64 / st.spans as f64 / 1e6
                },
                max_ms: st.max_ns as f64 / 1e6,
                ms_per_request: per(st.total_ns as f64 / 1e6),
                suspect_requests: st.suspects,
            }
        })
        .collect()
}

/// Responses per status code, failed bodies under the code they carried.
fn status_counts(totals: &RouteTotals) -> Vec<StatusCount> {
    let mut out: Vec<StatusCount> = Vec::new();
    for ((code, _), ph) in &totals.by_status {
        match out.iter_mut().find(|s| s.code == *code) {
            Some(s) => s.count += ph.count,
            None => out.push(StatusCount {
                code: *code,
                count: ph.count,
            }),
        }
    }
    out.sort_by_key(|s| s.code);
    out
}

/// OpenTelemetry's method values: the known methods, else `_OTHER`.
fn otel_method(m: &str) -> &str {
    match m {
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH" => m,
        _ => "_OTHER",
    }
}

impl TimingStats {
    /// Reads every route now.
    pub fn snapshot(&self) -> TimingSnapshot {
        let threshold = self.registry.n_plus_one();
        let mut overall = Hist::default();
        let mut overall_total = Hist::default();
        let mut n_plus_one = Vec::new();
        let mut routes: Vec<RouteStats> = self
            .registry
            .read()
            .into_iter()
            .map(|(route, window, total, extras)| {
                overall.merge(&window);
                overall_total.merge(&total);
                let spans = span_summaries(&extras);
                for s in &spans {
                    if s.suspect_requests > 0 {
                        n_plus_one.push(NPlusOne {
                            method: route.method.to_string(),
                            route: route.label.to_string(),
                            span: s.name.clone(),
                            suspect_requests: s.suspect_requests,
                            requests: s.requests,
                            max_per_request: s.max_per_request,
                            mean_per_request: s.mean_per_request,
                            threshold,
                        });
                    }
                }
                RouteStats {
                    method: route.method.to_string(),
                    route: route.label.to_string(),
                    window: Stats::from_hist(&window),
                    total: Stats::from_hist(&total),
                    status_codes: status_counts(&extras),
                    spans,
                }
            })
            .collect();
        routes.sort_by(|a, b| (&a.route, &a.method).cmp(&(&b.route, &b.method)));
        n_plus_one.sort_by_key(|n| std::cmp::Reverse(n.suspect_requests));
        let (p99_target, error_target) = self.registry.targets();
        let insights = insights(&routes, &n_plus_one, p99_target, error_target);
        TimingSnapshot {
            window_secs: self.registry.window().as_secs_f64(),
            uptime_secs: self.registry.uptime().as_secs_f64(),
            overall: Stats::from_hist(&overall),
            overall_total: Stats::from_hist(&overall_total),
            routes,
            slow_requests: self.registry.slow_requests(),
            n_plus_one,
            insights,
        }
    }

    /// Prometheus text exposition (format 0.0.4): the
    /// `http_server_request_duration_seconds` histogram named and labelled
    /// as OpenTelemetry's HTTP semantic conventions advise
    /// (`http_request_method`, `http_route`, `http_response_status_code`
    /// when a status was sent, and `error_type` on the requests that ended
    /// in an error; buckets 0.005 s … 10 s), cumulative since start, and
    /// `http_server_request_aborted_total` for responses dropped before
    /// their end.
    ///
    /// `error_type`, as the conventions set `error.type` on a server:
    /// - a 5xx: its status code (`error_type="503"`);
    /// - a body that failed midway: `_OTHER` (the layer can't name the
    ///   cause), next to the status code its head carried;
    /// - an inner-service error: `_OTHER`, without
    ///   `http_response_status_code` (no response was sent);
    /// - none on any other response: 4xx (429 included) are the client's.
    ///
    /// So the server errors are exactly the series with an `error_type`.
    pub fn prometheus(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        out.push_str("# HELP http_server_request_duration_seconds Duration of HTTP server requests, until the response body ends.\n");
        out.push_str("# TYPE http_server_request_duration_seconds histogram\n");
        let mut rows = self.registry.read();
        rows.sort_by(|a, b| {
            (&a.0.label, a.0.method.as_str()).cmp(&(&b.0.label, b.0.method.as_str()))
        });
        for (route, _, _, extras) in &rows {
            let method = otel_method(route.method.as_str());
            let label = escape(&route.label);
            for ((code, end), ph) in &extras.by_status {
                let mut labels = format!("http_request_method=\"{method}\",http_route=\"{label}\"");
                if *end != End::NoResponse {
                    let _ = write!(labels, ",http_response_status_code=\"{code}\"");
                }
                match end {
                    // OpenTelemetry's fallback value: the layer can't
                    // name the cause.
                    End::BodyFailed | End::NoResponse => labels.push_str(",error_type=\"_OTHER\""),
                    End::Sent if (500..600).contains(code) => {
                        let _ = write!(labels, ",error_type=\"{code}\"");
                    }
                    End::Sent => {}
                }
                for (bound, count) in PROM_BOUNDS.iter().zip(ph.cumulative()) {
                    let _ = writeln!(
                        out,
                        "http_server_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                    );
                }
                let _ = writeln!(
                    out,
                    "http_server_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    ph.count
                );
                let _ = writeln!(
                    out,
                    "http_server_request_duration_seconds_sum{{{labels}}} {}",
                    ph.sum_ns as f64 / 1e9
                );
                let _ = writeln!(
                    out,
                    "http_server_request_duration_seconds_count{{{labels}}} {}",
                    ph.count
                );
            }
        }
        out.push_str("# HELP http_server_request_aborted_total Responses whose body was dropped before its end.\n");
        out.push_str("# TYPE http_server_request_aborted_total counter\n");
        for (route, _, total, _) in &rows {
            let _ = writeln!(
                out,
                "http_server_request_aborted_total{{http_request_method=\"{}\",http_route=\"{}\"}} {}",
                otel_method(route.method.as_str()),
                escape(&route.label),
                total.aborted
            );
        }
        out
    }
}
