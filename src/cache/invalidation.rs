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

use futures_util::StreamExt;

use super::key::CacheKey;
use super::redis_store::{RedisCacheStats, RedisCacheStore};
use super::store::{CacheStore, MemoryStore, Purge, StoreError};

/// Invalidations an outbox keeps; one more and they collapse into a purge
/// of everything (over-invalidating is safe, forgetting is not).
pub(crate) const OUTBOX_CAP: usize = 256;

/// The first wait before replaying again after a failed attempt; doubles
/// up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Purges not yet taken by Redis, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pending: Mutex<VecDeque<Purge>>,
    wake: tokio::sync::Notify,
}

impl Outbox {
    /// Keeps `purge` for replay and wakes the replay task.
    pub(crate) fn push(&self, purge: Purge, stats: &RedisCacheStats) {
        {
            let mut q = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if q.contains(&Purge::All) || q.contains(&purge) {
                // Already covered by what waits.
            } else if purge == Purge::All || q.len() >= OUTBOX_CAP {
                q.clear();
                q.push_back(Purge::All);
            } else {
                q.push_back(purge);
            }
            stats.set_pending(q.len());
        }
        self.wake.notify_one();
    }

    fn front(&self) -> Option<Purge> {
        let q = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        q.front().cloned()
    }

    /// Drops `purge` once replayed (unless it was collapsed meanwhile: then
    /// the purge of everything that replaced it still has to go).
    fn done(&self, purge: &Purge, stats: &RedisCacheStats) {
        let mut q = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if q.front() == Some(purge) {
            q.pop_front();
        }
        stats.set_pending(q.len());
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

/// What a replica needs to broadcast: the Redis tier, the channel and its
/// own id (its subscriber ignores its own messages).
#[derive(Debug, Clone)]
pub(crate) struct Broadcast {
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

    /// The shared part of a purge: the Redis tier, then the other
    /// replicas (in that order, so that no replica refills its memory from
    /// a Redis copy that is about to go). Kept for replay when it fails.
    pub(crate) async fn purge_shared(&self, purge: &Purge) -> Result<u64, StoreError> {
        let result = match self.l2.purge(purge).await {
            Ok(n) => self.publish(purge).await.map(|()| n),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.outbox.push(purge.clone(), &self.l2.stats);
        }
        result
    }

    /// Replays the outbox until `stop`: each purge in turn, waiting a
    /// little longer after each failure (the breaker answers at once while
    /// Redis is known to be down, so a failed attempt costs nothing).
    pub(crate) async fn replay(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut backoff = RETRY_MIN;
        loop {
            let Some(purge) = self.outbox.front() else {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = self.outbox.wake.notified() => continue,
                }
            };
            let replayed = match self.l2.purge(&purge).await {
                Ok(_) => self.publish(&purge).await.is_ok(),
                Err(_) => false,
            };
            if replayed {
                self.outbox.done(&purge, &self.l2.stats);
                self.l2.stats.inner.replayed.fetch_add(1, Relaxed);
                backoff = RETRY_MIN;
                continue;
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }
}

/// Listens on the channel until `stop`, dropping from `l1` what other
/// replicas purge; subscribes again after a lost connection and then
/// empties `l1` (messages sent meanwhile are lost). Signals `ready` once
/// first subscribed.
pub(crate) async fn subscribe(
    client: redis::Client,
    channel: Arc<str>,
    id: u64,
    l1: MemoryStore,
    stats: RedisCacheStats,
    ready: tokio::sync::oneshot::Sender<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ready = Some(ready);
    let mut backoff = RETRY_MIN;
    let mut reconnecting = false;
    loop {
        let session = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&*channel).await?;
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
            if reconnecting {
                // Invalidations published while this replica wasn't
                // listening are lost: drop what L1 holds (while Redis was
                // unreachable, L1 kept serving).
                let _ = l1.purge(&Purge::All).take_ready();
                stats.inner.l1_dropped.fetch_add(1, Relaxed);
            }
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) else {
                    continue;
                };
                if let Some((from, purge)) = decode_purge(text) {
                    if from != id {
                        stats.inner.received.fetch_add(1, Relaxed);
                        let _ = l1.purge(&purge).take_ready();
                    }
                }
            }
            redis::RedisResult::Ok(())
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = session => {
                if r.is_err() {
                    stats.inner.errors.fetch_add(1, Relaxed);
                }
            }
        }
        reconnecting = true;
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
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
        assert_eq!(outbox.front(), Some(tag.clone()));
        // One more: everything instead, and nothing after it.
        outbox.push(Purge::Prefix("/x".into()), &stats);
        assert_eq!(outbox.front(), Some(Purge::All));
        outbox.push(Purge::Tag("later".into()), &stats);
        assert_eq!(stats.snapshot().invalidations_pending, 1);
        // A replayed purge that was collapsed meanwhile leaves the purge
        // of everything waiting.
        outbox.done(&tag, &stats);
        assert_eq!(outbox.front(), Some(Purge::All));
        outbox.done(&Purge::All, &stats);
        assert_eq!(outbox.front(), None);
        assert_eq!(stats.snapshot().invalidations_pending, 0);
    }
}
