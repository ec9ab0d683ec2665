//! Invalidations Redis could not take when they were made, kept in order
//! and replayed (to Redis, then to the other replicas) once it answers:
//! the shared part of the response cache's and the query cache's
//! broadcasts.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Invalidations an outbox keeps, and the bytes of their keys, prefixes
/// and tags; one more and they collapse into one invalidation of
/// everything (over-invalidating is safe, forgetting is not). Clients can
/// fill it (each successful unsafe request during an outage queues its
/// URL, whose length they choose), and lookups look through it while
/// invalidations wait, so both bounds stay small.
pub(crate) const OUTBOX_CAP: usize = 1024;
pub(crate) const OUTBOX_MAX_BYTES: usize = 256 * 1024;

/// The first wait before replaying again after a failed attempt; doubles
/// up to [`RETRY_MAX`]. Short: while Redis is known to be down the breaker
/// refuses an attempt at once, so waking costs nothing, and the replay
/// follows Redis's return closely.
const RETRY_MIN: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_millis(250);

/// An invalidation an outbox can keep.
pub(crate) trait Pending: Clone + PartialEq + Send + 'static {
    /// The invalidation of everything, that several collapse into.
    const ALL: Self;
    /// Who keeps them, for the log ("cache", "query cache").
    const OWNER: &'static str;
    /// The bytes it holds.
    fn weight(&self) -> usize;
}

/// Where an outbox reports how many invalidations wait.
pub(crate) trait PendingGauge {
    fn set_pending(&self, n: usize);
}

#[derive(Debug)]
struct Queue<P> {
    items: VecDeque<P>,
    /// What the items hold, by [`Pending::weight`].
    bytes: usize,
    /// The front item is being replayed: a new invalidation equal to it is
    /// not covered by it (what was stored meanwhile must go too).
    in_flight: bool,
}

/// Invalidations not yet taken by Redis, oldest first.
#[derive(Debug)]
pub(crate) struct Outbox<P> {
    queue: Mutex<Queue<P>>,
    wake: tokio::sync::Notify,
}

impl<P> Default for Outbox<P> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                bytes: 0,
                in_flight: false,
            }),
            wake: tokio::sync::Notify::new(),
        }
    }
}

impl<P: Pending> Outbox<P> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<P>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `item` for replay and wakes the replay task.
    pub(crate) fn push(&self, item: P, gauge: &impl PendingGauge) {
        {
            let mut q = self.lock();
            let waiting = usize::from(q.in_flight);
            let covered = q
                .items
                .iter()
                .skip(waiting)
                .any(|p| *p == P::ALL || *p == item);
            if covered {
                // Already waiting, not yet started.
            } else if item == P::ALL
                || q.items.len() >= OUTBOX_CAP
                || q.bytes + item.weight() > OUTBOX_MAX_BYTES
            {
                if item != P::ALL {
                    tracing::warn!(
                        pending = q.items.len(),
                        bytes = q.bytes,
                        "tower-perf {}: more invalidations wait for Redis than the outbox \
                         keeps ({OUTBOX_CAP}, {OUTBOX_MAX_BYTES} bytes); they collapse into \
                         one invalidation of everything when it answers",
                        P::OWNER
                    );
                }
                // The item in flight stays at the front (its replay ends
                // with `done`); everything after it becomes one.
                q.items.truncate(waiting);
                q.bytes = q.items.iter().map(P::weight).sum();
                q.items.push_back(P::ALL);
            } else {
                q.bytes += item.weight();
                q.items.push_back(item);
            }
            gauge.set_pending(q.items.len());
        }
        self.wake.notify_one();
    }

    /// The oldest item, now in flight.
    pub(crate) fn take_front(&self) -> Option<P> {
        let mut q = self.lock();
        let front = q.items.front().cloned();
        q.in_flight = front.is_some();
        front
    }

    /// The item in flight was replayed: it goes.
    pub(crate) fn done(&self, gauge: &impl PendingGauge) {
        let mut q = self.lock();
        if q.in_flight {
            if let Some(p) = q.items.pop_front() {
                q.bytes -= p.weight();
            }
            q.in_flight = false;
        }
        gauge.set_pending(q.items.len());
    }

    /// The item in flight failed: it stays first in line.
    pub(crate) fn retry(&self) {
        self.lock().in_flight = false;
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether a waiting item satisfies `f`.
    pub(crate) fn any(&self, f: impl Fn(&P) -> bool) -> bool {
        self.lock().items.iter().any(f)
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Replays the outbox until `stop`: each item in turn through `apply`,
    /// waiting a little longer after each failure (the breaker answers at
    /// once while Redis is known to be down, so a failed attempt costs
    /// nothing). `replayed` hears of each success.
    pub(crate) async fn replay<F, Fut>(
        &self,
        gauge: &impl PendingGauge,
        apply: F,
        replayed: impl Fn(),
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) where
        F: Fn(P) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let mut backoff = RETRY_MIN;
        let mut failing = false;
        loop {
            let Some(item) = self.take_front() else {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = self.wake.notified() => continue,
                }
            };
            match apply(item).await {
                Ok(()) => {
                    self.done(gauge);
                    replayed();
                    backoff = RETRY_MIN;
                    failing = false;
                    continue;
                }
                Err(e) => {
                    self.retry();
                    if !failing {
                        tracing::warn!(
                            pending = self.len(),
                            error = %e,
                            "tower-perf {}: invalidations wait for Redis; replaying when it answers",
                            P::OWNER
                        );
                        failing = true;
                    }
                }
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {
                    let lost = self.len();
                    if lost > 0 {
                        tracing::warn!(
                            lost,
                            "tower-perf {}: the store was dropped with invalidations Redis \
                             never took; other replicas may serve what they selected until \
                             it expires",
                            P::OWNER
                        );
                    }
                    return;
                }
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }
}
