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

/// The process's counter clock (quanta: the CPU's invariant TSC, scaled to
/// nanoseconds; the OS's monotonic clock where there is none), made and
/// calibrated once. Cheaper than `Instant::now()`'s clock call (BENCHMARKS.md,
/// section Timing, has the measurement).
#[cfg(any(feature = "rate-limit", feature = "timing"))]
fn counter() -> &'static quanta::Clock {
    static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Nanoseconds since a start, read from the counter clock (the default of
/// the rate limiter's store and the timing layer) or from a given
/// [`Clock`] (tests move time with it).
#[cfg(any(feature = "rate-limit", feature = "timing"))]
pub(crate) enum Elapsed {
    Counter {
        clock: &'static quanta::Clock,
        start: u64,
    },
    Given {
        clock: std::sync::Arc<dyn Clock>,
        start: Instant,
    },
}

#[cfg(any(feature = "rate-limit", feature = "timing"))]
impl Elapsed {
    /// From now on the counter clock.
    pub(crate) fn counter() -> Self {
        let clock = counter();
        Self::Counter {
            clock,
            start: clock.raw(),
        }
    }

    /// From now on `clock`, or on the counter clock when `None`.
    pub(crate) fn given(clock: Option<std::sync::Arc<dyn Clock>>) -> Self {
        match clock {
            Some(clock) => Self::Given {
                start: clock.now(),
                clock,
            },
            None => Self::counter(),
        }
    }

    /// Nanoseconds since the start (saturating).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self {
            Self::Counter { clock, start } => clock.delta_as_nanos(*start, clock.raw()),
            Self::Given { clock, start } => {
                let ns = clock.now().saturating_duration_since(*start).as_nanos();
                u64::try_from(ns).unwrap_or(u64::MAX)
            }
        }
    }
}

#[cfg(any(feature = "rate-limit", feature = "timing"))]
impl std::fmt::Debug for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Counter { .. } => "Elapsed::Counter",
            Self::Given { .. } => "Elapsed::Given",
        })
    }
}
