//! `Cache-Status` (RFC 9211) and `Age`: what the cache says of an answer.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::service::Shared;

/// How a response came to be, for `Cache-Status`.
#[derive(Clone, Copy)]
pub(super) enum Via {
    Hit,
    Collapsed,
    MaxStale,
    WhileRevalidate,
    StaleIfError(Option<StatusCode>),
    /// Served stale because the origin could not be reached (or answered
    /// this 502/503/504), within `stale_if_unreachable`.
    StaleUnreachable(Option<StatusCode>),
    Revalidated,
}

impl Shared {
    pub(super) fn status_value(&self, rest: std::fmt::Arguments<'_>) -> Option<HeaderValue> {
        let name = self.config.status_name.as_deref()?;
        let mut s = String::with_capacity(64);
        s.push_str(name);
        s.push_str("; ");
        std::fmt::Write::write_fmt(&mut s, rest).ok()?;
        // Hands the buffer over instead of copying it.
        HeaderValue::from_maybe_shared(Bytes::from(s)).ok()
    }

    /// Appends `<name>; fwd=<fwd>` (`; stored` when `stored`): the member
    /// of every response the origin answered, kept per thread like a
    /// hit's (no formatting machinery, no count shared between threads).
    pub(super) fn set_fwd_status(&self, headers: &mut HeaderMap, fwd: &'static str, stored: bool) {
        let Some(name) = self.config.status_name.as_deref() else {
            return;
        };
        thread_local! {
            static LAST: crate::headers::memo::Slot<(Box<str>, &'static str, bool)> =
                const { std::cell::RefCell::new(None) };
        }
        let value = crate::headers::memo::memoized(
            &LAST,
            |(n, f, s)| *s == stored && *f == fwd && **n == *name,
            || (name.into(), fwd, stored),
            || {
                let note = if stored { "; stored" } else { "" };
                let mut s = String::with_capacity(name.len() + 6 + fwd.len() + note.len());
                s.push_str(name);
                s.push_str("; fwd=");
                s.push_str(fwd);
                s.push_str(note);
                HeaderValue::from_maybe_shared(Bytes::from(s)).ok()
            },
        );
        if let Some(v) = value {
            headers.append(CACHE_STATUS.clone(), v);
        }
    }

    pub(super) fn set_status(&self, headers: &mut HeaderMap, rest: std::fmt::Arguments<'_>) {
        if let Some(v) = self.status_value(rest) {
            headers.append(CACHE_STATUS.clone(), v);
        }
    }

    /// Our `Cache-Status` member for an answer from the store (`None`
    /// when the header is off).
    pub(super) fn cache_status(&self, via: Via, ttl: i64) -> Option<HeaderValue> {
        let name = self.config.status_name.as_deref()?;
        match via {
            // Every hit: no formatting machinery (a per-thread memo).
            Via::Hit => hit_status(name, ttl, || {
                self.status_value(format_args!("hit; ttl={ttl}"))
            }),
            Via::Collapsed => self.status_value(format_args!("hit; ttl={ttl}; collapsed")),
            Via::MaxStale => self.status_value(format_args!("hit; ttl={ttl}; detail=max-stale")),
            Via::WhileRevalidate => self.status_value(format_args!(
                "hit; ttl={ttl}; detail=stale-while-revalidate"
            )),
            Via::StaleIfError(Some(s)) => self.status_value(format_args!(
                "fwd=stale; fwd-status={}; ttl={ttl}; detail=stale-if-error",
                s.as_u16()
            )),
            Via::StaleIfError(None) => {
                self.status_value(format_args!("fwd=stale; ttl={ttl}; detail=stale-if-error"))
            }
            Via::StaleUnreachable(Some(s)) => self.status_value(format_args!(
                "fwd=stale; fwd-status={}; ttl={ttl}; detail=origin-unreachable",
                s.as_u16()
            )),
            Via::StaleUnreachable(None) => self.status_value(format_args!(
                "fwd=stale; ttl={ttl}; detail=origin-unreachable"
            )),
            Via::Revalidated => {
                self.status_value(format_args!("fwd=stale; fwd-status=304; ttl={ttl}"))
            }
        }
    }
}

/// The `Cache-Status` field.
pub(crate) static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// An `Age` value in whole seconds.
pub(crate) fn age_value(age: Duration) -> HeaderValue {
    let secs = age.as_secs();
    // Most answers are younger than three hours: their value is a slice of
    // a static table, so an `Age` costs no allocation and no shared count.
    if let Some(digits) = static_digits(secs) {
        return HeaderValue::from_static(digits);
    }
    HeaderValue::from(secs)
}

/// The numbers 0 to [`STATIC_DIGITS_MAX`] written back to back.
static DIGITS: [u8; DIGITS_LEN] = digits_table();
const STATIC_DIGITS_MAX: u64 = 9_999;
const DIGITS_LEN: usize = 10 + 90 * 2 + 900 * 3 + 9_000 * 4;

const fn digits_table() -> [u8; DIGITS_LEN] {
    let mut out = [0u8; DIGITS_LEN];
    let mut n = 0u64;
    let mut at = 0usize;
    while n <= STATIC_DIGITS_MAX {
        let len = digit_count(n);
        let mut i = len;
        let mut v = n;
        while i > 0 {
            i -= 1;
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        at += len;
        n += 1;
    }
    out
}

const fn digit_count(n: u64) -> usize {
    if n < 10 {
        1
    } else if n < 100 {
        2
    } else if n < 1_000 {
        3
    } else {
        4
    }
}

/// `n` in decimal from the static table, when it is there.
fn static_digits(n: u64) -> Option<&'static str> {
    let at = match n {
        0..=9 => n,
        10..=99 => 10 + (n - 10) * 2,
        100..=999 => 190 + (n - 100) * 3,
        1_000..=STATIC_DIGITS_MAX => 2_890 + (n - 1_000) * 4,
        _ => return None,
    };
    let at = usize::try_from(at).ok()?;
    let bytes = DIGITS.get(at..at + digit_count(n))?;
    std::str::from_utf8(bytes).ok()
}

/// `Cache-Status` of a fresh hit under `name` with `ttl`, as `write` makes
/// it. It is on every hit and changes once a second at most, so each thread
/// keeps its last one and hands out clones (the thread's own allocation: no
/// count shared between threads); `write` runs only when it changes.
pub(crate) fn hit_status(
    name: &str,
    ttl: i64,
    write: impl FnOnce() -> Option<HeaderValue>,
) -> Option<HeaderValue> {
    thread_local! {
        static LAST: crate::headers::memo::Slot<(Box<str>, i64)> =
            const { std::cell::RefCell::new(None) };
    }
    crate::headers::memo::memoized(
        &LAST,
        |(n, t)| *t == ttl && **n == *name,
        || (name.into(), ttl),
        write,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_status_values() {
        let writes = std::cell::Cell::new(0);
        let status = |name: &str, ttl: i64| {
            hit_status(name, ttl, || {
                writes.set(writes.get() + 1);
                HeaderValue::from_str(&format!("{name}; hit; ttl={ttl}")).ok()
            })
        };
        // The per-thread memo answers by name and ttl, not by the last
        // call, and writes a value only when it changes.
        assert_eq!(status("a", 5).unwrap(), "a; hit; ttl=5");
        assert_eq!(status("a", 5).unwrap(), "a; hit; ttl=5");
        assert_eq!(writes.get(), 1);
        assert_eq!(status("b", 5).unwrap(), "b; hit; ttl=5");
        assert_eq!(status("b", 6).unwrap(), "b; hit; ttl=6");
        assert_eq!(status("a", 5).unwrap(), "a; hit; ttl=5");
        assert_eq!(writes.get(), 4);
        // A writer that fails is not remembered.
        assert!(hit_status("c", 1, || None).is_none());
        assert_eq!(status("c", 1).unwrap(), "c; hit; ttl=1");
    }

    #[test]
    fn age_values() {
        for n in [
            0u64, 1, 9, 10, 11, 99, 100, 101, 999, 1_000, 1_001, 9_998, 9_999, 10_000, 86_400,
        ] {
            assert_eq!(
                age_value(Duration::from_secs(n)),
                n.to_string().as_str(),
                "{n}"
            );
        }
        assert_eq!(age_value(Duration::from_secs(0)), "0");
        assert_eq!(age_value(Duration::from_millis(1999)), "1");
        assert_eq!(
            age_value(Duration::from_secs(u64::MAX)),
            "18446744073709551615"
        );
    }
}
