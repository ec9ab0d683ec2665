//! Per-thread copies of hot entries: the header section and body a hit
//! clones, copied once into the serving thread's own memory.
//!
//! A stored response is shared by every worker thread. Cloning its header
//! section and body for a hit bumps reference counts in that shared memory
//! (one per field value, one for the body), so two threads serving the same
//! entry fight over those cache lines on every hit. Here each thread keeps
//! [`SLOTS`] recently hit entries of its own: an entry hit twice in a row
//! of [`SEEN`] lookups on a thread is copied (field names, values and body)
//! into memory only that thread touches, and later hits clone the copy.
//!
//! A copy is used only for the very entry the store just returned (the
//! same `Arc`, which the slot holds, so its address can't be reused): an
//! entry replaced, purged or evicted in the store is never served from a
//! copy. Bodies over [`MAX_BODY`] are not copied (the copy would cost more
//! than the contention it saves). A slot holds its copy and the entry it
//! was taken from until a later hot entry takes it: at most 2 × [`SLOTS`]
//! × [`MAX_BODY`] bytes of bodies per thread, outside the store's budget.

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::entry::CachedResponse;

/// Entries copied per thread.
const SLOTS: usize = 8;
/// Lookups remembered per thread to tell a hot entry (hit again soon).
const SEEN: usize = 16;
/// The largest body copied.
const MAX_BODY: usize = 64 * 1024;

struct Copy {
    entry: Arc<CachedResponse>,
    template: HeaderMap,
    body: Bytes,
}

#[derive(Default)]
struct Hot {
    copies: Vec<Copy>,
    /// The next slot to replace once all are taken.
    next: usize,
    /// Addresses of entries hit lately (only compared, never followed).
    seen: [usize; SEEN],
    seen_next: usize,
}

thread_local! {
    static HOT: RefCell<Hot> = RefCell::new(Hot::default());
}

/// The header template and body to serve `e` with: clones of this
/// thread's copy when `e` is hot here, else of `e`'s own.
pub(super) fn template_and_body(e: &Arc<CachedResponse>) -> (HeaderMap, Bytes) {
    if e.body.len() > MAX_BODY {
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
        if let Some(c) = self.copies.iter().find(|c| Arc::ptr_eq(&c.entry, e)) {
            return (c.template.clone(), c.body.clone());
        }
        let addr = Arc::as_ptr(e) as usize;
        if !self.seen.contains(&addr) {
            self.seen[self.seen_next] = addr;
            self.seen_next = (self.seen_next + 1) % SEEN;
            return (e.template.clone(), e.body.clone());
        }
        let copy = Copy {
            entry: Arc::clone(e),
            template: deep_copy(&e.template),
            body: Bytes::copy_from_slice(&e.body),
        };
        let out = (copy.template.clone(), copy.body.clone());
        if self.copies.len() < SLOTS {
            self.copies.push(copy);
        } else {
            self.copies[self.next] = copy;
            self.next = (self.next + 1) % SLOTS;
        }
        out
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
    fn another_entry_at_the_same_url_is_never_served_from_the_copy() {
        let old = entry(b"old");
        template_and_body(&old);
        template_and_body(&old);
        let new = entry(b"new");
        let (_, b) = template_and_body(&new);
        assert_eq!(&b[..], b"new");
        let (_, b) = template_and_body(&new);
        assert_eq!(&b[..], b"new");
    }

    #[test]
    fn copies_are_bounded() {
        let entries: Vec<_> = (0..SLOTS * 3).map(|_| entry(b"x")).collect();
        for e in &entries {
            template_and_body(e);
            template_and_body(e);
        }
        HOT.with(|h| assert_eq!(h.borrow().copies.len(), SLOTS));
        // Large bodies are never copied.
        let big = Arc::new({
            let e = entry(b"");
            let mut e = Arc::try_unwrap(e).ok().unwrap();
            e.body = Bytes::from(vec![b'y'; MAX_BODY + 1]);
            e
        });
        template_and_body(&big);
        let (_, b) = template_and_body(&big);
        assert_eq!(b.as_ptr(), big.body.as_ptr());
    }
}
