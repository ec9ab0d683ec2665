//! The handle to a layer's statistics, and the snapshot it reads.

use std::sync::{Arc, Mutex, PoisonError};

use super::hist::Hist;
use super::insights::insights;
use super::registry::Registry;
use super::route::RouteTotals;
use super::snapshot::{NPlusOne, RouteStats, SpanSummary, Stats, StatusCount, TimingSnapshot};

/// Sub-timings of answers from a cache (the query cache's hits): never
/// N+1 suspects, a repetition answered from memory runs no query.
const CACHED_SPANS: &str = "cache.hit:";

/// A cheap, cloneable handle to a [`TimingLayer`](super::TimingLayer)'s
/// statistics.
///
/// It follows the layer it was taken from until the layer wraps a service:
/// a call that changes how the figures are kept (the window, the clock, a
/// target…) starts them anew, and the handle reads those. Once the layer
/// wraps a service, such a call makes a different layer with statistics
/// of its own, and the handle stays with the services already made.
#[derive(Debug, Clone)]
pub struct TimingStats {
    /// The registry the layer's services record into. Only readers and
    /// builder calls lock it: services hold the registry itself.
    slot: Arc<Mutex<Arc<Registry>>>,
}

impl TimingStats {
    pub(super) fn new(registry: Arc<Registry>) -> Self {
        Self {
            slot: Arc::new(Mutex::new(registry)),
        }
    }

    /// The registry read now. A poisoned lock still holds a whole `Arc`.
    pub(super) fn registry(&self) -> Arc<Registry> {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Points the handle, and every clone of it, at `registry`.
    pub(super) fn attach(&self, registry: Arc<Registry>) {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = registry;
    }
}

fn span_summaries(totals: &RouteTotals) -> Vec<SpanSummary> {
    totals
        .spans
        .iter()
        .map(|(name, st)| {
            let per = |x: f64| {
                if st.requests == 0 {
                    0.0
                } else {
                    x / st.requests as f64
                }
            };
            SpanSummary {
                name: name.to_string(),
                requests: st.requests,
                spans: st.spans,
                mean_per_request: per(st.spans as f64),
                max_per_request: st.max_per_request,
                mean_ms: if st.spans == 0 {
                    0.0
                } else {
                    st.total_ns as f64 / st.spans as f64 / 1e6
                },
                max_ms: st.max_ns as f64 / 1e6,
                ms_per_request: per(st.total_ns as f64 / 1e6),
                suspect_requests: st.suspects,
            }
        })
        .collect()
}

/// Responses per status code, failed bodies under the code they carried.
fn status_counts(totals: &RouteTotals) -> Vec<StatusCount> {
    let mut out: Vec<StatusCount> = Vec::new();
    for ((code, _), ph) in &totals.by_status {
        match out.iter_mut().find(|s| s.code == *code) {
            Some(s) => s.count += ph.count,
            None => out.push(StatusCount {
                code: *code,
                count: ph.count,
            }),
        }
    }
    out.sort_by_key(|s| s.code);
    out
}

/// One route's figures since start, as [`TimingStats::totals`] reads them.
#[cfg_attr(not(feature = "report"), allow(dead_code))]
pub(crate) struct RouteTotal {
    /// `GET /items/{id}`.
    pub(crate) name: String,
    /// The route label alone.
    pub(crate) route: std::sync::Arc<str>,
    pub(crate) total: Hist,
    pub(crate) active: i64,
}

impl TimingStats {
    /// Every route's histogram since start and its requests in flight:
    /// what the report's history takes differences of.
    #[cfg_attr(not(feature = "report"), allow(dead_code))]
    pub(crate) fn totals(&self) -> Vec<RouteTotal> {
        self.registry()
            .read()
            .into_iter()
            .map(|(route, _, total, extras)| RouteTotal {
                name: format!("{} {}", route.method, route.label),
                route: route.label.clone(),
                total,
                active: extras.active,
            })
            .collect()
    }

    /// Reads every route now.
    pub fn snapshot(&self) -> TimingSnapshot {
        let registry = self.registry();
        let threshold = registry.n_plus_one();
        let mut overall = Hist::default();
        let mut overall_total = Hist::default();
        let mut n_plus_one = Vec::new();
        let mut routes: Vec<RouteStats> = registry
            .read()
            .into_iter()
            .map(|(route, window, total, extras)| {
                overall.merge(&window);
                overall_total.merge(&total);
                let spans = span_summaries(&extras);
                for s in &spans {
                    // A repeated cache hit is not a query per item.
                    if s.suspect_requests > 0 && !s.name.starts_with(CACHED_SPANS) {
                        n_plus_one.push(NPlusOne {
                            method: route.method.to_string(),
                            route: route.label.to_string(),
                            span: s.name.clone(),
                            suspect_requests: s.suspect_requests,
                            requests: s.requests,
                            max_per_request: s.max_per_request,
                            mean_per_request: s.mean_per_request,
                            threshold,
                        });
                    }
                }
                RouteStats {
                    method: route.method.to_string(),
                    route: route.label.to_string(),
                    window: Stats::from_hist(&window),
                    total: Stats::from_hist(&total),
                    status_codes: status_counts(&extras),
                    spans,
                    active_requests: u64::try_from(extras.active).unwrap_or(0),
                }
            })
            .collect();
        routes.sort_by(|a, b| (&a.route, &a.method).cmp(&(&b.route, &b.method)));
        n_plus_one.sort_by_key(|n| std::cmp::Reverse(n.suspect_requests));
        let (p99_target, error_target) = registry.targets();
        let insights = insights(&routes, &n_plus_one, p99_target, error_target);
        TimingSnapshot {
            window_secs: registry.window().as_secs_f64(),
            uptime_secs: registry.uptime().as_secs_f64(),
            overall: Stats::from_hist(&overall),
            overall_total: Stats::from_hist(&overall_total),
            active_requests: routes.iter().map(|r| r.active_requests).sum(),
            routes,
            slow_requests: registry.slow_requests(),
            n_plus_one,
            insights,
        }
    }
}
