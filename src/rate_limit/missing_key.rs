//! What the layer does with a request no key can be found for.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::key::KeySource;

/// What to do with a request no key can be found for.
///
/// Requests keyed on the client's address ([`KeySource::PeerIp`],
/// [`KeySource::ClientIp`]) have no key when the server doesn't hand the
/// layer the connection's address: axum's `axum::serve(listener, app)`
/// without `into_make_service_with_connect_info::<SocketAddr>()`, or a
/// hyper loop that inserts no [`PeerAddr`](super::PeerAddr). That is the
/// server's configuration, and by default ([`Fail`](Self::Fail)) the layer
/// says so loudly instead of counting every client in one shared bucket,
/// where one client could lock everybody out.
///
/// Requests keyed on what the client sends ([`KeySource::Header`],
/// [`KeySource::Custom`]) can lack it by the client's choice, which is no
/// server error: a layer with such a rule needs one of the other modes,
/// chosen with [`on_missing_key`](super::RateLimitLayer::on_missing_key),
/// and panics when it is built without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// Answer `500 Internal Server Error` with a plain-text body that names
    /// the fix, and log one error (`tracing::error!`, the first time only,
    /// for the whole layer); [`RateLimitStats::missing_key_failures`](super::RateLimitStats::missing_key_failures)
    /// counts them all. The default. In [shadow](super::RateLimitLayer::shadow)
    /// mode, which never rejects, such requests go on uncounted (and are
    /// logged and counted the same way).
    #[default]
    Fail,
    /// Count all such requests together under one key (`unknown`): they
    /// are limited, and cannot starve identified clients, but one of them
    /// can use up the quota of all the others.
    Shared,
    /// Let them through unlimited.
    Allow,
    /// Reject them with 429.
    Deny,
}

/// The body of the [`MissingKey::Fail`] answer.
pub(super) const FAIL_BODY: &str = "rate limiting is misconfigured: this request carries no client address to count it against. \
Serve the app with `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())` \
(or insert `tower_perf::rate_limit::PeerAddr` in each request), \
or choose `.on_missing_key(MissingKey::Shared)` or `.on_missing_key(MissingKey::Allow)` on the RateLimitLayer.\n";

/// Counts a [`MissingKey::Fail`] answer; the first one of the layer is
/// logged (a log line per request would flood the log at the rate of the
/// traffic, and one says all there is to say).
pub(super) fn record_failure(failures: &AtomicU64, policy: &str) {
    if failures.fetch_add(1, Relaxed) == 0 {
        tracing::error!(
            policy,
            "tower_perf rate limit: a request reached the layer without a client address (no axum \
             ConnectInfo<SocketAddr>, no PeerAddr), so it cannot be counted; answering 500 to every \
             such request. Serve the app with \
             `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())`, or \
             choose `.on_missing_key(MissingKey::Shared)` or `.on_missing_key(MissingKey::Allow)`. \
             Logged once."
        );
    }
}

/// Panics when a rule keys on what clients send and no mode was chosen for
/// requests without it.
pub(super) fn assert_chosen(mode: MissingKey, rule: &str, source: &KeySource) {
    let what = match source {
        KeySource::Header(name) => format!("the header `{name}`"),
        KeySource::Custom(_) => "a closure (KeySource::Custom)".to_owned(),
        KeySource::PeerIp | KeySource::ClientIp(_) | KeySource::Global => return,
    };
    assert!(
        mode != MissingKey::Fail,
        "rate limit policy '{rule}' is keyed on {what}, which a client can leave out: say what such \
         requests get with `.on_missing_key(MissingKey::Shared)` (one shared quota), \
         `MissingKey::Allow` (unlimited) or `MissingKey::Deny` (429)"
    );
}
