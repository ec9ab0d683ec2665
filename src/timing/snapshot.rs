//! Reading the statistics: a serde-serializable snapshot.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::hist::Hist;
use super::registry::{Registry, SlowRequest};

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

impl TimingStats {
    /// Reads every route now.
    pub fn snapshot(&self) -> TimingSnapshot {
        let mut overall = Hist::default();
        let mut overall_total = Hist::default();
        let mut routes: Vec<RouteStats> = self
            .registry
            .read()
            .into_iter()
            .map(|(route, window, total)| {
                overall.merge(&window);
                overall_total.merge(&total);
                RouteStats {
                    method: route.method.to_string(),
                    route: route.label.to_string(),
                    window: Stats::from_hist(&window),
                    total: Stats::from_hist(&total),
                }
            })
            .collect();
        routes.sort_by(|a, b| (&a.route, &a.method).cmp(&(&b.route, &b.method)));
        TimingSnapshot {
            window_secs: self.registry.window().as_secs_f64(),
            uptime_secs: self.registry.uptime().as_secs_f64(),
            overall: Stats::from_hist(&overall),
            overall_total: Stats::from_hist(&overall_total),
            routes,
            slow_requests: self.registry.slow_requests(),
        }
    }
}
