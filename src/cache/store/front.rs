//! The memory store's per-thread front: the last few entries a thread
//! found, answered again without the store while nothing in the store has
//! changed.
//!
//! A lookup in the shared map takes its shard's read lock and clones the
//! entry's `Arc`: two writes to memory every thread shares, so two threads
//! serving one hot URL contend for those cache lines on every hit. Here a
//! thread keeps its own copy of the entry's list of variants (a new
//! `Arc` holding the same responses) for up to [`LINES`] URLs, each
//! tagged with the store's generation when it was read. The store bumps
//! its generation after every change (put, remove, purge, refill, sync,
//! an expired entry dropped, an eviction), so a copy is served only while
//! the store is exactly as it was when the copy was read: never a
//! response the store no longer holds. A copy is also never served past
//! its entry's time.
//!
//! Copies are made only while the store is quiet (its generation the same
//! as at this thread's previous lookup), so a store taking a stream of
//! misses pays no copies, and only of entries weighing at most
//! [`MAX_WEIGHT`]: at most [`LINES`] × [`MAX_WEIGHT`] kept alive per
//! thread beyond the store's budget.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use super::{Slot, Variants};
use crate::cache::key::CacheKey;

/// URLs kept per thread.
const LINES: usize = 8;
/// The heaviest entry copied (its weight in the store).
const MAX_WEIGHT: u32 = 64 * 1024;

struct Line {
    store: u64,
    generation: u64,
    key: CacheKey,
    variants: Variants,
    expires_at: Instant,
}

struct Front {
    lines: Vec<Line>,
    /// The next line replaced (round robin).
    next: usize,
    /// The store and generation of this thread's previous lookup.
    last: (u64, u64),
}

thread_local! {
    static FRONT: RefCell<Front> = const {
        RefCell::new(Front {
            lines: Vec::new(),
            next: 0,
            last: (0, 0),
        })
    };
}

#[cfg(test)]
thread_local! {
    static SERVED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// This thread's copy of `key`'s variants in store `store` at
/// `generation`, if it has one and it is live at `now`.
pub(super) fn get(store: u64, generation: u64, key: &CacheKey, now: Instant) -> Option<Variants> {
    FRONT
        .try_with(|f| {
            let f = f.try_borrow().ok()?;
            let line = f
                .lines
                .iter()
                .find(|l| l.store == store && l.generation == generation && l.key == *key)
                .filter(|l| now < l.expires_at)
                .map(|l| Arc::clone(&l.variants));
            #[cfg(test)]
            if line.is_some() {
                SERVED.with(|n| n.set(n.get() + 1));
            }
            line
        })
        .ok()
        .flatten()
}

/// The store answered `key` with `slot` at `generation` (read before the
/// lookup): kept for the next lookups of this thread if the store was
/// quiet since its previous one.
pub(super) fn keep(store: u64, generation: u64, key: &CacheKey, slot: &Slot) {
    let _ = FRONT.try_with(|f| {
        let Ok(mut f) = f.try_borrow_mut() else {
            return;
        };
        let quiet = f.last == (store, generation);
        f.last = (store, generation);
        if !quiet || slot.weight > MAX_WEIGHT {
            return;
        }
        let line = Line {
            store,
            generation,
            key: key.clone(),
            variants: slot.variants.iter().cloned().collect(),
            expires_at: slot.expires_at,
        };
        if let Some(at) = f
            .lines
            .iter()
            .position(|l| l.store == store && l.key == *key)
        {
            f.lines[at] = line;
        } else if f.lines.len() < LINES {
            f.lines.push(line);
        } else {
            let at = f.next;
            f.lines[at] = line;
            f.next = (at + 1) % LINES;
        }
    });
}

/// Lookups this thread answered from its front (tests count them).
#[cfg(test)]
pub(super) fn served() -> u64 {
    SERVED.with(std::cell::Cell::get)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn slot(expires_at: Instant, weight: u32) -> Slot {
        Slot {
            variants: Arc::from([]),
            expires_at,
            weight,
        }
    }

    /// A copy is kept at the second lookup of a quiet store, and served
    /// only for that store, that generation, that key, and before the
    /// entry's time.
    #[test]
    fn a_copy_is_served_only_as_it_was_read() {
        let t0 = Instant::now();
        let key = CacheKey::from_text("example.com/a");
        let s = slot(t0 + Duration::from_secs(60), 100);
        keep(7, 3, &key, &s);
        assert!(get(7, 3, &key, t0).is_none(), "one lookup: no copy yet");
        keep(7, 3, &key, &s);
        assert!(get(7, 3, &key, t0).is_some());
        assert!(get(7, 4, &key, t0).is_none(), "the store changed");
        assert!(get(8, 3, &key, t0).is_none(), "another store");
        assert!(get(7, 3, &CacheKey::from_text("example.com/b"), t0).is_none());
        assert!(
            get(7, 3, &key, t0 + Duration::from_secs(61)).is_none(),
            "past its time"
        );
    }

    /// A store whose generation moved between two lookups (a stream of
    /// misses storing) makes no copy, nor does a heavy entry.
    #[test]
    fn no_copy_of_a_busy_store_or_a_heavy_entry() {
        let t0 = Instant::now();
        let key = CacheKey::from_text("example.com/a");
        let s = slot(t0 + Duration::from_secs(60), 100);
        keep(7, 3, &key, &s);
        keep(7, 4, &key, &s);
        assert!(get(7, 4, &key, t0).is_none());
        let heavy = slot(t0 + Duration::from_secs(60), MAX_WEIGHT + 1);
        keep(7, 5, &key, &heavy);
        keep(7, 5, &key, &heavy);
        assert!(get(7, 5, &key, t0).is_none());
    }
}
