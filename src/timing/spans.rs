//! Sub-timings that handlers record: a request extension.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Distinct span names one request keeps; more fold into `other`.
const MAX_NAMES: usize = 32;

#[derive(Debug, Clone)]
pub(crate) struct SpanAgg {
    pub(crate) name: Cow<'static, str>,
    pub(crate) count: u32,
    pub(crate) total: Duration,
    pub(crate) max: Duration,
}

impl SpanAgg {
    fn add(&mut self, duration: Duration) {
        self.count = self.count.saturating_add(1);
        self.total += duration;
        self.max = self.max.max(duration);
    }
}

/// A request's sub-timings, found in its extensions when
/// [`TimingLayer`](super::TimingLayer) wraps the handler with
/// [`sub_timings(true)`](super::TimingLayer::sub_timings).
///
/// ```
/// use axum::Extension;
/// use tower_perf::timing::Timings;
///
/// async fn handler(timings: Option<Extension<Timings>>) -> &'static str {
///     let _db = timings.as_ref().map(|t| t.start("db")); // timed until dropped
///     // … query …
///     "ok"
/// }
/// # let _ = handler;
/// ```
#[derive(Debug, Clone, Default)]
pub struct Timings {
    inner: Arc<Mutex<Vec<SpanAgg>>>,
}

/// Times a span from [`Timings::start`] until it is dropped.
#[derive(Debug)]
#[must_use = "the span ends when the guard is dropped"]
pub struct SpanGuard {
    timings: Timings,
    name: Option<Cow<'static, str>>,
    start: Instant,
}

impl Drop for SpanGuard {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            self.timings.record(name, self.start.elapsed());
        }
    }
}

impl Timings {
    /// Starts a span named `name` (a `db` query, a `cache` lookup…); it ends
    /// when the returned guard is dropped.
    pub fn start(&self, name: impl Into<Cow<'static, str>>) -> SpanGuard {
        SpanGuard {
            timings: self.clone(),
            name: Some(name.into()),
            start: Instant::now(),
        }
    }

    /// Records a span that took `duration`.
    pub fn record(&self, name: impl Into<Cow<'static, str>>, duration: Duration) {
        let name = name.into();
        let Ok(mut spans) = self.inner.lock() else {
            return;
        };
        Self::add(&mut spans, name, |n| n, duration);
    }

    /// Adds `duration` to the span named `name`, or starts it with the
    /// name `owned` makes (only then), or folds it into `other` past
    /// [`MAX_NAMES`].
    fn add<N: AsRef<str>>(
        spans: &mut Vec<SpanAgg>,
        name: N,
        owned: impl FnOnce(N) -> Cow<'static, str>,
        duration: Duration,
    ) {
        if let Some(s) = spans.iter_mut().find(|s| s.name == name.as_ref()) {
            return s.add(duration);
        }
        let name = if spans.len() >= MAX_NAMES {
            Cow::Borrowed(super::registry::OTHER)
        } else {
            owned(name)
        };
        match spans.iter_mut().find(|s| s.name == name) {
            Some(s) => s.add(duration),
            None => spans.push(SpanAgg {
                name,
                count: 1,
                total: duration,
                max: duration,
            }),
        }
    }

    /// Records a span named `name`, copying the name only the first time
    /// this request records it (the query cache's lookups, repeated per
    /// item, allocate nothing after the first).
    #[cfg(feature = "cache")]
    pub(crate) fn record_str(&self, name: &str, duration: Duration) {
        let Ok(mut spans) = self.inner.lock() else {
            return;
        };
        Self::add(&mut spans, name, |n| Cow::Owned(n.to_owned()), duration);
    }

    /// This request's spans so far: (name, count, total).
    pub fn spans(&self) -> Vec<(String, u32, Duration)> {
        self.inner
            .lock()
            .map(|s| {
                s.iter()
                    .map(|a| (a.name.to_string(), a.count, a.total))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Takes the spans out (the request is over): no copy.
    pub(crate) fn take_aggregates(&self) -> Vec<SpanAgg> {
        self.inner
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    pub(crate) fn aggregates(&self) -> Vec<SpanAgg> {
        self.inner.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Per (route, span name) figures since start.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpanStats {
    pub(crate) requests: u64,
    pub(crate) spans: u64,
    pub(crate) total_ns: u128,
    pub(crate) max_ns: u64,
    pub(crate) max_per_request: u32,
    /// Requests that recorded at least the N+1 threshold of this name.
    pub(crate) suspects: u64,
}

impl SpanStats {
    pub(crate) fn add(&mut self, agg: &SpanAgg, threshold: u32) {
        self.requests += 1;
        self.spans += u64::from(agg.count);
        self.total_ns += agg.total.as_nanos();
        self.max_ns = self
            .max_ns
            .max(u64::try_from(agg.max.as_nanos()).unwrap_or(u64::MAX));
        self.max_per_request = self.max_per_request.max(agg.count);
        if agg.count >= threshold {
            self.suspects += 1;
        }
    }

    pub(crate) fn merge(&mut self, o: &Self) {
        self.requests += o.requests;
        self.spans += o.spans;
        self.total_ns += o.total_ns;
        self.max_ns = self.max_ns.max(o.max_ns);
        self.max_per_request = self.max_per_request.max(o.max_per_request);
        self.suspects += o.suspects;
    }
}
