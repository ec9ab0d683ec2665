//! Per-thread copies of hot entries: the header section and body a hit
//! clones, copied once into the serving thread's own memory.
//!
//! A stored response is shared by every worker thread. Cloning its header
//! section and body for a hit bumps reference counts in that shared memory
//! (one per field value, one for the body), so two threads serving the same
//! entry fight over those cache lines on every hit. Here each thread keeps
//! [`SLOTS`] recently hit entries of its own: an entry found again within
//! [`SEEN`] lookups on a thread is copied (field names, values and body)
//! into memory only that thread touches, and later hits clone the copy.
//!
//! A copy is used only for the very entry the store just returned (the
//! same `Arc`, which the slot holds): an entry replaced, purged or evicted
//! in the store is never served from a copy, and a store that hands out a
//! new `Arc` on every lookup (Redis) never gets copies. Entries that weigh
//! more than [`MAX_WEIGHT`] (body and fields) are not copied. Slots are
//! replaced second-chance (CLOCK): a copy hit since the hand last passed
//! stays; when every copy was, no new one is made, so a thread cycling
//! through more hot entries than slots doesn't recopy on every hit. A
//! slot whose entry the store dropped is freed at the next copy. At most
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
    /// Entries found lately. `Weak`, so an address isn't reused for
    /// another entry while it is remembered; compared, never upgraded.
    seen: Vec<Weak<CachedResponse>>,
    seen_next: usize,
}

thread_local! {
    static HOT: RefCell<Hot> = const {
        RefCell::new(Hot {
            copies: Vec::new(),
            hand: 0,
            seen: Vec::new(),
            seen_next: 0,
        })
    };
}

/// The header template and body to serve `e` with: clones of this
/// thread's copy when `e` is hot here, else of `e`'s own.
pub(super) fn template_and_body(e: &Arc<CachedResponse>) -> (HeaderMap, Bytes) {
    if e.body.len() > MAX_WEIGHT {
        return (e.template.clone(), e.body.clone());
    }
    HOT.try_with(|hot| {
        let Ok(mut hot) = hot.try_borrow_mut() else {
            return None;
        };
        Some(hot.serve(e))
    })
    .ok()
    .flatten()
    .unwrap_or_else(|| (e.template.clone(), e.body.clone()))
}

impl Hot {
    fn serve(&mut self, e: &Arc<CachedResponse>) -> (HeaderMap, Bytes) {
        if let Some(c) = self.copies.iter_mut().find(|c| Arc::ptr_eq(&c.entry, e)) {
            c.referenced = true;
            return (c.template.clone(), c.body.clone());
        }
        let own = || (e.template.clone(), e.body.clone());
        let Some(at) = self
            .seen
            .iter()
            .position(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(e)))
        else {
            if self.seen.len() < SEEN {
                self.seen.push(Arc::downgrade(e));
            } else {
                self.seen[self.seen_next] = Arc::downgrade(e);
            }
            self.seen_next = (self.seen_next + 1) % SEEN;
            return own();
        };
        let Some(slot) = self.free_slot() else {
            return own();
        };
        if e.weight() > MAX_WEIGHT {
            return own();
        }
        // Found again: copied, and no longer a candidate.
        self.seen[at] = Weak::new();
        let copy = Copy {
            entry: Arc::clone(e),
            template: deep_copy(&e.template),
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
    /// still holds (the store dropped it), or the first the clock hand
    /// finds not hit since its last pass; `None` when every copy was hit
    /// (their bits cleared for the next time).
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
        for _ in 0..SLOTS {
            let i = self.hand;
            self.hand = (self.hand + 1) % SLOTS;
            let c = &mut self.copies[i];
            if !c.referenced {
                return Some(i);
            }
            c.referenced = false;
        }
        None
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
        assert_eq!(t1, e.template);
        // Second: copied, equal in content, not in memory.
        let (t2, b2) = template_and_body(&e);
        assert_eq!(b2, e.body);
        assert_ne!(b2.as_ptr(), e.body.as_ptr());
        assert_eq!(t2, e.template);
        assert_ne!(
            t2.get("x-custom").unwrap().as_bytes().as_ptr(),
            e.template.get("x-custom").unwrap().as_bytes().as_ptr()
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

    #[test]
    fn copies_are_bounded_and_not_remade_on_every_hit() {
        // Clean slate for this thread (tests share threads).
        HOT.with(|h| h.borrow_mut().copies.clear());
        let entries: Vec<_> = (0..SLOTS + 4).map(|_| entry(b"x")).collect();
        // Every entry hit three times over, round after round: the first
        // SLOTS are copied; the others, while those keep being hit, are
        // not copied in their place.
        for _ in 0..4 {
            for e in &entries {
                template_and_body(e);
            }
        }
        let copied = |entries: &[Arc<CachedResponse>]| {
            HOT.with(|h| {
                let h = h.borrow();
                entries
                    .iter()
                    .filter(|e| h.copies.iter().any(|c| Arc::ptr_eq(&c.entry, e)))
                    .count()
            })
        };
        HOT.with(|h| assert_eq!(h.borrow().copies.len(), SLOTS));
        let first = copied(&entries);
        for _ in 0..4 {
            for e in &entries {
                template_and_body(e);
            }
        }
        // At most one slot changes hands per round of misses that find
        // every copy hit.
        assert_eq!(copied(&entries), first);
        // An entry the store dropped frees its slot for the next copy.
        let dropped = HOT.with(|h| Arc::clone(&h.borrow().copies[0].entry));
        drop(entries);
        drop(dropped);
        let fresh = entry(b"fresh");
        template_and_body(&fresh);
        let (_, b) = template_and_body(&fresh);
        assert_ne!(b.as_ptr(), fresh.body.as_ptr(), "copied into a freed slot");
    }

    #[test]
    fn heavy_entries_are_never_copied() {
        let big = Arc::new({
            let e = entry(b"");
            let mut e = Arc::try_unwrap(e).ok().unwrap();
            e.body = Bytes::from(vec![b'y'; MAX_WEIGHT - 100]);
            e
        });
        for _ in 0..3 {
            let (_, b) = template_and_body(&big);
            assert_eq!(b.as_ptr(), big.body.as_ptr());
        }
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
