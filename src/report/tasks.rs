//! The task monitors (`/tasks`): the list, one task, its result, its
//! cancellation; and the task layer's Prometheus families.

use std::fmt::Write;

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use super::body::{ReportBody, error, json, respond_with};
use super::builder::Sources;
use super::metrics::{by_label, singles};
use super::service::Inner;
use crate::headers::split_list;
use crate::headers::{AcceptEncoding, ContentCoding, QValue};
use crate::tasks::{Cancelled, RUN_TIMES_KEPT, ResultError, TaskId, TaskState, TasksHandle};

/// The most tasks one list answer shows.
const MAX_LIST: usize = 1000;

/// What a path under `/tasks` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TaskEndpoint {
    /// `/tasks`: the list.
    List,
    /// `/tasks/{id}`: one task (GET), or its cancellation (DELETE).
    One(TaskId),
    /// `/tasks/{id}/result`: its kept response.
    Result(TaskId),
    /// `/tasks/{anything else}`: no task has that id.
    Unknown,
}

impl TaskEndpoint {
    /// The endpoint at `route` (relative to the report's base), if it is
    /// under `/tasks`.
    pub(super) fn parse(route: &str) -> Option<Self> {
        let rest = route.strip_prefix("/tasks")?;
        if rest.is_empty() || rest == "/" {
            return Some(Self::List);
        }
        let rest = rest.strip_prefix('/')?;
        let (id, tail) = match rest.split_once('/') {
            Some((id, tail)) => (id, Some(tail)),
            None => (rest, None),
        };
        Some(match (TaskId::parse(id), tail) {
            (Some(id), None) => Self::One(id),
            (Some(id), Some("result")) => Self::Result(id),
            _ => Self::Unknown,
        })
    }
}

impl Inner {
    /// Answers a request for a task endpoint.
    pub(super) async fn tasks(
        &self,
        endpoint: TaskEndpoint,
        req: &http::request::Parts,
    ) -> Response<ReportBody> {
        let mut resp = self.task_answer(endpoint, req).await;
        // A task's URL is its key: no page served from it names it to
        // another site.
        resp.headers_mut().insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        resp
    }

    async fn task_answer(
        &self,
        endpoint: TaskEndpoint,
        req: &http::request::Parts,
    ) -> Response<ReportBody> {
        let Some(handle) = &self.sources.tasks else {
            return super::body::absent("tasks");
        };
        let method = &req.method;
        let read = method == Method::GET || method == Method::HEAD;
        match endpoint {
            TaskEndpoint::List if read => {
                // Every id is a task's key: the list needs the token.
                if let Some(refused) = self.refuse_without_token(&req.headers, "the task list") {
                    return refused;
                }
                list(handle, req.uri.query()).await
            }
            TaskEndpoint::One(id) if method == Method::DELETE => {
                if let Some(refused) = self.refuse_without_token(&req.headers, "task cancellation")
                {
                    return refused;
                }
                match handle.cancel_anywhere(id).await {
                    Cancelled::Done(info) => json(StatusCode::OK, &info),
                    Cancelled::Ended(info) => json(StatusCode::CONFLICT, &info),
                    // Another replica runs it and hasn't confirmed yet.
                    Cancelled::Requested(info) => json(StatusCode::ACCEPTED, &info),
                    Cancelled::Unknown => error(StatusCode::NOT_FOUND, "no such task"),
                    Cancelled::Unreachable(e) => unreachable(&e),
                }
            }
            TaskEndpoint::One(_) | TaskEndpoint::Result(_) | TaskEndpoint::Unknown
                if read && self.protect_reads && !self.authorized(&req.headers) =>
            {
                self.unauthorized()
            }
            TaskEndpoint::One(id) if read => match handle.find(id).await {
                Ok(Some(info)) => json(StatusCode::OK, &info),
                Ok(None) => error(StatusCode::NOT_FOUND, "no such task"),
                Err(e) => unreachable(&e),
            },
            TaskEndpoint::Result(id) if read => result(handle, id, &req.headers).await,
            TaskEndpoint::Unknown if read => error(StatusCode::NOT_FOUND, "no such task"),
            TaskEndpoint::One(_) => not_allowed("GET, HEAD, DELETE"),
            TaskEndpoint::List | TaskEndpoint::Result(_) | TaskEndpoint::Unknown => {
                not_allowed("GET, HEAD")
            }
        }
    }
}

fn not_allowed(allow: &'static str) -> Response<ReportBody> {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// `503`: another replica's task, maybe, and the shared records can't be
/// read now.
fn unreachable(why: &str) -> Response<ReportBody> {
    let why = format!(
        "the shared task records can't be read now ({why}); this replica's own tasks are answered"
    );
    error(StatusCode::SERVICE_UNAVAILABLE, &why)
}

/// `?state=…&limit=…`.
async fn list(handle: &TasksHandle, query: Option<&str>) -> Response<ReportBody> {
    let mut state = None;
    let mut limit = 100;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "state" => match TaskState::parse(v) {
                Some(s) => state = Some(s),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "state is one of pending, running, completed, failed, cancelled",
                    );
                }
            },
            "limit" => match v.parse::<usize>() {
                Ok(n) => limit = n.min(MAX_LIST),
                Err(_) => return error(StatusCode::BAD_REQUEST, "limit is a number"),
            },
            _ => {}
        }
    }
    json(StatusCode::OK, &handle.list_all(state, limit).await)
}

/// The kept response, as the inner service gave it, unless it is encoded
/// in a coding this request doesn't accept.
async fn result(handle: &TasksHandle, id: TaskId, req: &http::HeaderMap) -> Response<ReportBody> {
    let kept = match handle.find_result(id).await {
        Ok(kept) => kept,
        Err(ResultError::Unknown) => return error(StatusCode::NOT_FOUND, "no such task"),
        Err(ResultError::NotFinished(state)) => {
            let why = format!("the task is {}: no result yet", state.as_str());
            return error(StatusCode::CONFLICT, &why);
        }
        Err(ResultError::Unreachable(e)) => return unreachable(&e),
        Err(ResultError::NoResult(state)) => {
            let why = format!(
                "the task {} without a response",
                match state {
                    TaskState::Cancelled => "was cancelled",
                    _ => "failed",
                }
            );
            return error(StatusCode::CONFLICT, &why);
        }
    };
    // Every coding applied must be one the request accepts (a list, as
    // `gzip, br`, names each one; one this crate doesn't know, none).
    let accept = AcceptEncoding::from_headers(req);
    for value in kept.headers.get_all(header::CONTENT_ENCODING) {
        let accepted = split_list(value.as_bytes()).all(|token| {
            ContentCoding::from_token(token)
                .is_some_and(|c| c == ContentCoding::Identity || accept.quality(c) != QValue::ZERO)
        });
        if !accepted {
            let why = format!(
                "the result is encoded as {}, which this request doesn't accept",
                String::from_utf8_lossy(value.as_bytes())
            );
            return error(StatusCode::NOT_ACCEPTABLE, &why);
        }
    }
    let mut resp = respond_with(kept.status, kept.for_later(), kept.body.clone());
    // One client's answer, fetched by its id: no cache keeps it.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The task layer's Prometheus families.
pub(super) fn metrics(out: &mut String, sources: &Sources) {
    let Some(handle) = &sources.tasks else {
        return;
    };
    let s = handle.stats();
    singles(
        out,
        "counter",
        &[
            (
                "tower_perf_tasks_submitted_total",
                "Requests run as background tasks.",
                s.submitted,
            ),
            (
                "tower_perf_tasks_rejected_total",
                "Deferred requests refused with 503: the task queue was full.",
                s.rejected,
            ),
        ],
    );
    by_label(
        out,
        "tower_perf_tasks_finished_total",
        "Tasks that ended, by how.",
        "outcome",
        &[
            ("completed", s.completed),
            (
                "failed",
                s.failed
                    .saturating_sub(s.timed_out + s.panicked + s.too_large),
            ),
            ("timeout", s.timed_out),
            ("panic", s.panicked),
            ("too_large", s.too_large),
            ("cancelled", s.cancelled),
        ],
    );
    singles(
        out,
        "gauge",
        &[
            (
                "tower_perf_tasks_queued",
                "Tasks waiting for a slot.",
                s.queued as u64,
            ),
            (
                "tower_perf_tasks_running",
                "Tasks running.",
                s.running as u64,
            ),
            (
                "tower_perf_tasks_kept_bytes",
                "Bytes the finished tasks kept for their monitors hold.",
                s.kept_bytes as u64,
            ),
        ],
    );
    let name = "tower_perf_tasks_run_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} How long tasks ran (quantiles over the last {RUN_TIMES_KEPT}).\n# TYPE {name} summary"
    );
    if let Some(r) = s.run_ms {
        for (q, v) in [("0.5", r.p50), ("0.95", r.p95), ("0.99", r.p99)] {
            let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {}", v / 1000.0);
        }
    }
    let _ = writeln!(out, "{name}_sum {}", s.run_seconds_total);
    let _ = writeln!(out, "{name}_count {}", s.runs);
}
