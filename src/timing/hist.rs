//! A log-linear latency histogram: 16 buckets per power of two of
//! nanoseconds (each bucket at most 1/16 = 6.25% wide, so a percentile read
//! at its bucket's midpoint is within ±3.2%), from 1 ns to 2^40 ns (18
//! minutes; longer durations land in the last bucket). Plain integers:
//! callers keep one per shard behind a lock nobody else contends for.

use std::time::Duration;

const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// Buckets up to 2^40 ns.
pub(crate) const BUCKETS: usize = (40 - SUB_BITS as usize + 1) * SUB;

/// The bucket of a duration in nanoseconds.
pub(crate) fn index(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let msb = 63 - ns.leading_zeros();
    let shift = msb - SUB_BITS;
    let idx = (shift as usize + 1) * SUB + ((ns >> shift) as usize & (SUB - 1));
    idx.min(BUCKETS - 1)
}

/// The lowest value of a bucket and its width, in nanoseconds.
pub(crate) fn bounds(idx: usize) -> (u64, u64) {
    if idx < SUB {
        return (idx as u64, 1);
    }
    let shift = (idx / SUB - 1) as u32;
    let low = ((SUB + idx % SUB) as u64) << shift;
    (low, 1 << shift)
}

/// Counts by status class and latencies of one slot (or of all time).
#[derive(Clone)]
pub(crate) struct Hist {
    counts: Box<[u32]>,
    pub(crate) count: u64,
    /// 4xx, 429 included.
    pub(crate) client_errors: u64,
    /// 429 (also in `client_errors`).
    pub(crate) rate_limited: u64,
    /// 5xx, inner-service errors and failed bodies.
    pub(crate) server_errors: u64,
    /// Bodies that failed midway (also in `server_errors`).
    pub(crate) failed: u64,
    pub(crate) aborted: u64,
    sum_ns: u128,
    sum_sq: f64,
    min_ns: u64,
    max_ns: u64,
}

impl std::fmt::Debug for Hist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hist")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Default for Hist {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            client_errors: 0,
            rate_limited: 0,
            server_errors: 0,
            failed: 0,
            aborted: 0,
            sum_ns: 0,
            sum_sq: 0.0,
            min_ns: u64::MAX,
            max_ns: 0,
        }
    }
}

impl Hist {
    /// Records one completed request; `failed`: its body failed midway,
    /// which makes it a server error whatever its status said.
    pub(crate) fn record(&mut self, ns: u64, status: u16, failed: bool) {
        let i = index(ns);
        self.counts[i] = self.counts[i].saturating_add(1);
        self.count += 1;
        self.sum_ns += u128::from(ns);
        let f = ns as f64;
        self.sum_sq += f * f;
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
        if failed {
            self.failed += 1;
            self.server_errors += 1;
            return;
        }
        match status {
            429 => {
                self.client_errors += 1;
                self.rate_limited += 1;
            }
            400..=499 => self.client_errors += 1,
            500..=599 => self.server_errors += 1,
            _ => {}
        }
    }

    /// Records a request whose response body was dropped before its end.
    pub(crate) fn record_abort(&mut self) {
        self.aborted += 1;
    }

    pub(crate) fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.count += other.count;
        self.client_errors += other.client_errors;
        self.rate_limited += other.rate_limited;
        self.server_errors += other.server_errors;
        self.failed += other.failed;
        self.aborted += other.aborted;
        self.sum_ns += other.sum_ns;
        self.sum_sq += other.sum_sq;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// What was recorded after `earlier`, a copy of this histogram taken
    /// before (both since start): counts and percentiles of the interval
    /// between them. The interval's exact min and max are not known, so
    /// its percentiles are bucket midpoints (within ±3.2%).
    #[cfg_attr(not(feature = "report"), allow(dead_code))]
    pub(crate) fn since(&self, earlier: &Self) -> Self {
        let counts = self
            .counts
            .iter()
            .zip(earlier.counts.iter())
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        Self {
            counts,
            count: self.count.saturating_sub(earlier.count),
            client_errors: self.client_errors.saturating_sub(earlier.client_errors),
            rate_limited: self.rate_limited.saturating_sub(earlier.rate_limited),
            server_errors: self.server_errors.saturating_sub(earlier.server_errors),
            failed: self.failed.saturating_sub(earlier.failed),
            aborted: self.aborted.saturating_sub(earlier.aborted),
            sum_ns: self.sum_ns.saturating_sub(earlier.sum_ns),
            sum_sq: (self.sum_sq - earlier.sum_sq).max(0.0),
            min_ns: 0,
            max_ns: u64::MAX,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0 && self.aborted == 0
    }

    /// The value at quantile `q` (0..=1): the midpoint of the bucket that
    /// holds it, clamped to the exact min and max.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                let (low, width) = bounds(i);
                let mid = low + width / 2;
                return Some(Duration::from_nanos(mid.clamp(self.min_ns, self.max_ns)));
            }
        }
        Some(Duration::from_nanos(self.max_ns))
    }

    pub(crate) fn min(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_nanos(self.min_ns))
    }

    pub(crate) fn max(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_nanos(self.max_ns))
    }

    pub(crate) fn mean_ns(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ns as f64 / self.count as f64)
    }

    /// Population standard deviation.
    pub(crate) fn stddev_ns(&self) -> Option<f64> {
        let mean = self.mean_ns()?;
        let var = (self.sum_sq / self.count as f64 - mean * mean).max(0.0);
        Some(var.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_narrow() {
        let mut prev_end = 0u64;
        for i in 0..BUCKETS {
            let (low, width) = bounds(i);
            assert_eq!(low, prev_end, "bucket {i}");
            assert_eq!(index(low), i);
            assert_eq!(index(low + width - 1), i);
            if low >= 16 {
                assert!(width as f64 / low as f64 <= 1.0 / 16.0 + 1e-9);
            }
            prev_end = low + width;
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn an_interval_is_the_difference_of_two_totals() {
        let mut h = Hist::default();
        for _ in 0..100 {
            h.record(1_000_000, 200, false); // 1 ms
        }
        let earlier = h.clone();
        for _ in 0..10 {
            h.record(50_000_000, 503, false); // 50 ms
        }
        h.record(2_000_000, 429, false);
        let d = h.since(&earlier);
        assert_eq!(d.count, 11);
        assert_eq!(
            (d.server_errors, d.client_errors, d.rate_limited),
            (10, 1, 1)
        );
        let p50 = d.quantile(0.5).unwrap().as_secs_f64() * 1e3;
        assert!((p50 - 50.0).abs() < 50.0 * 0.033, "{p50}");
        let p05 = d.quantile(0.05).unwrap().as_secs_f64() * 1e3;
        assert!((p05 - 2.0).abs() < 2.0 * 0.033, "{p05}");
        assert_eq!(h.since(&h).count, 0);
        assert_eq!(h.since(&h).quantile(0.5), None);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        // 1..=10_000 µs uniformly: p50 = 5 ms, p99 = 9.9 ms, p99.9 = 9.99 ms.
        let mut h = Hist::default();
        for us in 1..=10_000u64 {
            h.record(us * 1000, 200, false);
        }
        let check = |q: f64, expect_ms: f64| {
            let got = h.quantile(q).unwrap().as_secs_f64() * 1000.0;
            assert!(
                (got - expect_ms).abs() / expect_ms < 0.035,
                "q{q}: {got} vs {expect_ms}"
            );
        };
        check(0.5, 5.0);
        check(0.9, 9.0);
        check(0.95, 9.5);
        check(0.99, 9.9);
        check(0.999, 9.99);
        assert_eq!(h.min().unwrap(), Duration::from_micros(1));
        assert_eq!(h.max().unwrap(), Duration::from_millis(10));
        let mean = h.mean_ns().unwrap() / 1e6;
        assert!((mean - 5.0005).abs() < 1e-6, "{mean}");
        // Uniform on [0, 10]: stddev = 10 / sqrt(12).
        let sd = h.stddev_ns().unwrap() / 1e6;
        assert!((sd - 10.0 / 12f64.sqrt()).abs() < 0.01, "{sd}");
    }

    #[test]
    fn merge_and_status_classes() {
        let mut a = Hist::default();
        let mut b = Hist::default();
        a.record(1_000, 200, false);
        a.record(2_000, 404, false);
        a.record(2_500, 429, false);
        b.record(3_000, 503, false);
        b.record(1_500, 200, true);
        b.record_abort();
        a.merge(&b);
        assert_eq!((a.count, a.client_errors, a.rate_limited), (5, 2, 1));
        assert_eq!((a.server_errors, a.failed, a.aborted), (2, 1, 1));
        assert_eq!(a.max().unwrap(), Duration::from_micros(3));
        assert!(Hist::default().quantile(0.5).is_none());
    }
}
