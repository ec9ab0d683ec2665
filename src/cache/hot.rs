//! Per-thread copies of hot entries: the header section and body a hit
//! clones, copied once into the serving thread's own memory.
//!
//! A stored response is shared by every worker thread. Cloning its header
//! section and body for a hit bumps reference counts in that shared memory
//! (one per field value, one for the body), so two threads serving the same
//! entry fight over those cache lines on every hit. Here each thread keeps
//! [`SLOTS`] recently hit entries of its own: an entry found again while
//! it is among the last [`SEEN`] entries the thread looked up without a
//! copy is copied (field names, values and body)
//! into memory only that thread touches, and later hits clone the copy.
//!
//! A copy is used only for the very entry the store just returned (the
//! same `Arc`, which the slot holds): an entry replaced, purged or evicted
//! in the store is never served from a copy, and a store that hands out a
//! new `Arc` on every lookup (Redis) never gets copies. Entries that weigh
//! more than [`MAX_WEIGHT`] (body and fields) are not copied. Slots are
//! replaced second-chance (CLOCK): a copy hit since the hand last passed
//! stays, and each candidate refused moves the hand one slot, so a thread
//! cycling through more hot entries than slots replaces copies slowly
//! instead of recopying on every hit. A slot whose entry the store
//! dropped is taken by the next copy; until then it holds that entry. At
//! most
//! [`SLOTS`] × 2 × [`MAX_WEIGHT`] per thread (the copies and the entries
//! they hold), outside the store's budget.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::entry::CachedResponse;

/// Entries copied per thread.
const SLOTS: usize = 8;
/// Lookups remembered per thread to tell a hot entry (found again soon).
const SEEN: usize = 16;
/// The heaviest entry copied ([`CachedResponse::weight`]: body, fields,
/// bookkeeping).
const MAX_WEIGHT: usize = 64 * 1024;

struct Copy {
    entry: Arc<CachedResponse>,
    template: HeaderMap,
    body: Bytes,
    /// Hit since the clock hand last passed.
    referenced: bool,
}

struct Hot {
    copies: Vec<Copy>,
    /// The clock hand over `copies`.
    hand: usize,
    /// Entries looked up lately without a copy, and whether each was
    /// found too heavy to copy. `Weak`, so an address isn't reused for
    /// another entry while it is remembered; compared, never upgraded.
    seen: Vec<(Weak<CachedResponse>, bool)>,
    seen_next: usize,
    /// Copies made (tests count them).
    #[cfg(test)]
    made: u64,
}

thread_local! {
    static HOT: RefCell<Hot> = const {
        RefCell::new(Hot {
            copies: Vec::new(),
            hand: 0,
            seen: Vec::new(),
            seen_next: 0,
            #[cfg(test)]
            made: 0,
        })
    };
}

/// The header template and body to serve `e` with: clones of this
/// thread's copy when `e` is hot here, else of `e`'s own.
pub(super) fn template_and_body(e: &Arc<CachedResponse>) -> (HeaderMap, Bytes) {
    if e.body.len() > MAX_WEIGHT {
        return (e.template().clone(), e.body.clone());
    }
    HOT.try_with(|hot| {
        let Ok(mut hot) = hot.try_borrow_mut() else {
            return None;
        };
        Some(hot.serve(e))
    })
    .ok()
    .flatten()
    .unwrap_or_else(|| (e.template().clone(), e.body.clone()))
}

impl Hot {
    fn serve(&mut self, e: &Arc<CachedResponse>) -> (HeaderMap, Bytes) {
        if let Some(c) = self.copies.iter_mut().find(|c| Arc::ptr_eq(&c.entry, e)) {
            c.referenced = true;
            return (c.template.clone(), c.body.clone());
        }
        let own = || (e.template().clone(), e.body.clone());
        let Some(at) = self
            .seen
            .iter()
            .position(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(e)))
        else {
            let candidate = (Arc::downgrade(e), false);
            if self.seen.len() < SEEN {
                self.seen.push(candidate);
            } else {
                self.seen[self.seen_next] = candidate;
            }
            self.seen_next = (self.seen_next + 1) % SEEN;
            return own();
        };
        // Weighed once, when found again: a heavy entry stays marked and
        // never reaches the clock.
        if self.seen[at].1 || e.weight() > MAX_WEIGHT {
            self.seen[at].1 = true;
            return own();
        }
        let Some(slot) = self.free_slot() else {
            return own();
        };
        // Copied, and no longer a candidate.
        self.seen[at] = (Weak::new(), false);
        #[cfg(test)]
        {
            self.made += 1;
        }
        let copy = Copy {
            entry: Arc::clone(e),
            template: deep_copy(e.template()),
            body: Bytes::copy_from_slice(&e.body),
            referenced: false,
        };
        let out = (copy.template.clone(), copy.body.clone());
        match self.copies.get_mut(slot) {
            Some(s) => *s = copy,
            None => self.copies.push(copy),
        }
        out
    }

    /// The slot a new copy may take: a free one, one whose entry only it
    /// still holds (the store dropped it), or the one under the clock
    /// hand if it was not hit since the hand last passed. A copy that was
    /// hit loses that mark and the candidate waits: each refused candidate
    /// moves the hand one slot, so copies in use are replaced slowly.
    fn free_slot(&mut self) -> Option<usize> {
        if self.copies.len() < SLOTS {
            return Some(self.copies.len());
        }
        if let Some(i) = self
            .copies
            .iter()
            .position(|c| Arc::strong_count(&c.entry) == 1)
        {
            return Some(i);
        }
        let i = self.hand;
        self.hand = (self.hand + 1) % SLOTS;
        let c = &mut self.copies[i];
        if c.referenced {
            c.referenced = false;
            return None;
        }
        Some(i)
    }
}

/// `h` with every name and value in new memory (a clone shares it).
fn deep_copy(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(h.len());
    for (name, value) in h {
        // Standard names are constants: cloning one touches nothing shared.
        let name =
            HeaderName::from_bytes(name.as_str().as_bytes()).unwrap_or_else(|_| name.clone());
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        out.append(name, copy);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::freshness::Rules;
    use crate::cache::vary::VaryKey;
    use http::StatusCode;
    use std::time::SystemTime;

    fn entry(body: &'static [u8]) -> Arc<CachedResponse> {
        let mut h = HeaderMap::new();
        h.insert("cache-control", HeaderValue::from_static("max-age=60"));
        h.insert("x-custom", HeaderValue::from_bytes(b"abc").unwrap());
        let now = SystemTime::now();
        Arc::new(CachedResponse::new(
            StatusCode::OK,
            h,
            Bytes::copy_from_slice(body),
            None,
            (now, now),
            VaryKey::default(),
            Vec::new(),
            &Rules::default(),
        ))
    }

    #[test]
    fn a_hot_entry_is_served_from_this_threads_copy() {
        let e = entry(b"hello");
        let (t1, b1) = template_and_body(&e);
        // First sight: the entry's own memory.
        assert_eq!(b1.as_ptr(), e.body.as_ptr());
        assert_eq!(&t1, e.template());
        // Second: copied, equal in content, not in memory.
        let (t2, b2) = template_and_body(&e);
        assert_eq!(b2, e.body);
        assert_ne!(b2.as_ptr(), e.body.as_ptr());
        assert_eq!(&t2, e.template());
        assert_ne!(
            t2.get("x-custom").unwrap().as_bytes().as_ptr(),
            e.template().get("x-custom").unwrap().as_bytes().as_ptr()
        );
        // Third: the same copy again.
        let (_, b3) = template_and_body(&e);
        assert_eq!(b3.as_ptr(), b2.as_ptr());
    }

    #[test]
    fn another_entry_is_never_served_from_the_copy() {
        let old = entry(b"old");
        template_and_body(&old);
        template_and_body(&old);
        // The same stored response again, as a new entry (a Redis store
        // decodes one per lookup): its own bytes, however often.
        for _ in 0..3 {
            let new = entry(b"new");
            let (_, b) = template_and_body(&new);
            assert_eq!(&b[..], b"new");
            assert_eq!(b.as_ptr(), new.body.as_ptr());
        }
        let (_, b) = template_and_body(&old);
        assert_eq!(&b[..], b"old");
    }

    /// A clean slate for this thread (tests share threads).
    fn reset() {
        HOT.with(|h| {
            let mut h = h.borrow_mut();
            h.copies.clear();
            h.seen.clear();
            h.hand = 0;
            h.seen_next = 0;
            h.made = 0;
        });
    }

    /// Every entry looked up, `rounds` times over.
    fn hit_all(entries: &[Arc<CachedResponse>], rounds: usize) {
        for _ in 0..rounds {
            for e in entries {
                template_and_body(e);
            }
        }
    }

    fn made() -> u64 {
        HOT.with(|h| h.borrow().made)
    }

    #[test]
    fn copies_are_bounded_and_not_remade_on_every_hit() {
        reset();
        // A thread cycling through more hot entries than it has slots.
        let entries: Vec<_> = (0..SLOTS + 4).map(|_| entry(b"x")).collect();
        hit_all(&entries, 4);
        HOT.with(|h| assert_eq!(h.borrow().copies.len(), SLOTS));
        let before = made();
        hit_all(&entries, 8);
        let remade = made() - before;
        // At most one copy a round (sweeping the clock round on each
        // refusal made 13 in 4 rounds).
        assert!(
            remade <= 8,
            "{remade} copies in 8 rounds of {} lookups",
            entries.len()
        );
    }

    #[test]
    fn a_slot_whose_entry_the_store_dropped_is_taken() {
        reset();
        let entries: Vec<_> = (0..SLOTS).map(|_| entry(b"x")).collect();
        // Every slot copied, and every copy hit since: the clock would
        // refuse a newcomer.
        hit_all(&entries, 3);
        assert_eq!(made(), SLOTS as u64);
        let fresh = entry(b"fresh");
        template_and_body(&fresh);
        let (_, b) = template_and_body(&fresh);
        assert_eq!(
            b.as_ptr(),
            fresh.body.as_ptr(),
            "refused: every copy was hit"
        );
        // The store drops one of them: its slot goes to the newcomer.
        let mut entries = entries;
        drop(entries.pop());
        let (_, b) = template_and_body(&fresh);
        assert_ne!(
            b.as_ptr(),
            fresh.body.as_ptr(),
            "copied into the freed slot"
        );
        assert_eq!(made(), SLOTS as u64 + 1);
    }

    #[test]
    fn heavy_entries_are_never_copied_nor_touch_the_clock() {
        reset();
        let light: Vec<_> = (0..SLOTS).map(|_| entry(b"x")).collect();
        hit_all(&light, 3);
        // A body under the limit, the whole entry over it.
        let big = Arc::new({
            let e = entry(b"");
            let mut e = Arc::try_unwrap(e).ok().unwrap();
            e.body = Bytes::from(vec![b'y'; MAX_WEIGHT - 100]);
            e
        });
        assert!(big.weight() > MAX_WEIGHT);
        for _ in 0..5 {
            let (_, b) = template_and_body(&big);
            assert_eq!(b.as_ptr(), big.body.as_ptr());
        }
        assert_eq!(made(), SLOTS as u64);
        HOT.with(|h| assert!(h.borrow().copies.iter().all(|c| c.referenced)));
    }

    #[test]
    fn deep_copies_keep_order_repeats_and_sensitivity() {
        let mut h = HeaderMap::new();
        h.append("vary", HeaderValue::from_static("a"));
        h.append("x-custom", HeaderValue::from_bytes(b"1").unwrap());
        h.append("vary", HeaderValue::from_static("b"));
        let mut secret = HeaderValue::from_bytes(b"s").unwrap();
        secret.set_sensitive(true);
        h.append("x-secret", secret);
        let c = deep_copy(&h);
        assert_eq!(c, h);
        let all: Vec<_> = c.get_all("vary").iter().collect();
        assert_eq!(all, ["a", "b"]);
        assert!(c.get("x-secret").unwrap().is_sensitive());
        assert_ne!(
            c.get("x-custom").unwrap().as_bytes().as_ptr(),
            h.get("x-custom").unwrap().as_bytes().as_ptr()
        );
    }
}
