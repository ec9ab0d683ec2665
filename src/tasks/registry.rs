//! The registry: every task's record, the queue's admission, the
//! concurrency slots, retention and the statistics. One lock over the
//! records, never held across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::id::TaskId;
use super::progress::TaskProgress;
use super::record::{Failure, Outcome, Record, TaskInfo, TaskResult, TaskState, bounded};
use super::stats::{RUN_TIMES_KEPT, RunTimes, TaskSnapshot};
use crate::clock::Clock;

/// The registry's bounds, fixed when the layer is built.
#[derive(Debug, Clone)]
pub(super) struct Bounds {
    pub(super) concurrency: usize,
    pub(super) queue: usize,
    pub(super) retention: Duration,
    pub(super) result_budget: usize,
    pub(super) max_finished: usize,
    pub(super) monitor: String,
}

/// Why a task was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The queue is full: try again after this long.
    Full(Duration),
    /// The server is shutting down.
    ShuttingDown,
}

/// How a task's worker is told to stop.
#[derive(Debug, Default)]
pub(super) struct Control {
    pub(super) stop: Notify,
    /// Set before `stop` is notified by a shutdown (not a cancel).
    pub(super) shutdown: AtomicBool,
    /// Notified (all waiters) when the task ends.
    pub(super) done: Notify,
}

#[derive(Debug, Default)]
struct Counters {
    submitted: AtomicU64,
    rejected: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    panicked: AtomicU64,
    too_large: AtomicU64,
    cancelled: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    tasks: HashMap<TaskId, (Record, Arc<Control>)>,
    /// Finished tasks, oldest first: retention and the budget drop from
    /// the front.
    finished: VecDeque<TaskId>,
    /// Admitted, not yet running (their bodies may still be arriving).
    pending: usize,
    running: usize,
    /// Bytes the finished records hold (results included).
    kept_bytes: usize,
    /// The last run times (µs), for the percentiles.
    run_times: VecDeque<u64>,
    /// The median of `run_times`, as of lately (µs).
    median_run: Option<u64>,
    /// Every run so far: how many, and their sum (µs).
    run_count: u64,
    run_micros_sum: u64,
}

/// Every task of one [`AsyncLayer`](super::AsyncLayer).
pub(super) struct Registry {
    pub(super) bounds: Bounds,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) slots: Arc<Semaphore>,
    /// Requests being read or queued or running, at most the queue plus
    /// the slots (see [`admit`](Self::admit)).
    intake: Arc<Semaphore>,
    shutting_down: AtomicBool,
    /// Notified when the last queued or running task ends.
    idle: Notify,
    counters: Counters,
    state: Mutex<State>,
    /// The records' copy in Redis, when shared (set once the registry is
    /// in its `Arc`, which the writer holds weakly).
    #[cfg(feature = "redis")]
    pub(super) mirror: std::sync::OnceLock<super::shared::Mirror>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub(super) fn new(bounds: Bounds, clock: Arc<dyn Clock>) -> Self {
        Self {
            #[cfg(feature = "redis")]
            mirror: std::sync::OnceLock::new(),
            slots: Arc::new(Semaphore::new(bounds.concurrency)),
            intake: Arc::new(Semaphore::new(
                bounds
                    .queue
                    .saturating_add(bounds.concurrency)
                    .min(Semaphore::MAX_PERMITS),
            )),
            bounds,
            clock,
            shutting_down: AtomicBool::new(false),
            idle: Notify::new(),
            counters: Counters::default(),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> (SystemTime, Instant) {
        (self.clock.system_time(), self.clock.now())
    }

    /// Admits a request to be read: a permit of the intake (one per place
    /// in the queue and the slots), held while its body arrives and
    /// released when dropped, so bodies being read are bounded like the
    /// tasks themselves; or why not.
    pub(super) fn admit(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        self.check(&self.lock())?;
        Arc::clone(&self.intake).try_acquire_owned().map_err(|_| {
            self.counters.rejected.fetch_add(1, Relaxed);
            let s = self.lock();
            Refusal::Full(retry_after(
                s.median_run,
                s.pending / self.bounds.concurrency + 1,
            ))
        })
    }

    fn check(&self, s: &State) -> Result<(), Refusal> {
        if self.shutting_down.load(Relaxed) {
            return Err(Refusal::ShuttingDown);
        }
        if s.pending + s.running >= self.bounds.queue.saturating_add(self.bounds.concurrency) {
            self.counters.rejected.fetch_add(1, Relaxed);
            let ahead = s.pending / self.bounds.concurrency + 1;
            return Err(Refusal::Full(retry_after(s.median_run, ahead)));
        }
        Ok(())
    }

    /// Records a request as a pending task, if the queue has room and the
    /// server isn't shutting down; returns how to reach its worker and
    /// the task as its monitor shows it now.
    pub(super) fn insert(
        &self,
        id: TaskId,
        method: &str,
        path: &str,
        progress: TaskProgress,
    ) -> Result<(Arc<Control>, TaskInfo), Refusal> {
        let now = self.now();
        let mut s = self.lock();
        self.check(&s)?;
        self.sweep(&mut s, now.1);
        let control = Arc::new(Control::default());
        let record = Record {
            id,
            state: TaskState::Pending,
            method: bounded(method),
            path: bounded(path),
            progress,
            submitted: now,
            started: None,
            finished: None,
            error: None,
            result: None,
        };
        let info = record.info(now.1, &self.bounds.monitor);
        self.mirror_info(&info);
        s.tasks.insert(id, (record, Arc::clone(&control)));
        s.pending += 1;
        self.counters.submitted.fetch_add(1, Relaxed);
        Ok((control, info))
    }

    /// The task got a slot: it runs now. False when it may not: it ended
    /// while it waited (cancelled), or the server is shutting down (it
    /// fails, saying so).
    pub(super) fn start(&self, id: TaskId) -> bool {
        let now = self.now();
        let mut s = self.lock();
        s.pending = s.pending.saturating_sub(1);
        let pending = s
            .tasks
            .get(&id)
            .is_some_and(|(r, _)| r.state == TaskState::Pending);
        if pending && self.shutting_down.load(Relaxed) {
            let why = "the server shut down before the task started".to_owned();
            self.finish(
                &mut s,
                id,
                Outcome::Failed(Failure::Shutdown, why, None),
                now,
            );
        } else if let (true, Some((r, _))) = (pending, s.tasks.get_mut(&id)) {
            r.state = TaskState::Running;
            r.started = Some(now);
            self.mirror_info(&r.info(now.1, &self.bounds.monitor));
            s.running += 1;
            return true;
        }
        self.notify_if_idle(&s);
        false
    }

    /// The worker of a task that never started is done (cancelled or shut
    /// down while it waited).
    pub(super) fn leave_queue(&self, id: TaskId, outcome: Outcome) {
        let now = self.now();
        let mut s = self.lock();
        s.pending = s.pending.saturating_sub(1);
        self.finish(&mut s, id, outcome, now);
        self.notify_if_idle(&s);
    }

    /// A running task's worker is done (its future dropped).
    pub(super) fn leave_running(&self, id: TaskId, outcome: Outcome) {
        let now = self.now();
        let mut s = self.lock();
        s.running = s.running.saturating_sub(1);
        self.finish(&mut s, id, outcome, now);
        self.notify_if_idle(&s);
    }

    fn notify_if_idle(&self, s: &State) {
        if s.pending + s.running == 0 {
            self.idle.notify_waiters();
        }
    }

    /// Ends a task, unless something ended it first (a cancel).
    fn finish(&self, s: &mut State, id: TaskId, outcome: Outcome, now: (SystemTime, Instant)) {
        let Some((r, control)) = s.tasks.get_mut(&id) else {
            return;
        };
        if r.state.is_finished() {
            return;
        }
        control.done.notify_waiters();
        let run = r.started.map(|(_, t)| now.1.saturating_duration_since(t));
        let (state, error, result) = match outcome {
            Outcome::Completed(result) => {
                self.counters.completed.fetch_add(1, Relaxed);
                (TaskState::Completed, None, Some(result))
            }
            Outcome::Failed(why, message, result) => {
                self.counters.failed.fetch_add(1, Relaxed);
                let detail = match why {
                    Failure::Timeout => Some(&self.counters.timed_out),
                    Failure::Panic => Some(&self.counters.panicked),
                    Failure::TooLarge => Some(&self.counters.too_large),
                    Failure::Error | Failure::ServerError | Failure::Shutdown => None,
                };
                if let Some(c) = detail {
                    c.fetch_add(1, Relaxed);
                }
                (TaskState::Failed, Some(bounded(&message)), result)
            }
            Outcome::Cancelled(why) => {
                self.counters.cancelled.fetch_add(1, Relaxed);
                (TaskState::Cancelled, Some(why.to_owned()), None)
            }
        };
        r.state = state;
        r.error = error;
        r.result = result.map(Arc::new);
        r.finished = Some(now);
        #[cfg(feature = "redis")]
        if let (Some(m), Some(result)) = (self.mirror.get(), &r.result) {
            m.send(super::shared::Write::Result(id, Arc::clone(result)));
        }
        self.mirror_info(&r.info(now.1, &self.bounds.monitor));
        s.kept_bytes += r.weight();
        s.finished.push_back(id);
        if let Some(run) = run {
            if s.run_times.len() == RUN_TIMES_KEPT {
                s.run_times.pop_front();
            }
            let micros = u64::try_from(run.as_micros()).unwrap_or(u64::MAX);
            s.run_times.push_back(micros);
            s.run_count += 1;
            s.run_micros_sum = s.run_micros_sum.saturating_add(micros);
            // Refusals read it under load: kept here, refreshed every 32
            // runs (and at each of the first), not worked out per refusal.
            if s.run_count <= 32 || s.run_count % 32 == 0 {
                s.median_run = Some(median(&s.run_times));
            }
        }
        self.sweep(s, now.1);
    }

    /// Drops finished tasks past their retention, then the oldest ones
    /// while the kept bytes pass their budget or the records their count,
    /// but never the last one to finish (a task that just ended is shown
    /// to its client even when it alone passes the budget).
    fn sweep(&self, s: &mut State, now: Instant) {
        while let Some(&id) = s.finished.front() {
            let Some((r, _)) = s.tasks.get(&id) else {
                s.finished.pop_front();
                continue;
            };
            let expired = r
                .finished
                .is_some_and(|(_, t)| now.saturating_duration_since(t) >= self.bounds.retention);
            let over = s.finished.len() > 1
                && (s.kept_bytes > self.bounds.result_budget
                    || s.finished.len() > self.bounds.max_finished);
            if !expired && !over {
                break;
            }
            s.finished.pop_front();
            if let Some((r, _)) = s.tasks.remove(&id) {
                s.kept_bytes = s.kept_bytes.saturating_sub(r.weight());
                #[cfg(feature = "redis")]
                if let Some(m) = self.mirror.get() {
                    m.send(super::shared::Write::Forget(id));
                }
            }
        }
    }

    /// Hands a record's new state to the Redis writer, when shared.
    #[cfg(feature = "redis")]
    fn mirror_info(&self, info: &TaskInfo) {
        if let Some(m) = self.mirror.get() {
            m.send(super::shared::Write::Info(Box::new(info.clone())));
        }
    }

    #[cfg(not(feature = "redis"))]
    fn mirror_info(&self, _: &TaskInfo) {}

    /// The tasks that haven't ended, as their monitors show them (their
    /// progress, for the Redis writer's heartbeat).
    #[cfg(feature = "redis")]
    pub(super) fn unfinished(&self) -> Vec<TaskInfo> {
        let now = self.clock.now();
        self.lock()
            .tasks
            .values()
            .filter(|(r, _)| !r.state.is_finished())
            .map(|(r, _)| r.info(now, &self.bounds.monitor))
            .collect()
    }

    /// Whether this replica holds `id` (running it, or keeping it).
    #[cfg(feature = "redis")]
    pub(super) fn knows(&self, id: TaskId) -> bool {
        self.lock().tasks.contains_key(&id)
    }

    /// Cancels `id` if this replica has it and it hasn't ended; says
    /// whether it did.
    #[cfg(feature = "redis")]
    pub(super) fn cancel_local(&self, id: TaskId) -> bool {
        self.cancel_now(id).is_some_and(|(_, now)| now)
    }

    /// The monitor's view of one task.
    pub(super) fn info(&self, id: TaskId) -> Option<TaskInfo> {
        let now = self.clock.now();
        let mut s = self.lock();
        self.sweep(&mut s, now);
        s.tasks
            .get(&id)
            .map(|(r, _)| r.info(now, &self.bounds.monitor))
    }

    /// Every task (in `state` if given), newest first, at most `limit`.
    pub(super) fn list(&self, state: Option<TaskState>, limit: usize) -> Vec<TaskInfo> {
        let now = self.clock.now();
        let mut s = self.lock();
        self.sweep(&mut s, now);
        let mut found: Vec<&Record> = s
            .tasks
            .values()
            .map(|(r, _)| r)
            .filter(|r| state.is_none_or(|st| r.state == st))
            .collect();
        let newest_first = |r: &&Record| std::cmp::Reverse(r.submitted.1);
        if limit < found.len() {
            // The newest `limit` first, then only those sorted.
            found.select_nth_unstable_by_key(limit, newest_first);
            found.truncate(limit);
        }
        found.sort_unstable_by_key(newest_first);
        found
            .into_iter()
            .map(|r| r.info(now, &self.bounds.monitor))
            .collect()
    }

    /// A task's kept response, with its state (none while it runs).
    pub(super) fn result(&self, id: TaskId) -> Option<(TaskState, Option<Arc<TaskResult>>)> {
        let now = self.clock.now();
        let mut s = self.lock();
        self.sweep(&mut s, now);
        s.tasks.get(&id).map(|(r, _)| (r.state, r.result.clone()))
    }

    /// Cancels a task that hasn't ended: it is marked cancelled at once,
    /// and its worker drops the inner service's future (its slot is free
    /// once the future is gone). `None` for an unknown task; the task as
    /// it is otherwise (unchanged if it had ended).
    pub(super) fn cancel(&self, id: TaskId) -> Option<TaskInfo> {
        self.cancel_now(id).map(|(info, _)| info)
    }

    /// [`cancel`](Self::cancel), and whether this call cancelled it.
    fn cancel_now(&self, id: TaskId) -> Option<(TaskInfo, bool)> {
        let now = self.now();
        let mut s = self.lock();
        let control = match s.tasks.get(&id)? {
            (r, control) if !r.state.is_finished() => Some(Arc::clone(control)),
            _ => None,
        };
        let cancelled = control.is_some();
        if let Some(control) = control {
            self.finish(&mut s, id, Outcome::Cancelled("cancelled"), now);
            control.stop.notify_one();
        }
        s.tasks
            .get(&id)
            .map(|(r, _)| (r.info(now.1, &self.bounds.monitor), cancelled))
    }

    /// Waits until no task is queued or running, or `deadline` passes;
    /// says which.
    async fn idle_by(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let idle = self.idle.notified();
            {
                let s = self.lock();
                if s.pending + s.running == 0 {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return false;
            }
        }
    }

    /// Stops taking tasks and fails the queued ones; lets the running ones
    /// finish within `grace`, then fails those left and waits (up to a
    /// second) for their futures to be dropped. Returns how many running
    /// tasks were stopped.
    pub(super) async fn shutdown(&self, grace: Duration) -> usize {
        self.shutting_down.store(true, Relaxed);
        // Queued workers wake with a closed semaphore and fail; a worker
        // that got its slot just before finds `shutting_down` in `start`.
        self.slots.close();
        let deadline = tokio::time::Instant::now() + grace;
        if self.idle_by(deadline).await {
            return 0;
        }
        let mut stopped = 0;
        for (r, control) in self.lock().tasks.values() {
            if r.state == TaskState::Running {
                control.shutdown.store(true, Relaxed);
                control.stop.notify_one();
                stopped += 1;
            }
        }
        self.idle_by(tokio::time::Instant::now() + Duration::from_secs(1))
            .await;
        stopped
    }

    /// The statistics.
    pub(super) fn snapshot(&self) -> TaskSnapshot {
        let c = &self.counters;
        let s = self.lock();
        let run_times: Vec<u64> = s.run_times.iter().copied().collect();
        let (queued, running, kept, kept_bytes) =
            (s.pending, s.running, s.finished.len(), s.kept_bytes);
        let (runs, run_micros_sum) = (s.run_count, s.run_micros_sum);
        drop(s);
        TaskSnapshot {
            submitted: c.submitted.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            completed: c.completed.load(Relaxed),
            failed: c.failed.load(Relaxed),
            timed_out: c.timed_out.load(Relaxed),
            panicked: c.panicked.load(Relaxed),
            too_large: c.too_large.load(Relaxed),
            cancelled: c.cancelled.load(Relaxed),
            queued,
            running,
            concurrency: self.bounds.concurrency,
            queue_capacity: self.bounds.queue,
            kept,
            kept_bytes,
            runs,
            run_seconds_total: run_micros_sum as f64 / 1e6,
            run_ms: RunTimes::of(run_times),
            #[cfg(feature = "redis")]
            redis: self.mirror.get().map(|m| m.shared.stats().snapshot()),
        }
    }
}

/// How long a client refused for a full queue should wait: the queue
/// ahead of it over the slots (`ahead` rounds), times the median run time
/// (5 s before any task ended), between 1 s and 1 h.
fn retry_after(median_run: Option<u64>, ahead: usize) -> Duration {
    let Some(median) = median_run else {
        return Duration::from_secs(5);
    };
    let micros = median.saturating_mul(ahead as u64);
    Duration::from_micros(micros).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// The median of the (non-empty) run times.
fn median(run_times: &VecDeque<u64>) -> u64 {
    let mut times: Vec<u64> = run_times.iter().copied().collect();
    let mid = times.len() / 2;
    *times.select_nth_unstable(mid).1
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;

    use super::{Bounds, Refusal, Registry};
    use crate::clock::ManualClock;
    use crate::tasks::TaskId;
    use crate::tasks::progress::TaskProgress;
    use crate::tasks::record::{Failure, Outcome, TaskResult, TaskState};

    fn registry(concurrency: usize, queue: usize, max_finished: usize) -> Registry {
        let bounds = Bounds {
            concurrency,
            queue,
            retention: Duration::from_secs(60),
            result_budget: 1 << 20,
            max_finished,
            monitor: "/performance/tasks".to_owned(),
        };
        Registry::new(bounds, Arc::new(ManualClock::new()))
    }

    fn task(r: &Registry) -> TaskId {
        let id = TaskId::random().unwrap();
        r.insert(id, "POST", "/x", TaskProgress::new()).unwrap();
        id
    }

    fn done() -> Outcome {
        Outcome::Completed(TaskResult {
            status: http::StatusCode::OK,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::from_static(b"ok"),
        })
    }

    fn counts(r: &Registry) -> (usize, usize) {
        let s = r.lock();
        (s.pending, s.running)
    }

    #[test]
    fn a_task_cancelled_while_queued_never_starts_and_counts_once() {
        let r = registry(1, 1, 10);
        let id = task(&r);
        assert_eq!(r.cancel(id).unwrap().state, TaskState::Cancelled);
        assert!(!r.start(id));
        assert_eq!(counts(&r), (0, 0));
        // Its worker's own ending changes nothing.
        r.leave_running(id, done());
        let s = r.snapshot();
        assert_eq!((s.cancelled, s.completed, s.kept), (1, 0, 1));
    }

    #[test]
    fn a_running_task_cancelled_stays_cancelled_when_its_worker_ends() {
        let r = registry(1, 1, 10);
        let id = task(&r);
        assert!(r.start(id));
        r.cancel(id);
        assert_eq!(counts(&r), (0, 1), "its slot is held until the future goes");
        r.leave_running(id, done());
        assert_eq!(counts(&r), (0, 0));
        assert_eq!(r.info(id).unwrap().state, TaskState::Cancelled);
        let s = r.snapshot();
        assert_eq!((s.cancelled, s.completed, s.runs), (1, 0, 1));
        // Cancelling an ended task changes nothing.
        r.cancel(id);
        assert_eq!(r.snapshot().cancelled, 1);
    }

    #[test]
    fn a_slot_taken_after_shutdown_began_fails_the_task() {
        let r = registry(1, 1, 10);
        let id = task(&r);
        r.shutting_down.store(true, Relaxed);
        assert!(!r.start(id));
        let info = r.info(id).unwrap();
        assert_eq!(info.state, TaskState::Failed);
        assert!(info.error.unwrap().contains("shut down"));
        assert_eq!(counts(&r), (0, 0));
        let other = TaskId::random().unwrap();
        assert_eq!(
            r.insert(other, "GET", "/", TaskProgress::new()).err(),
            Some(Refusal::ShuttingDown)
        );
    }

    #[test]
    fn the_queue_counts_running_and_waiting_tasks() {
        let r = registry(1, 1, 10);
        let a = task(&r);
        assert!(r.start(a));
        let _b = task(&r);
        assert!(matches!(r.admit(), Err(Refusal::Full(_))));
        let c = TaskId::random().unwrap();
        assert!(matches!(
            r.insert(c, "GET", "/", TaskProgress::new()),
            Err(Refusal::Full(_))
        ));
        assert_eq!(r.snapshot().rejected, 2);
        r.leave_running(a, Outcome::Failed(Failure::Timeout, "timeout".into(), None));
        assert!(r.admit().is_ok());
        let s = r.snapshot();
        assert_eq!((s.failed, s.timed_out, s.runs), (1, 1, 1));
    }

    #[test]
    fn a_refusal_says_to_come_back_after_the_queue_ahead_at_the_median_run() {
        let clock = ManualClock::new();
        let bounds = Bounds {
            concurrency: 1,
            queue: 1,
            retention: Duration::from_secs(60),
            result_budget: 1 << 20,
            max_finished: 10,
            monitor: "/performance/tasks".to_owned(),
        };
        let r = Registry::new(bounds, Arc::new(clock.clone()));
        // Before any run: 5 s.
        let (a, b) = (task(&r), task(&r));
        assert_eq!(r.admit().err(), Some(Refusal::Full(Duration::from_secs(5))));
        // Runs of 10 s and 30 s, then 20 s: the median is 20 s.
        for (id, secs) in [(a, 10), (b, 30)] {
            assert!(r.start(id));
            clock.advance(Duration::from_secs(secs));
            r.leave_running(id, done());
        }
        let c = task(&r);
        assert!(r.start(c));
        clock.advance(Duration::from_secs(20));
        r.leave_running(c, done());
        let (d, _e) = (task(&r), task(&r));
        assert!(r.start(d));
        // One running, one queued ahead, one slot: two median runs.
        assert_eq!(
            r.admit().err(),
            Some(Refusal::Full(Duration::from_secs(40)))
        );
    }

    #[test]
    fn bodies_being_read_hold_a_place_until_dropped() {
        let r = registry(1, 1, 10);
        let a = r.admit().unwrap();
        let _b = r.admit().unwrap();
        assert!(matches!(r.admit(), Err(Refusal::Full(_))));
        drop(a);
        assert!(r.admit().is_ok());
    }

    #[test]
    fn the_task_that_ended_last_is_kept_even_over_the_budget() {
        let mut r = registry(2, 2, 10);
        r.bounds.result_budget = 10;
        let big = || {
            Outcome::Completed(TaskResult {
                status: http::StatusCode::OK,
                headers: http::HeaderMap::new(),
                body: bytes::Bytes::from(vec![b'x'; 1000]),
            })
        };
        let first = task(&r);
        assert!(r.start(first));
        r.leave_running(first, big());
        assert_eq!(r.info(first).unwrap().state, TaskState::Completed);
        let second = task(&r);
        assert!(r.start(second));
        r.leave_running(second, big());
        assert!(r.info(first).is_none(), "the older one makes room");
        assert!(r.info(second).is_some());
        // A cancel is an end too: the cancelled task is kept.
        let third = task(&r);
        assert_eq!(r.cancel(third).unwrap().state, TaskState::Cancelled);
        assert!(r.info(third).is_some());
    }

    #[test]
    fn finished_tasks_are_bounded_in_number_oldest_first() {
        let r = registry(4, 4, 2);
        let ids: Vec<TaskId> = (0..3).map(|_| task(&r)).collect();
        for &id in &ids {
            assert!(r.start(id));
            r.leave_running(id, done());
        }
        assert!(r.info(ids[0]).is_none());
        assert!(r.info(ids[1]).is_some() && r.info(ids[2]).is_some());
        assert_eq!(r.snapshot().kept, 2);
        let listed = r.list(None, 10);
        assert_eq!(listed.len(), 2);
        assert_eq!(r.list(None, 1).len(), 1);
    }
}
