//! Wall-clock time of one call, for the benches' printed summaries (the
//! scaling tables that criterion's per-input reports don't line up).
//! Included by path: it needs nothing from the crate.

use std::time::{Duration, Instant};

/// Best mean over batches of calls, batches doubling until one takes 10 ms,
/// for at least 300 ms and 3 calls.
pub(crate) fn time_per_call(mut f: impl FnMut()) -> Duration {
    f();
    let (start, mut calls, mut batch, mut best) = (Instant::now(), 0u32, 1u32, Duration::MAX);
    while start.elapsed() < Duration::from_millis(300) || calls < 3 {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        let took = t.elapsed();
        best = best.min(took / batch);
        calls += batch;
        if took < Duration::from_millis(10) {
            batch *= 2;
        }
    }
    best
}
