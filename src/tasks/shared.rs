//! Task records in Redis (feature `redis`), so that every replica answers
//! a task's monitor, result, list and cancel, while the task runs where
//! it was submitted.
//!
//! - Each replica writes its tasks' records to Redis as they change
//!   (submitted, started, ended; a running task's progress twice a
//!   second): `{prefix}:t:{id}` (the monitor's JSON), `{prefix}:r:{id}`
//!   (the kept response), both expiring after the retention, and the id
//!   in `{prefix}:idx` (by submission time) for the list. Writes go
//!   through a bounded queue to one writer task: a request never waits
//!   for Redis, and what the queue can't hold is dropped and counted.
//! - A replica answers for its own tasks from memory, and for the others'
//!   from Redis.
//! - A cancel for a task another replica runs is published on
//!   `{prefix}:cancel`; the replica that runs it cancels it.
//! - Redis unreachable: a circuit breaker keeps it off the request path;
//!   each replica still answers for its own tasks, a list says it is
//!   incomplete, and a monitor of another replica's task answers `503`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::id::TaskId;
use super::record::{TaskInfo, TaskResult, TaskState};
use super::registry::Registry;
use crate::breaker::{BreakerConfig, BreakerSnapshot, CircuitBreaker};

/// Writes waiting for the writer task at most; past that they are
/// dropped (and counted).
const QUEUE: usize = 1024;

/// How often the writer writes the running tasks' progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// How many ids a list reads at most from the index (newest first).
const LIST_SCAN: isize = 5000;

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
    pub(super) client: redis::Client,
    pub(super) conn: ConnectionManager,
    pub(super) prefix: Arc<str>,
    pub(super) timeout: Duration,
    pub(super) stats: RedisTaskStats,
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
    /// Records on the Redis at `url`, keys under `prefix`. Does not
    /// connect yet; fails only on a malformed URL. Must be called inside a
    /// Tokio runtime.
    pub fn new(url: &str, prefix: &str) -> Result<Self, String> {
        let (client, conn) = crate::redis_conn::connect(url)?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.into(),
            timeout: Duration::from_millis(200),
            stats: RedisTaskStats {
                inner: Arc::default(),
                breaker: CircuitBreaker::new(BreakerConfig::default()),
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
    /// [`BreakerConfig`](crate::breaker::BreakerConfig)).
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

    fn info_key(&self, id: TaskId) -> String {
        format!("{}:t:{id}", self.prefix)
    }

    fn result_key(&self, id: TaskId) -> String {
        format!("{}:r:{id}", self.prefix)
    }

    fn index_key(&self) -> String {
        format!("{}:idx", self.prefix)
    }

    fn cancel_channel(&self) -> String {
        format!("{}:cancel", self.prefix)
    }

    /// Runs `op` through the breaker, within the timeout.
    async fn run<T>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        let Some(ticket) = self.stats.breaker.try_call() else {
            return Err("redis: circuit open".to_owned());
        };
        crate::redis_conn::guarded(
            ticket,
            self.timeout,
            op,
            &self.stats.inner.errors,
            &self.stats.inner.timeouts,
        )
        .await
    }

    /// A task's record as its replica last wrote it.
    pub(super) async fn info(&self, id: TaskId) -> Result<Option<TaskInfo>, String> {
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
        Ok(StatusCode::from_u16(status).ok().and_then(|status| {
            Some(TaskResult {
                status,
                headers: decode_headers(&headers)?,
                body: Bytes::from(body),
            })
        }))
    }

    /// The tasks every replica recorded (in `state` if given), newest
    /// first, at most `limit`.
    pub(super) async fn list(
        &self,
        state: Option<TaskState>,
        limit: usize,
    ) -> Result<Vec<TaskInfo>, String> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = self
            .run(conn.zrevrange(self.index_key(), 0, LIST_SCAN - 1))
            .await?;
        let mut found = Vec::new();
        for chunk in ids.chunks(500) {
            if found.len() >= limit {
                break;
            }
            let keys: Vec<String> = chunk
                .iter()
                .map(|id| format!("{}:t:{id}", self.prefix))
                .collect();
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

    /// Asks the replica that runs `id` to cancel it; how many replicas
    /// heard.
    pub(super) async fn send_cancel(&self, id: TaskId) -> Result<u64, String> {
        let mut conn = self.conn.clone();
        let heard: u64 = self
            .run(conn.publish(self.cancel_channel(), id.to_string()))
            .await?;
        self.stats.inner.cancels_sent.fetch_add(1, Relaxed);
        Ok(heard)
    }
}

/// What the writer writes.
#[derive(Debug)]
pub(super) enum Write {
    Info(Box<TaskInfo>),
    Result(TaskId, Arc<TaskResult>),
}

/// The registry's side: the writer's queue.
#[derive(Debug)]
pub(super) struct Mirror {
    pub(super) shared: RedisTasks,
    tx: mpsc::Sender<Write>,
}

impl Mirror {
    /// Starts the writer and the cancel subscriber for `registry`; they
    /// stop when it goes.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, which the two tasks need.
    pub(super) fn start(shared: RedisTasks, retention: Duration, registry: Weak<Registry>) -> Self {
        let runtime = tokio::runtime::Handle::try_current().unwrap_or_else(|_| {
            panic!("AsyncLayer::redis: the layer must be built (.layer() or .handle()) inside a Tokio runtime, which its Redis writer runs in")
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        runtime.spawn(write(shared.clone(), rx, registry.clone(), retention));
        runtime.spawn(listen(shared.clone(), registry));
        Self { shared, tx }
    }

    /// Queues a write; drops it (counted) when the queue is full.
    pub(super) fn send(&self, w: Write) {
        if self.tx.try_send(w).is_err() {
            self.shared.stats.inner.dropped.fetch_add(1, Relaxed);
        }
    }
}

/// The writer: batches of queued writes, and the running tasks' progress
/// every [`PROGRESS_EVERY`].
async fn write(
    shared: RedisTasks,
    mut rx: mpsc::Receiver<Write>,
    registry: Weak<Registry>,
    retention: Duration,
) {
    let ttl = u64::try_from(retention.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            w = rx.recv() => match w {
                Some(w) => {
                    batch.push(w);
                    while batch.len() < 64 {
                        match rx.try_recv() {
                            Ok(w) => batch.push(w),
                            Err(_) => break,
                        }
                    }
                }
                None => return,
            },
            _ = tick.tick() => {
                let Some(registry) = registry.upgrade() else { return };
                batch.extend(registry.running().into_iter().map(|i| Write::Info(Box::new(i))));
            }
        }
        if batch.is_empty() {
            continue;
        }
        let n = batch.len() as u64;
        let mut pipe = redis::pipe();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for w in &batch {
            match w {
                Write::Info(info) => {
                    let Ok(json) = serde_json::to_string(info) else {
                        continue;
                    };
                    pipe.cmd("SET")
                        .arg(shared.info_key(info.id))
                        .arg(json)
                        .arg("PX")
                        .arg(ttl)
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
                        .arg(encode_headers(&result.headers))
                        .arg("body")
                        .arg(result.body.as_ref())
                        .ignore();
                    pipe.cmd("PEXPIRE").arg(&key).arg(ttl).ignore();
                }
            }
        }
        // The index keeps what the retention and its bound allow.
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(shared.index_key())
            .arg("-inf")
            .arg(now_ms.saturating_sub(ttl))
            .ignore();
        pipe.cmd("ZREMRANGEBYRANK")
            .arg(shared.index_key())
            .arg(0)
            .arg(-INDEX_MAX - 1)
            .ignore();
        let mut conn = shared.conn.clone();
        match shared.run(pipe.query_async::<()>(&mut conn)).await {
            Ok(()) => shared.stats.inner.written.fetch_add(n, Relaxed),
            Err(_) => shared.stats.inner.dropped.fetch_add(n, Relaxed),
        };
    }
}

/// The cancel subscriber: cancels the tasks this replica runs that
/// another replica was asked to cancel; subscribes again after a lost
/// connection; stops when the registry goes.
async fn listen(shared: RedisTasks, registry: Weak<Registry>) {
    let channel = shared.cancel_channel();
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = async {
            let mut pubsub = shared.client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            backoff = Duration::from_millis(100);
            let mut messages = pubsub.on_message();
            loop {
                let next = tokio::time::timeout(Duration::from_secs(1), messages.next()).await;
                let Some(registry) = registry.upgrade() else {
                    return Ok(());
                };
                match next {
                    Ok(Some(msg)) => {
                        let id = std::str::from_utf8(msg.get_payload_bytes())
                            .ok()
                            .and_then(TaskId::parse);
                        if let Some(id) = id {
                            if registry.cancel_local(id) {
                                shared.stats.inner.cancels_received.fetch_add(1, Relaxed);
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {} // a second without a message: look at the registry again
                }
            }
            redis::RedisResult::Ok(())
        };
        let _ = session.await;
        if registry.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
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
        let (len, rest) = bytes.split_first_chunk::<2>()?;
        let (name, rest) = rest.split_at_checked(usize::from(u16::from_be_bytes(*len)))?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let (value, rest) = rest.split_at_checked(u32::from_be_bytes(*len) as usize)?;
        headers.append(
            HeaderName::from_bytes(name).ok()?,
            HeaderValue::from_bytes(value).ok()?,
        );
        bytes = rest;
    }
    Some(headers)
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::{decode_headers, encode_headers};

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
