//! A circuit breaker for the Redis stores: after a few consecutive
//! failures or timeouts, stop calling Redis for a back-off window
//! (doubling on each failed probe, capped), then let exactly one probe
//! through; its success closes the breaker. While it is open, calls fail at
//! once (microseconds), so a dead or hung Redis costs requests nothing but
//! the store's fallback (the rate limiter's failure policy, the tiered
//! cache's memory tier).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::{Clock, SystemClock};

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// How a Redis store's circuit breaker trips and recovers (`RedisStore::breaker`,
/// `RedisCacheStore::breaker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures (errors or timeouts) that open the breaker.
    pub failures: u32,
    /// The first open window; each failed probe doubles it.
    pub min_open: Duration,
    /// The longest open window.
    pub max_open: Duration,
}

impl Default for BreakerConfig {
    /// 3 failures; open for 100 ms, doubling up to 500 ms, so a store is
    /// back in use within a second of Redis coming back (a first probe may
    /// meet a connection still being made again), and a dead Redis costs
    /// one probe (one timeout, one request) every half second.
    fn default() -> Self {
        Self {
            failures: 3,
            min_open: Duration::from_millis(100),
            max_open: Duration::from_millis(500),
        }
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    #[default]
    Closed,
    /// Calls fail at once until the window ends.
    Open,
    /// One probe is out; other calls fail at once until it answers.
    HalfOpen,
}

/// A point-in-time copy of a breaker's state and counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BreakerSnapshot {
    /// Where it stands now.
    pub state: BreakerState,
    /// Times it opened (from closed, or again after a failed probe).
    pub opened: u64,
    /// Times a probe succeeded and closed it.
    pub closed: u64,
    /// Calls refused at once while it was open or probing.
    pub short_circuited: u64,
    /// Milliseconds spent not closed, all outages together (the current
    /// one included).
    pub open_ms: u64,
}

struct Inner {
    /// What the breaker guards, for its log events.
    name: &'static str,
    /// The settings, atomics so that `configure` reaches every handle
    /// already taken (a stats handle read before `breaker(..)`).
    failures: AtomicU32,
    min_open_ns: AtomicU64,
    max_open_ns: AtomicU64,
    /// What the windows are timed by (the real clock; tests move a manual
    /// one).
    clock: Arc<dyn Clock>,
    epoch: Instant,
    state: AtomicU8,
    consecutive: AtomicU32,
    /// When the current open window ends (ns since `epoch`).
    open_until: AtomicU64,
    /// The current window's length (ns).
    window: AtomicU64,
    /// When the current outage began (ns since `epoch`).
    open_since: AtomicU64,
    opened: AtomicU64,
    closed: AtomicU64,
    short_circuited: AtomicU64,
    open_ns_done: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("state", &self.state)
            .field("consecutive", &self.consecutive)
            .field("opened", &self.opened)
            .finish_non_exhaustive()
    }
}

/// The breaker; clones share it. See the [module docs](self).
#[derive(Debug, Clone)]
pub(crate) struct CircuitBreaker {
    inner: Arc<Inner>,
}

/// Leave to call Redis once; report how it went with [`Ticket::success`]
/// or [`Ticket::failure`]. Dropped without a report (the caller's future
/// was dropped), a probe counts as failed, so the breaker never waits for
/// an answer that will not come.
#[derive(Debug)]
pub(crate) struct Ticket {
    breaker: CircuitBreaker,
    probe: bool,
    reported: bool,
}

impl CircuitBreaker {
    /// A breaker for what `name` says (`"redis cache store"`): its log
    /// events name it.
    pub(crate) fn new(name: &'static str, config: BreakerConfig) -> Self {
        Self::with_clock(name, config, Arc::new(SystemClock))
    }

    /// A breaker timed by `clock`.
    pub(crate) fn with_clock(
        name: &'static str,
        config: BreakerConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let breaker = Self {
            inner: Arc::new(Inner {
                name,
                failures: AtomicU32::new(0),
                min_open_ns: AtomicU64::new(0),
                max_open_ns: AtomicU64::new(0),
                epoch: clock.now(),
                clock,
                state: AtomicU8::new(CLOSED),
                consecutive: AtomicU32::new(0),
                open_until: AtomicU64::new(0),
                window: AtomicU64::new(0),
                open_since: AtomicU64::new(0),
                opened: AtomicU64::new(0),
                closed: AtomicU64::new(0),
                short_circuited: AtomicU64::new(0),
                open_ns_done: AtomicU64::new(0),
            }),
        };
        breaker.configure(config);
        breaker
    }

    /// Applies `config` to this breaker and every handle of it.
    ///
    /// # Panics
    ///
    /// On a configuration that cannot work: no failure threshold, an
    /// empty first window, or a longest window shorter than the first.
    pub(crate) fn configure(&self, config: BreakerConfig) {
        assert!(
            config.failures >= 1,
            "BreakerConfig::failures is 0: the breaker would open before any call; use 1 or more"
        );
        assert!(
            !config.min_open.is_zero() && config.max_open >= config.min_open,
            "BreakerConfig: min_open must be above zero and max_open at least min_open \
             (got {:?} and {:?})",
            config.min_open,
            config.max_open
        );
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = &self.inner;
        i.failures.store(config.failures, Ordering::Relaxed);
        i.min_open_ns.store(ns(config.min_open), Ordering::Relaxed);
        i.max_open_ns.store(ns(config.max_open), Ordering::Relaxed);
    }

    fn now(&self) -> u64 {
        let elapsed = self
            .inner
            .clock
            .now()
            .saturating_duration_since(self.inner.epoch);
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    }

    /// A ticket to call Redis, or `None` while the breaker is open (or a
    /// probe is out): then the caller falls back at once.
    pub(crate) fn try_call(&self) -> Option<Ticket> {
        let i = &self.inner;
        match i.state.load(Ordering::Acquire) {
            CLOSED => Some(self.ticket(false)),
            OPEN if self.now() >= i.open_until.load(Ordering::Acquire) => {
                // The window is over: exactly one caller wins the probe.
                if i.state
                    .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    Some(self.ticket(true))
                } else {
                    self.short_circuit()
                }
            }
            _ => self.short_circuit(),
        }
    }

    fn ticket(&self, probe: bool) -> Ticket {
        Ticket {
            breaker: self.clone(),
            probe,
            reported: false,
        }
    }

    fn short_circuit(&self) -> Option<Ticket> {
        self.inner.short_circuited.fetch_add(1, Ordering::Relaxed);
        None
    }

    fn on_success(&self, probe: bool) {
        let i = &self.inner;
        i.consecutive.store(0, Ordering::Relaxed);
        if probe
            && i.state
                .compare_exchange(HALF_OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            i.closed.fetch_add(1, Ordering::Relaxed);
            let since = i.open_since.load(Ordering::Acquire);
            let outage = self.now().saturating_sub(since);
            i.open_ns_done.fetch_add(outage, Ordering::Relaxed);
            tracing::info!(
                breaker = i.name,
                outage_ms = outage / 1_000_000,
                "circuit breaker closed: the probe succeeded, calls go through again"
            );
            i.window.store(0, Ordering::Release);
        }
    }

    fn on_failure(&self, probe: bool) {
        let i = &self.inner;
        let now = self.now();
        if probe {
            // Still down: open again for twice as long, capped.
            let max = i.max_open_ns.load(Ordering::Relaxed);
            let window = i.window.load(Ordering::Acquire).saturating_mul(2).min(max);
            i.window.store(window, Ordering::Release);
            i.open_until
                .store(now.saturating_add(window), Ordering::Release);
            i.opened.fetch_add(1, Ordering::Relaxed);
            i.state.store(OPEN, Ordering::Release);
            tracing::info!(
                breaker = i.name,
                open_ms = window / 1_000_000,
                "circuit breaker probe failed: still unreachable, calls are skipped for longer"
            );
            return;
        }
        let failures = i.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= i.failures.load(Ordering::Relaxed)
            && i.state
                .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let window = i.min_open_ns.load(Ordering::Relaxed);
            i.window.store(window, Ordering::Release);
            i.open_since.store(now, Ordering::Release);
            i.open_until
                .store(now.saturating_add(window), Ordering::Release);
            i.opened.fetch_add(1, Ordering::Relaxed);
            i.consecutive.store(0, Ordering::Relaxed);
            tracing::warn!(
                breaker = i.name,
                failures,
                open_ms = window / 1_000_000,
                "circuit breaker opened: calls are skipped (fallback) until a probe succeeds"
            );
        }
    }

    /// The state and counters now.
    pub(crate) fn snapshot(&self) -> BreakerSnapshot {
        let i = &self.inner;
        let state = match i.state.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            OPEN => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        };
        let current = if state == BreakerState::Closed {
            0
        } else {
            self.now()
                .saturating_sub(i.open_since.load(Ordering::Acquire))
        };
        BreakerSnapshot {
            state,
            opened: i.opened.load(Ordering::Relaxed),
            closed: i.closed.load(Ordering::Relaxed),
            short_circuited: i.short_circuited.load(Ordering::Relaxed),
            open_ms: (i.open_ns_done.load(Ordering::Relaxed) + current) / 1_000_000,
        }
    }
}

impl Ticket {
    /// What the breaker guards.
    pub(crate) fn name(&self) -> &'static str {
        self.breaker.inner.name
    }

    /// Redis answered.
    pub(crate) fn success(mut self) {
        self.reported = true;
        self.breaker.on_success(self.probe);
    }

    /// Redis failed or timed out.
    pub(crate) fn failure(mut self) {
        self.reported = true;
        self.breaker.on_failure(self.probe);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.breaker.on_failure(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A breaker with 30 ms windows up to 100 ms, on a clock the test
    /// moves (no real sleep decides a test).
    fn quick() -> (CircuitBreaker, crate::clock::ManualClock) {
        let clock = crate::clock::ManualClock::new();
        let b = CircuitBreaker::with_clock(
            "test",
            BreakerConfig {
                failures: 3,
                min_open: Duration::from_millis(30),
                max_open: Duration::from_millis(100),
            },
            Arc::new(clock.clone()),
        );
        (b, clock)
    }

    fn fail(b: &CircuitBreaker) {
        b.try_call().expect("a ticket").failure();
    }

    #[test]
    fn opens_after_consecutive_failures_and_short_circuits() {
        let (b, _) = quick();
        fail(&b);
        fail(&b);
        // A success in between resets the count.
        b.try_call().unwrap().success();
        fail(&b);
        fail(&b);
        assert_eq!(b.snapshot().state, BreakerState::Closed);
        fail(&b);
        let s = b.snapshot();
        assert_eq!((s.state, s.opened), (BreakerState::Open, 1));
        for _ in 0..1000 {
            assert!(b.try_call().is_none());
        }
        assert_eq!(b.snapshot().short_circuited, 1000);
    }

    /// The log an operator reads: one warning when it opens (not one per
    /// refused call), then what each probe found.
    #[test]
    fn opening_warns_once_and_probes_say_how_they_went() {
        #[derive(Clone, Default)]
        struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let (b, clock) = quick();
            for _ in 0..3 {
                fail(&b);
            }
            for _ in 0..100 {
                assert!(b.try_call().is_none());
            }
            clock.advance(Duration::from_millis(40));
            b.try_call().expect("the probe").failure();
            clock.advance(Duration::from_millis(70));
            b.try_call().expect("the probe").success();
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("WARN") && lines[0].contains("circuit breaker opened"));
        assert!(lines[0].contains("breaker=\"test\"") && lines[0].contains("open_ms=30"));
        assert!(lines[1].contains("INFO") && lines[1].contains("probe failed"));
        assert!(lines[1].contains("open_ms=60"), "{text}");
        assert!(lines[2].contains("INFO") && lines[2].contains("circuit breaker closed"));
    }

    #[test]
    fn one_probe_after_the_window_closes_it_on_success() {
        let (b, clock) = quick();
        for _ in 0..3 {
            fail(&b);
        }
        assert!(b.try_call().is_none());
        clock.advance(Duration::from_millis(40));
        let probe = b.try_call().expect("the probe");
        // Exactly one probe.
        assert!(b.try_call().is_none());
        assert_eq!(b.snapshot().state, BreakerState::HalfOpen);
        probe.success();
        let s = b.snapshot();
        assert_eq!((s.state, s.closed), (BreakerState::Closed, 1));
        assert!(s.open_ms >= 30, "{s:?}");
        assert!(b.try_call().is_some());
    }

    #[test]
    fn a_failed_or_abandoned_probe_reopens_for_longer() {
        let (b, clock) = quick();
        for _ in 0..3 {
            fail(&b);
        }
        clock.advance(Duration::from_millis(40));
        b.try_call().expect("probe").failure();
        assert_eq!(b.snapshot().state, BreakerState::Open);
        // Twice the window now (60 ms): still open after 40 ms.
        clock.advance(Duration::from_millis(40));
        assert!(b.try_call().is_none());
        clock.advance(Duration::from_millis(30));
        // A probe dropped without an answer counts as failed.
        drop(b.try_call().expect("second probe"));
        assert_eq!(b.snapshot().state, BreakerState::Open);
        assert_eq!(b.snapshot().opened, 3);
    }

    #[test]
    fn configuring_reaches_handles_taken_before_and_refuses_what_cannot_work() {
        let b = CircuitBreaker::new("test", BreakerConfig::default());
        let earlier = b.clone();
        b.configure(BreakerConfig {
            failures: 1,
            ..BreakerConfig::default()
        });
        fail(&b);
        assert_eq!(earlier.snapshot().state, BreakerState::Open);
        for bad in [
            BreakerConfig {
                failures: 0,
                ..BreakerConfig::default()
            },
            BreakerConfig {
                min_open: Duration::ZERO,
                ..BreakerConfig::default()
            },
            BreakerConfig {
                min_open: Duration::from_secs(2),
                max_open: Duration::from_secs(1),
                ..BreakerConfig::default()
            },
        ] {
            let r = std::panic::catch_unwind(|| CircuitBreaker::new("test", bad));
            assert!(r.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn concurrent_callers_get_one_probe() {
        let (b, clock) = quick();
        for _ in 0..3 {
            fail(&b);
        }
        clock.advance(Duration::from_millis(40));
        let probes: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..1000)
                            .filter_map(|_| b.try_call())
                            .map(std::mem::forget)
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(probes, 1);
    }
}
