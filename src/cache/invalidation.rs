//! How the replicas of a [`TieredStore`](super::TieredStore) keep their
//! memory tiers coherent: invalidations published on a Redis channel, a
//! subscriber per replica, and an outbox that replays the invalidations
//! Redis could not take when they were made.
//!
//! The guarantee: once Redis answers again, no replica serves an entry that
//! was purged or invalidated anywhere during the outage.
//! - A replica whose subscription was interrupted may have missed messages:
//!   when it subscribes again, it empties its memory tier.
//! - A replica that could not reach Redis while purging keeps the purge in
//!   its outbox and replays it (Redis tier first, then the message) until
//!   Redis takes it, so replicas whose subscription never broke (Redis
//!   paused, or only this replica cut off) learn of it too.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::key::CacheKey;
use super::redis_store::{RedisCacheStats, RedisCacheStore};
use super::store::{CacheStore, MemoryStore, Purge, StoreError, Variants};

/// Invalidations an outbox keeps, and the bytes of their URLs, prefixes
/// and tags; one more and they collapse into a purge of everything
/// (over-invalidating is safe, forgetting is not). Clients can fill it:
/// each successful unsafe request during an outage queues its URL, whose
/// length they choose, and every push and every Redis hit while purges
/// wait looks through the queue, so both bounds stay small.
pub(crate) const OUTBOX_CAP: usize = 1024;
pub(crate) const OUTBOX_MAX_BYTES: usize = 256 * 1024;

/// The bytes a purge holds.
fn weight(purge: &Purge) -> usize {
    match purge {
        Purge::Key(k) => k.as_str().len(),
        Purge::PathAndQuery(s) | Purge::Prefix(s) | Purge::Tag(s) => s.len(),
        Purge::All => 0,
    }
}

/// The first wait before replaying again after a failed attempt; doubles
/// up to [`RETRY_MAX`]. Short: while Redis is known to be down the breaker
/// refuses an attempt at once, so waking costs nothing, and the replay
/// follows Redis's return closely.
const RETRY_MIN: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Purge>,
    /// What the items hold, by [`weight`].
    bytes: usize,
    /// The front item is being replayed: a new purge equal to it is not
    /// covered by it (what was stored meanwhile must go too).
    in_flight: bool,
}

/// Purges not yet taken by Redis, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    wake: tokio::sync::Notify,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `purge` for replay and wakes the replay task.
    pub(crate) fn push(&self, purge: Purge, stats: &RedisCacheStats) {
        {
            let mut q = self.lock();
            let waiting = usize::from(q.in_flight);
            let covered = q
                .items
                .iter()
                .skip(waiting)
                .any(|p| *p == Purge::All || *p == purge);
            if covered {
                // Already waiting, not yet started.
            } else if purge == Purge::All
                || q.items.len() >= OUTBOX_CAP
                || q.bytes + weight(&purge) > OUTBOX_MAX_BYTES
            {
                if purge != Purge::All {
                    tracing::warn!(
                        pending = q.items.len(),
                        bytes = q.bytes,
                        "tower-perf cache: more purges wait for Redis than the outbox keeps \
                         ({OUTBOX_CAP}, {OUTBOX_MAX_BYTES} bytes); they collapse into one \
                         purge of everything when it answers"
                    );
                }
                // The item in flight stays at the front (its replay ends
                // with `done`); everything after it becomes one purge.
                q.items.truncate(waiting);
                q.bytes = q.items.iter().map(weight).sum();
                q.items.push_back(Purge::All);
            } else {
                q.bytes += weight(&purge);
                q.items.push_back(purge);
            }
            stats.set_pending(q.items.len());
        }
        self.wake.notify_one();
    }

    /// The oldest purge, now in flight.
    fn take_front(&self) -> Option<Purge> {
        let mut q = self.lock();
        let front = q.items.front().cloned();
        q.in_flight = front.is_some();
        front
    }

    /// The purge in flight was replayed: it goes.
    fn done(&self, stats: &RedisCacheStats) {
        let mut q = self.lock();
        if q.in_flight {
            if let Some(p) = q.items.pop_front() {
                q.bytes -= weight(&p);
            }
            q.in_flight = false;
        }
        stats.set_pending(q.items.len());
    }

    /// The purge in flight failed: it stays first in line.
    fn retry(&self) {
        self.lock().in_flight = false;
    }

    fn len(&self) -> usize {
        self.lock().items.len()
    }
}

/// A message on the invalidation channel: the sender's id, then the purge.
pub(crate) fn encode_purge(id: u64, purge: &Purge) -> String {
    let (kind, arg) = match purge {
        Purge::Key(k) => ("k", k.as_str()),
        Purge::PathAndQuery(p) => ("q", p.as_str()),
        Purge::Prefix(p) => ("p", p.as_str()),
        Purge::Tag(t) => ("t", t.as_str()),
        Purge::All => ("a", ""),
    };
    format!("{id:x}|{kind}|{arg}")
}

pub(crate) fn decode_purge(msg: &str) -> Option<(u64, Purge)> {
    let mut parts = msg.splitn(3, '|');
    let id = u64::from_str_radix(parts.next()?, 16).ok()?;
    let kind = parts.next()?;
    let arg = parts.next()?.to_owned();
    let purge = match kind {
        "k" => Purge::Key(CacheKey::from_text(&arg)),
        "q" => Purge::PathAndQuery(arg),
        "p" => Purge::Prefix(arg),
        "t" => Purge::Tag(arg),
        "a" => Purge::All,
        _ => return None,
    };
    Some((id, purge))
}

/// What a replica needs to broadcast: its memory tier, the Redis tier, the
/// channel and its own id (its subscriber ignores its own messages).
#[derive(Debug, Clone)]
pub(crate) struct Broadcast {
    pub(crate) l1: MemoryStore,
    pub(crate) l2: RedisCacheStore,
    pub(crate) channel: Arc<str>,
    pub(crate) id: u64,
    pub(crate) outbox: Arc<Outbox>,
}

impl Broadcast {
    /// Tells the other replicas to drop what `purge` selects.
    pub(crate) async fn publish(&self, purge: &Purge) -> Result<(), StoreError> {
        let mut conn = self.l2.conn.clone();
        let _: i64 = RedisCacheStore::run(
            &self.l2.stats,
            self.l2.timeout,
            redis::cmd("PUBLISH")
                .arg(&*self.channel)
                .arg(encode_purge(self.id, purge))
                .query_async(&mut conn),
        )
        .await?;
        self.l2.stats.inner.published.fetch_add(1, Relaxed);
        Ok(())
    }

    /// The shared part of a purge whose memory part is done: the Redis
    /// tier, this replica's memory again (a lookup may have copied a Redis
    /// copy back meanwhile), then the other replicas — in that order, so
    /// that no replica refills its memory from a Redis copy about to go.
    async fn apply(&self, purge: &Purge) -> Result<u64, StoreError> {
        let n = self.l2.purge(purge).await?;
        self.l2.stats.bump_generation();
        let _ = self.l1.purge(purge).take_ready();
        self.publish(purge).await?;
        Ok(n)
    }

    /// [`apply`](Self::apply), kept for replay when it fails.
    pub(crate) async fn purge_shared(&self, purge: &Purge) -> Result<u64, StoreError> {
        let result = self.apply(purge).await;
        if result.is_err() {
            self.outbox.push(purge.clone(), &self.l2.stats);
        }
        result
    }

    /// Whether a purge that has not reached Redis yet selects this entry
    /// (then Redis's copy of it must not be served or copied).
    pub(crate) fn pending_purge_of(&self, key: &CacheKey, variants: &Variants) -> bool {
        let q = self.outbox.lock();
        q.items.iter().any(|p| p.matches(key, variants))
    }

    /// Replays the outbox until `stop`: each purge in turn, waiting a
    /// little longer after each failure (the breaker answers at once while
    /// Redis is known to be down, so a failed attempt costs nothing).
    pub(crate) async fn replay(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut backoff = RETRY_MIN;
        let mut failing = false;
        loop {
            let Some(purge) = self.outbox.take_front() else {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = self.outbox.wake.notified() => continue,
                }
            };
            match self.apply(&purge).await {
                Ok(_) => {
                    self.outbox.done(&self.l2.stats);
                    self.l2.stats.inner.replayed.fetch_add(1, Relaxed);
                    backoff = RETRY_MIN;
                    failing = false;
                    continue;
                }
                Err(e) => {
                    self.outbox.retry();
                    if !failing {
                        tracing::warn!(
                            pending = self.outbox.len(),
                            error = %e,
                            "tower-perf cache: purges wait for Redis; replaying when it answers"
                        );
                        failing = true;
                    }
                }
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {
                    let lost = self.outbox.len();
                    if lost > 0 {
                        tracing::warn!(
                            lost,
                            "tower-perf cache: the store was dropped with purges Redis never \
                             took; other replicas may serve what they selected until it expires"
                        );
                    }
                    return;
                }
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }
}

/// What a replica's subscriber does with the channel: drops from `l1`
/// what other replicas purge; after a lost or silent connection, empties
/// `l1` (messages sent meanwhile are lost); signals `ready` once first
/// subscribed.
pub(crate) struct Subscriber {
    pub(crate) id: u64,
    pub(crate) l1: MemoryStore,
    pub(crate) stats: RedisCacheStats,
    pub(crate) ready: Option<tokio::sync::oneshot::Sender<()>>,
}

impl crate::redis_conn::Listener for Subscriber {
    fn subscribed(&mut self, again: bool) {
        if let Some(r) = self.ready.take() {
            let _ = r.send(());
        }
        if again {
            // Invalidations published while this replica wasn't listening
            // are lost: drop what L1 holds (while Redis was unreachable,
            // L1 kept serving).
            self.stats.bump_generation();
            let _ = self.l1.purge(&Purge::All).take_ready();
            self.stats.inner.l1_dropped.fetch_add(1, Relaxed);
        }
    }

    fn message(&mut self, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        if let Some((from, purge)) = decode_purge(text) {
            if from != self.id {
                self.stats.inner.received.fetch_add(1, Relaxed);
                self.stats.bump_generation();
                let _ = self.l1.purge(&purge).take_ready();
            }
        }
    }

    fn failed(&mut self) {
        self.stats.inner.errors.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_messages_round_trip() {
        for p in [
            Purge::Key(CacheKey::from_text("example.com/a?b|c")),
            Purge::PathAndQuery("/a?x=1".into()),
            Purge::Prefix("/static/".into()),
            Purge::Tag("product-1".into()),
            Purge::All,
        ] {
            assert_eq!(decode_purge(&encode_purge(0xabc, &p)), Some((0xabc, p)));
        }
        assert_eq!(decode_purge("zz|k|x"), None);
        assert_eq!(decode_purge("1|?|x"), None);
        assert_eq!(decode_purge("1"), None);
    }

    #[test]
    fn the_outbox_keeps_each_purge_once_and_collapses_when_full() {
        let stats = RedisCacheStats::detached();
        let outbox = Outbox::default();
        let tag = Purge::Tag("a".into());
        outbox.push(tag.clone(), &stats);
        outbox.push(tag.clone(), &stats);
        assert_eq!(stats.snapshot().invalidations_pending, 1);
        for i in 1..OUTBOX_CAP {
            outbox.push(Purge::Tag(format!("t{i}")), &stats);
        }
        assert_eq!(stats.snapshot().invalidations_pending, OUTBOX_CAP as u64);
        // The front goes into flight; a new purge equal to it is not
        // covered (what was stored meanwhile must go too).
        assert_eq!(outbox.take_front(), Some(tag.clone()));
        outbox.push(Purge::Prefix("/x".into()), &stats);
        // Full: everything after the item in flight became one purge of
        // everything, and nothing is added after it.
        assert_eq!(stats.snapshot().invalidations_pending, 2);
        outbox.push(Purge::Tag("later".into()), &stats);
        assert_eq!(stats.snapshot().invalidations_pending, 2);
        outbox.done(&stats);
        assert_eq!(outbox.take_front(), Some(Purge::All));
        outbox.retry();
        assert_eq!(outbox.take_front(), Some(Purge::All));
        outbox.done(&stats);
        assert_eq!(outbox.take_front(), None);
        assert_eq!(stats.snapshot().invalidations_pending, 0);
    }

    #[test]
    fn long_urls_collapse_the_outbox_by_bytes() {
        let stats = RedisCacheStats::detached();
        let outbox = Outbox::default();
        // Client-chosen URLs of 16 KiB: far fewer than OUTBOX_CAP fit.
        let long = |i: usize| Purge::PathAndQuery(format!("/{i}/{}", "a".repeat(16 * 1024)));
        let fit = OUTBOX_MAX_BYTES / (16 * 1024 + 8);
        for i in 0..fit {
            outbox.push(long(i), &stats);
        }
        assert_eq!(stats.snapshot().invalidations_pending, fit as u64);
        assert!(outbox.lock().bytes <= OUTBOX_MAX_BYTES);
        for i in fit..fit + 4 {
            outbox.push(long(i), &stats);
        }
        assert_eq!(outbox.take_front(), Some(Purge::All));
        assert_eq!(outbox.lock().bytes, 0);
        outbox.done(&stats);
        assert_eq!(outbox.take_front(), None);
    }

    #[test]
    fn a_purge_equal_to_the_one_in_flight_is_kept() {
        let stats = RedisCacheStats::detached();
        let outbox = Outbox::default();
        let tag = Purge::Tag("a".into());
        outbox.push(tag.clone(), &stats);
        assert_eq!(outbox.take_front(), Some(tag.clone()));
        outbox.push(tag.clone(), &stats);
        assert_eq!(stats.snapshot().invalidations_pending, 2);
        outbox.done(&stats);
        assert_eq!(outbox.take_front(), Some(tag));
    }
}
