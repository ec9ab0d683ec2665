//! Live statistics of a cache-control layer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
struct Inner {
    etags_generated: AtomicU64,
    not_modified: AtomicU64,
    precondition_failed: AtomicU64,
    policies_applied: AtomicU64,
    probes: AtomicU64,
}

/// A cheap, cloneable handle to a [`CacheControlLayer`](super::CacheControlLayer)'s
/// counters. Clones share them; reading never blocks requests.
#[derive(Debug, Clone)]
pub struct CacheControlStats {
    inner: Arc<Inner>,
}

/// A point-in-time copy of [`CacheControlStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
// What the report serves; serde comes with the report.
#[cfg_attr(feature = "report", derive(serde::Serialize))]
pub struct CacheControlSnapshot {
    /// ETags computed by hashing a body.
    pub etags_generated: u64,
    /// 304 Not Modified answers sent by the layer.
    pub not_modified: u64,
    /// 412 Precondition Failed answers sent by the layer.
    pub precondition_failed: u64,
    /// Responses that got a Cache-Control from a rule.
    pub policies_applied: u64,
    /// Unsafe requests with preconditions, for which the layer fetched the
    /// current representation's validators first.
    pub probes: u64,
}

impl CacheControlStats {
    /// Fresh counters.
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::default(),
        }
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> CacheControlSnapshot {
        let i = &self.inner;
        CacheControlSnapshot {
            etags_generated: i.etags_generated.load(Relaxed),
            not_modified: i.not_modified.load(Relaxed),
            precondition_failed: i.precondition_failed.load(Relaxed),
            policies_applied: i.policies_applied.load(Relaxed),
            probes: i.probes.load(Relaxed),
        }
    }

    pub(crate) fn etag_generated(&self) {
        self.inner.etags_generated.fetch_add(1, Relaxed);
    }
    pub(crate) fn not_modified(&self) {
        self.inner.not_modified.fetch_add(1, Relaxed);
    }
    pub(crate) fn precondition_failed(&self) {
        self.inner.precondition_failed.fetch_add(1, Relaxed);
    }
    pub(crate) fn policy_applied(&self) {
        self.inner.policies_applied.fetch_add(1, Relaxed);
    }
    pub(crate) fn probe(&self) {
        self.inner.probes.fetch_add(1, Relaxed);
    }
}
