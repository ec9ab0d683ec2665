//! The per-thread memo of a header value written often with the same
//! inputs (`Date` within one second, a cache's `Cache-Status` hit line):
//! each thread keeps the last value it wrote and its key.

use std::cell::RefCell;
use std::thread::LocalKey;

use http::HeaderValue;

/// A thread's last value and its key.
pub(crate) type Slot<K> = RefCell<Option<(K, HeaderValue)>>;

/// The value `slot` holds when `same` says its key is this call's, else
/// `write`'s (kept, under `key()`, for the next call on this thread).
/// `None` only when `write` gives nothing.
///
/// Never fails: while the thread is going away, or on a reentrant call,
/// the value is written afresh and not kept.
pub(crate) fn memoized<K: 'static>(
    slot: &'static LocalKey<Slot<K>>,
    same: impl FnOnce(&K) -> bool,
    key: impl FnOnce() -> K,
    write: impl FnOnce() -> Option<HeaderValue>,
) -> Option<HeaderValue> {
    let mut write = Some(write);
    let kept = slot.try_with(|last| {
        let mut last = last.try_borrow_mut().ok()?;
        if let Some((k, v)) = last.as_ref() {
            if same(k) {
                return Some(v.clone());
            }
        }
        let v = write.take()?()?;
        *last = Some((key(), v.clone()));
        Some(v)
    });
    match (kept, write) {
        (Ok(Some(v)), _) => Some(v),
        (_, Some(write)) => write(),
        (_, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        static SLOT: Slot<u32> = const { RefCell::new(None) };
    }

    #[test]
    fn writes_once_per_key_change() {
        let writes = Cell::new(0);
        let get = |k: u32| {
            memoized(
                &SLOT,
                |last| *last == k,
                || k,
                || {
                    writes.set(writes.get() + 1);
                    HeaderValue::from_str(&k.to_string()).ok()
                },
            )
        };
        assert_eq!(get(1).unwrap(), "1");
        assert_eq!(get(1).unwrap(), "1");
        assert_eq!(writes.get(), 1);
        assert_eq!(get(2).unwrap(), "2");
        assert_eq!(get(1).unwrap(), "1");
        assert_eq!(writes.get(), 3);
        // Nothing written is nothing kept.
        assert!(memoized(&SLOT, |_| false, || 9, || None).is_none());
        assert_eq!(get(1).unwrap(), "1");
        assert_eq!(writes.get(), 3);
    }

    #[test]
    fn a_reentrant_call_writes_afresh() {
        let outer = memoized(
            &SLOT,
            |_| false,
            || 7,
            || {
                // The slot is borrowed by the outer call: this one writes
                // without keeping.
                let inner = memoized(&SLOT, |_| false, || 8, || HeaderValue::from_str("8").ok());
                assert_eq!(inner.unwrap(), "8");
                HeaderValue::from_str("7").ok()
            },
        );
        assert_eq!(outer.unwrap(), "7");
        assert_eq!(memoized(&SLOT, |k| *k == 7, || 7, || None).unwrap(), "7");
    }
}
