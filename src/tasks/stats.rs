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

impl RunTimes {
    /// The percentiles of `micros` (run times in microseconds), by
    /// nearest rank; none for no run.
    pub(super) fn of(mut micros: Vec<u64>) -> Option<Self> {
        if micros.is_empty() {
            return None;
        }
        micros.sort_unstable();
        let n = micros.len();
        let at = |q: f64| {
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            micros[rank - 1] as f64 / 1000.0
        };
        Some(Self {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: at(1.0),
            samples: n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::RunTimes;

    #[test]
    fn percentiles_by_nearest_rank() {
        let times: Vec<u64> = (1..=100).rev().map(|ms| ms * 1000).collect();
        let r = RunTimes::of(times).unwrap();
        assert_eq!((r.p50, r.p95, r.p99, r.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(r.samples, 100);
        assert!(RunTimes::of(vec![]).is_none());
        assert_eq!(RunTimes::of(vec![7_000]).unwrap().p50, 7.0);
    }
}
