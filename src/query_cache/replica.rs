//! A replica's side of the query cache's Redis tier: the tasks that hear
//! the other replicas' invalidations and replay the ones Redis missed,
//! and the lookups and writes a [`QueryCache`](super::QueryCache) makes
//! through the [`RedisTier`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::QueryValue;
use super::entry::EntryOptions;
use super::inner::Inner;
use super::invalidate::Invalidate;
use super::key::QueryKey;
use super::redis::{Fence, RedisTier, TierCounters};
use super::stats::Counters;
use super::wire::{decode_message, decode_value, encode_value, split_generations, unix_ms};
use crate::outbox::Outbox;

/// What a replica shares with its background tasks: the tier, its id on
/// the channel, and the invalidations waiting for Redis.
pub(crate) struct Shared {
    pub(crate) tier: RedisTier,
    id: u64,
    outbox: Arc<Outbox<Invalidate>>,
    /// Stops the tasks when the cache goes.
    alive: tokio::sync::watch::Sender<bool>,
    subscribed: tokio::sync::watch::Receiver<bool>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.alive.send_replace(true);
    }
}

/// What a lookup in Redis found.
pub(crate) enum Found<V> {
    /// A fresh value, copied to memory.
    Hit(Arc<V>),
    /// Nothing usable; the fence to write a load under, if Redis
    /// answered.
    Miss(Option<Fence>),
}

impl Shared {
    /// Starts the subscriber and replay tasks for `inner`'s memory.
    pub(crate) fn start(mut tier: RedisTier, inner: &Weak<Inner>) -> Arc<Self> {
        // This cache's own counters (a tier cloned into two caches must
        // not share the count of invalidations waiting).
        tier.counters = Arc::default();
        let rt = tokio::runtime::Handle::try_current().unwrap_or_else(|_| {
            panic!(
                "QueryCacheBuilder::build with a Redis tier must run inside a Tokio runtime \
                 (it starts the invalidation subscriber)"
            )
        });
        let id = crate::redis_conn::random_u64();
        let (alive, stop) = tokio::sync::watch::channel(false);
        let (subscribed_tx, subscribed) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Self {
            tier,
            id,
            outbox: Arc::default(),
            alive,
            subscribed,
        });
        let listener = Subscriber {
            id,
            inner: inner.clone(),
            counters: Arc::clone(&shared.tier.counters),
            subscribed: subscribed_tx,
        };
        let (listeners, channel, stopped) = (
            shared.tier.listeners.clone(),
            shared.tier.channel(),
            stop.clone(),
        );
        rt.spawn(async move {
            crate::redis_conn::subscribe(listeners, &channel, listener, stopped).await;
        });
        // The replay task holds the outbox, and the rest only weakly: it
        // must not keep the cache alive.
        let (replayer, inner) = (Arc::downgrade(&shared), inner.clone());
        let (outbox, counters) = (
            Arc::clone(&shared.outbox),
            Arc::clone(&shared.tier.counters),
        );
        rt.spawn(async move {
            outbox
                .replay(
                    &*counters,
                    |what| {
                        let (shared, inner) = (replayer.clone(), inner.clone());
                        async move {
                            match shared.upgrade() {
                                Some(shared) => shared.apply(&what, &inner).await.map(|_| ()),
                                // Stopping: what waits is reported lost.
                                None => Err("the query cache was dropped".to_owned()),
                            }
                        }
                    },
                    || {
                        counters.replayed.fetch_add(1, Relaxed);
                    },
                    stop,
                )
                .await;
        });
        shared
    }

    /// Waits until the subscription is up, at most `timeout`; whether it
    /// is.
    pub(crate) async fn subscribed(&self, timeout: Duration) -> bool {
        let mut rx = self.subscribed.clone();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s))
            .await
            .is_ok()
    }

    /// The shared part of an invalidation whose memory part is done: Redis,
    /// this replica's memory again (a lookup may have copied a Redis copy
    /// back meanwhile), then the other replicas.
    async fn apply(&self, what: &Invalidate, inner: &Weak<Inner>) -> Result<u64, String> {
        let n = self.tier.invalidate(what).await?;
        if let Some(inner) = inner.upgrade() {
            inner.invalidate_local(what.clone()).await;
        }
        self.tier.publish(self.id, what).await?;
        Ok(n)
    }

    /// [`apply`](Self::apply), kept for replay when it fails.
    pub(crate) async fn invalidate(
        &self,
        what: &Invalidate,
        inner: &Weak<Inner>,
    ) -> Result<u64, String> {
        let result = self.apply(what, inner).await;
        if result.is_err() {
            self.outbox.push(what.clone(), &*self.tier.counters);
        }
        result
    }

    /// Keeps `what` for replay (its task failed before it could say).
    pub(crate) fn keep_for_replay(&self, what: Invalidate) {
        self.outbox.push(what, &*self.tier.counters);
    }

    /// Looks `key` up in Redis; a fresh value of type `V` is copied to
    /// memory (unless an invalidation since `epoch`, or one waiting for
    /// Redis, selects it).
    pub(crate) async fn get<V: QueryValue>(
        &self,
        inner: &Inner,
        key: &QueryKey,
        ns: &Arc<Counters>,
        epoch: u64,
    ) -> Found<V> {
        let (bytes, fence) = match self.tier.lookup(key).await {
            Ok(found) => found,
            Err(_) => {
                ns.l2_errors.fetch_add(1, Relaxed);
                return Found::Miss(None);
            }
        };
        let Some(bytes) = bytes else {
            return Found::Miss(Some(fence));
        };
        let now = unix_ms(inner.clock.system_time());
        let Some(stored) = split_generations(&bytes)
            .and_then(|(_, _, rest)| decode_value(rest))
            .filter(|s| s.fresh_ms > now)
        else {
            return Found::Miss(Some(fence));
        };
        if self.tier.counters.pending.load(Relaxed) > 0
            && self.outbox.any(|w| w.selects(key, &stored.tags))
        {
            return Found::Miss(None);
        }
        let Ok(value) = serde_json::from_slice::<V>(stored.json) else {
            self.tier.counters.undecodable.fetch_add(1, Relaxed);
            return Found::Miss(Some(fence));
        };
        let value = Arc::new(value);
        let options = EntryOptions {
            ttl: Some(Duration::from_millis(stored.fresh_ms - now)),
            stale: Duration::from_millis(stored.stale_ms.saturating_sub(stored.fresh_ms)),
            tags: stored.tags,
        };
        inner.store(key, &value, &options, Arc::clone(ns), Some(epoch));
        ns.l2_hits.fetch_add(1, Relaxed);
        Found::Hit(value)
    }

    /// Writes `value` to Redis in the background (if `fence` still holds,
    /// or unconditionally with `None` for a plain insert). A value that
    /// can't be serialized, or tags the format can't hold, stay in memory
    /// only, with a warning; without a Tokio runtime nothing is written.
    pub(crate) fn put<V: QueryValue>(
        self: &Arc<Self>,
        inner: &Inner,
        key: &QueryKey,
        value: &Arc<V>,
        options: &EntryOptions,
        fence: Option<Fence>,
        ns: &Arc<Counters>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let ttl = options.ttl.unwrap_or(inner.default_ttl);
        let fresh_ms = unix_ms(inner.clock.system_time())
            .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let stale_ms =
            fresh_ms.saturating_add(u64::try_from(options.stale.as_millis()).unwrap_or(u64::MAX));
        let json = match serde_json::to_vec(&**value) {
            Ok(json) => json,
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "tower-perf query cache: a value that can't be serialized is kept in this replica's memory only");
                self.tier.counters.undecodable.fetch_add(1, Relaxed);
                return None;
            }
        };
        let Some(bytes) = encode_value(fresh_ms, stale_ms, &options.tags, &json) else {
            tracing::warn!(key = %key, "tower-perf query cache: more than 65,535 tags, or one over 64 KiB: kept in this replica's memory only");
            self.tier.counters.undecodable.fetch_add(1, Relaxed);
            return None;
        };
        let (shared, key, tags, ns) = (
            Arc::clone(self),
            key.clone(),
            options.tags.clone(),
            Arc::clone(ns),
        );
        let keep = ttl.saturating_add(options.stale);
        let rt = tokio::runtime::Handle::try_current().ok()?;
        Some(rt.spawn(async move {
            if shared
                .tier
                .put(&key, bytes, keep, &tags, fence)
                .await
                .is_err()
            {
                ns.l2_errors.fetch_add(1, Relaxed);
            }
        }))
    }
}

/// A replica's subscriber: drops from memory what other replicas
/// invalidate; empties it after a broken subscription.
struct Subscriber {
    id: u64,
    inner: Weak<Inner>,
    counters: Arc<TierCounters>,
    subscribed: tokio::sync::watch::Sender<bool>,
}

impl crate::redis_conn::Listener for Subscriber {
    fn subscribed(&mut self, again: bool) {
        self.subscribed.send_replace(true);
        if again {
            if let Some(inner) = self.inner.upgrade() {
                inner.invalidate_soon(Invalidate::All);
            }
            self.counters.l1_dropped.fetch_add(1, Relaxed);
        }
    }

    fn message(&mut self, payload: &[u8]) {
        let Some((from, what)) = std::str::from_utf8(payload).ok().and_then(decode_message) else {
            return;
        };
        if from == self.id {
            return;
        }
        self.counters.received.fetch_add(1, Relaxed);
        if let Some(inner) = self.inner.upgrade() {
            inner.invalidate_soon(what);
        }
    }

    fn failed(&mut self) {
        self.counters.errors.fetch_add(1, Relaxed);
    }
}
