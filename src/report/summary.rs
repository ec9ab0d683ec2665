//! The summary: every layer's figures, what stands out in them, and the
//! overall status.

use super::builder::Sources;
#[cfg(feature = "redis")]
use super::schema::RedisReport;
#[cfg(feature = "timing")]
use super::schema::{RouteLine, Traffic};
use super::schema::{Status, Summary};
use crate::insight::Insight;
#[cfg(any(feature = "cache", feature = "compression", feature = "rate-limit"))]
use crate::insight::Severity;

impl Sources {
    /// The summary, with the findings of every layer read, most severe
    /// first.
    pub(super) fn summary(&self) -> Summary {
        let mut recs: Vec<Insight> = Vec::new();
        #[cfg(feature = "timing")]
        let traffic = self.timing.as_ref().map(|t| {
            let mut snap = t.snapshot();
            recs.append(&mut snap.insights);
            traffic(&snap)
        });
        #[cfg(feature = "cache")]
        let cache = self.cache.as_ref().map(|h| h.stats().snapshot());
        #[cfg(feature = "cache")]
        if let Some(c) = &cache {
            recs.extend(low_hit_rate(c));
        }
        #[cfg(feature = "cache")]
        let queries = self
            .queries
            .as_ref()
            .map(crate::query_cache::QueryCache::stats);
        #[cfg(feature = "cache")]
        if let Some(q) = &queries {
            recs.extend(query_cache_findings(q));
        }
        #[cfg(feature = "compression")]
        let compression = self.compression();
        #[cfg(feature = "compression")]
        if let Some(c) = &compression {
            recs.extend(poor_ratio(c));
        }
        #[cfg(feature = "rate-limit")]
        let rate_limit = self.rate_limit();
        #[cfg(feature = "rate-limit")]
        if let Some(r) = &rate_limit {
            // Shadow mode lets limited and failed requests through: the
            // findings must not speak of answers never sent.
            recs.extend(rate_limit_info(r));
            if let Some(rec) = missing_address(r) {
                // First among the critical ones (the sort below is stable):
                // these 500s are also among timing's server errors, whose
                // advice can only point at the handler.
                recs.insert(0, rec);
            }
        }
        #[cfg(feature = "redis")]
        let redis = self.redis();
        #[cfg(feature = "redis")]
        if let Some(r) = &redis {
            recs.extend(redis_fallbacks(r));
        }
        recs.sort_by_key(|r| std::cmp::Reverse(r.severity));
        Summary {
            status: Status::of(recs.first().map(|r| r.severity)),
            generated_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            #[cfg(feature = "timing")]
            traffic,
            #[cfg(feature = "cache")]
            cache,
            #[cfg(feature = "cache")]
            cache_routes: self
                .cache
                .as_ref()
                .map(|h| h.stats().routes())
                .unwrap_or_default(),
            #[cfg(feature = "cache")]
            queries,
            #[cfg(feature = "compression")]
            compression,
            #[cfg(feature = "compression")]
            decompression: self.decompression.as_ref().map(|d| d.snapshot()),
            #[cfg(feature = "cache-control")]
            cache_control: self.cache_control.as_ref().map(|c| c.snapshot()),
            #[cfg(feature = "rate-limit")]
            rate_limit,
            #[cfg(feature = "tasks")]
            tasks: self.tasks.as_ref().map(crate::tasks::TasksHandle::stats),
            #[cfg(feature = "redis")]
            redis,
            recommendations: recs,
        }
    }

    #[cfg(feature = "compression")]
    pub(super) fn compression(&self) -> Option<crate::compression::CompressionSnapshot> {
        Some(self.compression.as_ref()?.snapshot())
    }

    #[cfg(feature = "rate-limit")]
    pub(super) fn rate_limit(&self) -> Option<crate::rate_limit::RateLimitSnapshot> {
        Some(self.rate_limit.as_ref()?.snapshot())
    }

    #[cfg(feature = "redis")]
    fn redis(&self) -> Option<RedisReport> {
        let queries = self.queries.as_ref().and_then(|q| q.stats().redis);
        if self.redis_rate_limit.is_none() && self.redis_cache.is_none() && queries.is_none() {
            return None;
        }
        Some(RedisReport {
            rate_limit: self.redis_rate_limit.as_ref().map(|s| s.snapshot()),
            cache: self.redis_cache.as_ref().map(|s| s.snapshot()),
            queries,
        })
    }
}

/// Overall and per-route traffic from a timing snapshot.
#[cfg(feature = "timing")]
fn traffic(snap: &crate::timing::TimingSnapshot) -> Traffic {
    let total = snap.overall_total.count;
    Traffic {
        total,
        window: snap.overall.count,
        uptime_secs: snap.uptime_secs,
        per_second: if snap.uptime_secs > 0.0 {
            total as f64 / snap.uptime_secs
        } else {
            0.0
        },
        overall: snap.overall.clone(),
        routes: snap
            .routes
            .iter()
            .map(|r| RouteLine {
                method: r.method.clone(),
                route: r.route.clone(),
                window: r.window.clone(),
            })
            .collect(),
    }
}

#[cfg(any(feature = "compression", feature = "rate-limit"))]
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// A cache that answers less than half of enough lookups.
#[cfg(feature = "cache")]
fn low_hit_rate(c: &crate::cache::CacheSnapshot) -> Option<Insight> {
    let lookups =
        c.hits + c.stale_served + c.misses + c.revalidated_not_modified + c.revalidated_modified;
    (lookups >= 100 && c.hit_rate < 0.5).then(|| Insight {
        severity: Severity::Warning,
        kind: "cache",
        route: None,
        message: format!("cache hit rate is {:.0}% over {lookups} lookups", c.hit_rate * 100.0),
        recommendation: "give cacheable routes a max-age (or s-maxage), and check that Vary lists only what the response depends on".into(),
    })
}

/// Lookups per namespace before its hit rate is judged.
#[cfg(feature = "cache")]
const QUERY_LOOKUPS: u64 = 100;

/// A mean load above this is called slow.
#[cfg(feature = "cache")]
const SLOW_LOAD_MS: f64 = 100.0;

/// Query cache namespaces that miss most of enough lookups, or whose loads
/// are slow.
#[cfg(feature = "cache")]
fn query_cache_findings(q: &crate::query_cache::QueryCacheSnapshot) -> Vec<Insight> {
    let mut out = Vec::new();
    for n in &q.namespaces {
        let lookups = n.hits + n.stale_hits + n.misses;
        if lookups >= QUERY_LOOKUPS && n.hit_rate < 0.5 {
            let evicting = n.evictions > n.loads / 4;
            out.push(Insight {
                severity: Severity::Warning,
                kind: "query_cache",
                route: None,
                message: format!(
                    "query cache namespace '{}' answers {:.0}% of {lookups} lookups ({} evictions, {} invalidations)",
                    n.namespace, n.hit_rate * 100.0, n.evictions, n.invalidated
                ),
                recommendation: if evicting {
                    "entries are evicted before they are used again: raise QueryCacheBuilder::max_bytes, or cache smaller values".into()
                } else {
                    "each key is rarely asked for twice within its TTL: lengthen the TTL, key on fewer parameters, or stop caching this namespace".into()
                },
            });
        }
        if n.loads >= 10 && n.mean_load_ms > SLOW_LOAD_MS {
            out.push(Insight {
                severity: Severity::Info,
                kind: "query_cache",
                route: None,
                message: format!(
                    "query cache namespace '{}' loads take {:.0} ms on average ({} loads)",
                    n.namespace, n.mean_load_ms, n.loads
                ),
                recommendation: "serve stale entries while they refresh (EntryOptions::stale_while_revalidate), lengthen the TTL, or speed up the query".into(),
            });
        }
    }
    out
}

/// Compression that hardly shrinks what it compresses.
#[cfg(feature = "compression")]
fn poor_ratio(c: &crate::compression::CompressionSnapshot) -> Option<Insight> {
    let (inp, out): (u64, u64) = c
        .codings()
        .fold((0, 0), |(i, o), (_, x)| (i + x.bytes_in, o + x.bytes_out));
    let n = c.compressed();
    (n >= 20 && ratio(out, inp) > 0.8).then(|| Insight {
        severity: Severity::Info,
        kind: "compression",
        route: None,
        message: format!(
            "compressed responses shrink only to {:.0}% of their size",
            ratio(out, inp) * 100.0
        ),
        recommendation:
            "exclude content types that are already compressed, or raise the minimum size".into(),
    })
}

/// Clients over their limits, named: information, never a warning (a 429
/// is the limiter doing its job, and the client's to handle).
#[cfg(feature = "rate-limit")]
fn rate_limit_info(r: &crate::rate_limit::RateLimitSnapshot) -> Option<Insight> {
    let shadow = r.shadow;
    let counted = r.allowed + r.limited;
    if counted < 50 || ratio(r.limited, counted) <= 0.1 {
        return None;
    }
    let mut which = String::new();
    if let Some(p) = r
        .policies
        .iter()
        .filter(|p| p.limited > 0)
        .max_by_key(|p| p.limited)
    {
        which = format!(
            "; policy '{}' limited {} of {}",
            p.name,
            p.limited,
            p.allowed + p.limited
        );
        if let Some(k) = r.most_limited.first() {
            which.push_str(&format!(
                ", key {} the most ({} under '{}')",
                k.key, k.limited, k.policy
            ));
        }
    }
    Some(Insight {
        severity: Severity::Info,
        kind: "rate_limit",
        route: None,
        message: format!(
            "{:.0}% of rate-limited requests {} ({} of {counted}{which})",
            ratio(r.limited, counted) * 100.0,
            if shadow {
                "were over a limit (let through: shadow mode)"
            } else {
                "got 429"
            },
            r.limited
        ),
        recommendation: "clients over a limit, not a server fault: one key far ahead is likely abusive; many normal clients limited mean the quota is too tight".into(),
    })
}

/// Requests the rate limiter answered 500 for lack of a client address:
/// the server's set-up, failing users now, with one fix to name. In shadow
/// mode they were let through: the same fix, before enforcing, a warning.
#[cfg(feature = "rate-limit")]
fn missing_address(r: &crate::rate_limit::RateLimitSnapshot) -> Option<Insight> {
    let shadow = r.shadow;
    let n = r.missing_key_failures;
    (n > 0).then(|| Insight {
        severity: if shadow {
            Severity::Warning
        } else {
            Severity::Critical
        },
        kind: "rate_limit",
        route: None,
        message: if shadow {
            format!(
                "{n} requests had no client address for the rate limiter to count them against \
                 (let through: shadow mode; each would be answered 500 once it enforces)"
            )
        } else {
            format!(
                "{n} requests were answered 500 by the rate limiter: they carried no client address to count them against"
            )
        },
        recommendation: "serve the app with `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())` \
            (or insert `tower_perf::rate_limit::PeerAddr` in each request) so the rate limiter sees each client's address; \
            or choose `.on_missing_peer_addr(MissingKey::Shared)` (one quota for all of them) or `MissingKey::Allow` on the RateLimitLayer".into(),
    })
}

/// Redis operations that fell back: the layers kept serving, without it.
#[cfg(feature = "redis")]
fn redis_fallbacks(r: &RedisReport) -> Option<Insight> {
    let falls = r.rate_limit.map_or(0, |s| s.fallbacks)
        + r.cache.map_or(0, |s| s.fallbacks)
        + r.queries.map_or(0, |s| s.errors + s.timeouts);
    (falls > 0).then(|| Insight {
        severity: Severity::Warning,
        kind: "redis",
        route: None,
        message: format!("{falls} operations fell back because Redis failed or was slow"),
        recommendation: "check Redis's health and latency; the layers keep serving meanwhile"
            .into(),
    })
}
