//! The report's history: a point per interval (10 s for the last hour, a
//! minute for the last day by default), sampled on the server, so a
//! dashboard opened or reloaded draws the past at once.
//!
//! Each sample reads the layers' counters and histograms since start and
//! keeps the difference from the previous sample: throughput, server and
//! client errors, 429s and percentiles per interval (from the timing
//! layer's histograms, within ±3.2%), overall and for the busiest routes;
//! cache hits and lookups, compression's bytes in and out, requests in
//! flight, open Redis breakers and the task queue. The report's own routes
//! (those whose route template is under its base path) are left out of the
//! timing and cache figures, so a dashboard's polling never shows in what
//! it draws; compression counts every response it compressed (the
//! report's answers too: that is bandwidth saved all the same).

#[cfg(feature = "timing")]
use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// The sampler ticks on tokio's timer: its clock decides whether a step has
// passed (a paused or driven test clock included).
use tokio::time::Instant;

use serde::Serialize;

use super::builder::Sources;

/// Routes a point keeps (the busiest of its interval).
pub const ROUTES_PER_POINT: usize = 20;
/// Points the fine resolution keeps at most (an hour at 10 s: 360).
const FINE_POINTS: usize = 720;
/// Points the coarse resolution keeps at most (a day at 1 min).
const COARSE_POINTS: usize = 1440;
/// How many fine intervals make a coarse one.
const COARSE_FACTOR: u32 = 6;

/// One interval's figures. Rates are per second of the interval; counts
/// are the interval's. Fields are `null` where the layer that would tell
/// is not read, or nothing happened (no request: no percentile).
#[derive(Debug, Clone, Serialize)]
pub struct HistoryPoint {
    /// When the interval ended, in milliseconds since the Unix epoch.
    pub t: u64,
    /// The interval's length in seconds.
    pub secs: f64,
    /// Requests completed (timing), the report's own left out.
    pub requests: Option<u64>,
    /// `requests / secs`.
    pub rps: Option<f64>,
    /// Server errors (5xx, failed bodies, inner-service errors).
    pub server_errors: Option<u64>,
    /// Client errors (4xx, 429 included).
    pub client_errors: Option<u64>,
    /// 429 answers, as timing counts them; without timing, the rate
    /// limiter's refusals summed over its policies (a request two policies
    /// refuse counts twice, and shadow mode's would-be refusals count).
    pub rate_limited: Option<u64>,
    /// Median latency of the interval, in milliseconds.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Requests in flight when the interval ended.
    pub active_requests: Option<u64>,
    /// The busiest routes of the interval (at most
    /// [`ROUTES_PER_POINT`]), most requests first.
    pub routes: Vec<RoutePoint>,
    /// Cache lookups answered from the store (fresh or stale).
    pub cache_hits: Option<u64>,
    /// Cache lookups: hits, stale answers, misses and revalidations.
    pub cache_lookups: Option<u64>,
    /// Bytes compression took in.
    pub compression_in: Option<u64>,
    /// Bytes compression sent.
    pub compression_out: Option<u64>,
    /// Redis circuit breakers open (or probing) when the interval ended.
    pub breakers_open: Option<u64>,
    /// Deferred requests waiting for a slot when the interval ended.
    pub tasks_queued: Option<u64>,
    /// Deferred requests running when the interval ended.
    pub tasks_running: Option<u64>,
}

/// One route's figures in one interval.
#[derive(Debug, Clone, Serialize)]
pub struct RoutePoint {
    /// Method and route template (`GET /items/{id}`).
    pub route: String,
    /// Requests completed.
    pub requests: u64,
    /// Server errors.
    pub server_errors: u64,
    /// Median latency, in milliseconds.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
}

/// What `GET {base}/history` answers.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    /// Seconds per point.
    pub resolution_secs: f64,
    /// The points, oldest first.
    pub points: Vec<HistoryPoint>,
}

/// Which of the history's two resolutions to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryResolution {
    /// The step (10 s by default) over the last hour.
    Fine,
    /// Six steps (1 min by default) over the last day.
    Coarse,
}

/// What a `GET {base}/history` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Query {
    pub(super) resolution: HistoryResolution,
    pub(super) since: Option<u64>,
}

impl Query {
    /// `since=<ms since the epoch>` and `resolution=fine|coarse`, both
    /// optional; anything else is refused, saying why.
    pub(super) fn parse(query: Option<&str>) -> Result<Self, &'static str> {
        let mut q = Query {
            resolution: HistoryResolution::Fine,
            since: None,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "since" => {
                    q.since =
                        Some(v.parse().map_err(
                            |_| "since: milliseconds since the Unix epoch, a whole number",
                        )?);
                }
                "resolution" => {
                    q.resolution = match v {
                        "fine" => HistoryResolution::Fine,
                        "coarse" => HistoryResolution::Coarse,
                        _ => return Err("resolution: fine or coarse"),
                    };
                }
                _ => return Err("unknown parameter: use since and resolution"),
            }
        }
        Ok(q)
    }
}

/// The layers' figures since start, at one sample.
#[derive(Clone, Default)]
struct Totals {
    #[cfg(feature = "timing")]
    routes: HashMap<String, crate::timing::Hist>,
    #[cfg(feature = "timing")]
    active: Option<u64>,
    cache: Option<(u64, u64)>,
    compression: Option<(u64, u64)>,
    limited: Option<u64>,
    breakers_open: Option<u64>,
    tasks: Option<(u64, u64)>,
}

struct Ring {
    step: Duration,
    cap: usize,
    last: Option<(Instant, Totals)>,
    points: VecDeque<HistoryPoint>,
}

impl Ring {
    fn new(step: Duration, cap: usize) -> Self {
        Self {
            step,
            cap,
            last: None,
            points: VecDeque::new(),
        }
    }

    /// Adds the point from the last sample to `now`, when a step has
    /// passed (or starts the ring).
    fn sample(&mut self, now: Instant, wall: u64, totals: &Totals) {
        match &self.last {
            None => {}
            Some((at, _)) if now.duration_since(*at) + self.step / 20 < self.step => return,
            Some((at, before)) => {
                let secs = now.duration_since(*at).as_secs_f64();
                if self.points.len() >= self.cap {
                    self.points.pop_front();
                }
                self.points.push_back(point(before, totals, secs, wall));
            }
        }
        self.last = Some((now, totals.clone()));
    }
}

/// The two rings and their settings.
pub(super) struct Recorder {
    base: String,
    rings: Mutex<(Ring, Ring)>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// Rings of `step` (an hour of them, at most 720 points) and six times
    /// `step` (a day of them, at most 1,440).
    pub(super) fn new(step: Duration, base: &str) -> Self {
        let fits = |span: Duration, step: Duration, max: usize| {
            usize::try_from(span.as_millis() / step.as_millis().max(1))
                .unwrap_or(max)
                .clamp(1, max)
        };
        let coarse = step * COARSE_FACTOR;
        Self {
            base: base.to_owned(),
            rings: Mutex::new((
                Ring::new(step, fits(Duration::from_secs(3600), step, FINE_POINTS)),
                Ring::new(
                    coarse,
                    fits(Duration::from_secs(86_400), coarse, COARSE_POINTS),
                ),
            )),
        }
    }

    /// The fine step: how often [`sample`](Self::sample) should run.
    pub(super) fn step(&self) -> Duration {
        self.rings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .step
    }

    /// Reads the layers now and adds a point to each ring whose step has
    /// passed.
    pub(super) fn sample(&self, sources: &Sources) {
        // The clocks first: a point stamped `t` holds everything that
        // ended before `t`.
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let now = Instant::now();
        let totals = totals(sources, &self.base);
        let mut rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        rings.0.sample(now, wall, &totals);
        rings.1.sample(now, wall, &totals);
    }

    /// The points of one ring after `since` (milliseconds since the
    /// epoch).
    pub(super) fn read(&self, resolution: HistoryResolution, since: Option<u64>) -> History {
        let rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        let ring = match resolution {
            HistoryResolution::Fine => &rings.0,
            HistoryResolution::Coarse => &rings.1,
        };
        History {
            resolution_secs: ring.step.as_secs_f64(),
            points: ring
                .points
                .iter()
                .filter(|p| since.is_none_or(|s| p.t > s))
                .cloned()
                .collect(),
        }
    }
}

/// Whether a route template is one of the report's own: `base` or under
/// it (at the root, only the catch-all [`Report::routes`] mounts).
///
/// [`Report::routes`]: super::Report::routes
#[cfg(any(feature = "timing", feature = "cache"))]
fn own(route: &str, base: &str) -> bool {
    if base.is_empty() {
        return route == "/{*endpoint}";
    }
    route
        .strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg_attr(
    not(any(feature = "timing", feature = "cache")),
    allow(unused_variables)
)]
fn totals(sources: &Sources, base: &str) -> Totals {
    // Each layer's feature fills its part.
    #[allow(unused_mut)]
    let mut t = Totals::default();
    #[cfg(feature = "timing")]
    if let Some(timing) = &sources.timing {
        let mut active = 0u64;
        for r in timing.totals() {
            if own(&r.route, base) {
                continue;
            }
            active += u64::try_from(r.active).unwrap_or(0);
            t.routes.insert(r.name, r.total);
        }
        t.active = Some(active);
    }
    #[cfg(feature = "cache")]
    if let Some(h) = &sources.cache {
        let stats = h.stats();
        let s = stats.snapshot();
        let mut hits = s.hits + s.stale_served;
        let mut lookups = hits + s.misses + s.revalidated_not_modified + s.revalidated_modified;
        // The report's own lookups (its route template is under the base
        // path), which a polling dashboard would make most of.
        for r in stats.routes().iter().filter(|r| own(&r.route, base)) {
            let own_hits = r.hits + r.stale_served;
            hits = hits.saturating_sub(own_hits);
            lookups = lookups.saturating_sub(own_hits + r.misses + r.revalidated);
        }
        t.cache = Some((hits, lookups));
    }
    #[cfg(feature = "compression")]
    if let Some(c) = &sources.compression {
        let s = c.snapshot();
        t.compression = Some(
            s.codings()
                .fold((0, 0), |(i, o), (_, c)| (i + c.bytes_in, o + c.bytes_out)),
        );
    }
    #[cfg(feature = "rate-limit")]
    if let Some(r) = &sources.rate_limit {
        t.limited = Some(r.policies().iter().map(|p| p.limited).sum());
    }
    #[cfg(feature = "redis")]
    {
        use crate::breaker::BreakerState;
        let states = [
            sources
                .redis_rate_limit
                .as_ref()
                .map(|s| s.snapshot().breaker.state),
            sources
                .redis_cache
                .as_ref()
                .map(|s| s.snapshot().breaker.state),
        ];
        if states.iter().any(Option::is_some) {
            t.breakers_open = Some(
                states
                    .iter()
                    .flatten()
                    .filter(|s| **s != BreakerState::Closed)
                    .count() as u64,
            );
        }
    }
    #[cfg(feature = "tasks")]
    if let Some(h) = &sources.tasks {
        let s = h.stats();
        t.tasks = Some((s.queued as u64, s.running as u64));
    }
    t
}

#[cfg(feature = "timing")]
fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1000.0)
}

/// The interval between two samples.
fn point(before: &Totals, now: &Totals, secs: f64, wall: u64) -> HistoryPoint {
    let delta = |a: Option<(u64, u64)>, b: Option<(u64, u64)>| match (a, b) {
        (Some(a), Some(b)) => Some((b.0.saturating_sub(a.0), b.1.saturating_sub(a.1))),
        _ => None,
    };
    let cache = delta(before.cache, now.cache);
    let compression = delta(before.compression, now.compression);
    // Timing's part below, with its feature.
    #[allow(unused_mut)]
    let mut p = HistoryPoint {
        t: wall,
        secs,
        requests: None,
        rps: None,
        server_errors: None,
        client_errors: None,
        rate_limited: match (before.limited, now.limited) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        },
        p50_ms: None,
        p95_ms: None,
        p99_ms: None,
        active_requests: None,
        routes: Vec::new(),
        cache_hits: cache.map(|c| c.0),
        cache_lookups: cache.map(|c| c.1),
        compression_in: compression.map(|c| c.0),
        compression_out: compression.map(|c| c.1),
        breakers_open: now.breakers_open,
        tasks_queued: now.tasks.map(|t| t.0),
        tasks_running: now.tasks.map(|t| t.1),
    };
    #[cfg(feature = "timing")]
    if now.active.is_some() {
        let mut overall = crate::timing::Hist::default();
        let empty = crate::timing::Hist::default();
        for (name, total) in &now.routes {
            let d = total.since(before.routes.get(name).unwrap_or(&empty));
            if d.count == 0 {
                continue;
            }
            overall.merge(&d);
            p.routes.push(RoutePoint {
                route: name.clone(),
                requests: d.count,
                server_errors: d.server_errors,
                p50_ms: ms(d.quantile(0.5)),
                p95_ms: ms(d.quantile(0.95)),
                p99_ms: ms(d.quantile(0.99)),
            });
        }
        p.routes
            .sort_by(|a, b| b.requests.cmp(&a.requests).then(a.route.cmp(&b.route)));
        p.routes.truncate(ROUTES_PER_POINT);
        p.requests = Some(overall.count);
        p.rps = Some(if secs > 0.0 {
            overall.count as f64 / secs
        } else {
            0.0
        });
        p.server_errors = Some(overall.server_errors);
        p.client_errors = Some(overall.client_errors);
        p.rate_limited = Some(overall.rate_limited);
        p.p50_ms = ms(overall.quantile(0.5));
        p.p95_ms = ms(overall.quantile(0.95));
        p.p99_ms = ms(overall.quantile(0.99));
        p.active_requests = now.active;
    }
    p
}

#[cfg(all(test, feature = "timing"))]
mod tests {
    use super::own;

    #[test]
    fn the_reports_own_routes_are_those_under_its_base() {
        assert!(own("/performance", "/performance"));
        assert!(own("/performance/summary", "/performance"));
        assert!(own("/performance/{*rest}", "/performance"));
        assert!(!own("/performances", "/performance"));
        assert!(!own("/api/v1/items", "/performance"));
        // At the root, only the report's catch-all.
        assert!(own("/{*endpoint}", ""));
        assert!(!own("/api/v1/items", ""));
        assert!(!own("/", ""));
    }
}
