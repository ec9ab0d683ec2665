//! Deferred requests: a request that carries `Prefer: respond-async`
//! (RFC 7240), or that matches a route set to [always](TaskRoute::always)
//! defer, runs as a background task; the client gets `202 Accepted` at
//! once and reads the outcome from the task's monitor.
//!
//! ```text
//! POST /api/v1/exports          Prefer: respond-async
//! 202 Accepted                  Preference-Applied: respond-async
//!                               Location: /performance/tasks/3f…9c
//! {"id":"3f…9c","state":"pending","progress":0,…,"links":{"monitor":"/performance/tasks/3f…9c","result":null}}
//!
//! GET /performance/tasks/3f…9c          → {"state":"running","progress":40,"message":"page 4 of 10",…}
//! GET /performance/tasks/3f…9c          → {"state":"completed",…,"links":{…,"result":"/performance/tasks/3f…9c/result"}}
//! GET /performance/tasks/3f…9c/result   → the handler's own response
//! ```
//!
//! **`wait`.** With `Prefer: respond-async, wait=N` (RFC 7240 §4.3) the
//! client would rather wait up to N seconds for the answer itself. The
//! task is recorded as above; if it ends within N seconds (time in the
//! queue included; never longer than its timeout) with a response, the
//! handler's response is the answer, as it would have been inline
//! (without `Preference-Applied`); a task that ends without one
//! (failed, cancelled) gets its `202` at once, and one still running after
//! N seconds gets it then. The task is kept either way.
//!
//! **What runs.** Other requests pass straight through (a header lookup,
//! plus a route match when a route always defers). A deferred request's
//! body is read whole first (up to
//! [`max_request_body`](AsyncLayer::max_request_body), `413` past it), so
//! the task needs nothing of the client's connection; then the inner
//! service handles it in a tokio task of its own, with the request's
//! method, URI, header fields and extensions.
//!
//! **Bounds.** [`concurrency`](AsyncLayer::concurrency) tasks run at once
//! (default 10); up to [`queue`](AsyncLayer::queue) more wait, first come
//! first served (default 100); past that the layer answers `503` with a
//! `Retry-After` estimated from recent run times. Each task has a
//! [`timeout`](AsyncLayer::timeout) (default 300 s, per route with
//! [`TaskRoute::timeout`]). Finished tasks are kept for their monitor and
//! result for [`retention`](AsyncLayer::retention) (default 7 days), and
//! while they fit [`result_budget`](AsyncLayer::result_budget) (64 MiB:
//! their results, and about 600 bytes a record) and number at most
//! [`max_finished`](AsyncLayer::max_finished) (10,000), oldest dropped
//! first; a response above
//! [`max_result_size`](AsyncLayer::max_result_size) (8 MiB) fails the
//! task with `result too large`.
//!
//! **States** ([`TaskState`]): pending, running, completed, failed (the
//! service's error, a 5xx answer (kept as the result), a panic, the
//! timeout, a result too large, or a shutdown), cancelled. Cancelling
//! ([`TasksHandle::cancel`], `DELETE` on the monitor) drops the inner
//! service's future, queued or running. A panicking handler fails its
//! task; the server goes on.
//!
//! **Progress.** A task's request carries a [`TaskProgress`] in its
//! extensions (with `axum`, an extractor); a handler reports a percentage
//! and a message through it, and the monitor shows them. Requests
//! answered inline get a no-op one, so handlers don't care which way they
//! run.
//!
//! **Monitors.** [`Report`](crate::report::Report) serves them when given
//! the [`handle`](AsyncLayer::handle) (`ReportBuilder::tasks`): `GET
//! /performance/tasks/{id}` (the task), `GET …/{id}/result` (its kept
//! response), `DELETE …/{id}` (cancel, with the report's token), `GET
//! /performance/tasks?state=…` (the list, with the token). The id, 128
//! random bits, is what lets a client read its own task; the list, which
//! shows every id, needs the token.
//!
//! **Where it goes in the stack.** Inside the rate limiter and the cache
//! (a limited client gets `429`, a cached answer is served at once rather
//! than deferred), and inside compression, so a kept result is stored
//! uncompressed and compressed for whoever fetches it:
//!
//! ```text
//! Timing ─▶ RateLimit ─▶ Cache ─▶ Compression ─▶ CacheControl ─▶ Async ─▶ your service
//! ```
//!
//! The result endpoint serves a kept response without `Set-Cookie`,
//! `Date`, `Expires`, targeted cache fields (`CDN-Cache-Control`…), its
//! length and its connection's fields ([`TaskResult::for_later`]), with
//! `Cache-Control: no-store` and `Referrer-Policy: no-referrer` (the URL
//! is the key to it), and `406` when its `Content-Encoding` is one the
//! request refuses.
//!
//! Requests for the monitors themselves (under
//! [`monitor_path`](AsyncLayer::monitor_path)) and requests already
//! running as a task are never deferred. No response carries `Vary:
//! Prefer`: the `202` is `no-store`, and a request answered inline gets
//! the same representation with or without the preference (RFC 7240 lets
//! a server ignore it), so a cache may serve it to either; the response
//! cache of this crate keeps no `202` and doesn't hold it against the URL.
//!
//! **Several replicas** (feature `redis`): with
//! [`AsyncLayer::redis`] every replica writes its tasks' records to Redis
//! and answers any task's monitor, result, list and cancel (a cancel
//! reaches the replica that runs the task over pub/sub); the task runs
//! where it was submitted. See [`RedisTasks`].
//!
//! Needs a tokio runtime (a deferred request outside one gets `500` and
//! an error log). On shutdown, [`TasksHandle::shutdown`] stops taking
//! tasks and gives running ones a grace period.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_perf::tasks::{AsyncLayer, TaskProgress, TaskState, TaskId};
//!
//! let layer = AsyncLayer::new().concurrency(4);
//! let tasks = layer.handle();
//! let svc = ServiceBuilder::new().layer(layer).service(service_fn(
//!     |req: Request<_>| async move {
//!         let progress = TaskProgress::from_extensions(req.extensions());
//!         progress.set(50, "half way");
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("the export"))))
//!     },
//! ));
//!
//! let req = Request::post("/exports")
//!     .header("prefer", "respond-async")
//!     .body(Full::new(Bytes::new()))
//!     .unwrap();
//! let resp = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(resp.status(), StatusCode::ACCEPTED);
//! let monitor = resp.headers()["location"].to_str().unwrap().to_owned();
//! let id = TaskId::parse(monitor.rsplit('/').next().unwrap()).unwrap();
//!
//! for _ in 0..5000 {
//!     if tasks.get(id).unwrap().state.is_finished() {
//!         break;
//!     }
//!     tokio::time::sleep(Duration::from_millis(1)).await;
//! }
//! assert_eq!(tasks.get(id).unwrap().state, TaskState::Completed);
//! let result = tasks.result(id).unwrap();
//! assert_eq!(result.body, "the export");
//! assert_eq!(tasks.get(id).unwrap().progress, 100);
//! # }
//! ```

mod body;
mod id;
mod layer;
mod progress;
mod record;
mod registry;
mod service;
#[cfg(feature = "redis")]
mod shared;
mod stats;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(inline)]
pub use self::shared::{MAX_SHARED_RESULT, RedisTaskSnapshot, RedisTaskStats, RedisTasks};
#[doc(inline)]
pub use self::{
    body::{ResponseBody, TaskBody},
    id::TaskId,
    layer::{AsyncLayer, Cancelled, ResultError, TaskList, TaskRoute, TasksHandle},
    progress::{MAX_PROGRESS_MESSAGE, TaskProgress},
    record::{Links, ResultInfo, TaskInfo, TaskResult, TaskState},
    service::{Async, ResponseFuture},
    stats::{RUN_TIMES_KEPT, RunTimes, TaskSnapshot},
};
