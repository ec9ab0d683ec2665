//! A source of `Instant`s that tests can move.

use std::time::{Instant, SystemTime};

/// A source of `Instant`s, so tests can move time instead of sleeping.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;

    /// The current wall-clock time (the cache compares it with `Date` and
    /// `Expires`). Defaults to `SystemTime::now()`.
    fn system_time(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The real clock: `Instant::now()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to, for tests: clones share one time.
///
/// ```
/// use std::time::Duration;
/// use tower_perf::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now() - t0, Duration::from_secs(5));
/// let wall = clock.system_time();
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(clock.system_time().duration_since(wall).unwrap(), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: std::sync::Arc<std::sync::Mutex<Instant>>,
    start: Instant,
    wall_start: SystemTime,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock stopped at the current instant.
    pub fn new() -> Self {
        let start = Instant::now();
        Self {
            now: std::sync::Arc::new(std::sync::Mutex::new(start)),
            start,
            wall_start: SystemTime::now(),
        }
    }

    /// Moves the clock (and every clone of it) forward.
    pub fn advance(&self, by: std::time::Duration) {
        if let Ok(mut now) = self.now.lock() {
            *now += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.now
            .lock()
            .map(|n| *n)
            .unwrap_or_else(|p| *p.into_inner())
    }

    /// The wall-clock time when the clock was made, moved by as much as
    /// [`advance`](Self::advance) moved it since.
    fn system_time(&self) -> SystemTime {
        self.wall_start + (self.now() - self.start)
    }
}
