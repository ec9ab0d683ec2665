//! Request coalescing: one origin fetch per key at a time, the others wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::key::CacheKey;

/// The fetches in flight, by primary key, and the URLs recently found
/// uncacheable ("hit-for-miss": requests for them don't wait for each
/// other, since the answer could not be shared anyway).
#[derive(Debug)]
pub(crate) struct Flights {
    // Keys are URLs, which clients choose: hashed with foldhash seeded per
    // map, as the memory store does (650 instructions less than SipHash
    // per cache miss of the example server).
    map: Mutex<HashMap<CacheKey, Arc<Flight>, foldhash::fast::RandomState>>,
    /// URLs marked uncacheable, each until when. A mark past its time is
    /// ignored, and replaced when the URL is marked again or forgotten as
    /// the map makes room.
    uncacheable: Marks,
    hit_for_miss: Duration,
}

type Marks = quick_cache::sync::Cache<CacheKey, Instant, MarkWeight, foldhash::fast::RandomState>;

/// A mark weighs its key (a URL a client chose, as long as it likes) and
/// the map's bookkeeping.
#[derive(Clone)]
struct MarkWeight;

impl quick_cache::Weighter<CacheKey, Instant> for MarkWeight {
    fn weight(&self, key: &CacheKey, _: &Instant) -> u64 {
        super::store::key_weight(key) as u64
    }
}

impl Default for Flights {
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

/// Bytes of URLs remembered as uncacheable at most (those marked once and
/// not asked for again are forgotten first): about 10,000 URLs of 340
/// bytes, fewer when clients make them long.
const UNCACHEABLE_BYTES: u64 = 4 * 1024 * 1024;

/// The typical mark's weight, to size the map.
const TYPICAL_MARK: u64 = 400;

/// One fetch in flight: set done and notified once, when its leader lets
/// go. (A `watch` channel did the same with a larger allocation and eight
/// `Notify`s: about 1,300 instructions more per miss.)
#[derive(Debug, Default)]
struct Flight {
    done: AtomicBool,
    notify: Notify,
}

/// Held by the request that fetches for everyone; dropping it (stored,
/// found uncacheable, failed or aborted) releases the waiters.
#[derive(Debug)]
pub(crate) struct FlightGuard {
    flights: Arc<Flights>,
    key: CacheKey,
    flight: Arc<Flight>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.flights.map.lock() {
            if map
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                map.remove(&self.key);
            }
        }
        self.flight.done.store(true, Ordering::Release);
        self.flight.notify.notify_waiters();
    }
}

/// A request that found a fetch in flight.
#[derive(Debug)]
pub(crate) struct Waiter {
    flight: Arc<Flight>,
}

impl Waiter {
    /// Waits for the leader to finish (however it ends: its guard is
    /// dropped), at most `timeout`; `false` on timeout.
    pub(crate) async fn wait(self, timeout: Duration) -> bool {
        let flight = &self.flight;
        let wait = async {
            let notified = flight.notify.notified();
            tokio::pin!(notified);
            // Registered before the flag is read: a release between the
            // two still wakes this waiter.
            notified.as_mut().enable();
            if !flight.done.load(Ordering::Acquire) {
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

pub(crate) enum Join {
    Leader(FlightGuard),
    Waiter(Waiter),
}

impl Flights {
    /// Remembers uncacheable URLs for `hit_for_miss`.
    pub(crate) fn new(hit_for_miss: Duration) -> Self {
        Self {
            map: Mutex::default(),
            uncacheable: Marks::with(
                (UNCACHEABLE_BYTES / TYPICAL_MARK) as usize,
                UNCACHEABLE_BYTES,
                MarkWeight,
                foldhash::fast::RandomState::default(),
                Default::default(),
            ),
            hit_for_miss: hit_for_miss.max(Duration::from_millis(1)),
        }
    }

    /// The origin's last answer for `key` could not be stored. A URL
    /// already remembered stays so from when it was first marked: a read
    /// is a lookup, an insert clones the key and takes the shard's write
    /// lock, on every request for a URL that is never stored.
    pub(crate) fn mark_uncacheable(&self, key: &CacheKey) {
        if !self.is_uncacheable(key) {
            self.uncacheable
                .insert(key.clone(), Instant::now() + self.hit_for_miss);
        }
    }

    /// An answer for `key` was stored.
    pub(crate) fn mark_cacheable(&self, key: &CacheKey) {
        // Called on every store, and almost no URL is marked: a read
        // first, the write lock only to remove a mark.
        if self.uncacheable.contains_key(key) {
            self.uncacheable.remove(key);
        }
    }

    /// Whether `key` was found uncacheable lately.
    pub(crate) fn is_uncacheable(&self, key: &CacheKey) -> bool {
        self.uncacheable
            .get(key)
            .is_some_and(|until| Instant::now() < until)
    }

    /// Becomes the leader for `key`, or a waiter if a fetch is in flight.
    pub(crate) fn join(self: &Arc<Self>, key: &CacheKey) -> Join {
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(flight) = map.get(key) {
            return Join::Waiter(Waiter {
                flight: Arc::clone(flight),
            });
        }
        let flight = Arc::new(Flight::default());
        map.insert(key.clone(), Arc::clone(&flight));
        Join::Leader(FlightGuard {
            flights: Arc::clone(self),
            key: key.clone(),
            flight,
        })
    }

    /// Becomes the leader for `key` only if nothing is in flight for it
    /// (a background refresh runs once).
    pub(crate) fn try_lead(self: &Arc<Self>, key: &CacheKey) -> Option<FlightGuard> {
        match self.join(key) {
            Join::Leader(g) => Some(g),
            Join::Waiter(_) => None,
        }
    }

    /// Fetches in flight now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn leader_then_waiters_released_on_drop() {
        let flights = Arc::new(Flights::default());
        let key = CacheKey::new(b"h", &http::Uri::from_static("/a"));
        let Join::Leader(guard) = flights.join(&key) else {
            panic!("first is the leader")
        };
        let Join::Waiter(w) = flights.join(&key) else {
            panic!("second waits")
        };
        assert!(flights.try_lead(&key).is_none());
        let t = tokio::spawn(w.wait(Duration::from_secs(5)));
        drop(guard);
        assert!(t.await.unwrap());
        assert_eq!(flights.len(), 0);
        assert!(flights.try_lead(&key).is_some());
    }

    #[test]
    fn uncacheable_urls_are_remembered_for_a_while() {
        let flights = Flights::new(Duration::from_millis(50));
        let key = CacheKey::new(b"h", &http::Uri::from_static("/a"));
        assert!(!flights.is_uncacheable(&key));
        flights.mark_uncacheable(&key);
        assert!(flights.is_uncacheable(&key));
        flights.mark_cacheable(&key);
        assert!(!flights.is_uncacheable(&key));
        flights.mark_uncacheable(&key);
        std::thread::sleep(Duration::from_millis(80));
        assert!(!flights.is_uncacheable(&key));
    }

    /// A waiter that joined before the leader let go but waits only after
    /// is released at once (the flag, not a missed notification).
    #[tokio::test]
    async fn a_waiter_that_waits_after_the_release_returns_at_once() {
        let flights = Arc::new(Flights::default());
        let key = CacheKey::new(b"h", &http::Uri::from_static("/a"));
        let guard = flights.try_lead(&key).unwrap();
        let Join::Waiter(w) = flights.join(&key) else {
            panic!("waits")
        };
        drop(guard);
        assert!(w.wait(Duration::from_secs(30)).await);
    }

    /// Marks weigh their URLs: clients asking for long uncacheable URLs
    /// can't hold more than the byte cap.
    #[test]
    fn marks_of_long_urls_stay_within_their_bytes() {
        let flights = Flights::default();
        let long = "q".repeat(8 * 1024);
        for i in 0..2_000 {
            let uri: http::Uri = format!("/u/{i}?{long}").parse().unwrap();
            flights.mark_uncacheable(&CacheKey::new(b"h", &uri));
        }
        let held = flights.uncacheable.len() as u64;
        assert!(held * 8 * 1024 <= UNCACHEABLE_BYTES, "{held} marks");
        assert!(flights.uncacheable.weight() <= UNCACHEABLE_BYTES);
    }

    #[tokio::test]
    async fn waiters_time_out() {
        let flights = Arc::new(Flights::default());
        let key = CacheKey::new(b"h", &http::Uri::from_static("/a"));
        let _guard = flights.try_lead(&key).unwrap();
        let Join::Waiter(w) = flights.join(&key) else {
            panic!("waits")
        };
        assert!(!w.wait(Duration::from_millis(20)).await);
    }
}
