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

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::key::CacheKey;
use super::redis_store::{RedisCacheStats, RedisCacheStore};
use super::store::{CacheStore, MemoryStore, Purge, StoreError, Variants};
use crate::outbox::{Outbox, Pending, PendingGauge};

impl Pending for Purge {
    const ALL: Self = Purge::All;
    const OWNER: &'static str = "cache";

    fn weight(&self) -> usize {
        match self {
            Purge::Key(k) => k.as_str().len(),
            Purge::PathAndQuery(s) | Purge::Prefix(s) | Purge::Tag(s) => s.len(),
            Purge::All => 0,
        }
    }
}

impl PendingGauge for RedisCacheStats {
    fn set_pending(&self, n: usize) {
        RedisCacheStats::set_pending(self, n);
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
    crate::redis_conn::frame(id, kind, arg)
}

pub(crate) fn decode_purge(msg: &str) -> Option<(u64, Purge)> {
    let (id, kind, arg) = crate::redis_conn::unframe(msg)?;
    let arg = arg.to_owned();
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
    pub(crate) outbox: Arc<Outbox<Purge>>,
}

impl Broadcast {
    /// Tells the other replicas to drop what `purge` selects.
    pub(crate) async fn publish(&self, purge: &Purge) -> Result<(), StoreError> {
        let mut conn = self.l2.conn.clone();
        let message = encode_purge(self.id, purge);
        let _: u64 = RedisCacheStore::run(
            &self.l2.stats,
            self.l2.timeout,
            conn.publish(&self.channel, &message),
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
        self.outbox.any(|p| p.matches(key, variants))
    }

    /// Replays the outbox until `stop` (see [`Outbox::replay`]).
    pub(crate) async fn replay(self, stop: tokio::sync::watch::Receiver<bool>) {
        let stats = self.l2.stats.clone();
        self.outbox
            .replay(
                &stats,
                |purge| {
                    let this = self.clone();
                    async move {
                        this.apply(&purge)
                            .await
                            .map(|_| ())
                            .map_err(|e| e.message().to_owned())
                    }
                },
                || {
                    stats.inner.replayed.fetch_add(1, Relaxed);
                },
                stop,
            )
            .await;
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
    use crate::outbox::{OUTBOX_CAP, OUTBOX_MAX_BYTES};

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
        assert!(outbox.bytes() <= OUTBOX_MAX_BYTES);
        for i in fit..fit + 4 {
            outbox.push(long(i), &stats);
        }
        assert_eq!(outbox.take_front(), Some(Purge::All));
        assert_eq!(outbox.bytes(), 0);
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
