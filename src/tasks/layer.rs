//! The layer's settings, the routes it defers, and the handle operators
//! (and the report) reach its tasks through.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::Method;
use tower_layer::Layer;

use super::id::TaskId;
use super::record::{TaskInfo, TaskResult, TaskState};
use super::registry::{Bounds, Registry};
use super::service::Async;
use super::stats::TaskSnapshot;
use crate::clock::{Clock, SystemClock};
use crate::route_pattern::Pattern;

/// Routes whose requests run as tasks whatever the client prefers, or
/// that get their own timeout.
///
/// ```
/// use http::Method;
/// use std::time::Duration;
/// use tower_perf::tasks::TaskRoute;
///
/// let exports = TaskRoute::new("/api/v1/exports")
///     .methods([Method::POST])
///     .always()
///     .timeout(Duration::from_secs(60));
/// # let _ = exports;
/// ```
#[derive(Debug, Clone)]
pub struct TaskRoute {
    pattern: Pattern,
    methods: Option<Vec<Method>>,
    always: bool,
    timeout: Option<Duration>,
}

impl TaskRoute {
    /// Requests whose path matches `pattern` (as
    /// [`RateRule::path`](crate::rate_limit::RateRule) reads it: an exact
    /// path, `*` and `**` globs, axum's `{param}` and `{*rest}`), any
    /// method.
    ///
    /// # Panics
    ///
    /// When `pattern` can never match a request path (empty, no leading
    /// `/`, malformed braces…), naming it and why.
    pub fn new(pattern: &str) -> Self {
        Self {
            pattern: Pattern::parse(pattern),
            methods: None,
            always: false,
            timeout: None,
        }
    }

    /// Only these methods.
    pub fn methods<I: IntoIterator<Item = Method>>(mut self, methods: I) -> Self {
        self.methods = Some(methods.into_iter().collect());
        self
    }

    /// Run every matching request as a task, with or without
    /// `Prefer: respond-async`.
    pub fn always(mut self) -> Self {
        self.always = true;
        self
    }

    /// The longest a matching task may run (the layer's
    /// [`timeout`](AsyncLayer::timeout) otherwise).
    ///
    /// # Panics
    ///
    /// When `timeout` is zero: no task could ever finish.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "TaskRoute::timeout(0): no task could ever finish"
        );
        self.timeout = Some(timeout);
        self
    }

    pub(super) fn matches(&self, method: &Method, path: &str) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method)) && self.pattern.matches(path)
    }
}

/// What every [`Async`] service of one layer reads.
#[derive(Debug)]
pub(super) struct Config {
    pub(super) registry: Arc<Registry>,
    pub(super) routes: Vec<TaskRoute>,
    /// Whether any route defers every request (else only `Prefer` does).
    pub(super) any_always: bool,
    pub(super) timeout: Duration,
    pub(super) max_request_body: usize,
    pub(super) max_result: usize,
}

impl Config {
    /// The first route a request matches that says what `setting` reads.
    fn first<T>(
        &self,
        method: &Method,
        path: &str,
        setting: impl Fn(&TaskRoute) -> Option<T>,
    ) -> Option<T> {
        self.routes
            .iter()
            .filter(|r| r.matches(method, path))
            .find_map(setting)
    }

    /// Whether a request may run as a task at all: not one already running
    /// as a task (an inner layer), and not one for the task monitors
    /// themselves (polling with the preference on must not start tasks).
    pub(super) fn deferrable<B>(&self, req: &http::Request<B>) -> bool {
        let monitor = &self.registry.bounds.monitor;
        let path = req.uri().path();
        let under_monitor = path
            .strip_prefix(monitor.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        !under_monitor
            && !req
                .extensions()
                .get::<super::TaskProgress>()
                .is_some_and(super::TaskProgress::is_deferred)
    }

    /// Whether a request without the preference runs as a task.
    pub(super) fn always(&self, method: &Method, path: &str) -> bool {
        self.any_always
            && self
                .first(method, path, |r| r.always.then_some(()))
                .is_some()
    }

    /// A task's timeout: the first matching route's that sets one, else
    /// the layer's (a route that only defers doesn't hide a timeout set
    /// by a broader one, nor the other way round).
    pub(super) fn timeout_for(&self, method: &Method, path: &str) -> Duration {
        self.first(method, path, |r| r.timeout)
            .unwrap_or(self.timeout)
    }
}

/// Runs requests that carry `Prefer: respond-async` (RFC 7240), or that
/// match an [`always`](TaskRoute::always) route, as background tasks.
/// See the [module docs](super).
#[derive(Clone)]
pub struct AsyncLayer {
    concurrency: usize,
    queue: usize,
    timeout: Duration,
    routes: Vec<TaskRoute>,
    max_request_body: usize,
    max_result: usize,
    result_budget: usize,
    retention: Duration,
    max_finished: usize,
    monitor: String,
    clock: Arc<dyn Clock>,
    #[cfg(feature = "redis")]
    redis: Option<super::RedisTasks>,
    built: Arc<OnceLock<Arc<Config>>>,
}

impl std::fmt::Debug for AsyncLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncLayer")
            .field("concurrency", &self.concurrency)
            .field("queue", &self.queue)
            .field("timeout", &self.timeout)
            .field("routes", &self.routes)
            .field("monitor", &self.monitor)
            .finish_non_exhaustive()
    }
}

impl Default for AsyncLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl AsyncLayer {
    /// 10 tasks at once, 100 more queued, 300 s each; request bodies up to
    /// 1 MiB, results up to 8 MiB each and 64 MiB in all, kept 7 days (at
    /// most 10,000 finished tasks); monitors at `/performance/tasks/{id}`.
    pub fn new() -> Self {
        Self {
            concurrency: 10,
            queue: 100,
            timeout: Duration::from_secs(300),
            routes: Vec::new(),
            max_request_body: 1 << 20,
            max_result: 8 << 20,
            result_budget: 64 << 20,
            retention: Duration::from_secs(7 * 24 * 3600),
            max_finished: 10_000,
            monitor: "/performance/tasks".to_owned(),
            clock: Arc::new(SystemClock),
            #[cfg(feature = "redis")]
            redis: None,
            built: Arc::default(),
        }
    }

    /// Settings change only before the layer wraps a service or hands out
    /// its [`handle`](Self::handle): both share what was built.
    fn changed(mut self) -> Self {
        assert!(
            self.built.get().is_none(),
            "AsyncLayer configured after it was used: set everything before .layer() and .handle()"
        );
        // A clone configured apart from its original builds its own.
        self.built = Arc::default();
        self
    }

    /// Tasks that run at once (default 10); the others wait in the queue,
    /// first come first served.
    ///
    /// # Panics
    ///
    /// When `n` is 0: no task could ever run.
    pub fn concurrency(mut self, n: usize) -> Self {
        assert!(n > 0, "AsyncLayer::concurrency(0): no task could ever run");
        self.concurrency = n;
        self.changed()
    }

    /// Tasks that may wait for a slot (default 100); past that a deferred
    /// request gets `503` with `Retry-After`.
    pub fn queue(mut self, n: usize) -> Self {
        self.queue = n;
        self.changed()
    }

    /// The longest a task may run (default 300 s); a task past it fails
    /// with `timeout` and its future is dropped.
    ///
    /// # Panics
    ///
    /// When `timeout` is zero.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "AsyncLayer::timeout(0): no task could ever finish"
        );
        self.timeout = timeout;
        self.changed()
    }

    /// Adds a route. A request is deferred when any route it matches is
    /// [`always`](TaskRoute::always), and gets the timeout of the first
    /// matching route that sets one.
    ///
    /// # Panics
    ///
    /// When the route sets neither: it would do nothing.
    pub fn route(mut self, route: TaskRoute) -> Self {
        assert!(
            route.always || route.timeout.is_some(),
            "AsyncLayer::route: a TaskRoute that is neither always() nor has a timeout() does nothing"
        );
        self.routes.push(route);
        self.changed()
    }

    /// The largest request body a task takes (default 1 MiB): it is read
    /// whole before the `202`; a larger one gets `413`.
    pub fn max_request_body(mut self, bytes: usize) -> Self {
        self.max_request_body = bytes;
        self.changed()
    }

    /// The largest response a task may keep (default 8 MiB); past it the
    /// task fails with `result too large`.
    pub fn max_result_size(mut self, bytes: usize) -> Self {
        self.max_result = bytes;
        self.changed()
    }

    /// Bytes the finished tasks may hold, their records (about 600 bytes
    /// each) and results (default 64 MiB); past it the oldest go first.
    /// The task that ended last is always kept, even alone over it.
    pub fn result_budget(mut self, bytes: usize) -> Self {
        self.result_budget = bytes;
        self.changed()
    }

    /// How long a finished task is kept (default 7 days).
    ///
    /// # Panics
    ///
    /// When `retention` is zero: every task would go as it ends, and its
    /// `202`'s `Location` would name nothing.
    pub fn retention(mut self, retention: Duration) -> Self {
        assert!(
            !retention.is_zero(),
            "AsyncLayer::retention(0): every task would go as it ends, before its client could read it"
        );
        self.retention = retention;
        self.changed()
    }

    /// Finished tasks kept at most (default 10,000), oldest dropped first.
    ///
    /// # Panics
    ///
    /// When `n` is 0: no client could read its task's outcome.
    pub fn max_finished(mut self, n: usize) -> Self {
        assert!(
            n > 0,
            "AsyncLayer::max_finished(0): no client could read its task's outcome"
        );
        self.max_finished = n;
        self.changed()
    }

    /// Where the task monitors are served (default `/performance/tasks`,
    /// where [`Report`](crate::report::Report) serves them under its
    /// default base): the `Location` of a `202` is `{path}/{id}`.
    ///
    /// # Panics
    ///
    /// When `path` doesn't start with `/`, or is `/` itself.
    pub fn monitor_path(mut self, path: &str) -> Self {
        let trimmed = path.trim_end_matches('/');
        assert!(
            path.starts_with('/') && !trimmed.is_empty(),
            "AsyncLayer::monitor_path({path:?}): a path starts with '/' and isn't the root (every request would be a monitor's, and none deferred)"
        );
        self.monitor = trimmed.to_owned();
        self.changed()
    }

    /// Shares the task records through Redis, so that every replica
    /// answers any task's monitor, result, list and cancel (see
    /// [`RedisTasks`](super::RedisTasks)); tasks still run where they were
    /// submitted. The layer must then be built (`.layer()` or
    /// `.handle()`) inside a Tokio runtime.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, shared: super::RedisTasks) -> Self {
        self.redis = Some(shared);
        self.changed()
    }

    /// The clock timestamps and retention read (tests move it).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self.changed()
    }

    fn config(&self) -> &Arc<Config> {
        self.built.get_or_init(|| {
            let bounds = Bounds {
                concurrency: self.concurrency,
                queue: self.queue,
                retention: self.retention,
                result_budget: self.result_budget,
                max_finished: self.max_finished,
                monitor: self.monitor.clone(),
            };
            let clock = Arc::clone(&self.clock);
            #[cfg(feature = "redis")]
            let registry = {
                let retention = bounds.retention;
                let registry = Arc::new(Registry::new(bounds, clock));
                if let Some(shared) = self.redis.clone() {
                    let mirror =
                        super::shared::Mirror::start(shared, retention, Arc::downgrade(&registry));
                    let _ = registry.mirror.set(mirror);
                }
                registry
            };
            #[cfg(not(feature = "redis"))]
            let registry = Arc::new(Registry::new(bounds, clock));
            Arc::new(Config {
                registry,
                any_always: self.routes.iter().any(|r| r.always),
                routes: self.routes.clone(),
                timeout: self.timeout,
                max_request_body: self.max_request_body,
                max_result: self.max_result,
            })
        })
    }

    /// The handle to this layer's tasks: their monitors, results,
    /// cancellation, statistics and shutdown.
    pub fn handle(&self) -> TasksHandle {
        TasksHandle {
            registry: Arc::clone(&self.config().registry),
        }
    }
}

impl<S> Layer<S> for AsyncLayer {
    type Service = Async<S>;

    fn layer(&self, inner: S) -> Async<S> {
        Async {
            inner,
            config: Arc::clone(self.config()),
        }
    }
}

/// A cheap, cloneable handle to an [`AsyncLayer`]'s tasks.
#[derive(Debug, Clone)]
pub struct TasksHandle {
    registry: Arc<Registry>,
}

/// Why a task's result can't be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultError {
    /// No such task (never, or no longer, kept).
    Unknown,
    /// It hasn't ended (pending or running).
    NotFinished(TaskState),
    /// It ended without a response (failed before one, or cancelled).
    NoResult(TaskState),
    /// Another replica's task, and the shared records can't be read now
    /// (why).
    Unreachable(String),
}

/// What a cancel did ([`TasksHandle::cancel_anywhere`]).
#[derive(Debug, Clone)]
pub enum Cancelled {
    /// Cancelled: the task as it is now.
    Done(TaskInfo),
    /// It had ended already: unchanged.
    Ended(TaskInfo),
    /// Another replica runs it: the cancel was sent, and that replica
    /// hadn't confirmed it within a second (the task as last recorded).
    Requested(TaskInfo),
    /// No such task.
    Unknown,
    /// Another replica's task, maybe, and the shared records can't be read
    /// now (why).
    Unreachable(String),
}

/// Tasks every replica recorded, as far as they could be read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskList {
    /// The tasks, newest first.
    pub tasks: Vec<TaskInfo>,
    /// False when the shared records couldn't be read: `tasks` are this
    /// replica's alone.
    pub complete: bool,
    /// Why they couldn't.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TasksHandle {
    /// One task as its monitor shows it.
    pub fn get(&self, id: TaskId) -> Option<TaskInfo> {
        self.registry.info(id)
    }

    /// The tasks kept (only those in `state`, if given), newest first, at
    /// most `limit`.
    pub fn list(&self, state: Option<TaskState>, limit: usize) -> Vec<TaskInfo> {
        self.registry.list(state, limit)
    }

    /// A finished task's response.
    pub fn result(&self, id: TaskId) -> Result<Arc<TaskResult>, ResultError> {
        match self.registry.result(id) {
            None => Err(ResultError::Unknown),
            Some((state, _)) if !state.is_finished() => Err(ResultError::NotFinished(state)),
            Some((_, Some(result))) => Ok(result),
            Some((state, None)) => Err(ResultError::NoResult(state)),
        }
    }

    /// Cancels a task that hasn't ended: marked cancelled at once, its
    /// future dropped by its worker. `None` for an unknown task; a task
    /// that had ended comes back unchanged.
    pub fn cancel(&self, id: TaskId) -> Option<TaskInfo> {
        self.registry.cancel(id)
    }

    /// The statistics.
    pub fn stats(&self) -> TaskSnapshot {
        self.registry.snapshot()
    }

    /// Stops taking tasks (deferred requests get `503`) and fails the
    /// queued ones, gives running ones up to `grace` to finish, then fails
    /// those left ("the server shut down before the task finished") and
    /// waits up to a second for their futures to be dropped. Returns how
    /// many running tasks were stopped.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.registry.shutdown(grace).await
    }

    /// Where the monitors are served (`/performance/tasks`).
    pub fn monitor_path(&self) -> &str {
        &self.registry.bounds.monitor
    }

    #[cfg(feature = "redis")]
    fn shared(&self) -> Option<&super::RedisTasks> {
        self.registry.mirror.get().map(|m| &m.shared)
    }

    /// One task, this replica's or (shared through Redis) another's.
    pub async fn find(&self, id: TaskId) -> Result<Option<TaskInfo>, String> {
        if let Some(info) = self.get(id) {
            return Ok(Some(info));
        }
        #[cfg(feature = "redis")]
        if let Some(shared) = self.shared() {
            return shared.info(id).await;
        }
        Ok(None)
    }

    /// A finished task's response, this replica's or another's.
    pub async fn find_result(&self, id: TaskId) -> Result<Arc<TaskResult>, ResultError> {
        let local = self.result(id);
        #[cfg(feature = "redis")]
        if let (Err(ResultError::Unknown), Some(shared)) = (&local, self.shared()) {
            let info = shared.info(id).await.map_err(ResultError::Unreachable)?;
            let Some(info) = info else {
                return Err(ResultError::Unknown);
            };
            if !info.state.is_finished() {
                return Err(ResultError::NotFinished(info.state));
            }
            let result = shared.result(id).await.map_err(ResultError::Unreachable)?;
            return match (result, info.result) {
                (Some(result), _) => Ok(Arc::new(result)),
                // It left one, too large to share (or its write is late).
                (None, Some(_)) => Err(ResultError::Unreachable(
                    "the result is kept only by the replica that ran the task".to_owned(),
                )),
                (None, None) => Err(ResultError::NoResult(info.state)),
            };
        }
        local
    }

    /// Every task recorded (only those in `state`, if given), newest
    /// first, at most `limit`: every replica's when shared (this one's
    /// records winning over their copies), else (or when Redis can't be
    /// read within a second, saying so) this one's.
    pub async fn list_all(&self, state: Option<TaskState>, limit: usize) -> TaskList {
        let local = self.list(state, limit);
        #[cfg(feature = "redis")]
        if let Some(shared) = self.shared() {
            let read =
                tokio::time::timeout(super::shared::SHARED_DEADLINE, shared.list(state, limit))
                    .await
                    .unwrap_or_else(
                        |_| Err("redis: the list took longer than a second".to_owned()),
                    );
            return match read {
                Ok(others) => {
                    // This replica's own records are its tasks as they
                    // are; Redis may hold an older copy.
                    let mut tasks = local;
                    let registry = &self.registry;
                    tasks.extend(others.into_iter().filter(|t| !registry.knows(t.id)));
                    tasks.sort_by_key(|t| std::cmp::Reverse(t.submitted_at_ms));
                    tasks.truncate(limit);
                    TaskList {
                        tasks,
                        complete: true,
                        error: None,
                    }
                }
                Err(e) => TaskList {
                    tasks: local,
                    complete: false,
                    error: Some(e),
                },
            };
        }
        TaskList {
            tasks: local,
            complete: true,
            error: None,
        }
    }

    /// Cancels a task this replica runs, or asks the replica that runs it
    /// (shared through Redis) and waits up to a second to see it done.
    pub async fn cancel_anywhere(&self, id: TaskId) -> Cancelled {
        if let Some(info) = self.cancel(id) {
            return if info.state == TaskState::Cancelled {
                Cancelled::Done(info)
            } else {
                Cancelled::Ended(info)
            };
        }
        #[cfg(feature = "redis")]
        if let Some(shared) = self.shared() {
            let deadline = tokio::time::Instant::now() + super::shared::SHARED_DEADLINE;
            return remote_cancel(shared, id, deadline).await;
        }
        Cancelled::Unknown
    }
}

/// Cancels another replica's task: sends the cancel, then watches its
/// record until it ends or `deadline` passes.
#[cfg(feature = "redis")]
async fn remote_cancel(
    shared: &super::RedisTasks,
    id: TaskId,
    deadline: tokio::time::Instant,
) -> Cancelled {
    let late = || Cancelled::Unreachable("redis: the cancel took longer than a second".to_owned());
    let (info, owner) = match tokio::time::timeout_at(deadline, shared.owned(id)).await {
        Err(_) => return late(),
        Ok(Ok(Some(o))) => (o.info, o.owner),
        Ok(Ok(None)) => return Cancelled::Unknown,
        Ok(Err(e)) => return Cancelled::Unreachable(e),
    };
    if info.state.is_finished() {
        return Cancelled::Ended(info);
    }
    match tokio::time::timeout_at(deadline, shared.send_cancel(id, owner)).await {
        Err(_) => return late(),
        Ok(Ok(0)) => {
            return Cancelled::Unreachable(
                "the replica that runs the task isn't listening (it may be gone)".to_owned(),
            );
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Cancelled::Unreachable(e),
    }
    // Sent: from here on the answer is at worst "requested".
    let mut last = info;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let Ok(read) = tokio::time::timeout_at(deadline, shared.info(id)).await else {
            return Cancelled::Requested(last);
        };
        match read {
            Ok(Some(now)) if now.state == TaskState::Cancelled => return Cancelled::Done(now),
            Ok(Some(now)) if now.state.is_finished() => return Cancelled::Ended(now),
            Ok(Some(now)) => last = now,
            // Gone or unreadable: the cancel was sent.
            Ok(None) | Err(_) => return Cancelled::Requested(last),
        }
    }
}
