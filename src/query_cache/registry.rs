//! What a replica knows of the Redis tier's namespace registry (`P:qns`,
//! which `All`, tags, prefixes and patterns go through): the namespaces it
//! has put there, and when.
//!
//! A namespace never sent (or forgotten) is registered before the lookup
//! or insert that needs it goes on. One sent long ago, or before a Redis
//! call failed (a failover may have lost the registry's last writes), is
//! sent again in the background: the request does not wait, and one
//! refresh goes out however many lookups see it due.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Namespaces remembered at most (past this, namespaces not remembered
/// are registered by every first lookup: one more round trip, still
/// correct).
const REMEMBERED_MAX: usize = 10_000;

/// How long a registration is trusted before it is sent again: the bound
/// on how long a registry Redis lost alone (evicted, or written just
/// before a failover) leaves a namespace in use out of reach of `All`,
/// tags and patterns.
pub(super) const REFRESH: Duration = Duration::from_secs(30);

/// What registering a namespace takes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    /// Sent recently: nothing.
    Nothing,
    /// Sent, but long ago or before a failure: send it again in the
    /// background (marked as sent already, so only one goes).
    Refresh,
    /// Never sent, or forgotten: send it before going on.
    Now,
}

#[derive(Debug, Default)]
pub(super) struct Registered(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    /// When each namespace was sent, and in which epoch.
    sent: HashMap<Box<str>, (Instant, u64)>,
    /// Moved by each failed call: registrations of an earlier epoch are
    /// due again.
    epoch: u64,
    /// When a full memory last forgot the registrations due again: at
    /// most once a [`PRUNE_EVERY`], so namespaces past the cap cost no
    /// walk of the whole memory each.
    pruned_at: Option<Instant>,
}

/// The least time between two walks of a full memory.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

impl Registered {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What registering `ns` takes now (see [`Need`]).
    pub(super) fn need(&self, ns: &str) -> Need {
        let mut state = self.state();
        let epoch = state.epoch;
        let Some(sent) = state.sent.get_mut(ns) else {
            return Need::Now;
        };
        if sent.0.elapsed() < REFRESH && sent.1 == epoch {
            return Need::Nothing;
        }
        *sent = (Instant::now(), epoch);
        Need::Refresh
    }

    /// `ns` was just put in the registry.
    pub(super) fn sent(&self, ns: &str) {
        let mut state = self.state();
        if state.sent.len() >= REMEMBERED_MAX
            && !state.sent.contains_key(ns)
            && state.pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY)
        {
            let epoch = state.epoch;
            state
                .sent
                .retain(|_, (at, e)| at.elapsed() < REFRESH && *e == epoch);
            state.pruned_at = Some(Instant::now());
        }
        if state.sent.len() < REMEMBERED_MAX || state.sent.contains_key(ns) {
            let epoch = state.epoch;
            state.sent.insert(ns.into(), (Instant::now(), epoch));
        }
    }

    /// A Redis call failed: every registration sent so far is due again.
    pub(super) fn stale(&self) {
        let mut state = self.state();
        state.epoch = state.epoch.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_sent_first_then_refreshed_once_after_a_failure() {
        let r = Registered::default();
        assert_eq!(r.need("users"), Need::Now);
        r.sent("users");
        assert_eq!(r.need("users"), Need::Nothing);
        r.stale();
        assert_eq!(r.need("users"), Need::Refresh, "due after a failure");
        assert_eq!(r.need("users"), Need::Nothing, "one refresh goes out");
        assert_eq!(r.need("orders"), Need::Now);
    }

    #[test]
    fn a_full_memory_forgets_the_registrations_due_again() {
        let r = Registered::default();
        for i in 0..REMEMBERED_MAX {
            r.sent(&i.to_string());
        }
        r.sent("one more");
        assert_eq!(r.need("one more"), Need::Now, "full: not remembered");
        assert_eq!(r.need("0"), Need::Nothing);
        // After a failure every registration is due again: the next walk
        // (a second after the last) forgets them and makes room.
        r.stale();
        r.sent("still no room");
        assert_eq!(r.need("still no room"), Need::Now, "walked a moment ago");
        std::thread::sleep(PRUNE_EVERY);
        r.sent("room");
        assert_eq!(r.need("room"), Need::Nothing, "forgotten the stale ones");
        assert_eq!(r.need("0"), Need::Now);
    }
}
