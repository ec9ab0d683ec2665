//! The service: passes a request through, or reads its body, records it
//! as a task, answers `202` and runs it in the background.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower_service::Service;

use super::body::{ResponseBody, TaskBody};
use super::id::TaskId;
use super::layer::Config;
use super::progress::TaskProgress;
use super::record::{Failure, Outcome, TaskInfo, TaskResult};
use super::registry::{Control, Refusal, Registry};
use crate::BoxError;
use crate::headers::{PREFERENCE_APPLIED, Prefer, remove_hop_by_hop};

/// The service [`AsyncLayer`](super::AsyncLayer) builds.
pub struct Async<S> {
    pub(super) inner: S,
    pub(super) config: Arc<Config>,
}

impl<S: Clone> Clone for Async<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Async<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Async")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Async<S> {
    crate::macros::define_inner_service_accessors!();
}

/// The answers the layer makes itself.
type Own<ResB> = Pin<Box<dyn Future<Output = Response<ResponseBody<ResB>>> + Send>>;

pin_project_lite::pin_project! {
    /// The future of [`Async`]: the inner service's, or the layer's own
    /// answer (a `202` once the body is read, a `503`…).
    pub struct ResponseFuture<F, ResB, E> {
        #[pin]
        kind: Kind<F, ResB, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = Proj]
    enum Kind<F, ResB, E> {
        Inline { #[pin] fut: F },
        Own { fut: Own<ResB>, _error: PhantomData<fn() -> E> },
    }
}

impl<F, ResB, E> ResponseFuture<F, ResB, E> {
    fn inline(fut: F) -> Self {
        Self {
            kind: Kind::Inline { fut },
        }
    }

    fn own(fut: Own<ResB>) -> Self {
        Self {
            kind: Kind::Own {
                fut,
                _error: PhantomData,
            },
        }
    }
}

impl<F, ResB, E> std::fmt::Debug for ResponseFuture<F, ResB, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, ResB, E> Future for ResponseFuture<F, ResB, E>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = Result<Response<ResponseBody<ResB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            Proj::Inline { fut } => fut
                .poll(cx)
                .map(|r| r.map(|resp| resp.map(ResponseBody::inner))),
            Proj::Own { fut, .. } => fut.as_mut().poll(cx).map(Ok),
        }
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Async<S>
where
    S: Service<Request<TaskBody<ReqB>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqB: Body<Data = Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let cfg = &self.config;
        let prefer = Prefer::from_headers(req.headers());
        let asked = prefer.respond_async();
        if !(asked || cfg.always(req.method(), req.uri().path())) || !cfg.deferrable(&req) {
            return ResponseFuture::inline(self.inner.call(req.map(TaskBody::inline)));
        }
        let own = ResponseFuture::own;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                "tower-perf AsyncLayer: a deferred request outside a tokio runtime; tasks need one to run in"
            );
            return own(Box::pin(std::future::ready(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "tasks need a tokio runtime; none is running",
            ))));
        };
        // Refused before its body is read when the queue is full; the
        // permit bounds the bodies being read, and goes with the future
        // (`insert` checks the queue again).
        let intake = match cfg.registry.admit() {
            Ok(permit) => permit,
            Err(refusal) => return own(Box::pin(std::future::ready(refused(refusal)))),
        };
        let inner = self.inner.clone();
        // RFC 7240 §4.3: with `wait`, a task that ends within it is
        // answered inline (never longer than the task may run).
        let wait = prefer
            .wait()
            .filter(|_| asked)
            .map(|w| w.min(cfg.timeout_for(req.method(), req.uri().path())));
        own(Box::pin(submit(
            Arc::clone(cfg),
            inner,
            req,
            (asked, wait),
            (runtime, intake),
        )))
    }
}

/// Reads the body, records the task, starts its worker and answers `202`.
async fn submit<S, ReqB, ResB>(
    cfg: Arc<Config>,
    inner: S,
    req: Request<ReqB>,
    (asked, wait): (bool, Option<Duration>),
    (runtime, intake): (tokio::runtime::Handle, tokio::sync::OwnedSemaphorePermit),
) -> Response<ResponseBody<ResB>>
where
    S: Service<Request<TaskBody<ReqB>>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqB: Body<Data = Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let registry = &cfg.registry;
    let (mut parts, body) = req.into_parts();
    let body = match Limited::new(body, cfg.max_request_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return if e.is::<LengthLimitError>() {
                text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is larger than a task may take",
                )
            } else {
                text(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                )
            };
        }
    };
    let id = match TaskId::random() {
        Ok(id) => id,
        Err(e) => {
            tracing::error!("tower-perf AsyncLayer: no random task id: {e}");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no task id could be generated",
            );
        }
    };
    let progress = TaskProgress::new();
    parts.extensions.insert(progress.clone());
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let timeout = cfg.timeout_for(&parts.method, parts.uri.path());
    let (control, info) = match registry.insert(id, parts.method.as_str(), path, progress) {
        Ok(inserted) => inserted,
        Err(refusal) => return refused(refusal),
    };
    // Queued now: the queue's own count bounds it from here.
    drop(intake);
    let req = Request::from_parts(parts, TaskBody::whole(body));
    let done = Arc::clone(&control);
    let ended = done.done.notified();
    tokio::pin!(ended);
    ended.as_mut().enable();
    crate::trace::record(crate::trace::field::TASK_ID, tracing::field::display(id));
    // The handler runs in a span of its own (it outlives the request's),
    // which follows from the request's, so its events carry the task id.
    let span = tracing::info_span!("tower_perf.task", tower_perf.task.id = %id);
    span.follows_from(crate::trace::current_span());
    runtime.spawn(tracing::Instrument::instrument(
        work(Arc::clone(&cfg), inner, req, id, control, timeout),
        span,
    ));
    if let Some(wait) = wait {
        // Ended already (cancelled before `ended` was made), or ends in
        // time: a response, if it left one, is the answer.
        let finished = registry.info(id).is_none_or(|t| t.state.is_finished());
        if finished || tokio::time::timeout(wait, ended).await.is_ok() {
            if let Some((_, Some(result))) = registry.result(id) {
                return inline(&result);
            }
        }
    }
    accepted(info, asked)
}

/// A task that ended within the client's `wait`: the handler's response,
/// as an inline answer would have been (its cookies and caching fields
/// included, so a cache in front judges it as it would that one); the
/// task stays, with its monitor.
fn inline<ResB>(result: &TaskResult) -> Response<ResponseBody<ResB>> {
    let mut resp = Response::new(ResponseBody::bytes(result.body.clone()));
    *resp.status_mut() = result.status;
    *resp.headers_mut() = result.headers.clone();
    resp
}

/// A task's life after its `202`: a slot, the inner service, its whole
/// response, within the timeout, unless cancelled.
async fn work<S, ReqB, ResB>(
    cfg: Arc<Config>,
    inner: S,
    req: Request<TaskBody<ReqB>>,
    id: TaskId,
    control: Arc<Control>,
    timeout: Duration,
) where
    S: Service<Request<TaskBody<ReqB>>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let registry = &cfg.registry;
    let mut phase = Phase {
        registry,
        id,
        at: At::Queued,
    };
    let slot = tokio::select! {
        biased;
        () = control.stop.notified() => {
            phase.end(Outcome::Cancelled("cancelled"));
            return;
        }
        slot = Arc::clone(&registry.slots).acquire_owned() => slot,
    };
    let Ok(_slot) = slot else {
        let why = "the server shut down before the task started".to_owned();
        phase.end(Outcome::Failed(Failure::Shutdown, why, None));
        return;
    };
    if !registry.start(id) {
        phase.at = At::Done;
        return; // cancelled while it waited, or shutting down
    }
    phase.at = At::Running;
    let max_result = cfg.max_result;
    // Its own tokio task: a panic ends that task, not this worker, and
    // aborting it drops the inner future.
    // In the task's span (the worker runs in it): the handler's events
    // carry the task id.
    let span = crate::trace::current_span();
    let mut run = tokio::spawn(tracing::Instrument::instrument(
        async move {
            let mut inner = inner;
            let failed =
                |e: S::Error| (Failure::Error, format!("the service failed: {}", e.into()));
            std::future::poll_fn(|cx| inner.poll_ready(cx))
                .await
                .map_err(failed)?;
            let resp = inner.call(req).await.map_err(failed)?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, max_result)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<LengthLimitError>() {
                        let why =
                            format!("result too large: the response passed {max_result} bytes");
                        (Failure::TooLarge, why)
                    } else {
                        (Failure::Error, format!("the response body failed: {e}"))
                    }
                })?
                .to_bytes();
            Ok::<_, (Failure, String)>(kept(parts.status, parts.headers, body))
        },
        span,
    ));
    let outcome = tokio::select! {
        joined = &mut run => match joined {
            Ok(Ok(result)) if result.status.is_informational() => {
                let why = format!("the service answered {}, which can't be kept", result.status);
                Outcome::Failed(Failure::Error, why, None)
            }
            Ok(Ok(result)) if result.status.is_server_error() => {
                let why = format!("the service answered {}", result.status);
                Outcome::Failed(Failure::ServerError, why, Some(result))
            }
            Ok(Ok(result)) => Outcome::Completed(result),
            Ok(Err((failure, why))) => Outcome::Failed(failure, why, None),
            Err(e) if e.is_panic() => {
                Outcome::Failed(Failure::Panic, "the handler panicked".to_owned(), None)
            }
            Err(_) => Outcome::Cancelled("cancelled"),
        },
        () = tokio::time::sleep(timeout) => {
            run.abort();
            // The slot stays taken until the future is gone.
            let _ = (&mut run).await;
            let why = format!("timeout: ran longer than {} ms", timeout.as_millis());
            Outcome::Failed(Failure::Timeout, why, None)
        }
        () = control.stop.notified() => {
            run.abort();
            let _ = (&mut run).await;
            if control.shutdown.load(std::sync::atomic::Ordering::Relaxed) {
                let why = "the server shut down before the task finished".to_owned();
                Outcome::Failed(Failure::Shutdown, why, None)
            } else {
                Outcome::Cancelled("cancelled")
            }
        }
    };
    phase.end(outcome);
}

/// Where a worker is, so that the registry's counts come right even when
/// the worker is dropped before its end (its runtime shut down): the task
/// then fails, saying so.
struct Phase<'a> {
    registry: &'a Registry,
    id: TaskId,
    at: At,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    Queued,
    Running,
    Done,
}

impl Phase<'_> {
    fn end(&mut self, outcome: Outcome) {
        match std::mem::replace(&mut self.at, At::Done) {
            At::Queued => self.registry.leave_queue(self.id, outcome),
            At::Running => self.registry.leave_running(self.id, outcome),
            At::Done => {}
        }
    }
}

impl Drop for Phase<'_> {
    fn drop(&mut self) {
        if self.at != At::Done {
            let why = "the runtime shut down before the task ended".to_owned();
            self.end(Outcome::Failed(Failure::Shutdown, why, None));
        }
    }
}

/// The response as kept: without the fields of its connection (they
/// described a transfer that is over) and its length. Whoever serves it
/// later to another request (the result endpoint, the Redis copy) drops
/// what belonged to this one ([`TaskResult::for_later`]); a client that
/// waited for it gets it whole.
fn kept(status: StatusCode, mut headers: HeaderMap, body: Bytes) -> TaskResult {
    remove_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    TaskResult {
        status,
        headers,
        body,
    }
}

/// `202 Accepted`: where the task's monitor is, and the task as it was
/// when recorded.
fn accepted<ResB>(info: TaskInfo, asked: bool) -> Response<ResponseBody<ResB>> {
    let location = HeaderValue::from_str(&info.links.monitor);
    let Ok(body) = serde_json::to_vec(&info) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "serialization failed");
    };
    let mut resp = Response::new(ResponseBody::bytes(Bytes::from(body)));
    *resp.status_mut() = StatusCode::ACCEPTED;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(location) = location {
        h.insert(header::LOCATION, location);
    }
    if asked {
        h.insert(
            PREFERENCE_APPLIED,
            HeaderValue::from_static("respond-async"),
        );
    }
    resp
}

/// A `503` for a request the queue can't take.
fn refused<ResB>(refusal: Refusal) -> Response<ResponseBody<ResB>> {
    match refusal {
        Refusal::Full(after) => {
            let mut resp = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the task queue is full; try again later",
            );
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
            resp
        }
        Refusal::ShuttingDown => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down and takes no new tasks",
        ),
    }
}

fn text<ResB>(status: StatusCode, message: &'static str) -> Response<ResponseBody<ResB>> {
    let mut resp = Response::new(ResponseBody::text(message));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
