//! [`RedisStore`]: one quota per key shared by every replica, GCRA in a
//! Lua script on the Redis server's clock.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::key::Key;
use super::quota::Decision;
use super::store::{PolicyRef, RateLimitStore, StoreError};
use crate::breaker::{BreakerConfig, BreakerSnapshot, CircuitBreaker};

/// GCRA, as [`gcra`](super::quota) does in memory, on the server's clock
/// (`TIME`), so replicas with skewed clocks agree. Times in microseconds
/// (a double holds them exactly). One round trip; the key expires when its
/// quota is whole again, so idle keys cost nothing.
///
/// `KEYS[1]`: the key. ARGV: emission interval (µs), tolerance (µs), cost,
/// 1 to only peek. Returns {allowed, remaining, reset µs, retry-after µs}.
const GCRA: &str = include_str!("gcra.lua");

/// What a [`RedisStore`] does when Redis fails or is slower than its
/// timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Let the request through (the default; Envoy's choice: a limiter
    /// must not take the service down).
    Open,
    /// Refuse it with 429 and `Retry-After: 1` (express-rate-limit's
    /// choice: for quotas that protect something costly).
    Closed,
}

#[derive(Debug, Default)]
struct Counters {
    checks: AtomicU64,
    local_denials: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    fallbacks: AtomicU64,
}

/// Counters of a [`RedisStore`]; clones share them.
#[derive(Debug, Clone)]
pub struct RedisStoreStats {
    inner: Arc<Counters>,
    breaker: CircuitBreaker,
}

/// What the failure policy answers when Redis can't.
fn fallback(failure: FailurePolicy, why: String) -> Result<Decision, StoreError> {
    match failure {
        // The layer lets a request through when its store fails.
        FailurePolicy::Open => Err(StoreError::new(why)),
        FailurePolicy::Closed => Ok(Decision {
            allowed: false,
            remaining: 0,
            reset: Duration::from_secs(1),
            retry_after: Duration::from_secs(1),
        }),
    }
}

/// A point-in-time copy of [`RedisStoreStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RedisStoreSnapshot {
    /// Checks (and peeks) sent to Redis.
    pub checks: u64,
    /// Requests refused from the local deny cache, without a round trip.
    pub local_denials: u64,
    /// Redis answered with an error or the connection failed.
    pub errors: u64,
    /// Redis answered later than the store's timeout.
    pub timeouts: u64,
    /// Decisions taken by the failure policy instead of Redis (those the
    /// open breaker took included).
    pub fallbacks: u64,
    /// The circuit breaker in front of Redis.
    pub breaker: BreakerSnapshot,
}

impl RedisStoreStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> RedisStoreSnapshot {
        let c = &self.inner;
        RedisStoreSnapshot {
            checks: c.checks.load(Relaxed),
            local_denials: c.local_denials.load(Relaxed),
            errors: c.errors.load(Relaxed),
            timeouts: c.timeouts.load(Relaxed),
            fallbacks: c.fallbacks.load(Relaxed),
            breaker: self.breaker.snapshot(),
        }
    }
}

/// A [`RateLimitStore`] in Redis: every replica that points at the same
/// Redis (and prefix) shares one quota per key.
///
/// - GCRA in one Lua script, loaded once and run with `EVALSHA` (loaded
///   again after `NOSCRIPT`, e.g. after a Redis restart), on the Redis
///   server's clock: one round trip per check, replicas' clocks don't
///   matter. Keys expire when their quota is whole again.
/// - Redis's async connection manager reconnects by itself; the store is
///   created without connecting, so a service starts even while Redis is
///   down.
/// - Each call waits at most [`timeout`](Self::timeout) (default 50 ms);
///   on an error or a timeout the [`FailurePolicy`] decides (default: let
///   the request through), and [`stats`](Self::stats) count it.
/// - An optional local deny cache ([`deny_cache`](Self::deny_cache)): a key
///   known to be limited until T is refused locally until T, without a
///   round trip (Envoy's over-limit cache).
///
/// Keys are `PREFIX:POLICY:KEY` (an address in its text form, an API key
/// as sent, `*` for the global key).
///
/// ```no_run
/// use tower_perf::rate_limit::{Quota, RateLimitLayer, RateRule, RedisStore};
///
/// # fn main() -> Result<(), tower_perf::rate_limit::StoreError> {
/// let store = RedisStore::new("redis://127.0.0.1:6379", "myapp:rl")?;
/// let layer = RateLimitLayer::with_store(store)
///     .rule(RateRule::new("api", Quota::per_minute(100)).path("/api/**"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: crate::redis_conn::Conn,
    script: Arc<redis::Script>,
    prefix: Arc<str>,
    timeout: Duration,
    failure: FailurePolicy,
    deny: Option<moka::sync::Cache<(u16, Key), Instant>>,
    stats: RedisStoreStats,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("failure", &self.failure)
            .field("deny_cache", &self.deny.is_some())
            .finish_non_exhaustive()
    }
}

/// Keys the local deny cache holds at most.
const DENY_CACHE_MAX: u64 = 100_000;

impl RedisStore {
    /// A store on the Redis at `target` (a URL, `redis://host:port/db`,
    /// or a cluster's seed nodes, see [`RedisTarget`](crate::RedisTarget)),
    /// its keys under `prefix`. Does not connect yet (the first check does,
    /// and the connection comes back by itself after a failure); fails only
    /// on a malformed URL. Must be called inside a Tokio runtime.
    ///
    /// On a cluster each key is one quota in one slot, so the GCRA script
    /// stays one round trip and quotas spread over the masters.
    pub fn new(target: impl Into<crate::RedisTarget>, prefix: &str) -> Result<Self, StoreError> {
        let (_, conn) = crate::redis_conn::connect(&target.into()).map_err(StoreError::new)?;
        Ok(Self {
            conn,
            script: Arc::new(redis::Script::new(GCRA)),
            prefix: prefix.into(),
            timeout: Duration::from_millis(50),
            failure: FailurePolicy::Open,
            deny: None,
            stats: RedisStoreStats {
                inner: Arc::default(),
                breaker: CircuitBreaker::new("redis rate-limit store", BreakerConfig::default()),
            },
        })
    }

    /// The circuit breaker's settings (default: open after 3 consecutive
    /// failures or timeouts, for 100 ms doubling up to 500 ms per failed
    /// probe). While it is open no check waits for Redis: the
    /// [`FailurePolicy`] answers at once.
    ///
    /// # Panics
    ///
    /// On a configuration that cannot work (`failures` 0, `min_open` zero,
    /// `max_open` below `min_open`), with a message naming it.
    pub fn breaker(self, config: BreakerConfig) -> Self {
        // In place: stats handles taken before this call see it too.
        self.stats.breaker.configure(config);
        self
    }

    /// The longest a check waits for Redis (default 50 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What happens when Redis fails or times out (default
    /// [`FailurePolicy::Open`]).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure = policy;
        self
    }

    /// Refuses keys known to be limited locally, until their
    /// `Retry-After`, without asking Redis (at most 100,000 keys
    /// remembered). Off by default: while a key is denied locally, another
    /// replica's view of it isn't consulted, which is the point.
    pub fn deny_cache(mut self, on: bool) -> Self {
        self.deny = on.then(|| {
            moka::sync::Cache::builder()
                .max_capacity(DENY_CACHE_MAX)
                .time_to_live(Duration::from_secs(3600))
                .build()
        });
        self
    }

    /// This store's counters.
    pub fn stats(&self) -> RedisStoreStats {
        self.stats.clone()
    }

    fn redis_key(&self, policy: &PolicyRef, key: &Key) -> String {
        let k = match key {
            Key::Ip(ip) => ip.to_string(),
            Key::Text(t) => t.to_string(),
            Key::Global => "*".to_owned(),
        };
        format!("{}:{}:{}", self.prefix, policy.name, k)
    }

    fn call(&self, policy: &PolicyRef, key: &Key, cost: u32, peek: bool) -> RedisCheck {
        // The local deny cache first.
        if let Some(deny) = &self.deny {
            if let Some(until) = deny.get(&(policy.index, key.clone())) {
                let now = Instant::now();
                if until > now {
                    self.stats.inner.local_denials.fetch_add(1, Relaxed);
                    let wait = until - now;
                    return RedisCheck(Box::pin(std::future::ready(Ok(Decision {
                        allowed: false,
                        remaining: 0,
                        reset: wait,
                        retry_after: wait,
                    }))));
                }
            }
        }
        // Redis down or hung: the breaker answers in microseconds, by the
        // failure policy, instead of every request waiting the timeout.
        let Some(ticket) = self.stats.breaker.try_call() else {
            self.stats.inner.fallbacks.fetch_add(1, Relaxed);
            let fallback = fallback(self.failure, "redis: circuit open".to_owned());
            return RedisCheck(Box::pin(std::future::ready(fallback)));
        };
        let redis_key = self.redis_key(policy, key);
        let quota = policy.quota;
        let interval_us = (quota.interval_ns() / 1000).max(1);
        let tau_us = (quota.tolerance_ns() / 1000).max(1);
        let mut conn = self.conn.clone();
        let script = Arc::clone(&self.script);
        let (timeout, failure, stats) = (self.timeout, self.failure, self.stats.clone());
        let deny = self.deny.clone().map(|d| (d, (policy.index, key.clone())));
        let burst = quota.burst();
        RedisCheck(Box::pin(async move {
            stats.inner.checks.fetch_add(1, Relaxed);
            let mut invocation = script.key(redis_key);
            invocation
                .arg(interval_us)
                .arg(tau_us)
                .arg(cost.max(1))
                .arg(u8::from(peek));
            let answer: Result<(i64, i64, i64, i64), String> = crate::redis_conn::guarded(
                ticket,
                timeout,
                invocation.invoke_async(&mut conn),
                &stats.inner.errors,
                &stats.inner.timeouts,
            )
            .await;
            // A NOSCRIPT the script reloads from is not an outage, but
            // `invoke_async` handles that itself: any error here is one.
            let failed = match answer {
                Ok((allowed, remaining, reset_us, retry_us)) => {
                    let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
                    let decision = Decision {
                        allowed: allowed == 1,
                        remaining: u32::try_from(remaining.max(0))
                            .unwrap_or(u32::MAX)
                            .min(burst),
                        reset: us(reset_us),
                        retry_after: us(retry_us),
                    };
                    if let (false, Some((d, k))) = (decision.allowed, deny) {
                        if !peek {
                            d.insert(k, Instant::now() + decision.retry_after);
                        }
                    }
                    return Ok(decision);
                }
                Err(failed) => failed,
            };
            stats.inner.fallbacks.fetch_add(1, Relaxed);
            fallback(failure, failed)
        }))
    }
}

/// The future of a [`RedisStore`] check.
#[must_use = "futures do nothing unless polled"]
pub struct RedisCheck(Pin<Box<dyn Future<Output = Result<Decision, StoreError>> + Send>>);

impl std::fmt::Debug for RedisCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisCheck")
    }
}

impl Future for RedisCheck {
    type Output = Result<Decision, StoreError>;
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl RateLimitStore for RedisStore {
    type Future = RedisCheck;

    fn check(&self, policy: &PolicyRef, key: &Key, cost: u32) -> RedisCheck {
        self.call(policy, key, cost, false)
    }

    fn peek(&self, policy: &PolicyRef, key: &Key, cost: u32) -> RedisCheck {
        self.call(policy, key, cost, true)
    }
}
