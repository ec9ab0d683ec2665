//! The builder: [`TimingLayer`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{Extensions, Method, Uri};
use tower_layer::Layer;

use super::registry::{Registry, RegistryConfig};
use super::service::{Settings, Timing};
use super::stats::TimingStats;
use crate::clock::Clock;

/// Maps a request to a route label when axum's `MatchedPath` is absent.
pub type Classifier = Arc<dyn Fn(&Method, &Uri, &Extensions) -> Option<String> + Send + Sync>;

/// Records how long each request takes, per route, until its response body
/// ends.
///
/// See the [module docs](crate::timing).
#[derive(Clone)]
pub struct TimingLayer {
    config: RegistryConfig,
    pub(super) classifier: Option<Classifier>,
    /// What this layer's services record into.
    pub(super) registry: Arc<Registry>,
    /// What [`stats`](Self::stats) hands out: kept through builder calls,
    /// pointed at each new registry.
    stats: TimingStats,
    /// Held by this layer and its clones only (not by services or
    /// handles): tells a builder call whether a clone lives on, and
    /// whether the registry was handed to a service (`true`: the handles
    /// taken so far must stay with the services).
    clones: Arc<AtomicBool>,
    pub(super) sub_timings: bool,
    pub(super) server_timing: Option<Arc<[Box<str>]>>,
    #[cfg(feature = "otel")]
    pub(super) otel: Option<Arc<super::otel::Instruments>>,
    #[cfg(feature = "otel")]
    meter: Option<opentelemetry::metrics::Meter>,
    #[cfg(feature = "otel")]
    scheme: &'static str,
}

impl std::fmt::Debug for TimingLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimingLayer")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Default for TimingLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl TimingLayer {
    /// A 24-hour window in 96 slots of 15 minutes, at most 200 routes, slow
    /// requests from 1 s (the last 100 kept).
    pub fn new() -> Self {
        let config = RegistryConfig {
            clock: None,
            window: Duration::from_secs(24 * 3600),
            slots: 96,
            max_routes: 200,
            slow_threshold: Some(Duration::from_secs(1)),
            slow_cap: 100,
            n_plus_one: 10,
            p99_target: Duration::from_millis(100),
            error_rate_target: 0.01,
        };
        let registry = Arc::new(Registry::new(config.clone()));
        Self {
            stats: TimingStats::new(registry.clone()),
            clones: Arc::default(),
            registry,
            config,
            classifier: None,
            sub_timings: false,
            server_timing: None,
            #[cfg(feature = "otel")]
            otel: None,
            #[cfg(feature = "otel")]
            meter: None,
            #[cfg(feature = "otel")]
            scheme: "http",
        }
    }

    /// Starts the statistics anew for the changed configuration; the
    /// handles taken so far follow.
    fn rebuild(mut self) -> Self {
        let registry = Arc::new(Registry::new(self.config.clone()));
        if self.clones.load(Ordering::Acquire) || Arc::strong_count(&self.clones) > 1 {
            // Services made already, or a clone that lives on, keep the
            // handles taken so far; this layer, now a different one,
            // records apart. (The clone count errs on the safe side: a
            // clone dropped meanwhile on another thread only makes this
            // layer record apart.)
            self.clones = Arc::default();
            self.stats = TimingStats::new(registry.clone());
        } else {
            self.stats.attach(registry.clone());
        }
        self.registry = registry;
        self
    }

    /// The rolling window and how many slots it is kept in (it rolls one
    /// slot at a time).
    pub fn window(mut self, window: Duration, slots: u32) -> Self {
        self.config.window = window;
        self.config.slots = slots.max(1);
        self.rebuild()
    }

    /// At most this many (method, route) pairs are tracked; later ones fold
    /// into the label `other`.
    pub fn max_routes(mut self, n: usize) -> Self {
        self.config.max_routes = n;
        self.rebuild()
    }

    /// Requests at least this slow are kept in the slow-request ring (`None`
    /// turns it off).
    pub fn slow_threshold(mut self, threshold: Option<Duration>) -> Self {
        self.config.slow_threshold = threshold;
        self.rebuild()
    }

    /// How many slow requests are kept.
    pub fn slow_requests_kept(mut self, n: usize) -> Self {
        self.config.slow_cap = n;
        self.rebuild()
    }

    /// Labels requests that carry no axum `MatchedPath`. Return a route
    /// template, never the raw path: every distinct label is a series.
    pub fn classifier<F>(mut self, f: F) -> Self
    where
        F: Fn(&Method, &Uri, &Extensions) -> Option<String> + Send + Sync + 'static,
    {
        self.classifier = Some(Arc::new(f));
        self
    }

    /// A route whose requests record at least this many spans of one name
    /// (default 10) is reported as an N+1 suspect; spans named
    /// `cache.hit:…` (the query cache's answers from
    /// memory) are not, since a cached repetition costs no query.
    pub fn n_plus_one_threshold(mut self, spans: u32) -> Self {
        self.config.n_plus_one = spans;
        self.rebuild()
    }

    /// The p99 a route should stay under (default 100 ms); routes over it
    /// get an insight.
    pub fn p99_target(mut self, target: Duration) -> Self {
        self.config.p99_target = target;
        self.rebuild()
    }

    /// The server error rate (5xx, inner-service errors and failed bodies
    /// over requests) a route should stay under (default 0.01, i.e. 1%).
    /// 4xx answers are the client's and never count against it.
    pub fn error_rate_target(mut self, rate: f64) -> Self {
        self.config.error_rate_target = rate;
        self.rebuild()
    }

    /// Whether handlers get a [`Timings`](super::Timings) extension to
    /// record sub-timings. Off by default: the extension costs about as much
    /// as the rest of the layer together (two allocations a request;
    /// BENCHMARKS.md).
    pub fn sub_timings(mut self, on: bool) -> Self {
        self.sub_timings = on;
        self
    }

    /// Sends a W3C `Server-Timing` header with `total` (the time to the
    /// response head) and the sub-timings whose names are in `allow`. Off by
    /// default: it tells clients about internals.
    pub fn server_timing<I, N>(mut self, allow: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        let names: Vec<Box<str>> = allow
            .into_iter()
            .map(|n| n.into().into_boxed_str())
            .collect();
        self.server_timing = Some(names.into());
        self
    }

    /// Also records into OpenTelemetry instruments made from `meter`
    /// (feature `otel`), as the stable HTTP semantic conventions name them:
    ///
    /// - `http.server.request.duration` (histogram, `s`, the advised
    ///   buckets 0.005 s … 10 s): from arrival to the end of the response
    ///   body; a response dropped before its end is not recorded (as in
    ///   the statistics);
    /// - `http.server.active_requests` (up-down counter, `{request}`,
    ///   attributes `http.request.method` and `url.scheme`): lowered when
    ///   the request ends or is dropped;
    /// - `http.server.request.body.size` (histogram, `By`): requests whose
    ///   body size was known on arrival (`Content-Length`, or an exact size
    ///   hint);
    /// - `http.server.response.body.size` (histogram, `By`): the bytes this
    ///   layer passed on.
    ///
    /// Attributes: `http.request.method` (unknown methods are `_OTHER`),
    /// `url.scheme` (the URI's, else [`url_scheme`](Self::url_scheme)),
    /// `http.route` (the route label; absent for `unmatched` and `other`),
    /// `http.response.status_code` (absent when the inner service failed and
    /// no response was sent), and `error.type`: the status code of a 5xx,
    /// `_OTHER` for a failed body or no response, absent for anything else
    /// (a 4xx is the client's).
    ///
    /// The layer's own statistics and Prometheus text are kept as well.
    #[cfg(feature = "otel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
    pub fn meter(mut self, meter: &opentelemetry::metrics::Meter) -> Self {
        self.otel = Some(super::otel::Instruments::new(meter, self.scheme));
        self.meter = Some(meter.clone());
        self
    }

    /// The `url.scheme` OpenTelemetry records for requests whose URI names
    /// none (a server sees `/path`, not `https://host/path`): `http` by
    /// default; say `https` when the server terminates TLS. Only `http` and
    /// `https` are taken; anything else panics, as a misconfiguration.
    #[cfg(feature = "otel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
    pub fn url_scheme(mut self, scheme: &str) -> Self {
        self.scheme = match scheme {
            "http" => "http",
            "https" => "https",
            other => panic!("TimingLayer::url_scheme: {other:?} is neither \"http\" nor \"https\""),
        };
        if let Some(meter) = &self.meter {
            self.otel = Some(super::otel::Instruments::new(meter, self.scheme));
        }
        self
    }

    /// Replaces the clock (tests move time with it).
    pub fn clock<C: Clock>(mut self, clock: C) -> Self {
        self.config.clock = Some(Arc::new(clock));
        self.rebuild()
    }

    /// A handle to the statistics, shared by every service this layer
    /// builds.
    ///
    /// A handle follows the layer until the layer wraps a service; builder
    /// calls after that start new statistics for the new layer. So a handle
    /// taken before [`window`](Self::window) or [`clock`](Self::clock) still
    /// reads what the finished layer's services record, and a handle taken
    /// from a layer that already serves stays with those services whatever
    /// the layer becomes next. A clone changed by a builder call while the
    /// original lives on is a different layer too: it records apart, and
    /// the handles taken from the original stay with the original.
    pub fn stats(&self) -> TimingStats {
        self.stats.clone()
    }
}

impl<S> Layer<S> for TimingLayer {
    type Service = Timing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.clones.store(true, Ordering::Release);
        let settings = Settings::new(self);
        Timing::with_settings(inner, &settings)
    }
}
