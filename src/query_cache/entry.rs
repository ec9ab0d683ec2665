//! What an entry holds, and the options it is stored with.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::flight::Erased;
use super::key::QueryKey;
use super::stats::Counters;

/// Bytes an entry costs beyond its key, value and tags: the slot, the
/// map's node and its bookkeeping (measured: about 150 with moka).
pub(crate) const ENTRY_OVERHEAD: u64 = 160;

/// How long an entry is fresh, how long it may be served stale while it
/// is refreshed, and its tags.
///
/// A `Duration` converts into options with that TTL; the default options
/// take the cache's [default TTL](super::QueryCacheBuilder::default_ttl).
///
/// ```
/// use std::time::Duration;
/// use tower_perf::query_cache::EntryOptions;
///
/// let options = EntryOptions::ttl(Duration::from_secs(60))
///     .stale_while_revalidate(Duration::from_secs(30))
///     .tag("customer-42");
/// # let _ = options;
/// let _: EntryOptions = Duration::from_secs(5).into();
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) stale: Duration,
    pub(crate) tags: Vec<Box<str>>,
}

impl EntryOptions {
    /// Fresh for `ttl` (zero: not stored).
    pub fn ttl(ttl: Duration) -> Self {
        Self {
            ttl: Some(ttl),
            ..Self::default()
        }
    }

    /// Once past its TTL, the entry is still served for `window` by
    /// [`get_or_insert_with`](super::QueryCache::get_or_insert_with)
    /// while one background task loads it again (needs a Tokio runtime;
    /// without one it is a miss).
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.stale = window;
        self
    }

    /// Tags the entry: [`Invalidate::Tag`](super::Invalidate::Tag) drops
    /// every entry with the tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into().into_boxed_str());
        self
    }
}

impl From<Duration> for EntryOptions {
    fn from(ttl: Duration) -> Self {
        Self::ttl(ttl)
    }
}

/// An entry in memory.
pub(crate) struct Slot {
    /// An `Arc<V>`, type-erased.
    pub(crate) value: Erased,
    pub(crate) fresh_until: Instant,
    pub(crate) stale_until: Instant,
    /// How long after its insert the map may drop it (TTL plus the stale
    /// window, in the map's own clock).
    pub(crate) keep: Duration,
    pub(crate) tags: Box<[Box<str>]>,
    pub(crate) ns: Arc<Counters>,
    pub(crate) weight: u32,
    /// The invalidations made before it was stored (while a scan is
    /// running, a lookup checks the ones made since).
    pub(crate) epoch: u64,
}

impl Slot {
    pub(crate) fn downcast<V: Send + Sync + 'static>(&self) -> Option<Arc<V>> {
        Arc::clone(&self.value).downcast::<V>().ok()
    }
}

/// What an entry weighs in memory: its key, its value as serialized (JSON
/// length, counted without writing it anywhere), its tags, and
/// [`ENTRY_OVERHEAD`].
pub(crate) fn weigh<V: Serialize + ?Sized>(key: &QueryKey, value: &V, tags: &[Box<str>]) -> u64 {
    let mut counter = Counter(0);
    // A value that can't be serialized weighs what was written of it.
    let _ = serde_json::to_writer(&mut counter, value);
    key.as_str().len() as u64
        + counter.0
        + tags.iter().map(|t| t.len() as u64 + 16).sum::<u64>()
        + ENTRY_OVERHEAD
}

/// Counts bytes written.
struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
