//! The service: the path parsed once into an [`Endpoint`], then access
//! rules, then the answer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::body::{ReportBody, absent, error, json, respond};
use super::builder::{ReportBuilder, Sources};
use super::metrics;
use super::schema::Summary;
use crate::BoxError;

/// The dashboard page: HTML, CSS and JS in one answer, uPlot (vendored
/// under `uplot/`, MIT) inlined, so the page fetches nothing from
/// elsewhere.
static DASHBOARD: std::sync::LazyLock<bytes::Bytes> = std::sync::LazyLock::new(|| {
    bytes::Bytes::from(
        include_str!("dashboard.html")
            .replacen("/*UPLOT_CSS*/", include_str!("uplot/uPlot.min.css"), 1)
            .replacen("/*UPLOT_JS*/", include_str!("uplot/uPlot.iife.min.js"), 1),
    )
});

/// What a request's path names: every route of the report, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// Answered to GET and HEAD.
    Read(Read),
    /// Answered to POST with the token.
    Mutation(Mutation),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Index,
    History,
    Summary,
    Dashboard,
    Metrics,
    CompressionStats,
    DecompressionStats,
    RateLimitStats,
    CacheStats,
    CacheRoutes,
    CacheQueries,
    Profile(Profile),
}

/// The timing layer's endpoints, under `/profile/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    Overview,
    Slowest,
    Insights,
    SlowRequests,
}

/// Which mutation a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mutation {
    /// `/cache/clear`: every entry.
    Clear,
    /// `/cache/purge`: what the [`PurgeRequest`](super::PurgeRequest) names.
    Purge,
}

impl Endpoint {
    /// The endpoint at `route`, the path relative to the base.
    fn parse(route: &str) -> Option<Self> {
        Some(match route {
            "/" => Self::Read(Read::Index),
            "/history" => Self::Read(Read::History),
            "/summary" => Self::Read(Read::Summary),
            "/dashboard" | "/dashboard/" => Self::Read(Read::Dashboard),
            "/metrics" => Self::Read(Read::Metrics),
            "/compression/stats" => Self::Read(Read::CompressionStats),
            "/decompression/stats" => Self::Read(Read::DecompressionStats),
            "/rate-limit/stats" => Self::Read(Read::RateLimitStats),
            "/cache/stats" => Self::Read(Read::CacheStats),
            "/cache/routes" => Self::Read(Read::CacheRoutes),
            "/cache/queries" => Self::Read(Read::CacheQueries),
            "/profile/overview" => Self::Read(Read::Profile(Profile::Overview)),
            "/profile/slowest" => Self::Read(Read::Profile(Profile::Slowest)),
            "/profile/insights" => Self::Read(Read::Profile(Profile::Insights)),
            "/profile/slow-requests" => Self::Read(Read::Profile(Profile::SlowRequests)),
            "/cache/clear" => Self::Mutation(Mutation::Clear),
            "/cache/purge" => Self::Mutation(Mutation::Purge),
            _ => return None,
        })
    }
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) sources: Sources,
    pub(super) token: Option<String>,
    pub(super) protect_reads: bool,
    pub(super) base: String,
    /// The history's rings, when kept.
    pub(super) history: Option<super::history::Recorder>,
    /// The history's sampler (started on the first request made on a
    /// tokio runtime, or when the report is built on one; started again
    /// if that runtime is gone).
    pub(super) sampler: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Whether [`Report::register_otel`] ran.
    #[cfg(feature = "otel")]
    pub(super) otel_registered: std::sync::atomic::AtomicBool,
}

/// The performance endpoints as a Tower service. See the
/// [module docs](crate::report).
#[derive(Debug, Clone)]
pub struct Report {
    pub(super) inner: Arc<Inner>,
}

impl Report {
    /// A builder with no layer attached, no token, base `/performance`.
    pub fn builder() -> ReportBuilder {
        ReportBuilder::new()
    }

    pub(super) fn new(inner: Inner) -> Self {
        let report = Report {
            inner: Arc::new(inner),
        };
        report.start_sampling();
        report
    }

    /// Starts the history's sampler, if there is a history, a tokio
    /// runtime to run it on, and no sampler running (a sampler whose
    /// runtime shut down is replaced). It reads the layers every step until
    /// the last clone of the report is dropped.
    fn start_sampling(&self) {
        let Some(history) = &self.inner.history else {
            return;
        };
        let mut sampler = self
            .inner
            .sampler
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if sampler.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let step = history.step();
        let weak = Arc::downgrade(&self.inner);
        // The first sample now: the first point is a step away.
        history.sample(&self.inner.sources);
        *sampler = Some(runtime.spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + step, step);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if let Some(h) = &inner.history {
                    h.sample(&inner.sources);
                }
            }
        }));
    }

    /// An axum router serving this report under its base path, as three
    /// routes (`{base}`, `{base}/` and `{base}/{*endpoint}`) rather than
    /// `nest_service`: a route gives its requests a route template
    /// (axum's `MatchedPath`), which timing and the cache label them by and
    /// the history leaves out. `nest_service` sets none, so a dashboard's
    /// polling would count as traffic. Merge it into your app:
    /// `app.merge(report.routes())`.
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        let base = &self.inner.base;
        let router = axum::Router::new();
        if base.is_empty() {
            return router
                .route_service("/", self.clone())
                .route_service("/{*endpoint}", self.clone());
        }
        router
            .route_service(base, self.clone())
            .route_service(&format!("{base}/"), self.clone())
            .route_service(&format!("{base}/{{*endpoint}}"), self.clone())
    }

    /// The history, as `GET {base}/history` serves it (`None`: the report
    /// keeps none). Points come one step after the report is built on (or
    /// first serves a request on) a tokio runtime.
    pub fn history(
        &self,
        resolution: super::HistoryResolution,
        since_ms: Option<u64>,
    ) -> Option<super::History> {
        Some(self.inner.history.as_ref()?.read(resolution, since_ms))
    }

    /// The summary, as `GET /performance/summary` serves it.
    pub fn summary(&self) -> Summary {
        self.inner.sources.summary()
    }

    /// The Prometheus text `GET /metrics` serves.
    pub fn prometheus(&self) -> String {
        metrics::render(&self.inner.sources)
    }
}

impl<B> Service<Request<B>> for Report
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ReportBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ReportBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.start_sampling();
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let method = req.method();
            #[cfg(feature = "tasks")]
            if let Some(t) = super::tasks::TaskEndpoint::parse(inner.route(req.uri().path())) {
                let (parts, _) = req.into_parts();
                return Ok(inner.tasks(t, &parts).await);
            }
            match Endpoint::parse(inner.route(req.uri().path())) {
                None => Ok(error(StatusCode::NOT_FOUND, "no such endpoint")),
                Some(Endpoint::Mutation(mutation)) => {
                    if let Some(refused) = inner.refuse_mutation(method, req.headers()) {
                        return Ok(refused);
                    }
                    Ok(inner.mutate(mutation, req).await)
                }
                Some(Endpoint::Read(read)) => {
                    if method != Method::GET && method != Method::HEAD {
                        let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
                        r.headers_mut()
                            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                        return Ok(r);
                    }
                    if inner.protect_reads && !inner.authorized(req.headers()) {
                        return Ok(inner.unauthorized());
                    }
                    // HEAD keeps the body: the server drops it, and the layers
                    // outside (compression, ETags) decide from it exactly as for
                    // GET, so both get the same header fields.
                    Ok(inner.read(read, req.headers(), req.uri().query()))
                }
            }
        })
    }
}

impl Inner {
    /// The path relative to the base (`/summary`), or `/metrics`.
    fn route<'p>(&self, path: &'p str) -> &'p str {
        match path.strip_prefix(self.base.as_str()) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                if rest.is_empty() {
                    "/"
                } else {
                    rest
                }
            }
            _ => path,
        }
    }

    pub(super) fn authorized(&self, headers: &http::HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return false;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, cred) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| cred.trim())
            })
            // Compare without an early exit on the first differing byte.
            .is_some_and(|cred| {
                cred.len() == token.len()
                    && cred
                        .bytes()
                        .zip(token.bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
            })
    }

    pub(super) fn unauthorized(&self) -> Response<ReportBody> {
        let mut r = error(StatusCode::UNAUTHORIZED, "a bearer token is required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tower-perf\""),
        );
        r
    }

    /// The answer refusing a mutation, unless it comes with POST and the
    /// token (none is configured: mutations are disabled).
    fn refuse_mutation(
        &self,
        method: &Method,
        headers: &http::HeaderMap,
    ) -> Option<Response<ReportBody>> {
        if method != Method::POST {
            let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return Some(r);
        }
        self.refuse_without_token(headers, "cache mutations")
    }

    /// The answer refusing a request without the token (`what` names it
    /// when none is configured, and it is disabled).
    pub(super) fn refuse_without_token(
        &self,
        headers: &http::HeaderMap,
        what: &str,
    ) -> Option<Response<ReportBody>> {
        if self.token.is_none() {
            let why = format!("{what}: disabled, no token is configured");
            return Some(error(StatusCode::FORBIDDEN, &why));
        }
        (!self.authorized(headers)).then(|| self.unauthorized())
    }

    /// Runs an authorized mutation.
    #[cfg(feature = "cache")]
    async fn mutate<B>(&self, mutation: Mutation, req: Request<B>) -> Response<ReportBody>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        match &self.sources.cache {
            Some(handle) => super::purge::mutate(handle, mutation, req).await,
            None => absent("cache"),
        }
    }

    /// Without the cache compiled in, there is nothing to mutate.
    #[cfg(not(feature = "cache"))]
    async fn mutate<B>(&self, _: Mutation, _: Request<B>) -> Response<ReportBody> {
        absent("cache")
    }

    /// Answers a GET (or HEAD).
    fn read(
        &self,
        read: Read,
        headers: &http::HeaderMap,
        query: Option<&str>,
    ) -> Response<ReportBody> {
        let s = &self.sources;
        match read {
            Read::Index => self.index(headers),
            Read::History => match &self.history {
                Some(h) => match super::history::Query::parse(query) {
                    Ok(q) => json(StatusCode::OK, &h.read(q.resolution, q.since)),
                    Err(why) => error(StatusCode::BAD_REQUEST, why),
                },
                None => error(
                    StatusCode::NOT_FOUND,
                    "this report keeps no history (ReportBuilder::history_interval(None))",
                ),
            },
            Read::Summary => json(StatusCode::OK, &s.summary()),
            Read::Dashboard => respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                DASHBOARD.clone(),
            ),
            Read::Metrics => respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics::render(s),
            ),
            Read::CompressionStats => {
                #[cfg(feature = "compression")]
                if let Some(c) = s.compression() {
                    return json(StatusCode::OK, &c);
                }
                absent("compression")
            }
            Read::DecompressionStats => {
                #[cfg(feature = "compression")]
                if let Some(d) = &s.decompression {
                    return json(StatusCode::OK, &d.snapshot());
                }
                absent("decompression")
            }
            Read::RateLimitStats => {
                #[cfg(feature = "rate-limit")]
                if let Some(r) = s.rate_limit() {
                    return json(StatusCode::OK, &r);
                }
                absent("rate-limit")
            }
            Read::CacheStats => {
                #[cfg(feature = "cache")]
                if let Some(h) = &s.cache {
                    return json(StatusCode::OK, &h.stats().snapshot());
                }
                absent("cache")
            }
            Read::CacheRoutes => {
                #[cfg(feature = "cache")]
                if let Some(h) = &s.cache {
                    return json(StatusCode::OK, &h.stats().routes());
                }
                absent("cache")
            }
            Read::CacheQueries => {
                #[cfg(feature = "cache")]
                if let Some(q) = &s.queries {
                    return json(StatusCode::OK, &q.stats());
                }
                absent("query cache")
            }
            #[cfg(feature = "timing")]
            Read::Profile(profile) => match &s.timing {
                Some(t) => timing_endpoint(t, profile),
                None => absent("timing"),
            },
            #[cfg(not(feature = "timing"))]
            Read::Profile(_) => absent("timing"),
        }
    }
}

/// Answers one of the timing layer's endpoints.
#[cfg(feature = "timing")]
fn timing_endpoint(timing: &crate::timing::TimingStats, profile: Profile) -> Response<ReportBody> {
    let snap = timing.snapshot();
    match profile {
        Profile::Overview => json(
            StatusCode::OK,
            &super::schema::ProfileOverview {
                window_secs: snap.window_secs,
                uptime_secs: snap.uptime_secs,
                overall: snap.overall,
                overall_total: snap.overall_total,
                routes: snap.routes,
                n_plus_one: snap.n_plus_one,
            },
        ),
        Profile::Slowest => json(StatusCode::OK, &snap.slowest(10)),
        Profile::Insights => json(StatusCode::OK, &snap.insights),
        Profile::SlowRequests => json(StatusCode::OK, &snap.slow_requests),
    }
}

#[cfg(test)]
mod tests {
    use super::{Endpoint, Mutation, Profile, Read};

    #[test]
    fn every_route_parses_to_its_endpoint() {
        let routes = [
            ("/summary", Endpoint::Read(Read::Summary)),
            ("/", Endpoint::Read(Read::Index)),
            ("/history", Endpoint::Read(Read::History)),
            ("/dashboard", Endpoint::Read(Read::Dashboard)),
            ("/dashboard/", Endpoint::Read(Read::Dashboard)),
            ("/metrics", Endpoint::Read(Read::Metrics)),
            ("/compression/stats", Endpoint::Read(Read::CompressionStats)),
            (
                "/decompression/stats",
                Endpoint::Read(Read::DecompressionStats),
            ),
            ("/rate-limit/stats", Endpoint::Read(Read::RateLimitStats)),
            ("/cache/stats", Endpoint::Read(Read::CacheStats)),
            ("/cache/routes", Endpoint::Read(Read::CacheRoutes)),
            (
                "/profile/overview",
                Endpoint::Read(Read::Profile(Profile::Overview)),
            ),
            (
                "/profile/slowest",
                Endpoint::Read(Read::Profile(Profile::Slowest)),
            ),
            (
                "/profile/insights",
                Endpoint::Read(Read::Profile(Profile::Insights)),
            ),
            (
                "/profile/slow-requests",
                Endpoint::Read(Read::Profile(Profile::SlowRequests)),
            ),
            ("/cache/clear", Endpoint::Mutation(Mutation::Clear)),
            ("/cache/purge", Endpoint::Mutation(Mutation::Purge)),
        ];
        for (route, endpoint) in routes {
            assert_eq!(Endpoint::parse(route), Some(endpoint), "{route}");
        }
        for route in ["", "/profile/", "/profile/other", "/summary/", "/cache"] {
            assert_eq!(Endpoint::parse(route), None, "{route}");
        }
    }
}
