//! Task records in Redis (feature `redis`), so that every replica answers
//! a task's monitor, result, list and cancel, while the task runs where
//! it was submitted.
//!
//! - Each replica writes its tasks' records to Redis as they change
//!   (submitted, started, ended) on a connection of its own:
//!   `{prefix}:t:{id}` (the monitor's JSON) and `{prefix}:r:{id}` (the
//!   kept response, if at most [`MAX_SHARED_RESULT`]), and the id in
//!   `{prefix}:idx` (by the time of the write) for the list. The braces
//!   are Redis Cluster's hash tag: a store's keys share one slot, so a
//!   batch of writes is one pipeline and a list one `MGET` on a cluster
//!   too (tasks are few and bounded; they don't need spreading). A task that
//!   hasn't ended is written again every second with a 10 s lifetime (its
//!   progress; a replica that dies leaves no task "running" for long); an
//!   ended one lives for the retention, and goes when its replica drops
//!   it (a replica that dies leaves its ended tasks until their retention
//!   ends). Writes go through a queue (1,024 writes, 16 MiB) to one writer
//!   task: a request never waits for a write, and what the queue can't
//!   hold is dropped and counted; an ended task's write that failed is
//!   tried again, three times in all, within the same 16 MiB.
//! - A cancel goes to the channel of the replica that runs the task
//!   (`{prefix}:cancel:{replica}`), which its record names.
//! - A replica answers for its own tasks from memory, and for the others'
//!   from Redis, waiting at most the timeout (a list or a cancel: one
//!   second in all).
//! - Redis unreachable: a circuit breaker keeps it off the request path;
//!   each replica still answers for its own tasks, a list says it is
//!   incomplete, and a monitor of another replica's task answers `503`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use redis::AsyncCommands;
use tokio::sync::mpsc;

use super::id::TaskId;
use super::record::{TaskInfo, TaskResult, TaskState};
use super::registry::Registry;
use crate::breaker::{BreakerConfig, BreakerSnapshot, CircuitBreaker};

/// Writes waiting for the writer task at most; past that they are
/// dropped (and counted).
const QUEUE: usize = 1024;

/// How often the writer writes the tasks that haven't ended (their
/// progress), and how long those records live unless written again.
const HEARTBEAT: Duration = Duration::from_secs(1);
const UNFINISHED_TTL: Duration = Duration::from_secs(10);

/// The largest kept response shared through Redis; a larger one stays on
/// the replica that ran the task (another replica answers `503` for it).
pub const MAX_SHARED_RESULT: usize = 1 << 20;

/// How many ids a list reads at most from the index (newest first), and
/// per round trip.
const LIST_SCAN: usize = 5000;
const LIST_PAGE: usize = 500;

/// The longest a list or a cancel of another replica's task waits for
/// Redis in all.
pub(super) const SHARED_DEADLINE: Duration = Duration::from_secs(1);

/// Header fields a shared result may hold.
const MAX_FIELDS: usize = 1000;

/// Ids the index keeps at most (the newest).
const INDEX_MAX: isize = 100_000;

/// Task records shared through the Redis at a URL; give it to
/// [`AsyncLayer::redis`](super::AsyncLayer::redis).
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use tower_perf::tasks::{AsyncLayer, RedisTasks};
///
/// let shared = RedisTasks::new("redis://127.0.0.1:6379", "myapp:tasks").unwrap();
/// let layer = AsyncLayer::new().redis(shared);
/// # let _ = layer;
/// # }
/// ```
#[derive(Clone)]
pub struct RedisTasks {
    pub(super) listeners: crate::redis_conn::Listeners,
    pub(super) conn: crate::redis_conn::Conn,
    /// The writer's own: a batch of results doesn't hold up reads.
    writes: crate::redis_conn::Conn,
    pub(super) prefix: Arc<str>,
    pub(super) timeout: Duration,
    pub(super) stats: RedisTaskStats,
    /// This replica's id: its records name it, and cancels for its tasks
    /// go to its own channel.
    replica: u64,
}

impl std::fmt::Debug for RedisTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTasks")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Counters of the shared task records; clones share them.
#[derive(Debug, Clone)]
pub struct RedisTaskStats {
    inner: Arc<Counters>,
    breaker: CircuitBreaker,
}

#[derive(Debug, Default)]
struct Counters {
    errors: AtomicU64,
    timeouts: AtomicU64,
    dropped: AtomicU64,
    written: AtomicU64,
    cancels_sent: AtomicU64,
    cancels_received: AtomicU64,
}

/// A point-in-time copy of [`RedisTaskStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RedisTaskSnapshot {
    /// Redis errors (connection refused or lost, error replies).
    pub errors: u64,
    /// Operations Redis didn't answer within the timeout.
    pub timeouts: u64,
    /// Record writes dropped: the writer's queue was full, or the breaker
    /// was open.
    pub dropped: u64,
    /// Record writes Redis took.
    pub written: u64,
    /// Cancels published for tasks other replicas run.
    pub cancels_sent: u64,
    /// Cancels received for tasks this replica runs.
    pub cancels_received: u64,
    /// The circuit breaker.
    pub breaker: BreakerSnapshot,
}

impl RedisTaskStats {
    /// The counters now.
    pub fn snapshot(&self) -> RedisTaskSnapshot {
        let c = &self.inner;
        RedisTaskSnapshot {
            errors: c.errors.load(Relaxed),
            timeouts: c.timeouts.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            written: c.written.load(Relaxed),
            cancels_sent: c.cancels_sent.load(Relaxed),
            cancels_received: c.cancels_received.load(Relaxed),
            breaker: self.breaker.snapshot(),
        }
    }
}

impl RedisTasks {
    /// Records on the Redis at `target` (a URL, or a cluster's seed
    /// nodes, see [`RedisTarget`](crate::RedisTarget)), keys under
    /// `{prefix}`. Does not connect yet; fails on a malformed URL, and on
    /// a prefix that is empty or holds a brace (the keys' hash tag is the
    /// prefix). Must be called inside a Tokio runtime.
    pub fn new(target: impl Into<crate::RedisTarget>, prefix: &str) -> Result<Self, String> {
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            return Err(format!(
                "RedisTasks prefix {prefix:?}: must be non-empty and without braces (it is the keys' Redis Cluster hash tag)"
            ));
        }
        let target = target.into();
        let (listeners, conn) = crate::redis_conn::connect(&target)?;
        let (_, writes) = crate::redis_conn::connect(&target)?;
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| format!("no random replica id: {e}"))?;
        Ok(Self {
            replica: u64::from_le_bytes(id),
            listeners,
            conn,
            writes,
            prefix: prefix.into(),
            timeout: Duration::from_millis(200),
            stats: RedisTaskStats {
                inner: Arc::default(),
                breaker: CircuitBreaker::new("redis task records", BreakerConfig::default()),
            },
        })
    }

    /// The longest a read or a batch of writes waits for Redis (default
    /// 200 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The circuit breaker's settings (see
    /// [`BreakerConfig`]).
    ///
    /// # Panics
    ///
    /// On a configuration that cannot work, naming it.
    pub fn breaker(self, config: BreakerConfig) -> Self {
        self.stats.breaker.configure(config);
        self
    }

    /// This store's counters.
    pub fn stats(&self) -> RedisTaskStats {
        self.stats.clone()
    }

    fn info_key_text(&self, id: &str) -> String {
        format!("{{{}}}:t:{id}", self.prefix)
    }

    fn info_key(&self, id: TaskId) -> String {
        self.info_key_text(&id.to_string())
    }

    fn result_key(&self, id: TaskId) -> String {
        format!("{{{}}}:r:{id}", self.prefix)
    }

    fn index_key(&self) -> String {
        format!("{{{}}}:idx", self.prefix)
    }

    fn cancel_channel(&self, replica: u64) -> String {
        format!("{}:cancel:{replica:016x}", self.prefix)
    }

    /// Runs `op` through the breaker, within the timeout.
    async fn run<T>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        crate::redis_conn::through(
            &self.stats.breaker,
            self.timeout,
            op,
            &self.stats.inner.errors,
            &self.stats.inner.timeouts,
        )
        .await
    }

    /// A task's record as its replica last wrote it.
    pub(super) async fn info(&self, id: TaskId) -> Result<Option<TaskInfo>, String> {
        Ok(self.owned(id).await?.map(|o| o.info))
    }

    /// A task's record and the replica that runs it.
    pub(super) async fn owned(&self, id: TaskId) -> Result<Option<Owned>, String> {
        let mut conn = self.conn.clone();
        let key = self.info_key(id);
        let text: Option<String> = self.run(conn.get(&key)).await?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// A task's kept response.
    pub(super) async fn result(&self, id: TaskId) -> Result<Option<TaskResult>, String> {
        let mut conn = self.conn.clone();
        let key = self.result_key(id);
        let (status, headers, body): (Option<u16>, Option<Vec<u8>>, Option<Vec<u8>>) = self
            .run(
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg("status")
                    .arg("headers")
                    .arg("body")
                    .query_async(&mut conn),
            )
            .await?;
        let (Some(status), Some(headers), Some(body)) = (status, headers, body) else {
            return Ok(None);
        };
        Ok((200..=599)
            .contains(&status)
            .then(|| StatusCode::from_u16(status).ok())
            .flatten()
            .and_then(|status| {
                Some(TaskResult {
                    status,
                    headers: decode_headers(&headers)?,
                    body: Bytes::from(body),
                })
            }))
    }

    /// The tasks every replica recorded (in `state` if given), most
    /// recently written first, at most `limit`; read page by page, at most
    /// [`LIST_SCAN`] ids.
    pub(super) async fn list(
        &self,
        state: Option<TaskState>,
        limit: usize,
    ) -> Result<Vec<TaskInfo>, String> {
        let mut conn = self.conn.clone();
        let mut found = Vec::new();
        let mut start = 0;
        while found.len() < limit && start < LIST_SCAN {
            let stop = start + LIST_PAGE - 1;
            let ids: Vec<String> = self
                .run(conn.zrevrange(self.index_key(), start as isize, stop as isize))
                .await?;
            if ids.is_empty() {
                break;
            }
            start += LIST_PAGE;
            let keys: Vec<String> = ids.iter().map(|id| self.info_key_text(id)).collect();
            let texts: Vec<Option<String>> = self.run(conn.mget(&keys)).await?;
            found.extend(
                texts
                    .into_iter()
                    .flatten()
                    .filter_map(|t| serde_json::from_str::<TaskInfo>(&t).ok())
                    .filter(|t| state.is_none_or(|s| t.state == s)),
            );
        }
        found.truncate(limit);
        Ok(found)
    }

    /// Asks `owner`, the replica that runs `id`, to cancel it; how many
    /// listeners heard (it listens while it is up). On a cluster, whose
    /// publish counts only the receiving node's, a count of none is
    /// checked with every node.
    pub(super) async fn send_cancel(&self, id: TaskId, owner: u64) -> Result<u64, String> {
        let mut conn = self.conn.clone();
        let channel = self.cancel_channel(owner);
        let mut heard = self.run(conn.publish(&channel, &id.to_string())).await?;
        self.stats.inner.cancels_sent.fetch_add(1, Relaxed);
        if heard == 0 && conn.is_cluster() {
            heard = self.run(conn.listeners(&channel)).await?;
        }
        Ok(heard)
    }
}

/// A record as stored: the monitor's JSON and the replica that runs the
/// task.
#[derive(Debug, serde::Deserialize)]
pub(super) struct Owned {
    pub(super) owner: u64,
    #[serde(flatten)]
    pub(super) info: TaskInfo,
}

#[derive(serde::Serialize)]
struct OwnedOut<'a> {
    owner: u64,
    #[serde(flatten)]
    info: &'a TaskInfo,
}

/// What the writer writes.
#[derive(Debug)]
pub(super) enum Write {
    Info(Box<TaskInfo>),
    Result(TaskId, Arc<TaskResult>),
    /// The replica dropped the task: its records go.
    Forget(TaskId),
}

impl Write {
    /// Whether to try it again after a failed batch: what isn't written
    /// again by the heartbeat (an ended task's record and response, a
    /// removal).
    fn lasting(&self) -> bool {
        match self {
            Write::Info(info) => info.state.is_finished(),
            Write::Result(..) | Write::Forget(_) => true,
        }
    }

    fn id(&self) -> TaskId {
        match self {
            Write::Info(info) => info.id,
            Write::Result(id, _) | Write::Forget(id) => *id,
        }
    }

    /// About what it holds, in bytes.
    fn weight(&self) -> usize {
        match self {
            Write::Info(_) => 1024,
            Write::Result(_, r) => 1024 + r.body.len(),
            Write::Forget(_) => 64,
        }
    }
}

/// Bytes of writes waiting (queued, or to try again) at most; past it
/// new ones are dropped (counted).
const WAITING_BYTES: usize = 16 << 20;

/// Bytes one pipeline carries at most.
const BATCH_BYTES: usize = 4 << 20;

/// Attempts at a write before it is dropped (counted).
const ATTEMPTS: u8 = 3;

/// The registry's side: the writer's queue. The writer and the cancel
/// subscriber stop when it goes (with the registry).
#[derive(Debug)]
pub(super) struct Mirror {
    pub(super) shared: RedisTasks,
    tx: mpsc::Sender<Write>,
    /// Bytes of writes in the queue.
    queued: Arc<std::sync::atomic::AtomicUsize>,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Mirror {
    /// Starts the writer and the cancel subscriber for `registry`.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, which the two tasks need.
    pub(super) fn start(shared: RedisTasks, retention: Duration, registry: Weak<Registry>) -> Self {
        let runtime = tokio::runtime::Handle::try_current().unwrap_or_else(|_| {
            panic!("AsyncLayer::redis: the layer must be built (.layer() or .handle()) inside a Tokio runtime, which its Redis writer runs in")
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let queued = Arc::default();
        let writer = Writer {
            shared: shared.clone(),
            registry: registry.clone(),
            queued: Arc::clone(&queued),
            retry: Vec::new(),
            ttl: millis(retention),
        };
        runtime.spawn(writer.run(rx));
        let canceller = Canceller {
            registry,
            stats: shared.stats.clone(),
        };
        let (listeners, channel) = (
            shared.listeners.clone(),
            shared.cancel_channel(shared.replica),
        );
        // Ends when this `Mirror` (its `_stop`) goes with the registry.
        runtime.spawn(async move {
            crate::redis_conn::subscribe(listeners, &channel, canceller, stop).await;
        });
        Self {
            shared,
            tx,
            queued,
            _stop: stop_tx,
        }
    }

    /// Queues a write; drops it (counted) when the queue is full or holds
    /// [`WAITING_BYTES`] already. A response larger than
    /// [`MAX_SHARED_RESULT`] isn't shared.
    pub(super) fn send(&self, w: Write) {
        if matches!(&w, Write::Result(_, r) if r.body.len() > MAX_SHARED_RESULT) {
            return;
        }
        let weight = w.weight();
        if self.queued.fetch_add(weight, Relaxed) + weight > WAITING_BYTES {
            self.queued.fetch_sub(weight, Relaxed);
            self.shared.stats.inner.dropped.fetch_add(1, Relaxed);
            return;
        }
        if self.tx.try_send(w).is_err() {
            self.queued.fetch_sub(weight, Relaxed);
            self.shared.stats.inner.dropped.fetch_add(1, Relaxed);
        }
    }
}

pub(super) fn millis(d: Duration) -> u64 {
    // Redis refuses an expiry past 2^63 ms; a year is plenty here.
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, 365 * 24 * 3600 * 1000)
}

/// The writer: batches of queued writes; every [`HEARTBEAT`] the tasks
/// that haven't ended, then the writes that failed (each tried
/// [`ATTEMPTS`] times); ends when the registry (its queue) goes.
struct Writer {
    shared: RedisTasks,
    registry: Weak<Registry>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    retry: Vec<(Write, u8)>,
    ttl: u64,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Write>) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                w = rx.recv() => {
                    let Some(w) = w else { return };
                    let mut batch = vec![w];
                    let mut bytes = batch[0].weight();
                    while batch.len() < 64 && bytes < BATCH_BYTES {
                        match rx.try_recv() {
                            Ok(w) => {
                                bytes += w.weight();
                                batch.push(w);
                            }
                            Err(_) => break,
                        }
                    }
                    self.queued.fetch_sub(bytes, Relaxed);
                    let batch = batch.into_iter().map(|w| (w, 0)).collect();
                    self.write(batch).await;
                }
                _ = tick.tick() => {
                    if let Some(registry) = self.registry.upgrade() {
                        let beat = registry
                            .unfinished()
                            .into_iter()
                            .map(|i| (Write::Info(Box::new(i)), ATTEMPTS))
                            .collect();
                        self.write(beat).await;
                        // What the replica has dropped since isn't written
                        // again (its removal is).
                        let retry = std::mem::take(&mut self.retry)
                            .into_iter()
                            .filter(|(w, _)| {
                                matches!(w, Write::Forget(_)) || registry.knows(w.id())
                            })
                            .collect();
                        drop(registry);
                        self.write(retry).await;
                    }
                }
            }
        }
    }

    /// Writes `batch` in one pipeline; on failure keeps the lasting
    /// writes to try again (those tried [`ATTEMPTS`] times, and those past
    /// [`WAITING_BYTES`], are dropped and counted).
    async fn write(&mut self, batch: Vec<(Write, u8)>) {
        if batch.is_empty() {
            return;
        }
        let shared = &self.shared;
        let (ttl, short) = (self.ttl, millis(UNFINISHED_TTL));
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut pipe = redis::pipe();
        for (w, _) in &batch {
            match w {
                Write::Info(info) => {
                    let owned = OwnedOut {
                        owner: shared.replica,
                        info,
                    };
                    let Ok(json) = serde_json::to_string(&owned) else {
                        continue;
                    };
                    let life = if info.state.is_finished() { ttl } else { short };
                    pipe.cmd("SET")
                        .arg(shared.info_key(info.id))
                        .arg(json)
                        .arg("PX")
                        .arg(life)
                        .ignore();
                    pipe.cmd("ZADD")
                        .arg(shared.index_key())
                        .arg(info.submitted_at_ms)
                        .arg(info.id.to_string())
                        .ignore();
                }
                Write::Result(id, result) => {
                    let key = shared.result_key(*id);
                    pipe.cmd("HSET")
                        .arg(&key)
                        .arg("status")
                        .arg(result.status.as_u16())
                        .arg("headers")
                        .arg(encode_headers(&result.for_later()))
                        .arg("body")
                        .arg(result.body.as_ref())
                        .ignore();
                    pipe.cmd("PEXPIRE").arg(&key).arg(ttl).ignore();
                }
                Write::Forget(id) => {
                    pipe.cmd("DEL")
                        .arg(shared.info_key(*id))
                        .arg(shared.result_key(*id))
                        .ignore();
                    pipe.cmd("ZREM")
                        .arg(shared.index_key())
                        .arg(id.to_string())
                        .ignore();
                }
            }
        }
        // The index keeps what the retention (and a day for tasks still
        // running) and its bound allow.
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(shared.index_key())
            .arg("-inf")
            .arg(now_ms.saturating_sub(ttl.saturating_add(24 * 3600 * 1000)))
            .ignore();
        pipe.cmd("ZREMRANGEBYRANK")
            .arg(shared.index_key())
            .arg(0)
            .arg(-INDEX_MAX - 1)
            .ignore();
        let mut conn = shared.writes.clone();
        if shared.run(pipe.query_async::<()>(&mut conn)).await.is_ok() {
            shared
                .stats
                .inner
                .written
                .fetch_add(batch.len() as u64, Relaxed);
            // A removal that went through: nothing of that task is written
            // again.
            let forgotten: Vec<TaskId> = batch
                .iter()
                .filter(|(w, _)| matches!(w, Write::Forget(_)))
                .map(|(w, _)| w.id())
                .collect();
            self.retry.retain(|(w, _)| !forgotten.contains(&w.id()));
            return;
        }
        // What hasn't ended is written again by the heartbeat; the rest
        // is tried again, within bounds.
        let mut bytes: usize = self.retry.iter().map(|(w, _)| w.weight()).sum();
        for (w, tries) in batch.into_iter().filter(|(w, _)| w.lasting()) {
            let tries = tries + 1;
            if tries >= ATTEMPTS || bytes + w.weight() > WAITING_BYTES {
                shared.stats.inner.dropped.fetch_add(1, Relaxed);
                continue;
            }
            bytes += w.weight();
            self.retry.push((w, tries));
        }
    }
}

/// The cancel subscriber: cancels the tasks this replica runs that
/// another replica was asked to cancel.
struct Canceller {
    registry: Weak<Registry>,
    stats: RedisTaskStats,
}

impl crate::redis_conn::Listener for Canceller {
    fn subscribed(&mut self, _again: bool) {}

    fn message(&mut self, payload: &[u8]) {
        let id = std::str::from_utf8(payload).ok().and_then(TaskId::parse);
        let cancelled =
            id.is_some_and(|id| self.registry.upgrade().is_some_and(|r| r.cancel_local(id)));
        if cancelled {
            self.stats.inner.cancels_received.fetch_add(1, Relaxed);
        }
    }

    fn failed(&mut self) {
        self.stats.inner.errors.fetch_add(1, Relaxed);
    }
}

/// Header fields as bytes: for each, the name's length (2 bytes), the
/// name, the value's length (4 bytes), the value.
fn encode_headers(headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let (n, v) = (name.as_str().as_bytes(), value.as_bytes());
        out.extend_from_slice(&(n.len() as u16).to_be_bytes());
        out.extend_from_slice(n);
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

/// The fields [`encode_headers`] wrote; `None` for anything else.
fn decode_headers(mut bytes: &[u8]) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    while !bytes.is_empty() {
        if headers.len() >= MAX_FIELDS {
            return None;
        }
        let (len, rest) = bytes.split_first_chunk::<2>()?;
        let (name, rest) = rest.split_at_checked(usize::from(u16::from_be_bytes(*len)))?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let (value, rest) = rest.split_at_checked(u32::from_be_bytes(*len) as usize)?;
        headers
            .try_append(
                HeaderName::from_bytes(name).ok()?,
                HeaderValue::from_bytes(value).ok()?,
            )
            .ok()?;
        bytes = rest;
    }
    Some(headers)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{HeaderMap, HeaderValue};

    use super::{MAX_FIELDS, decode_headers, encode_headers, millis};

    #[test]
    fn expiries_are_ones_redis_takes() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_secs(60)), 60_000);
        assert_eq!(millis(Duration::MAX), 365 * 24 * 3600 * 1000);
    }

    #[test]
    fn too_many_fields_are_refused() {
        let mut h = HeaderMap::new();
        for i in 0..=MAX_FIELDS {
            h.append(
                http::HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        assert_eq!(decode_headers(&encode_headers(&h)), None);
    }

    #[test]
    fn header_fields_round_trip_and_garbage_is_refused() {
        let mut h = HeaderMap::new();
        h.append("content-type", HeaderValue::from_static("application/json"));
        h.append("x-many", HeaderValue::from_static("1"));
        h.append("x-many", HeaderValue::from_static("2"));
        h.append("x-bin", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let bytes = encode_headers(&h);
        assert_eq!(decode_headers(&bytes), Some(h));
        assert_eq!(decode_headers(&[]), Some(HeaderMap::new()));
        assert_eq!(decode_headers(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_headers(&[0, 5, b'a']), None);
        assert_eq!(decode_headers(&[0, 1, b' ', 0, 0, 0, 0]), None);
    }
}
