//! The JSON schema: what the endpoints answer (field names are the JSON
//! keys, except where a type's docs say how it serializes). A layer's
//! figures exist only in builds with its feature.

use serde::{Serialize, Serializer};

use crate::insight::{Insight, Severity};

/// Overall health, from the recommendations: the most severe wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing worth a warning.
    Healthy,
    /// Something worth fixing.
    Warning,
    /// Something hurting users now.
    Critical,
}

impl Status {
    /// The status that the most severe finding sets.
    pub(super) fn of(most_severe: Option<Severity>) -> Self {
        match most_severe {
            Some(Severity::Critical) => Status::Critical,
            Some(Severity::Warning) => Status::Warning,
            _ => Status::Healthy,
        }
    }
}

/// Traffic as the timing layer saw it.
#[cfg(feature = "timing")]
#[cfg_attr(docsrs, doc(cfg(feature = "timing")))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Traffic {
    /// Requests completed since start.
    pub total: u64,
    /// Requests completed in the rolling window (`overall.count`).
    pub window: u64,
    /// Seconds since the timing layer started.
    pub uptime_secs: f64,
    /// Mean requests per second since start.
    pub per_second: f64,
    /// Every request's figures over the window (in JSON, its fields sit
    /// beside the ones above: `error_rate`, `p99_ms`…).
    #[serde(flatten)]
    pub overall: crate::timing::Stats,
    /// Per route, over the window: the figures the dashboard draws.
    pub routes: Vec<RouteLine>,
}

/// One route's figures over the window.
#[cfg(feature = "timing")]
#[cfg_attr(docsrs, doc(cfg(feature = "timing")))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteLine {
    /// Request method.
    pub method: String,
    /// Route label.
    pub route: String,
    /// The route's figures over the window (in JSON, its fields sit beside
    /// `method` and `route`).
    #[serde(flatten)]
    pub window: crate::timing::Stats,
}

/// The Redis stores' figures.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedisReport {
    /// The rate-limit store, if configured.
    pub rate_limit: Option<crate::rate_limit::RedisStoreSnapshot>,
    /// The cache store, if configured.
    pub cache: Option<crate::cache::RedisCacheSnapshot>,
    /// The query cache's Redis tier, if configured.
    pub queries: Option<crate::query_cache::RedisTierSnapshot>,
}

/// `GET /performance/summary`. A layer's key is there when the crate is
/// built with its feature (`null` when the report reads no such layer).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The most severe level among the recommendations.
    pub status: Status,
    /// Seconds since the Unix epoch when this was made.
    pub generated_at: u64,
    /// Traffic, from the timing layer.
    #[cfg(feature = "timing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "timing")))]
    pub traffic: Option<Traffic>,
    /// The cache's figures.
    #[cfg(feature = "cache")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
    pub cache: Option<crate::cache::CacheSnapshot>,
    /// The cache's hit rates per route template, the busiest first
    /// (empty without axum's `MatchedPath`).
    #[cfg(feature = "cache")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
    pub cache_routes: Vec<crate::cache::RouteSnapshot>,
    /// The query cache's figures, per namespace.
    #[cfg(feature = "cache")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
    pub queries: Option<crate::query_cache::QueryCacheSnapshot>,
    /// The compression layer's figures.
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub compression: Option<crate::compression::CompressionSnapshot>,
    /// The request decompression layer's figures.
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub decompression: Option<crate::decompression::DecompressionSnapshot>,
    /// The cache-control layer's figures.
    #[cfg(feature = "cache-control")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cache-control")))]
    pub cache_control: Option<crate::cache_control::CacheControlSnapshot>,
    /// The rate limiter's figures.
    #[cfg(feature = "rate-limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
    pub rate_limit: Option<crate::rate_limit::RateLimitSnapshot>,
    /// The task layer's figures.
    #[cfg(feature = "tasks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tasks")))]
    pub tasks: Option<crate::tasks::TaskSnapshot>,
    /// The Redis stores' figures.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub redis: Option<RedisReport>,
    /// What stands out, most severe first: the timing layer's insights and
    /// the report's own findings about the other layers. In JSON each
    /// carries its severity as `level` and its kind as `area` (the keys
    /// the summary has always had; `/profile/insights` names them
    /// `severity` and `kind`).
    #[serde(serialize_with = "recommendations")]
    pub recommendations: Vec<Insight>,
}

/// The summary's recommendations, with the JSON keys it has always had.
fn recommendations<S: Serializer>(recs: &[Insight], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Recommendation<'a> {
        level: Severity,
        area: &'a str,
        route: &'a Option<String>,
        message: &'a str,
        recommendation: &'a str,
    }
    s.collect_seq(recs.iter().map(|i| Recommendation {
        level: i.severity,
        area: i.kind,
        route: &i.route,
        message: &i.message,
        recommendation: &i.recommendation,
    }))
}

/// `GET /performance/profile/overview`.
#[cfg(feature = "timing")]
#[cfg_attr(docsrs, doc(cfg(feature = "timing")))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileOverview {
    /// Length of the rolling window, in seconds.
    pub window_secs: f64,
    /// Seconds since start.
    pub uptime_secs: f64,
    /// All routes, over the window.
    pub overall: crate::timing::Stats,
    /// All routes, since start.
    pub overall_total: crate::timing::Stats,
    /// Per route.
    pub routes: Vec<crate::timing::RouteStats>,
    /// N+1 suspects.
    pub n_plus_one: Vec<crate::timing::NPlusOne>,
}
