//! The builder: which layers' statistics a report reads, and its access
//! rules.

use super::service::{Inner, Report};

/// The statistics handles a [`Report`] reads.
#[derive(Debug, Default, Clone)]
pub(super) struct Sources {
    #[cfg(feature = "cache")]
    pub(super) cache: Option<crate::cache::CacheHandle>,
    #[cfg(feature = "cache")]
    pub(super) queries: Option<crate::query_cache::QueryCache>,
    #[cfg(feature = "compression")]
    pub(super) compression: Option<crate::compression::CompressionStats>,
    #[cfg(feature = "compression")]
    pub(super) decompression: Option<crate::decompression::DecompressionStats>,
    #[cfg(feature = "cache-control")]
    pub(super) cache_control: Option<crate::cache_control::CacheControlStats>,
    #[cfg(feature = "rate-limit")]
    pub(super) rate_limit: Option<crate::rate_limit::RateLimitStats>,
    #[cfg(feature = "timing")]
    pub(super) timing: Option<crate::timing::TimingStats>,
    #[cfg(feature = "tasks")]
    pub(super) tasks: Option<crate::tasks::TasksHandle>,
    #[cfg(feature = "redis")]
    pub(super) redis_rate_limit: Option<crate::rate_limit::RedisStoreStats>,
    #[cfg(feature = "redis")]
    pub(super) redis_cache: Option<crate::cache::RedisCacheStats>,
}

/// Builds a [`Report`].
#[derive(Debug, Clone)]
pub struct ReportBuilder {
    sources: Sources,
    token: Option<String>,
    protect_reads: bool,
    base: String,
    history: Option<std::time::Duration>,
}

impl ReportBuilder {
    /// No layer attached, no token, base `/performance`.
    pub(super) fn new() -> Self {
        ReportBuilder {
            sources: Sources::default(),
            token: None,
            protect_reads: false,
            base: "/performance".to_owned(),
            history: Some(std::time::Duration::from_secs(10)),
        }
    }

    /// Reads and purges this cache.
    #[cfg(feature = "cache")]
    pub fn cache(mut self, handle: crate::cache::CacheHandle) -> Self {
        self.sources.cache = Some(handle);
        self
    }

    /// Reads this query cache's counters (`/cache/queries`, the summary,
    /// Prometheus, the dashboard).
    #[cfg(feature = "cache")]
    pub fn query_cache(mut self, cache: &crate::query_cache::QueryCache) -> Self {
        self.sources.queries = Some(cache.clone());
        self
    }
    /// Reads this compression layer's statistics.
    #[cfg(feature = "compression")]
    pub fn compression(mut self, stats: crate::compression::CompressionStats) -> Self {
        self.sources.compression = Some(stats);
        self
    }
    /// Reads this request decompression layer's statistics.
    #[cfg(feature = "compression")]
    pub fn decompression(mut self, stats: crate::decompression::DecompressionStats) -> Self {
        self.sources.decompression = Some(stats);
        self
    }
    /// Reads this cache-control layer's statistics.
    #[cfg(feature = "cache-control")]
    pub fn cache_control(mut self, stats: crate::cache_control::CacheControlStats) -> Self {
        self.sources.cache_control = Some(stats);
        self
    }
    /// Reads this rate limiter's statistics.
    #[cfg(feature = "rate-limit")]
    pub fn rate_limit(mut self, stats: crate::rate_limit::RateLimitStats) -> Self {
        self.sources.rate_limit = Some(stats);
        self
    }
    /// Reads this timing layer's statistics.
    #[cfg(feature = "timing")]
    pub fn timing(mut self, stats: crate::timing::TimingStats) -> Self {
        self.sources.timing = Some(stats);
        self
    }
    /// Serves this task layer's monitors under `/tasks` (list, status,
    /// result, cancel) and reads its statistics.
    #[cfg(feature = "tasks")]
    pub fn tasks(mut self, handle: crate::tasks::TasksHandle) -> Self {
        self.sources.tasks = Some(handle);
        self
    }
    /// Reads a Redis rate-limit store's counters.
    #[cfg(feature = "redis")]
    pub fn redis_rate_limit(mut self, stats: crate::rate_limit::RedisStoreStats) -> Self {
        self.sources.redis_rate_limit = Some(stats);
        self
    }
    /// Reads a Redis cache store's counters.
    #[cfg(feature = "redis")]
    pub fn redis_cache(mut self, stats: crate::cache::RedisCacheStats) -> Self {
        self.sources.redis_cache = Some(stats);
        self
    }
    /// The bearer token mutations need (none: mutations are disabled).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        let t = token.into();
        self.token = (!t.is_empty()).then_some(t);
        self
    }
    /// Reads need the token too (default: they don't).
    pub fn protect_reads(mut self, on: bool) -> Self {
        self.protect_reads = on;
        self
    }
    /// The path the endpoints live under (default `/performance`).
    pub fn base_path(mut self, base: &str) -> Self {
        self.base = base.trim_end_matches('/').to_owned();
        self
    }
    /// How often the history takes a point (default 10 s; `None` keeps
    /// no history). It keeps two resolutions: this step, for the last hour
    /// (720 points at most), and six steps, for the last day (1,440 at
    /// most). The sampler is a tokio task, started when the report is built
    /// on a tokio runtime or first serves a request.
    ///
    /// # Panics
    ///
    /// On a step under 100 ms (the rings would cover too little to read)
    /// or over an hour (the last hour would be one point).
    pub fn history_interval(mut self, step: Option<std::time::Duration>) -> Self {
        if let Some(s) = step {
            assert!(
                s >= std::time::Duration::from_millis(100)
                    && s <= std::time::Duration::from_secs(3600),
                "ReportBuilder::history_interval({s:?}): use 100 ms to 1 hour (10 s is the default)"
            );
        }
        self.history = step;
        self
    }

    /// The service.
    ///
    /// # Panics
    ///
    /// With [`tasks`](Self::tasks), when the task layer's
    /// [`monitor_path`](crate::tasks::AsyncLayer::monitor_path) isn't
    /// `{base}/tasks`: the `Location` of every `202` would name a page
    /// this report doesn't serve.
    pub fn build(self) -> Report {
        #[cfg(feature = "tasks")]
        if let Some(tasks) = &self.sources.tasks {
            let served = format!("{}/tasks", self.base);
            assert!(
                tasks.monitor_path() == served,
                "the task layer's monitors are at {} but this report serves them at {served}: set AsyncLayer::monitor_path({served:?}) or the report's base_path to match",
                tasks.monitor_path()
            );
        }
        Report::new(Inner {
            history: self
                .history
                .map(|step| super::history::Recorder::new(step, &self.base)),
            sources: self.sources,
            token: self.token,
            protect_reads: self.protect_reads,
            base: self.base,
            sampler: std::sync::Mutex::new(None),
            #[cfg(feature = "otel")]
            otel_registered: std::sync::atomic::AtomicBool::new(false),
        })
    }
}
