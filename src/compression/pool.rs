//! The per-thread pools codec state is kept in between responses (zlib-rs
//! streams, libdeflate compressors, libzstd contexts): making that state
//! costs more than a small body's work with it. A thread-local pool needs
//! no lock and is never contended.

use std::cell::RefCell;
use std::thread::LocalKey;

/// One thread's pool: a few items, oldest first.
pub(crate) type Pool<T> = RefCell<Vec<T>>;

/// Takes the first pooled item `fits` accepts; `None` when there is none
/// (or while the thread is going away and its pool is gone).
pub(crate) fn take<T: 'static>(
    pool: &'static LocalKey<Pool<T>>,
    fits: impl Fn(&T) -> bool,
) -> Option<T> {
    pool.try_with(|p| {
        let mut p = p.try_borrow_mut().ok()?;
        let i = p.iter().position(fits)?;
        Some(p.remove(i))
    })
    .ok()
    .flatten()
}

/// Puts `item` back as the newest; when the pool holds `cap` items, the
/// oldest goes to make room.
pub(crate) fn give_back<T: 'static>(pool: &'static LocalKey<Pool<T>>, item: T, cap: usize) {
    let _ = pool.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            if p.len() >= cap {
                p.remove(0);
            }
            p.push(item);
        }
    });
}

/// How many items the thread's pool holds (for tests).
#[cfg(test)]
pub(crate) fn len<T: 'static>(pool: &'static LocalKey<Pool<T>>) -> usize {
    pool.with(|p| p.borrow().len())
}
