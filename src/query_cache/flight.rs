//! Single flight: concurrent misses of one key run its loader once.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::sync::Notify;

use super::key::QueryKey;

/// A value or an error, type-erased (each call site downcasts to its own
/// types).
pub(crate) type Erased = Arc<dyn Any + Send + Sync>;

/// How a flight ended.
#[derive(Clone)]
pub(crate) enum Outcome {
    /// The loader's value (an `Arc<V>`).
    Value(Erased),
    /// The loader's error (an `Arc<E>`): every waiter sees it.
    Error(Erased),
    /// The leader went away (its future dropped, or its loader panicked)
    /// before the loader finished: a waiter takes over.
    Abandoned,
}

/// One load in flight.
#[derive(Default)]
pub(crate) struct Flight {
    outcome: OnceLock<Outcome>,
    done: Notify,
}

impl Flight {
    /// Waits for the flight's outcome.
    pub(crate) async fn wait(&self) -> Outcome {
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(o) = self.outcome.get() {
                return o.clone();
            }
            notified.await;
        }
    }
}

/// The loads in flight, by key.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<QueryKey, Arc<Flight>, foldhash::fast::RandomState>>,
}

/// What a caller that missed does.
pub(crate) enum Role {
    /// Runs the loader; its guard ends the flight.
    Leader(Leader),
    /// Waits for the leader.
    Waiter(Arc<Flight>),
}

impl Flights {
    /// Leads the load of `key`, or follows the one in flight.
    pub(crate) fn join(self: &Arc<Self>, key: &QueryKey) -> Role {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = map.get(key) {
            return Role::Waiter(Arc::clone(f));
        }
        let flight = Arc::new(Flight::default());
        map.insert(key.clone(), Arc::clone(&flight));
        Role::Leader(Leader {
            flights: Arc::clone(self),
            key: key.clone(),
            flight,
            ended: false,
        })
    }

    /// Forgets the flights of the keys `selects` picks: callers that come
    /// after an invalidation start a load of their own instead of joining
    /// one that began before it (whose value the invalidation may select).
    pub(crate) fn detach(&self, selects: impl Fn(&QueryKey) -> bool) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| !selects(k));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The leader of a flight: ends it with an outcome, or as abandoned when
/// dropped first.
pub(crate) struct Leader {
    flights: Arc<Flights>,
    key: QueryKey,
    flight: Arc<Flight>,
    ended: bool,
}

impl Leader {
    /// Ends the flight: waiters wake with `outcome`, and the next miss of
    /// the key starts a new one.
    pub(crate) fn end(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.ended {
            return;
        }
        self.ended = true;
        // Out of the map first: a caller that comes now starts a new
        // flight rather than joining one about to end (an abandoned one
        // would send it round again).
        {
            let mut map = self
                .flights
                .map
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if map
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                map.remove(&self.key);
            }
        }
        let _ = self.flight.outcome.set(outcome);
        self.flight.done.notify_waiters();
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.finish(Outcome::Abandoned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_see_the_outcome_and_an_abandoned_flight_frees_the_key() {
        let flights = Arc::new(Flights::default());
        let key = QueryKey::new("k");
        let Role::Leader(leader) = flights.join(&key) else {
            panic!("first is leader")
        };
        let Role::Waiter(w) = flights.join(&key) else {
            panic!("second waits")
        };
        let waiting = tokio::spawn(async move { matches!(w.wait().await, Outcome::Abandoned) });
        tokio::task::yield_now().await;
        drop(leader);
        assert!(waiting.await.unwrap());
        assert_eq!(flights.len(), 0);
        let Role::Leader(leader) = flights.join(&key) else {
            panic!("the key is free again")
        };
        let Role::Waiter(w) = flights.join(&key) else {
            panic!("waits")
        };
        leader.end(Outcome::Value(Arc::new(7u32)));
        let Outcome::Value(v) = w.wait().await else {
            panic!("value")
        };
        assert_eq!(v.downcast_ref::<u32>(), Some(&7));
    }
}
