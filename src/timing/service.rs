//! The service [`TimingLayer`] builds, and its
//! per-thread handle to the settings.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::ResponseBody;
use super::future::ResponseFuture;
use super::guard::Guard;
use super::layer::{Classifier, TimingLayer};
use super::registry::{Registry, UNMATCHED};
use super::route::Sizes;
use super::spans::Timings;
use super::stats::TimingStats;

/// What every clone of a [`Timing`] service uses.
pub(super) struct Settings {
    id: u64,
    pub(super) registry: Arc<Registry>,
    pub(super) classifier: Option<Classifier>,
    pub(super) sub_timings: bool,
    pub(super) server_timing: Option<Arc<[Box<str>]>>,
    #[cfg(feature = "otel")]
    pub(super) otel: Option<Arc<super::otel::Instruments>>,
}

impl Settings {
    pub(super) fn new(layer: &TimingLayer) -> Arc<Self> {
        Arc::new(Self {
            id: NEXT_SETTINGS.fetch_add(1, Ordering::Relaxed),
            registry: layer.registry.clone(),
            classifier: layer.classifier.clone(),
            sub_timings: layer.sub_timings,
            server_timing: layer.server_timing.clone(),
            #[cfg(feature = "otel")]
            otel: layer.otel.clone(),
        })
    }
}

static NEXT_SETTINGS: AtomicU64 = AtomicU64::new(0);

/// A thread's own reference to the settings.
///
/// axum clones a route's service for every request. If every clone
/// incremented one shared reference count, all requests on all threads
/// would fight over that counter's cache line (BENCHMARKS.md, section
/// Timing, measures it). A clone instead takes the handle of the thread it runs
/// on, whose count only that thread touches. Each thread keeps its handles
/// (one per layer it has served) until it exits.
pub(super) struct Local {
    pub(super) settings: Arc<Settings>,
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
    /// Wraps `inner` with the default settings; [`stats`](Self::stats)
    /// reads what it records.
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&TimingLayer::new(), inner)
    }

    /// A [`TimingLayer`] with the default settings.
    pub fn layer() -> TimingLayer {
        TimingLayer::new()
    }

    /// The statistics this service records into, shared with every service
    /// its layer built.
    pub fn stats(&self) -> TimingStats {
        TimingStats::new(self.local.settings.registry.clone())
    }

    crate::macros::define_inner_service_accessors!();
}

impl<S> Timing<S> {
    /// A service that records as `settings` say.
    pub(super) fn with_settings(inner: S, settings: &Arc<Settings>) -> Self {
        Self {
            inner,
            local: Local::for_this_thread(settings),
        }
    }
}

fn label<'a, B>(req: &'a Request<B>, classifier: Option<&Classifier>) -> Cow<'a, str> {
    #[cfg(feature = "axum")]
    if let Some(p) = req.extensions().get::<axum::extract::MatchedPath>() {
        return Cow::Borrowed(p.as_str());
    }
    if let Some(c) = classifier {
        if let Some(l) = c(req.method(), req.uri(), req.extensions()) {
            return Cow::Owned(l);
        }
    }
    Cow::Borrowed(UNMATCHED)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Timing<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body,
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
        let label = label(&req, settings.classifier.as_ref());
        if !crate::trace::no_subscriber() && *label != *UNMATCHED {
            crate::trace::record(crate::trace::field::HTTP_ROUTE, &*label);
            crate::trace::record(
                crate::trace::field::OTEL_NAME,
                tracing::field::display(format_args!(
                    "{} {label}",
                    crate::trace::semconv_method(req.method())
                )),
            );
        }
        // Methods the conventions don't know share one route entry: a
        // client inventing methods must not grow the registry.
        let cell = settings
            .registry
            .cell(crate::trace::registry_method(req.method()), &label);
        let head = req.method() == Method::HEAD;
        let sizes = Sizes {
            request: req.body().size_hint().exact(),
            response: 0,
        };
        let timings = settings.sub_timings.then(|| {
            let t = Timings::default();
            req.extensions_mut().insert(t.clone());
            t
        });
        #[cfg(feature = "otel")]
        let otel = settings.otel.as_ref().map(|o| o.start(&req, &cell));
        let guard = Guard {
            cell,
            start,
            status: 0,
            done: false,
            timings,
            sizes,
            #[cfg(feature = "otel")]
            otel,
        };
        guard.cell.start();
        ResponseFuture {
            inner: self.inner.call(req),
            guard: Some(guard),
            head,
            server_timing: settings.server_timing.is_some().then(|| self.local.clone()),
        }
    }
}
