//! The Prometheus text: the histogram at OpenTelemetry's advised bounds
//! and its exposition.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::route::{End, RouteTotals};
use super::sizes::{SIZE_BOUNDS, SizeHist};
use super::stats::TimingStats;
use crate::prometheus::escape;
use crate::trace::semconv_method;

/// Cumulative buckets at OpenTelemetry's advised bounds.
#[derive(Debug, Clone, Default)]
pub(crate) struct PromHist {
    pub(crate) buckets: [u64; PROM_BOUNDS.len()],
    pub(crate) count: u64,
    pub(crate) sum_ns: u128,
}

/// OpenTelemetry's advised bucket bounds for `http.server.request.duration`,
/// in seconds.
pub(crate) const PROM_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// [`PROM_BOUNDS`] in nanoseconds.
const PROM_BOUNDS_NS: [u64; 14] = [
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    75_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    750_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    7_500_000_000,
    10_000_000_000,
];

impl PromHist {
    /// Counts into the first bucket that holds `ns` only; [`cumulative`]
    /// sums them for the exposition.
    ///
    /// [`cumulative`]: Self::cumulative
    pub(super) fn record(&mut self, ns: u64) {
        let i = PROM_BOUNDS_NS.partition_point(|b| *b < ns);
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
        self.count += 1;
        self.sum_ns += u128::from(ns);
    }

    /// Cumulative counts per bound (`le`), as Prometheus wants them.
    pub(crate) fn cumulative(&self) -> [u64; PROM_BOUNDS.len()] {
        cumulative(self.buckets)
    }

    pub(crate) fn merge(&mut self, o: &Self) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        self.count += o.count;
        self.sum_ns += o.sum_ns;
    }
}

/// Per-bucket counts made cumulative (each bound counts everything at or
/// under it), as Prometheus wants histogram buckets.
pub(crate) fn cumulative<const N: usize>(mut buckets: [u64; N]) -> [u64; N] {
    for i in 1..N {
        buckets[i] += buckets[i - 1];
    }
    buckets
}

impl TimingStats {
    /// Prometheus text exposition (format 0.0.4): the
    /// `http_server_request_duration_seconds` histogram named and labelled
    /// as OpenTelemetry's HTTP semantic conventions advise
    /// (`http_request_method`, `http_route`, `http_response_status_code`
    /// when a status was sent, and `error_type` on the requests that ended
    /// in an error; buckets 0.005 s … 10 s), cumulative since start, and
    /// `http_server_request_aborted_total` for responses dropped before
    /// their end. Beside it, per method and route:
    /// `http_server_active_requests` (a gauge: requests arrived and not yet
    /// ended or dropped; an aborted request leaves it at once), and the
    /// histograms `http_server_request_body_size_bytes` (requests whose
    /// body size was known on arrival: its `Content-Length`, or an exact
    /// size hint) and `http_server_response_body_size_bytes` (the bytes
    /// this layer passed on: after compression when timing is outside
    /// it), in bytes, with bounds 0 and 128 B to 8 MiB by powers of four.
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
        // One series per (method as the conventions name it, route): two
        // unknown methods on one route are one `_OTHER` series, never two
        // lines with the same labels.
        let mut series: BTreeMap<(Arc<str>, &'static str), (RouteTotals, u64)> = BTreeMap::new();
        for (route, _, total, extras) in self.registry().read() {
            let key = (route.label.clone(), semconv_method(&route.method));
            let (acc, aborted) = series.entry(key).or_default();
            acc.merge_series(&extras);
            *aborted += total.aborted;
        }
        let labels = |label: &str, method: &str| {
            format!(
                "http_request_method=\"{method}\",http_route=\"{}\"",
                escape(label)
            )
        };
        let mut out = String::new();
        out.push_str("# HELP http_server_request_duration_seconds Duration of HTTP server requests, until the response body ends.\n");
        out.push_str("# TYPE http_server_request_duration_seconds histogram\n");
        for ((label, method), (extras, _)) in &series {
            for ((code, end), ph) in &extras.by_status {
                let mut labels = labels(label, method);
                if *end != End::NoResponse {
                    let _ = write!(labels, ",http_response_status_code=\"{code}\"");
                }
                if let Some(e) = end.error_type(*code) {
                    let _ = write!(labels, ",error_type=\"{e}\"");
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
        out.push_str("# HELP http_server_active_requests Requests in flight: arrived, and neither ended nor dropped.\n");
        out.push_str("# TYPE http_server_active_requests gauge\n");
        for ((label, method), (extras, _)) in &series {
            let _ = writeln!(
                out,
                "http_server_active_requests{{{}}} {}",
                labels(label, method),
                extras.active.max(0)
            );
        }
        for (name, help, pick) in [
            (
                "http_server_request_body_size_bytes",
                "Sizes of HTTP server request bodies known on arrival (Content-Length, or an exact size: a request without a body counts as 0).",
                (|t: &RouteTotals| &t.request_sizes) as fn(&RouteTotals) -> &SizeHist,
            ),
            (
                "http_server_response_body_size_bytes",
                "Sizes of HTTP server response bodies, as sent by this layer.",
                |t: &RouteTotals| &t.response_sizes,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} histogram");
            for ((label, method), (extras, _)) in &series {
                let h = pick(extras);
                if h.count == 0 {
                    continue;
                }
                let labels = labels(label, method);
                for (bound, count) in SIZE_BOUNDS.iter().zip(h.cumulative()) {
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
                }
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
                let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
            }
        }
        out.push_str("# HELP http_server_request_aborted_total Responses whose body was dropped before its end.\n");
        out.push_str("# TYPE http_server_request_aborted_total counter\n");
        for ((label, method), (_, aborted)) in &series {
            let _ = writeln!(
                out,
                "http_server_request_aborted_total{{{}}} {aborted}",
                labels(label, method)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_buckets_match_their_bounds() {
        assert_eq!(PROM_BOUNDS.len(), PROM_BOUNDS_NS.len());
        for (s, ns) in PROM_BOUNDS.iter().zip(PROM_BOUNDS_NS) {
            assert_eq!((s * 1e9).round() as u64, ns);
        }
        let mut h = PromHist::default();
        // On a bound counts as `le` that bound; past the last, only +Inf.
        for ns in [
            1,
            5_000_000,
            5_000_001,
            99_999_999,
            10_000_000_000,
            10_000_000_001,
        ] {
            h.record(ns);
        }
        let c = h.cumulative();
        assert_eq!(c[0], 2); // le 0.005
        assert_eq!(c[1], 3); // le 0.01
        assert_eq!(c[5], 4); // le 0.1
        assert_eq!(c[13], 5); // le 10
        assert_eq!(h.count, 6); // +Inf
    }
}
