//! The registry: every task's record, the queue's admission, the
//! concurrency slots, retention and the statistics. One lock over the
//! records, never held across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};

use super::id::TaskId;
use super::progress::TaskProgress;
use super::record::{Failure, Outcome, Record, TaskInfo, TaskResult, TaskState};
use super::stats::{RUN_TIMES_KEPT, TaskSnapshot};
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
    result_bytes: usize,
    /// The last run times (µs), for the percentiles.
    run_times: VecDeque<u64>,
}

/// Every task of one [`AsyncLayer`](super::AsyncLayer).
pub(super) struct Registry {
    pub(super) bounds: Bounds,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) slots: Arc<Semaphore>,
    shutting_down: AtomicBool,
    /// Notified when the last running task ends.
    idle: Notify,
    counters: Counters,
    state: Mutex<State>,
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
            slots: Arc::new(Semaphore::new(bounds.concurrency)),
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

    /// Reserves a place in the queue, or says why there is none.
    pub(super) fn admit(&self) -> Result<(), Refusal> {
        if self.shutting_down.load(Relaxed) {
            return Err(Refusal::ShuttingDown);
        }
        let mut s = self.lock();
        if s.pending + s.running >= self.bounds.queue + self.bounds.concurrency {
            drop(s);
            self.counters.rejected.fetch_add(1, Relaxed);
            return Err(Refusal::Full(self.retry_after()));
        }
        s.pending += 1;
        Ok(())
    }

    /// Gives back a place [`admit`](Self::admit) reserved for a request
    /// that never became a task.
    pub(super) fn release(&self) {
        let mut s = self.lock();
        s.pending = s.pending.saturating_sub(1);
    }

    /// Records an admitted request as a pending task.
    pub(super) fn insert(
        &self,
        id: TaskId,
        method: String,
        path: String,
        progress: TaskProgress,
    ) -> Arc<Control> {
        let now = (self.clock.system_time(), self.clock.now());
        let control = Arc::new(Control::default());
        let record = Record {
            id,
            state: TaskState::Pending,
            method,
            path,
            progress,
            submitted: now,
            started: None,
            finished: None,
            error: None,
            result: None,
        };
        self.counters.submitted.fetch_add(1, Relaxed);
        let mut s = self.lock();
        self.sweep(&mut s, now.1);
        s.tasks.insert(id, (record, Arc::clone(&control)));
        control
    }

    /// The task got a slot: it runs now. False when it ended already
    /// (cancelled while it waited).
    pub(super) fn start(&self, id: TaskId) -> bool {
        let now = (self.clock.system_time(), self.clock.now());
        let mut s = self.lock();
        s.pending = s.pending.saturating_sub(1);
        match s.tasks.get_mut(&id) {
            Some((r, _)) if r.state == TaskState::Pending => {
                r.state = TaskState::Running;
                r.started = Some(now);
                s.running += 1;
                true
            }
            _ => false,
        }
    }

    /// The worker of a task that never started is done (cancelled or shut
    /// down while it waited).
    pub(super) fn leave_queue(&self, id: TaskId, outcome: Outcome) {
        {
            let mut s = self.lock();
            s.pending = s.pending.saturating_sub(1);
        }
        self.finish(id, outcome);
    }

    /// A running task's worker is done.
    pub(super) fn leave_running(&self, id: TaskId, outcome: Outcome) {
        let idle = {
            let mut s = self.lock();
            s.running = s.running.saturating_sub(1);
            s.running == 0
        };
        self.finish(id, outcome);
        if idle {
            self.idle.notify_waiters();
        }
    }

    /// Ends a task, unless something ended it first (a cancel).
    fn finish(&self, id: TaskId, outcome: Outcome) {
        let now = (self.clock.system_time(), self.clock.now());
        let mut s = self.lock();
        let Some((r, _)) = s.tasks.get_mut(&id) else {
            return;
        };
        if r.state.is_finished() {
            return;
        }
        let run = r.started.map(|(_, t)| now.1.saturating_duration_since(t));
        r.finished = Some(now);
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
                (TaskState::Failed, Some(message), result)
            }
            Outcome::Cancelled(why) => {
                self.counters.cancelled.fetch_add(1, Relaxed);
                (TaskState::Cancelled, Some(why.to_owned()), None)
            }
        };
        r.state = state;
        r.error = error;
        let weight = result.as_ref().map_or(0, TaskResult::weight);
        r.result = result.map(Arc::new);
        s.result_bytes += weight;
        s.finished.push_back(id);
        if let Some(run) = run {
            if s.run_times.len() == RUN_TIMES_KEPT {
                s.run_times.pop_front();
            }
            s.run_times
                .push_back(u64::try_from(run.as_micros()).unwrap_or(u64::MAX));
        }
        self.sweep(&mut s, now.1);
    }

    /// Drops finished tasks past their retention, then the oldest ones
    /// while the results pass their budget or the records their count.
    fn sweep(&self, s: &mut State, now: Instant) {
        while let Some(&id) = s.finished.front() {
            let Some((r, _)) = s.tasks.get(&id) else {
                s.finished.pop_front();
                continue;
            };
            let expired = r
                .finished
                .is_some_and(|(_, t)| now.saturating_duration_since(t) >= self.bounds.retention);
            let over = s.result_bytes > self.bounds.result_budget
                || s.finished.len() > self.bounds.max_finished;
            if !expired && !over {
                break;
            }
            s.finished.pop_front();
            if let Some((r, _)) = s.tasks.remove(&id) {
                let weight = r.result.as_deref().map_or(0, TaskResult::weight);
                s.result_bytes = s.result_bytes.saturating_sub(weight);
            }
        }
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
        found.sort_unstable_by_key(|r| std::cmp::Reverse(r.submitted.1));
        found
            .into_iter()
            .take(limit)
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
    /// and its worker drops the inner service's future. `None` for an
    /// unknown task; the task as it is otherwise (unchanged if it had
    /// ended).
    pub(super) fn cancel(&self, id: TaskId) -> Option<TaskInfo> {
        let now = (self.clock.system_time(), self.clock.now());
        let mut s = self.lock();
        let (r, control) = s.tasks.get_mut(&id)?;
        if !r.state.is_finished() {
            r.state = TaskState::Cancelled;
            r.error = Some("cancelled".to_owned());
            r.finished = Some(now);
            control.stop.notify_one();
            self.counters.cancelled.fetch_add(1, Relaxed);
            s.finished.push_back(id);
        }
        s.tasks
            .get(&id)
            .map(|(r, _)| r.info(now.1, &self.bounds.monitor))
    }

    /// Stops taking tasks, fails the queued ones, lets the running ones
    /// finish within `grace`, then fails those left. Returns how many
    /// were failed.
    pub(super) async fn shutdown(&self, grace: Duration) -> usize {
        self.shutting_down.store(true, Relaxed);
        // Queued workers wake with a closed semaphore and fail.
        self.slots.close();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let idle = self.idle.notified();
            if self.lock().running == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                break;
            }
        }
        let mut stopped = 0;
        for (r, control) in self.lock().tasks.values() {
            if r.state == TaskState::Running {
                control.shutdown.store(true, Relaxed);
                control.stop.notify_one();
                stopped += 1;
            }
        }
        // Their workers drop the futures and record the failure at once.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            let idle = self.idle.notified();
            if self.lock().running == 0 || tokio::time::timeout_at(deadline, idle).await.is_err() {
                break;
            }
        }
        stopped
    }

    /// How long a client refused for a full queue should wait: the queue
    /// ahead of it over the slots, times the median run time (5 s before
    /// any task ended), between 1 s and 1 h.
    fn retry_after(&self) -> Duration {
        let s = self.lock();
        let mut times: Vec<u64> = s.run_times.iter().copied().collect();
        let ahead = (s.pending / self.bounds.concurrency.max(1)) as u64 + 1;
        drop(s);
        if times.is_empty() {
            return Duration::from_secs(5);
        }
        let mid = times.len() / 2;
        let (_, median, _) = times.select_nth_unstable(mid);
        let micros = median.saturating_mul(ahead);
        Duration::from_micros(micros).clamp(Duration::from_secs(1), Duration::from_secs(3600))
    }

    /// The statistics.
    pub(super) fn snapshot(&self) -> TaskSnapshot {
        let c = &self.counters;
        let s = self.lock();
        let run_times: Vec<u64> = s.run_times.iter().copied().collect();
        let (queued, running, results, result_bytes) =
            (s.pending, s.running, s.finished.len(), s.result_bytes);
        drop(s);
        TaskSnapshot::new(
            [
                c.submitted.load(Relaxed),
                c.rejected.load(Relaxed),
                c.completed.load(Relaxed),
                c.failed.load(Relaxed),
                c.timed_out.load(Relaxed),
                c.panicked.load(Relaxed),
                c.too_large.load(Relaxed),
                c.cancelled.load(Relaxed),
            ],
            (queued, running, self.bounds.concurrency, self.bounds.queue),
            (results, result_bytes),
            run_times,
        )
    }
}
