use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Extensions, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::registry::{Cell, Clock, End, Registry, RegistryConfig, UNMATCHED};
use super::spans::Timings;

const SERVER_TIMING: http::HeaderName = http::HeaderName::from_static("server-timing");

/// The W3C Server-Timing value: `total` (arrival to response head) and the
/// allowed sub-timings (`db;dur=4.2;desc="3"`, the count as description).
fn server_timing(g: &Guard, allow: &[Box<str>]) -> Option<http::HeaderValue> {
    use std::fmt::Write;
    let total = Duration::from_nanos(g.cell.now().saturating_sub(g.start));
    let mut v = format!("total;dur={:.3}", total.as_secs_f64() * 1000.0);
    if let Some(t) = &g.timings {
        for agg in t.aggregates() {
            let allowed = allow.iter().any(|a| **a == *agg.name);
            let token = !agg.name.is_empty() && agg.name.bytes().all(crate::headers::is_tchar);
            if allowed && token {
                let _ = write!(
                    v,
                    ", {};dur={:.3};desc=\"{}\"",
                    agg.name,
                    agg.total.as_secs_f64() * 1000.0,
                    agg.count
                );
            }
        }
    }
    http::HeaderValue::try_from(v).ok()
}
use super::snapshot::TimingStats;

/// Maps a request to a route label when axum's `MatchedPath` is absent.
pub type Classifier = Arc<dyn Fn(&Method, &Uri, &Extensions) -> Option<String> + Send + Sync>;

/// Records how long each request takes, per route, until its response body
/// ends.
///
/// See the [module docs](crate::timing).
#[derive(Clone)]
pub struct TimingLayer {
    config: RegistryConfig,
    classifier: Option<Classifier>,
    registry: Arc<Registry>,
    sub_timings: bool,
    server_timing: Option<Arc<[Box<str>]>>,
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
        Self {
            registry: Arc::new(Registry::new(config.clone())),
            config,
            classifier: None,
            sub_timings: false,
            server_timing: None,
        }
    }

    fn rebuild(mut self) -> Self {
        self.registry = Arc::new(Registry::new(self.config.clone()));
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
    /// (default 10) is reported as an N+1 suspect.
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

    /// Whether handlers get a [`Timings`] extension to record sub-timings.
    /// Off by default: the extension costs about as much as the rest of the
    /// layer together (two allocations a request; BENCHMARKS.md).
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

    /// Replaces the clock (tests move time with it).
    pub fn clock<C: Clock>(mut self, clock: C) -> Self {
        self.config.clock = Some(Arc::new(clock));
        self.rebuild()
    }

    /// A handle to the statistics, shared by every service this layer
    /// builds.
    pub fn stats(&self) -> TimingStats {
        TimingStats {
            registry: self.registry.clone(),
        }
    }
}

impl<S> Layer<S> for TimingLayer {
    type Service = Timing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let settings = Arc::new(Settings {
            id: NEXT_SETTINGS.fetch_add(1, Ordering::Relaxed),
            registry: self.registry.clone(),
            classifier: self.classifier.clone(),
            sub_timings: self.sub_timings,
            server_timing: self.server_timing.clone(),
        });
        Timing {
            inner,
            local: Local::for_this_thread(&settings),
        }
    }
}

/// What every clone of a [`Timing`] service uses.
struct Settings {
    id: u64,
    registry: Arc<Registry>,
    classifier: Option<Classifier>,
    sub_timings: bool,
    server_timing: Option<Arc<[Box<str>]>>,
}

static NEXT_SETTINGS: AtomicU64 = AtomicU64::new(0);

/// A thread's own reference to the settings.
///
/// axum clones a route's service for every request. If every clone
/// incremented one shared reference count, all requests on all threads
/// would fight over that counter's cache line (about 150–280 ns a request
/// on two cores). A clone instead takes the handle of the thread it runs
/// on, whose count only that thread touches. Each thread keeps its handles
/// (one per layer it has served) until it exits.
struct Local {
    settings: Arc<Settings>,
}

thread_local! {
    static LOCALS: RefCell<Vec<(u64, Arc<Local>)>> = const { RefCell::new(Vec::new()) };
}

impl Local {
    fn for_this_thread(settings: &Arc<Settings>) -> Arc<Self> {
        let found = LOCALS.with(|l| {
            l.borrow()
                .iter()
                .find(|(id, _)| *id == settings.id)
                .map(|(_, h)| h.clone())
        });
        if let Some(h) = found {
            return h;
        }
        let handle = Arc::new(Self {
            settings: settings.clone(),
        });
        let _ = LOCALS.try_with(|l| {
            let mut l = l.borrow_mut();
            if l.len() >= 64 {
                // Forget handles nobody else holds any more.
                l.retain(|(_, h)| Arc::strong_count(h) > 1);
            }
            l.push((settings.id, handle.clone()));
        });
        handle
    }
}

/// The service [`TimingLayer`] builds.
pub struct Timing<S> {
    inner: S,
    local: Arc<Local>,
}

impl<S: Clone> Clone for Timing<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            local: Local::for_this_thread(&self.local.settings),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Timing<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timing")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Timing<S> {
    crate::macros::define_inner_service_accessors!();
}

fn label<'a, B>(req: &'a Request<B>, classifier: Option<&Classifier>) -> std::borrow::Cow<'a, str> {
    #[cfg(feature = "axum")]
    if let Some(p) = req.extensions().get::<axum::extract::MatchedPath>() {
        return std::borrow::Cow::Borrowed(p.as_str());
    }
    if let Some(c) = classifier {
        if let Some(l) = c(req.method(), req.uri(), req.extensions()) {
            return std::borrow::Cow::Owned(l);
        }
    }
    std::borrow::Cow::Borrowed(UNMATCHED)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Timing<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let settings = &self.local.settings;
        let start = settings.registry.now();
        let cell = settings
            .registry
            .cell(req.method(), &label(&req, settings.classifier.as_ref()));
        let head = req.method() == Method::HEAD;
        let timings = settings.sub_timings.then(|| {
            let t = Timings::default();
            req.extensions_mut().insert(t.clone());
            t
        });
        let guard = Guard {
            cell,
            start,
            status: 0,
            done: false,
            timings,
        };
        ResponseFuture {
            inner: self.inner.call(req),
            guard: Some(guard),
            head,
            server_timing: settings.server_timing.is_some().then(|| self.local.clone()),
        }
    }
}

/// Records the request when it ends; as an abort if dropped before that.
struct Guard {
    cell: Arc<Cell>,
    /// Nanoseconds on the registry's clock.
    start: u64,
    status: u16,
    done: bool,
    timings: Option<Timings>,
}

impl Guard {
    /// Records the request as completed.
    fn finish(&mut self) {
        self.end(End::Sent);
    }

    /// Records the request as completed with a body that failed midway: a
    /// server error whatever status its head carried.
    fn fail(&mut self) {
        self.end(End::BodyFailed);
    }

    fn end(&mut self, end: End) {
        if !self.done {
            self.done = true;
            let spans = self
                .timings
                .as_ref()
                .map(Timings::take_aggregates)
                .unwrap_or_default();
            self.cell.record(self.start, self.status, end, &spans);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.cell.record_abort();
        }
    }
}

pin_project! {
    /// The response future of [`Timing`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        guard: Option<Guard>,
        head: bool,
        // Only when Server-Timing is on: this thread's settings handle.
        server_timing: Option<Arc<Local>>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut guard = this.guard.take();
        match result {
            Ok(mut res) => {
                let allow = this
                    .server_timing
                    .as_ref()
                    .and_then(|l| l.settings.server_timing.as_ref());
                if let (Some(allow), Some(g)) = (allow, guard.as_ref()) {
                    if let Some(v) = server_timing(g, allow) {
                        res.headers_mut().append(SERVER_TIMING, v);
                    }
                }
                let status = res.status();
                if let Some(g) = guard.as_mut() {
                    g.status = status.as_u16();
                }
                let bodyless = *this.head
                    || status.is_informational()
                    || status == StatusCode::NO_CONTENT
                    || status == StatusCode::NOT_MODIFIED
                    || res.body().is_end_stream();
                if bodyless {
                    // No body will be polled: the request ends with its head.
                    if let Some(g) = guard.as_mut() {
                        g.finish();
                    }
                }
                Poll::Ready(Ok(res.map(|body| ResponseBody { inner: body, guard })))
            }
            Err(e) => {
                // No response, so no status sent (OpenTelemetry: no
                // `http.response.status_code`, an `error.type`); counted
                // as a 500 with the server errors.
                if let Some(g) = guard.as_mut() {
                    g.status = 500;
                    g.end(End::NoResponse);
                }
                Poll::Ready(Err(e))
            }
        }
    }
}

pin_project! {
    /// The response body of [`Timing`]: the inner body, timed until its end.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        guard: Option<Guard>,
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            None => {
                if let Some(g) = this.guard.as_mut() {
                    g.finish();
                }
            }
            Some(Err(_)) => {
                // The server failed to send what it started: a server
                // error (OpenTelemetry sets `error.type`), not a client
                // abort.
                if let Some(g) = this.guard.as_mut() {
                    g.fail();
                }
            }
            Some(Ok(_)) => {
                if this.inner.is_end_stream() {
                    if let Some(g) = this.guard.as_mut() {
                        g.finish();
                    }
                }
            }
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
