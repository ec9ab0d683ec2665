//! `Prefer` (RFC 7240): the preferences a client states about how its
//! request is handled.

use std::time::Duration;

use http::HeaderMap;
use http::header::HeaderName;

use super::util::{find_unquoted, parse_delta_seconds, split_list, split_name_value, unquote};

/// The `Prefer` field's name (RFC 7240 §2).
pub const PREFER: HeaderName = HeaderName::from_static("prefer");

/// The `Preference-Applied` field's name (RFC 7240 §3).
pub const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

/// The preferences of a request's `Prefer` fields that concern when it is
/// answered: `respond-async` (RFC 7240 §4.1), on which
/// `tasks::AsyncLayer` defers a request, and `wait` (§4.3), with which
/// the layer answers inline a task that ends within that many seconds.
///
/// Every `Prefer` field is read, as one list. Preference names are
/// case-insensitive; only the first occurrence of each counts (§2: later
/// ones are ignored); parameters after `;` are skipped, as are
/// preferences this type doesn't know. A `wait` whose value isn't
/// delta-seconds is ignored (and, being the first, hides later ones).
/// `respond-async` takes no value; one given anyway is ignored, the
/// preference still counts.
/// Linear in the fields' length; nothing is kept but the two values.
///
/// ```
/// use http::{HeaderMap, HeaderValue};
/// use std::time::Duration;
/// use tower_perf::headers::{PREFER, Prefer};
///
/// let mut headers = HeaderMap::new();
/// headers.append(PREFER, HeaderValue::from_static("Respond-Async, wait=10"));
/// let prefer = Prefer::from_headers(&headers);
/// assert!(prefer.respond_async());
/// assert_eq!(prefer.wait(), Some(Duration::from_secs(10)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prefer {
    respond_async: bool,
    wait: Option<u32>,
}

impl Prefer {
    /// The preferences of every `Prefer` field in `headers`.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut prefer = Prefer::default();
        let mut seen = Seen::default();
        for value in headers.get_all(PREFER) {
            prefer.read(value.as_bytes(), &mut seen);
        }
        prefer
    }

    /// The preferences of one field value.
    pub fn parse(value: &[u8]) -> Self {
        let mut prefer = Prefer::default();
        prefer.read(value, &mut Seen::default());
        prefer
    }

    fn read(&mut self, value: &[u8], seen: &mut Seen) {
        for elem in split_list(value) {
            // The preference is what precedes its first parameter.
            let preference = match find_unquoted(elem, b';') {
                Some(i) => &elem[..i],
                None => elem,
            };
            let (name, raw) = split_name_value(preference);
            if name.eq_ignore_ascii_case(b"respond-async") {
                if !seen.respond_async {
                    seen.respond_async = true;
                    self.respond_async = true;
                }
            } else if name.eq_ignore_ascii_case(b"wait") && !seen.wait {
                seen.wait = true;
                self.wait = raw.and_then(unquote).and_then(|v| parse_delta_seconds(&v));
            }
        }
    }

    /// The client would rather have `202 Accepted` at once and fetch the
    /// outcome later (RFC 7240 §4.1).
    pub fn respond_async(&self) -> bool {
        self.respond_async
    }

    /// How long the client is willing to wait for a response (§4.3).
    pub fn wait(&self) -> Option<Duration> {
        self.wait.map(|s| Duration::from_secs(u64::from(s)))
    }
}

/// Which preferences were met already (only the first counts).
#[derive(Default)]
struct Seen {
    respond_async: bool,
    wait: bool,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{HeaderMap, HeaderValue};

    use super::{PREFER, Prefer};

    #[test]
    fn reads_respond_async_and_wait_in_any_case_and_field() {
        let p = Prefer::parse(b"respond-async");
        assert!(p.respond_async());
        assert_eq!(p.wait(), None);
        let p = Prefer::parse(b"return=minimal, RESPOND-ASYNC; foo=bar, Wait = 5");
        assert!(p.respond_async());
        assert_eq!(p.wait(), Some(Duration::from_secs(5)));
        let mut headers = HeaderMap::new();
        headers.append(PREFER, HeaderValue::from_static("wait=\"7\""));
        headers.append(PREFER, HeaderValue::from_static("respond-async"));
        let p = Prefer::from_headers(&headers);
        assert!(p.respond_async());
        assert_eq!(p.wait(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn only_the_first_occurrence_counts_and_strangers_are_skipped() {
        let p = Prefer::parse(b"wait=3, wait=100");
        assert_eq!(p.wait(), Some(Duration::from_secs(3)));
        // A bad first `wait` hides the later ones (§2).
        let p = Prefer::parse(b"wait=soon, wait=4");
        assert_eq!(p.wait(), None);
        // A quoted comma or semicolon doesn't split.
        let p = Prefer::parse(b"foo=\"a, respond-async; b\"");
        assert!(!p.respond_async());
        let p = Prefer::parse(b"respond-asynchronous, x-respond-async");
        assert!(!p.respond_async());
        assert_eq!(Prefer::parse(b""), Prefer::default());
        assert_eq!(Prefer::parse(b",,;=\"\\"), Prefer::default());
    }

    #[test]
    fn a_huge_field_is_read_in_one_pass() {
        // 1 MB of preferences: linear, no allocation per element.
        let mut value = "x=1, ".repeat(200_000);
        value.push_str("respond-async");
        assert!(Prefer::parse(value.as_bytes()).respond_async());
    }
}
