//! What the monitor shows of a task: its state, timings, error and result.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::id::TaskId;
use super::progress::TaskProgress;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Queued: waiting for one of the layer's concurrency slots.
    Pending,
    /// The inner service is handling it.
    Running,
    /// The inner service answered with a status below 500 and the whole
    /// body fit the result limit.
    Completed,
    /// The inner service failed: an error, a 5xx answer, a panic, a
    /// timeout, a body above the result limit, or a shutdown.
    Failed,
    /// Cancelled (`DELETE` on its monitor) before it ended.
    Cancelled,
}

impl TaskState {
    /// The state's name as the monitor writes it (`pending`…).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The state `name` writes, if any.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Running,
            Self::Completed,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// Whether the task has ended (completed, failed or cancelled).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// The response a task's inner service gave, kept for its result
/// endpoint.
#[derive(Debug, Clone)]
pub struct TaskResult {
    /// Its status.
    pub status: StatusCode,
    /// Its header fields (hop-by-hop ones and the length removed; see
    /// [`for_later`](Self::for_later) for what a later request gets).
    pub headers: HeaderMap,
    /// Its whole body.
    pub body: Bytes,
}

impl TaskResult {
    /// The fields to serve this response with to a later request (its
    /// result endpoint, another replica): none of what belonged to the
    /// exchange it answered (`Set-Cookie`, `Date`) or says how caches may
    /// keep it (`Expires`, `CDN-Cache-Control` and every other
    /// `*-Cache-Control` a targeted cache reads, RFC 9213), since it is
    /// one client's answer reached by its task's id.
    pub fn for_later(&self) -> HeaderMap {
        let mut headers = self.headers.clone();
        let doomed: Vec<http::HeaderName> = headers
            .keys()
            .filter(|n| {
                *n == http::header::SET_COOKIE
                    || *n == http::header::DATE
                    || *n == http::header::EXPIRES
                    || n.as_str().ends_with("-cache-control")
            })
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(name);
        }
        headers
    }

    /// Bytes the result holds: the body and the fields' names and values.
    pub(super) fn weight(&self) -> usize {
        self.body.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 32)
                .sum::<usize>()
    }
}

/// Why a task failed, as the statistics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The inner service's error, or its body's.
    Error,
    /// A 5xx answer (kept as the result).
    ServerError,
    /// The handler panicked.
    Panic,
    /// It ran longer than its timeout.
    Timeout,
    /// Its body passed the result limit.
    TooLarge,
    /// The server shut down first.
    Shutdown,
}

/// How a task ended.
#[derive(Debug)]
pub(super) enum Outcome {
    Completed(TaskResult),
    Failed(Failure, String, Option<TaskResult>),
    Cancelled(&'static str),
}

/// The longest method, path or error text a record keeps, in bytes.
pub(super) const MAX_TEXT: usize = 1024;

/// The longest start of `text` of at most `max` bytes that ends on a
/// character boundary.
pub(super) fn prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` cut to [`MAX_TEXT`] bytes: every text a record keeps comes from
/// a request or a handler, and a record may be kept for days.
pub(super) fn bounded(text: &str) -> String {
    prefix(text, MAX_TEXT).to_owned()
}

/// One task, as the registry keeps it.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) id: TaskId,
    pub(super) state: TaskState,
    pub(super) method: String,
    pub(super) path: String,
    pub(super) progress: TaskProgress,
    pub(super) submitted: (SystemTime, Instant),
    pub(super) started: Option<(SystemTime, Instant)>,
    pub(super) finished: Option<(SystemTime, Instant)>,
    pub(super) error: Option<String>,
    pub(super) result: Option<std::sync::Arc<TaskResult>>,
}

/// What the task monitor shows of one task (its JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskInfo {
    /// The task's id.
    pub id: TaskId,
    /// Its state.
    pub state: TaskState,
    /// The request's method.
    pub method: String,
    /// The request's path and query (cut to 1 KiB, as the method and
    /// the error are).
    pub path: String,
    /// The last percentage the handler reported (100 once completed).
    pub progress: u8,
    /// The last message the handler reported.
    pub message: Option<String>,
    /// When it was submitted, in milliseconds since the Unix epoch.
    pub submitted_at_ms: u64,
    /// When it started running.
    pub started_at_ms: Option<u64>,
    /// When it ended.
    pub finished_at_ms: Option<u64>,
    /// Milliseconds it waited in the queue (so far, while pending).
    pub queued_ms: u64,
    /// Milliseconds it ran (so far, while running).
    pub run_ms: Option<u64>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// The kept response's status and body size, once there is one.
    pub result: Option<ResultInfo>,
    /// Where to read it.
    pub links: Links,
}

/// The status and size of a task's kept response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultInfo {
    /// Its status code.
    pub status: u16,
    /// Its body's length.
    pub bytes: usize,
}

/// A task's addresses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Links {
    /// The task's monitor (its status).
    pub monitor: String,
    /// Its kept response, once there is one.
    pub result: Option<String>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Record {
    /// Bytes the record holds once finished: its texts (the progress
    /// message counted at its bound), its result, and its own size.
    pub(super) fn weight(&self) -> usize {
        std::mem::size_of::<Self>()
            + 64
            + self.method.len()
            + self.path.len()
            + self.error.as_ref().map_or(0, String::len)
            + super::progress::MAX_PROGRESS_MESSAGE
            + self.result.as_deref().map_or(0, TaskResult::weight)
    }

    /// The monitor's view of the record at `now`, with links under
    /// `monitor`.
    pub(super) fn info(&self, now: Instant, monitor: &str) -> TaskInfo {
        let (mut progress, message) = self.progress.get();
        if self.state == TaskState::Completed {
            progress = 100;
        }
        let queued_until = self.started.or(self.finished).map_or(now, |(_, i)| i);
        let base = format!("{monitor}/{}", self.id);
        TaskInfo {
            id: self.id,
            state: self.state,
            method: self.method.clone(),
            path: self.path.clone(),
            progress,
            message,
            submitted_at_ms: unix_ms(self.submitted.0),
            started_at_ms: self.started.map(|(t, _)| unix_ms(t)),
            finished_at_ms: self.finished.map(|(t, _)| unix_ms(t)),
            queued_ms: ms(queued_until.saturating_duration_since(self.submitted.1)),
            run_ms: self.started.map(|(_, s)| {
                ms(self
                    .finished
                    .map_or(now, |(_, f)| f)
                    .saturating_duration_since(s))
            }),
            error: self.error.clone(),
            result: self.result.as_ref().map(|r| ResultInfo {
                status: r.status.as_u16(),
                bytes: r.body.len(),
            }),
            links: Links {
                result: self.result.is_some().then(|| format!("{base}/result")),
                monitor: base,
            },
        }
    }
}
