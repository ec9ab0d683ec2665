//! Waiting on events instead of sleeping: a [`Gate`] a test's handler
//! stops at until the test opens it (so a request is certainly in flight,
//! or certainly overlaps another), and [`until`], a bounded poll of a
//! condition that fails loudly.
//!
//! ```ignore
//! let gate = Gate::new();
//! // in the handler: gate.pass().await;
//! gate.arrived(1).await; // the first request is in the handler
//! support::gate::until("49 waiters joined", || stats.snapshot().coalesced == 49).await;
//! gate.open();
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// How long a test waits for an event before failing: generous, so a
/// busy two-core machine never trips it; a working test never waits it.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// A point handlers stop at until the test opens it; it counts arrivals.
/// Clones share the gate.
#[derive(Clone, Debug)]
pub struct Gate(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    arrived: watch::Sender<usize>,
    open: watch::Sender<bool>,
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    /// A closed gate nobody has reached.
    pub fn new() -> Self {
        Self(Arc::new(Inner {
            arrived: watch::Sender::new(0),
            open: watch::Sender::new(false),
        }))
    }

    /// Called by a handler: counts it as arrived, then waits until the
    /// gate is open (at once if it already is).
    pub async fn pass(&self) {
        self.0.arrived.send_modify(|n| *n += 1);
        let mut open = self.0.open.subscribe();
        let _ = open.wait_for(|o| *o).await;
    }

    /// Waits until `n` handlers have reached the gate; panics after
    /// [`DEADLINE`].
    pub async fn arrived(&self, n: usize) {
        let mut arrived = self.0.arrived.subscribe();
        tokio::time::timeout(DEADLINE, arrived.wait_for(|a| *a >= n))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {n} requests reached the gate in {DEADLINE:?}",
                    self.count()
                )
            })
            .expect("the gate is alive");
    }

    /// How many handlers have reached the gate so far.
    pub fn count(&self) -> usize {
        *self.0.arrived.borrow()
    }

    /// Lets every handler waiting at the gate, and every later one, through.
    pub fn open(&self) {
        self.0.open.send_replace(true);
    }
}

/// Polls `cond` every 2 ms until it holds (background tasks run between
/// polls); panics naming `what` after [`DEADLINE`].
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still waiting after {DEADLINE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
