//! The Redis tier's invalidations: a key, a namespace, everything, a
//! tag, a prefix or a pattern, over the namespaces the registry names.

use std::time::Duration;

use super::super::invalidate::Invalidate;
use super::super::key::namespace_of;
use super::super::wire::{escape, redis_glob};
use super::{KEY_COUNTER_MS, RedisTier, key_text};
use crate::redis_conn::ScanNode;

/// Keys a `SCAN` step asks for.
const SCAN_COUNT: usize = 1000;

/// The least an invalidation waits for Redis: it may touch every
/// namespace, and runs in no request's way but the invalidating one's.
const INVALIDATE_TIMEOUT: Duration = Duration::from_secs(2);

/// Namespaces one server pipeline takes at most.
const PIPELINE_NAMESPACES: usize = 1000;

/// Namespaces a cluster's invalidation works on at once.
const FAN_OUT: usize = 16;

/// Tag members one `UNLINK` takes at most.
const UNLINK_BATCH: usize = 500;

impl RedisTier {
    /// How long an invalidation waits for Redis.
    fn invalidate_timeout(&self) -> Duration {
        self.timeout.max(INVALIDATE_TIMEOUT)
    }

    /// The registered namespaces (`All`, tags and patterns go through
    /// each).
    async fn namespaces(&self) -> Result<Vec<String>, String> {
        let mut conn = self.conn.clone();
        self.run_for(
            self.invalidate_timeout(),
            redis::cmd("SMEMBERS")
                .arg(self.registry_key())
                .query_async(&mut conn),
        )
        .await
    }

    /// Drops from Redis what `what` selects, moving the counters a load
    /// in flight must find unchanged to be written. How many values went
    /// (for a namespace or everything, which only move a generation: 0).
    pub(in crate::query_cache) async fn invalidate(
        &self,
        what: &Invalidate,
    ) -> Result<u64, String> {
        let mut conn = self.conn.clone();
        match what {
            Invalidate::Key(k) => {
                let [counter, ..] = self.fence_keys(k);
                let (_, _, gone): (u64, i64, u64) = self
                    .run(
                        redis::pipe()
                            .atomic()
                            .cmd("INCR")
                            .arg(&counter)
                            .cmd("PEXPIRE")
                            .arg(&counter)
                            .arg(KEY_COUNTER_MS)
                            .cmd("UNLINK")
                            .arg(self.value_key(k))
                            .query_async(&mut conn),
                    )
                    .await?;
                Ok(gone)
            }
            Invalidate::Namespace(ns) => {
                let _: u64 = self
                    .run(
                        redis::cmd("INCR")
                            .arg(self.namespace_key(ns))
                            .query_async(&mut conn),
                    )
                    .await?;
                Ok(0)
            }
            Invalidate::All => {
                let namespaces = self.namespaces().await?;
                self.move_counters(&namespaces, |ns| [self.all_key(ns), self.fence_key(ns)])
                    .await?;
                Ok(0)
            }
            Invalidate::Tag(t) => self.purge_tag(t).await,
            Invalidate::Prefix(p) if p.contains([':', '#']) => {
                // One namespace: its fence, then a scan of its node only.
                let ns = namespace_of(p);
                let _: u64 = self
                    .run(
                        redis::cmd("INCR")
                            .arg(self.fence_key(ns))
                            .query_async(&mut conn),
                    )
                    .await?;
                let values = self.values_of(ns);
                let pattern = format!("{}{}*", escape(&values), escape(p));
                let node = conn.node_of(&values);
                self.scan_unlink(&node, &pattern, |_| true).await
            }
            Invalidate::Prefix(_) | Invalidate::Pattern(_) => {
                // Namespaces the selection may reach: fences first, then
                // one scan of each node.
                let mut namespaces = self.namespaces().await?;
                if let Invalidate::Prefix(p) = what {
                    namespaces.retain(|ns| ns.starts_with(p.as_str()));
                }
                self.move_counters(&namespaces, |ns| [self.fence_key(ns)])
                    .await?;
                let values = format!("{}:qv:", self.prefix);
                // Narrowed on the server (a superset: `*` also takes the
                // hash tag), exact here.
                let pattern = match what {
                    Invalidate::Pattern(g) => format!("{}*{}", escape(&values), redis_glob(g)),
                    Invalidate::Prefix(p) => format!("{}*{}*", escape(&values), escape(p)),
                    _ => format!("{}*", escape(&values)),
                };
                let selects = |key: &str| {
                    key_text(&values, key).is_some_and(|text| match what {
                        Invalidate::Prefix(p) => text.starts_with(p.as_str()),
                        Invalidate::Pattern(g) => g.matches(text),
                        _ => false,
                    })
                };
                let mut n = 0;
                for node in self
                    .run_for(self.invalidate_timeout(), conn.scan_nodes())
                    .await?
                {
                    n += self.scan_unlink(&node, &pattern, selects).await?;
                }
                Ok(n)
            }
        }
    }

    /// `INCR`s the counters `keys` names for each namespace.
    async fn move_counters<const N: usize>(
        &self,
        namespaces: &[String],
        keys: impl Fn(&str) -> [String; N],
    ) -> Result<(), String> {
        self.per_namespace::<_, ()>(namespaces, false, |ns, pipe| {
            for k in keys(ns) {
                pipe.cmd("INCR").arg(k).ignore();
            }
        })
        .await
        .map(drop)
    }

    /// Sends the commands `fill` writes for each item (each within one
    /// namespace's slot), each item's in a transaction if `atomic`: on a
    /// server in pipelines of [`PIPELINE_NAMESPACES`] items (a transaction
    /// over them all is one over each a fortiori); on a cluster, whose
    /// pipelines stay within a slot, a pipeline per item. [`FAN_OUT`]
    /// pipelines at once; the replies not ignored, in the items' order.
    async fn per_namespace<I, T: redis::FromRedisValue>(
        &self,
        items: &[I],
        atomic: bool,
        fill: impl Fn(&I, &mut redis::Pipeline),
    ) -> Result<Vec<T>, String> {
        use futures_util::{StreamExt, TryStreamExt};
        let per_pipe = if self.conn.is_cluster() {
            1
        } else {
            PIPELINE_NAMESPACES
        };
        let pipes: Vec<redis::Pipeline> = items
            .chunks(per_pipe)
            .map(|chunk| {
                let mut pipe = redis::pipe();
                if atomic {
                    pipe.atomic();
                }
                for item in chunk {
                    fill(item, &mut pipe);
                }
                pipe
            })
            .collect();
        let timeout = self.invalidate_timeout();
        let replies: Vec<Vec<T>> = futures_util::stream::iter(pipes)
            .map(|pipe| {
                let mut conn = self.conn.clone();
                async move { self.run_for(timeout, pipe.query_async(&mut conn)).await }
            })
            .buffered(FAN_OUT)
            .try_collect()
            .await?;
        Ok(replies.into_iter().flatten().collect())
    }

    /// Invalidates a tag in every registered namespace: moves each
    /// fence and reads each tag set, then, in one transaction per
    /// namespace, unlinks the values the sets name and takes them out of
    /// the sets (declared keys, each within one namespace's slot; two
    /// round trips on a server). A failure leaves the members not yet
    /// unlinked in their sets, for the replay to finish. A write landing
    /// between the two steps either is unlinked with its membership (the
    /// transaction ran after it) or keeps both: none keeps its value
    /// without its membership.
    async fn purge_tag(&self, tag: &str) -> Result<u64, String> {
        let namespaces = self.namespaces().await?;
        let members: Vec<Vec<String>> = self
            .per_namespace(&namespaces, false, |ns, pipe| {
                pipe.cmd("INCR").arg(self.fence_key(ns)).ignore();
                pipe.cmd("SMEMBERS").arg(self.tag_key(ns, tag));
            })
            .await?;
        let tagged: Vec<(&String, &[String])> = namespaces
            .iter()
            .zip(&members)
            .flat_map(|(ns, keys)| keys.chunks(UNLINK_BATCH).map(move |b| (ns, b)))
            .collect();
        let gone: Vec<u64> = self
            .per_namespace(&tagged, true, |(ns, batch), pipe| {
                let values = self.values_of(ns);
                let full: Vec<String> = batch.iter().map(|k| format!("{values}{k}")).collect();
                pipe.cmd("UNLINK").arg(full);
                pipe.cmd("SREM")
                    .arg(self.tag_key(ns, tag))
                    .arg(*batch)
                    .ignore();
            })
            .await?;
        Ok(gone.iter().sum())
    }

    /// Unlinks every key on `node` matching `pattern` that `selects`
    /// keeps, a `SCAN` step at a time.
    async fn scan_unlink(
        &self,
        node: &ScanNode,
        pattern: &str,
        selects: impl Fn(&str) -> bool,
    ) -> Result<u64, String> {
        let mut conn = self.conn.clone();
        let (mut cursor, mut n) = (0u64, 0u64);
        loop {
            let (next, mut keys) = self
                .run_for(
                    self.invalidate_timeout(),
                    conn.clone().scan_step(node, cursor, pattern, SCAN_COUNT),
                )
                .await?;
            keys.retain(|k| selects(k));
            if !keys.is_empty() {
                let gone: u64 = self
                    .run_for(
                        self.invalidate_timeout(),
                        redis::cmd("UNLINK").arg(&keys).query_async(&mut conn),
                    )
                    .await?;
                n += gone;
            }
            if next == 0 {
                return Ok(n);
            }
            cursor = next;
        }
    }
}
