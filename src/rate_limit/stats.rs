//! The rate limiter's counters: allowed and limited per policy, the most
//! limited keys, and requests that had no key to count.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::key::Key;
use super::most_limited::MostLimited;

#[derive(Debug, Default)]
struct PolicyCounters {
    allowed: AtomicU64,
    limited: AtomicU64,
}

/// Allowed and limited requests of one policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyStats {
    /// The policy's name.
    pub name: String,
    /// Requests let through.
    pub allowed: u64,
    /// Requests over the quota (rejected, or only counted in shadow mode).
    pub limited: u64,
}

/// A point-in-time copy of a rate limiter's counters (the JSON of
/// `/performance/rate-limit/stats`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RateLimitSnapshot {
    /// Allowed and limited, per policy, in rule order (a rule's own policy
    /// before its [`and_policy`](super::RateRule::and_policy) ones).
    pub policies: Vec<PolicyStats>,
    /// The most limited keys (at most [`MOST_LIMITED_IN_SNAPSHOT`]), most
    /// limited first; [`RateLimitStats::most_limited`] reads more.
    pub most_limited: Vec<LimitedKey>,
    /// Limited requests, all policies.
    pub limited: u64,
    /// Allowed requests, all policies.
    pub allowed: u64,
    /// Requests that carried no client address to count them against
    /// ([`MissingKey::Fail`](super::MissingKey::Fail)), answered `500` (let
    /// through in shadow mode): the server hands the layer no peer address.
    pub missing_key_failures: u64,
    /// Whether the layer counts in [shadow](super::RateLimitLayer::shadow)
    /// mode: limited and failed requests were let through, not answered.
    pub shadow: bool,
}

impl RateLimitSnapshot {
    /// The figures of the policy named `name`.
    pub fn policy(&self, name: &str) -> Option<&PolicyStats> {
        self.policies.iter().find(|p| p.name == name)
    }
}

/// How many of the most limited keys a [`RateLimitSnapshot`] holds.
pub const MOST_LIMITED_IN_SNAPSHOT: usize = 20;

/// A cheap, cloneable handle to a [`RateLimitLayer`](super::RateLimitLayer)'s counters.
///
/// It follows the layer it was taken from until the layer wraps a service:
/// taken before the last builder calls, it reads the counters of the
/// services the layer builds with its final rules and settings. Builder
/// calls on a layer that already wraps a service, or on a clone while the
/// original lives on, make a different layer with counters of its own
/// (take its handle from it); the handles taken before stay with the
/// services already made.
#[derive(Debug, Clone)]
pub struct RateLimitStats {
    /// The counters of the layer's latest table, replaced when a builder
    /// call makes the layer build a new one. Only readers take the lock;
    /// the services hold the `Counters` themselves.
    current: Arc<RwLock<Counters>>,
}

/// One built table's counters, the ones its services count into.
#[derive(Debug, Clone)]
pub(super) struct Counters {
    names: Arc<[Arc<str>]>,
    counters: Arc<[PolicyCounters]>,
    /// Limited requests by (policy, key); touched only when a request is
    /// limited, bounded to [`LIMITED_KEYS_KEPT`](super::LIMITED_KEYS_KEPT) entries.
    limited_keys: Arc<Mutex<MostLimited>>,
    /// Requests without a client address under [`MissingKey::Fail`](super::MissingKey::Fail)
    /// (answered 500, or let through in shadow mode); the first is logged.
    pub(super) missing_key_failures: Arc<AtomicU64>,
    /// Whether the table's layer is in shadow mode (limited and failed
    /// requests were let through, not answered): the report says so.
    shadow: bool,
}

/// A key that hit its quota, and how often.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LimitedKey {
    /// The policy.
    pub policy: String,
    /// The key (an IP, an API key…).
    pub key: String,
    /// Requests limited.
    pub limited: u64,
}

impl Counters {
    /// Zeroed counters for these policies, by index, of a layer in shadow
    /// mode or not.
    pub(super) fn new(names: Arc<[Arc<str>]>, shadow: bool) -> Self {
        Self {
            counters: names.iter().map(|_| PolicyCounters::default()).collect(),
            limited_keys: Arc::new(Mutex::new(MostLimited::new(names.len()))),
            names,
            missing_key_failures: Arc::default(),
            shadow,
        }
    }

    /// Counts one policy's decision on one request: allowed, or limited
    /// (and the key among the most limited).
    #[inline]
    pub(super) fn count(&self, policy: u16, key: &Key, allowed: bool) {
        let c = &self.counters[usize::from(policy)];
        if allowed {
            c.allowed.fetch_add(1, Relaxed);
        } else {
            c.limited.fetch_add(1, Relaxed);
            self.record_limited(usize::from(policy), key);
        }
    }

    fn record_limited(&self, policy: usize, key: &Key) {
        self.limited_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(policy, key);
    }
}

impl RateLimitStats {
    /// A handle to no table yet: no policies, nothing counted.
    pub(super) fn new() -> Self {
        Self {
            current: Arc::new(RwLock::new(Counters::new(Arc::new([]), false))),
        }
    }

    /// A handle that reads `counters` for good (a service's own).
    pub(super) fn attached(counters: Counters) -> Self {
        Self {
            current: Arc::new(RwLock::new(counters)),
        }
    }

    /// From now on, read `counters` (those of the table just built).
    pub(super) fn attach(&self, counters: Counters) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = counters;
    }

    fn current(&self) -> Counters {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The `n` most limited keys, most limited first.
    pub fn most_limited(&self, n: usize) -> Vec<LimitedKey> {
        most_limited(&self.current(), n)
    }

    /// Requests that carried no client address to count them against,
    /// under [`MissingKey::Fail`](super::MissingKey::Fail): answered `500`,
    /// or let through uncounted in [shadow](super::RateLimitLayer::shadow)
    /// mode. More than 0 means the server hands the layer no peer address
    /// (see [`MissingKey`](super::MissingKey)).
    pub fn missing_key_failures(&self) -> u64 {
        self.current().missing_key_failures.load(Relaxed)
    }

    /// Allowed and limited per policy, in rule order, without the most
    /// limited keys (which [`snapshot`](Self::snapshot) sorts under their
    /// lock, as a 429 takes it: a Prometheus scrape needs only these).
    pub fn policies(&self) -> Vec<PolicyStats> {
        policies(&self.current())
    }

    /// Reads every counter: per policy, the totals and the most limited
    /// keys.
    pub fn snapshot(&self) -> RateLimitSnapshot {
        let current = self.current();
        let policies = policies(&current);
        RateLimitSnapshot {
            limited: policies.iter().map(|p| p.limited).sum(),
            allowed: policies.iter().map(|p| p.allowed).sum(),
            policies,
            most_limited: most_limited(&current, MOST_LIMITED_IN_SNAPSHOT),
            missing_key_failures: current.missing_key_failures.load(Relaxed),
            shadow: current.shadow,
        }
    }
}

/// `current`'s counters per policy, in rule order.
fn policies(current: &Counters) -> Vec<PolicyStats> {
    current
        .names
        .iter()
        .zip(current.counters.iter())
        .map(|(n, c)| PolicyStats {
            name: n.to_string(),
            allowed: c.allowed.load(Relaxed),
            limited: c.limited.load(Relaxed),
        })
        .collect()
}

/// `current`'s `n` most limited keys, most limited first.
fn most_limited(current: &Counters, n: usize) -> Vec<LimitedKey> {
    let m = current
        .limited_keys
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut v: Vec<LimitedKey> = m
        .iter()
        .map(|(policy, key, count)| LimitedKey {
            policy: current
                .names
                .get(policy)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            key: key.to_string(),
            limited: count,
        })
        .collect();
    v.sort_by(|a, b| b.limited.cmp(&a.limited).then_with(|| a.key.cmp(&b.key)));
    v.truncate(n);
    v
}
