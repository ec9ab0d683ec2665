//! The task layer's statistics: what was submitted and how it ended, the
//! queue, and run-time percentiles.

use serde::Serialize;

/// How many of the last run times the percentiles are read from.
pub const RUN_TIMES_KEPT: usize = 1024;

/// A point-in-time copy of an [`AsyncLayer`](super::AsyncLayer)'s
/// figures (the `tasks` key of `/performance/summary`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskSnapshot {
    /// Requests that became tasks.
    pub submitted: u64,
    /// Requests refused with `503` because the queue was full.
    pub rejected: u64,
    /// Tasks that completed.
    pub completed: u64,
    /// Tasks that failed, for any reason (the next three included).
    pub failed: u64,
    /// Failed tasks that ran past their timeout.
    pub timed_out: u64,
    /// Failed tasks whose handler panicked.
    pub panicked: u64,
    /// Failed tasks whose response passed the result limit.
    pub too_large: u64,
    /// Tasks cancelled before they ended.
    pub cancelled: u64,
    /// Tasks waiting for a slot now.
    pub queued: usize,
    /// Tasks running now.
    pub running: usize,
    /// The concurrency limit.
    pub concurrency: usize,
    /// The queue's bound.
    pub queue_capacity: usize,
    /// Finished tasks kept (for their monitor and result).
    pub kept: usize,
    /// Bytes they hold (their records and results), bounded by
    /// [`result_budget`](super::AsyncLayer::result_budget).
    pub kept_bytes: usize,
    /// Tasks that ran (started, then ended in any way).
    pub runs: u64,
    /// Their run times added up, in seconds.
    pub run_seconds_total: f64,
    /// Run time percentiles over the last [`RUN_TIMES_KEPT`] tasks that
    /// ran, in milliseconds (none before the first).
    pub run_ms: Option<RunTimes>,
    /// The task records' copy in Redis, when shared
    /// ([`AsyncLayer::redis`](super::AsyncLayer::redis)).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub redis: Option<super::RedisTaskSnapshot>,
}

/// Run-time percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RunTimes {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// The longest.
    pub max: f64,
    /// How many run times these are read from.
    pub samples: usize,
}

impl TaskSnapshot {
    pub(super) fn new(
        counts: [u64; 8],
        (queued, running, concurrency, queue_capacity): (usize, usize, usize, usize),
        (kept, kept_bytes): (usize, usize),
        mut run_micros: Vec<u64>,
        (runs, run_micros_sum): (u64, u64),
    ) -> Self {
        let [
            submitted,
            rejected,
            completed,
            failed,
            timed_out,
            panicked,
            too_large,
            cancelled,
        ] = counts;
        run_micros.sort_unstable();
        let at = |q: f64| {
            let last = run_micros.len().saturating_sub(1);
            // Nearest rank.
            let i = ((q * run_micros.len() as f64).ceil() as usize).clamp(1, last + 1) - 1;
            run_micros.get(i).map_or(0.0, |&us| us as f64 / 1000.0)
        };
        let run_ms = (!run_micros.is_empty()).then(|| RunTimes {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: at(1.0),
            samples: run_micros.len(),
        });
        Self {
            submitted,
            rejected,
            completed,
            failed,
            timed_out,
            panicked,
            too_large,
            cancelled,
            queued,
            running,
            concurrency,
            queue_capacity,
            kept,
            kept_bytes,
            runs,
            run_seconds_total: run_micros_sum as f64 / 1e6,
            run_ms,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TaskSnapshot;

    #[test]
    fn percentiles_by_nearest_rank() {
        let times: Vec<u64> = (1..=100).rev().map(|ms| ms * 1000).collect();
        let s = TaskSnapshot::new([0; 8], (0, 0, 1, 1), (0, 0), times, (100, 5_050_000));
        let r = s.run_ms.unwrap();
        assert_eq!((r.p50, r.p95, r.p99, r.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(r.samples, 100);
        assert_eq!(s.run_seconds_total, 5.05);
        let s = TaskSnapshot::new([0; 8], (0, 0, 1, 1), (0, 0), vec![], (0, 0));
        assert!(s.run_ms.is_none());
        let s = TaskSnapshot::new([0; 8], (0, 0, 1, 1), (0, 0), vec![7_000], (1, 7_000));
        assert_eq!(s.run_ms.unwrap().p50, 7.0);
    }
}
