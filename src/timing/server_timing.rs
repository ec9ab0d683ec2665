//! The W3C `Server-Timing` response field.

use std::time::Duration;

use super::guard::Guard;

pub(super) const SERVER_TIMING: http::HeaderName = http::HeaderName::from_static("server-timing");

/// The W3C Server-Timing value: `total` (arrival to response head) and the
/// allowed sub-timings (`db;dur=4.2;desc="3"`, the count as description).
pub(super) fn server_timing(g: &Guard, allow: &[Box<str>]) -> Option<http::HeaderValue> {
    use std::fmt::Write;
    let total = Duration::from_nanos(g.cell.now().saturating_sub(g.start));
    let mut v = format!("total;dur={:.3}", total.as_secs_f64() * 1000.0);
    if let Some(t) = &g.timings {
        for agg in t.aggregates() {
            let allowed = allow.iter().any(|a| **a == *agg.name);
            let token = !agg.name.is_empty() && agg.name.bytes().all(crate::headers::is_tchar);
            if allowed && token {
                let _ = write!(
                    v,
                    ", {};dur={:.3};desc=\"{}\"",
                    agg.name,
                    agg.total.as_secs_f64() * 1000.0,
                    agg.count
                );
            }
        }
    }
    http::HeaderValue::try_from(v).ok()
}
