//! Quotas and the GCRA arithmetic.

use std::time::Duration;

/// How many requests a key may make: `n` per `period`, with a burst.
///
/// The names read as they sound: `Quota::per_minute(100)` is 100 requests a
/// minute (tower_governor's `per_second(n)` means one request every `n`
/// seconds, which users trip on). Requests are spread evenly (one every
/// `period / n`); the burst is how many may come at once after a quiet
/// spell, `n` unless set.
///
/// ```
/// use std::time::Duration;
/// use tower_perf::rate_limit::Quota;
///
/// let q = Quota::per_minute(100);
/// assert_eq!(q.emission_interval(), Duration::from_millis(600));
/// assert_eq!(q.burst(), 100);
/// let q = Quota::per_second(10).with_burst(2);
/// assert_eq!((q.limit(), q.burst()), (10, 2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    limit: u32,
    period: Duration,
    burst: u32,
    /// `period / limit` in nanoseconds (at least 1), worked out once: a
    /// check needs it and a division costs more than the rest of the step.
    interval_ns: u64,
    /// `interval_ns × burst`, saturating.
    tolerance_ns: u64,
}

impl Quota {
    /// `n` requests per `period`.
    ///
    /// # Panics
    ///
    /// When `n` is 0 or `period` is zero: such a quota admits nothing (or
    /// everything), and was once turned into one request silently. To
    /// refuse a route outright, answer it yourself (403, 404); to leave it
    /// unlimited, give it no rule.
    pub fn per(period: Duration, n: u32) -> Self {
        assert!(
            n > 0,
            "Quota::per({period:?}, 0): a quota must allow at least one request per period \
             (to refuse a route, answer it yourself; to leave it unlimited, give it no rule)"
        );
        assert!(
            !period.is_zero(),
            "Quota::per(0 s, {n}): a quota's period must be longer than zero"
        );
        Self {
            limit: n,
            period,
            burst: n,
            interval_ns: 0,
            tolerance_ns: 0,
        }
        .derive()
    }

    /// Works out the cached nanosecond figures.
    fn derive(mut self) -> Self {
        self.interval_ns = u64::try_from(self.emission_interval().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        self.tolerance_ns = self.interval_ns.saturating_mul(u64::from(self.burst));
        self
    }

    /// `n` requests a second.
    ///
    /// # Panics
    ///
    /// When `n` is 0 (see [`per`](Self::per)).
    pub fn per_second(n: u32) -> Self {
        Self::per(Duration::from_secs(1), n)
    }

    /// `n` requests a minute.
    ///
    /// # Panics
    ///
    /// When `n` is 0 (see [`per`](Self::per)).
    pub fn per_minute(n: u32) -> Self {
        Self::per(Duration::from_secs(60), n)
    }

    /// `n` requests an hour.
    ///
    /// # Panics
    ///
    /// When `n` is 0 (see [`per`](Self::per)).
    pub fn per_hour(n: u32) -> Self {
        Self::per(Duration::from_secs(3600), n)
    }

    /// `n` requests a day.
    ///
    /// # Panics
    ///
    /// When `n` is 0 (see [`per`](Self::per)).
    pub fn per_day(n: u32) -> Self {
        Self::per(Duration::from_secs(86_400), n)
    }

    /// At most `burst` requests at once.
    ///
    /// # Panics
    ///
    /// When `burst` is 0: no request could ever pass.
    pub fn with_burst(mut self, burst: u32) -> Self {
        assert!(
            burst > 0,
            "Quota::with_burst(0): a burst of 0 admits no request; the burst must be at least 1"
        );
        self.burst = burst;
        self.derive()
    }

    /// Requests per period.
    pub const fn limit(&self) -> u32 {
        self.limit
    }

    /// The period.
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// Requests allowed at once.
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// The time one request "costs": `period / limit`.
    pub fn emission_interval(&self) -> Duration {
        self.period / self.limit
    }

    #[inline]
    pub(crate) fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    #[inline]
    pub(crate) fn tolerance_ns(&self) -> u64 {
        self.tolerance_ns
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// Requests still allowed right now.
    pub remaining: u32,
    /// Until the quota is whole again (`t` of the RateLimit field).
    pub reset: Duration,
    /// When denied: until one request would be allowed.
    pub retry_after: Duration,
}

/// One GCRA step: `tat` is the key's theoretical arrival time (0 for a new
/// key), `now` the current time, both in nanoseconds on the store's clock.
/// Returns the decision and the TAT to store (unchanged when denied).
pub(crate) fn gcra(tat: u64, now: u64, quota: &Quota, cost: u32) -> (Decision, u64) {
    match admit(tat, now, quota, cost) {
        Some(new_tat) => (allowed(new_tat, now, quota), new_tat),
        None => (denied(tat, now, quota, cost), tat),
    }
}

/// The TAT after admitting `cost` requests at `now`, or `None` when they
/// don't fit. The part of a step that sits between a store's load and its
/// compare-and-swap, so it is kept to a few instructions.
#[inline]
pub(crate) fn admit(tat: u64, now: u64, quota: &Quota, cost: u32) -> Option<u64> {
    let t = quota.interval_ns();
    let new_tat = tat
        .max(now)
        .saturating_add(t.saturating_mul(u64::from(cost.max(1))));
    (new_tat <= now.saturating_add(quota.tolerance_ns())).then_some(new_tat)
}

/// The decision for requests admitted, leaving `new_tat`.
#[inline]
pub(crate) fn allowed(new_tat: u64, now: u64, quota: &Quota) -> Decision {
    let limit_at = now.saturating_add(quota.tolerance_ns());
    let remaining = limit_at.saturating_sub(new_tat) / quota.interval_ns();
    Decision {
        allowed: true,
        remaining: u32::try_from(remaining)
            .unwrap_or(u32::MAX)
            .min(quota.burst),
        reset: Duration::from_nanos(new_tat.saturating_sub(now)),
        retry_after: Duration::ZERO,
    }
}

/// The decision for `cost` requests refused at `now` with the key's TAT
/// at `tat`.
pub(crate) fn denied(tat: u64, now: u64, quota: &Quota, cost: u32) -> Decision {
    let base = tat.max(now);
    let new_tat = base.saturating_add(quota.interval_ns().saturating_mul(u64::from(cost.max(1))));
    let limit_at = now.saturating_add(quota.tolerance_ns());
    Decision {
        allowed: false,
        remaining: 0,
        reset: Duration::from_nanos(base - now),
        retry_after: Duration::from_nanos(new_tat.saturating_sub(limit_at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn burst_then_steady_rate() {
        let q = Quota::per_second(10).with_burst(3);
        let (mut tat, now) = (0, 1_000 * S);
        let mut allowed = 0;
        for _ in 0..5 {
            let (d, t) = gcra(tat, now, &q, 1);
            tat = t;
            allowed += usize::from(d.allowed);
        }
        assert_eq!(allowed, 3, "the burst");
        // Denied: one more allowed after exactly one interval (100 ms).
        let (d, _) = gcra(tat, now, &q, 1);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_millis(100));
        let (d, t) = gcra(tat, now + S / 10, &q, 1);
        assert!(d.allowed);
        tat = t;
        // Steady: one every 100 ms passes, faster does not.
        let mut now = now + S / 10;
        for _ in 0..20 {
            now += S / 10;
            let (d, t) = gcra(tat, now, &q, 1);
            assert!(d.allowed);
            tat = t;
        }
        assert!(!gcra(tat, now + S / 20, &q, 1).0.allowed);
    }

    #[test]
    fn remaining_and_reset() {
        let q = Quota::per_minute(60); // one a second, burst 60
        let now = 5 * S;
        let (d, tat) = gcra(0, now, &q, 1);
        assert_eq!((d.remaining, d.reset), (59, Duration::from_secs(1)));
        let (d, _) = gcra(tat, now, &q, 1);
        assert_eq!((d.remaining, d.reset), (58, Duration::from_secs(2)));
        // A long idle key is as good as new.
        let (d, _) = gcra(tat, now + 3600 * S, &q, 1);
        assert_eq!(d.remaining, 59);
    }

    #[test]
    fn costs_and_extremes() {
        let q = Quota::per_second(10);
        let (d, _) = gcra(0, S, &q, 10);
        assert!(d.allowed && d.remaining == 0);
        let (d, _) = gcra(0, S, &q, 11);
        assert!(!d.allowed);
        // Saturating arithmetic: no panic on absurd values.
        let huge = Quota::per(Duration::MAX, u32::MAX);
        let _ = gcra(u64::MAX, u64::MAX, &huge, u32::MAX);
        let _ = gcra(0, 0, &Quota::per_second(1), 0);
    }

    #[test]
    fn zero_quotas_are_refused_not_rounded_up() {
        for (what, make) in [
            ("per_second", Quota::per_second as fn(u32) -> Quota),
            ("per_minute", Quota::per_minute),
            ("per_hour", Quota::per_hour),
            ("per_day", Quota::per_day),
        ] {
            let e = std::panic::catch_unwind(|| make(0)).expect_err(what);
            let msg = e.downcast_ref::<String>().expect("a formatted message");
            assert!(msg.contains("at least one request"), "{what}: {msg}");
        }
        assert!(std::panic::catch_unwind(|| Quota::per(Duration::ZERO, 5)).is_err());
        assert!(std::panic::catch_unwind(|| Quota::per_minute(5).with_burst(0)).is_err());
        // Nothing else is rounded: a sub-millisecond period is kept.
        let q = Quota::per(Duration::from_micros(100), 1);
        assert_eq!(q.period(), Duration::from_micros(100));
        assert_eq!(q.with_burst(1).burst(), 1);
    }
}
