//! Body sizes: a cumulative histogram in bytes, kept since start per
//! route, for the Prometheus text.

/// Upper bounds (`le`) in bytes: 0 (no body), then powers of four from
/// 128 B to 8 MiB. OpenTelemetry advises no buckets for body sizes; these
/// tell an empty body, a small JSON answer, a page and a download apart
/// with ten series per route.
pub(crate) const SIZE_BOUNDS: [u64; 10] = [
    0, 128, 512, 2_048, 8_192, 32_768, 131_072, 524_288, 2_097_152, 8_388_608,
];

/// Counts per bound (not yet cumulative), their count and their sum.
#[derive(Debug, Clone, Default)]
pub(crate) struct SizeHist {
    buckets: [u64; SIZE_BOUNDS.len()],
    pub(crate) count: u64,
    pub(crate) sum: u64,
}

impl SizeHist {
    /// Counts `bytes` into the first bucket that holds it.
    pub(crate) fn record(&mut self, bytes: u64) {
        let i = SIZE_BOUNDS.partition_point(|b| *b < bytes);
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
        self.count += 1;
        self.sum = self.sum.saturating_add(bytes);
    }

    /// Cumulative counts per bound, as Prometheus wants them.
    pub(crate) fn cumulative(&self) -> [u64; SIZE_BOUNDS.len()] {
        super::prometheus::cumulative(self.buckets)
    }

    pub(crate) fn merge(&mut self, o: &Self) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        self.count += o.count;
        self.sum = self.sum.saturating_add(o.sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fall_into_the_first_bound_that_holds_them() {
        let mut h = SizeHist::default();
        for b in [0, 1, 128, 129, 8_388_608, 8_388_609] {
            h.record(b);
        }
        let c = h.cumulative();
        assert_eq!(c[0], 1); // le 0
        assert_eq!(c[1], 3); // le 128
        assert_eq!(c[2], 4); // le 512
        assert_eq!(c[9], 5); // le 8 MiB
        assert_eq!(h.count, 6); // +Inf
        assert_eq!(h.sum, 1 + 128 + 129 + 8_388_608 + 8_388_609);
        let mut m = SizeHist::default();
        m.merge(&h);
        m.merge(&h);
        assert_eq!(m.cumulative()[1], 6);
        assert_eq!(m.count, 12);
    }
}
