//! Reading the statistics: a serde-serializable snapshot.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::hist::Hist;
use super::registry::{PROM_BOUNDS, Registry, RouteTotals, SlowRequest};

/// A cheap, cloneable handle to a [`TimingLayer`](super::TimingLayer)'s
/// statistics.
#[derive(Debug, Clone)]
pub struct TimingStats {
    pub(crate) registry: Arc<Registry>,
}

/// Latency and error figures of a set of requests. Durations are in
/// milliseconds; they are `None` when no request completed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Completed requests.
    pub count: u64,
    /// Responses with a 4xx status.
    pub client_errors: u64,
    /// Responses with a 5xx status (and inner-service errors).
    pub server_errors: u64,
    /// Responses whose body was dropped before its end (client aborts).
    pub aborted: u64,
    /// `(client_errors + server_errors) / count`.
    pub error_rate: f64,
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
        let errors = h.client_errors + h.server_errors;
        Self {
            count: h.count,
            client_errors: h.client_errors,
            server_errors: h.server_errors,
            aborted: h.aborted,
            error_rate: if h.count == 0 {
                0.0
            } else {
                errors as f64 / h.count as f64
            },
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
    /// Sub-timings handlers recorded, by name, since start.
    pub spans: Vec<SpanSummary>,
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

/// How much an [`Insight`] matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Worth fixing.
    Warning,
    /// Hurting users now.
    Critical,
}

/// One finding about the timings, with what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Insight {
    /// How much it matters.
    pub severity: Severity,
    /// What kind of finding: `latency`, `errors`, `n_plus_one`, `aborts`.
    pub kind: &'static str,
    /// `METHOD route`, when the finding is about one route.
    pub route: Option<String>,
    /// What was seen, with the numbers.
    pub message: String,
    /// What to do about it.
    pub recommendation: String,
}

/// Routes with fewer requests in the window are not judged.
const MIN_SAMPLES: u64 = 10;

fn insights(
    routes: &[RouteStats],
    n_plus_one: &[NPlusOne],
    p99_target: Duration,
    error_target: f64,
) -> Vec<Insight> {
    let target_ms = p99_target.as_secs_f64() * 1000.0;
    let mut out = Vec::new();
    for r in routes.iter().filter(|r| r.window.count >= MIN_SAMPLES) {
        let name = format!("{} {}", r.method, r.route);
        if let Some(p99) = r.window.p99_ms.filter(|p| *p > target_ms) {
            let top = r
                .spans
                .iter()
                .max_by(|a, b| a.ms_per_request.total_cmp(&b.ms_per_request));
            let recommendation = match top {
                Some(s) => format!(
                    "'{}' takes {:.1} ms per request ({:.1} spans): start there, or cache the response",
                    s.name, s.ms_per_request, s.mean_per_request
                ),
                None => "record sub-timings in the handler to see where the time goes, or cache the response".to_owned(),
            };
            out.push(Insight {
                severity: if p99 > 5.0 * target_ms {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                kind: "latency",
                route: Some(name.clone()),
                message: format!("p99 of {name} is {p99:.0} ms, over the {target_ms:.0} ms target"),
                recommendation,
            });
        }
        if r.window.error_rate > error_target {
            let w = &r.window;
            out.push(Insight {
                severity: if w.error_rate > 5.0 * error_target { Severity::Critical } else { Severity::Warning },
                kind: "errors",
                route: Some(name.clone()),
                message: format!(
                    "{:.1}% of {name} responses are errors ({} 5xx, {} 4xx of {})",
                    w.error_rate * 100.0,
                    w.server_errors,
                    w.client_errors,
                    w.count
                ),
                recommendation: if w.server_errors >= w.client_errors {
                    "server errors dominate: check the handler's logs and its dependencies".to_owned()
                } else {
                    "client errors dominate: check what clients send (validation, auth, stale links)".to_owned()
                },
            });
        }
        let finished = r.window.count + r.window.aborted;
        if r.window.aborted * 20 > finished {
            out.push(Insight {
                severity: Severity::Info,
                kind: "aborts",
                route: Some(name.clone()),
                message: format!("{} of {finished} {name} responses were abandoned by the client", r.window.aborted),
                recommendation: "check client timeouts against this route's latency, or stream smaller responses".to_owned(),
            });
        }
    }
    for n in n_plus_one {
        out.push(Insight {
            severity: Severity::Warning,
            kind: "n_plus_one",
            route: Some(format!("{} {}", n.method, n.route)),
            message: format!(
                "{} {} records up to {} '{}' spans per request ({:.1} on average; {} of {} requests at or over {})",
                n.method, n.route, n.max_per_request, n.span, n.mean_per_request, n.suspect_requests, n.requests, n.threshold
            ),
            recommendation: format!(
                "likely one '{}' call per item: fetch the items in one call (a join, or WHERE id IN (…)) or batch them",
                n.span
            ),
        });
    }
    out.sort_by_key(|i| std::cmp::Reverse(i.severity));
    out
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

    /// The `n` routes with the highest error rate over the window.
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

/// OpenTelemetry's method values: the known methods, else `_OTHER`.
fn otel_method(m: &str) -> &str {
    match m {
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH" => m,
        _ => "_OTHER",
    }
}

/// Escapes a Prometheus label value.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
    /// (`http_request_method`, `http_route`, `http_response_status_code`;
    /// buckets 0.005 s … 10 s), cumulative since start, and
    /// `http_server_request_aborted_total` for responses dropped before
    /// their end.
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
            for (code, ph) in &extras.by_status {
                let labels = format!(
                    "http_request_method=\"{method}\",http_route=\"{label}\",http_response_status_code=\"{code}\""
                );
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
