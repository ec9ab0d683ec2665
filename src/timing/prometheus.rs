//! The Prometheus histogram at OpenTelemetry's advised bounds.

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
        let mut out = self.buckets;
        for i in 1..out.len() {
            out[i] += out[i - 1];
        }
        out
    }

    pub(crate) fn merge(&mut self, o: &Self) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        self.count += o.count;
        self.sum_ns += o.sum_ns;
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
