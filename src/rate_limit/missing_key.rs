//! What the layer does with a request no key can be found for.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use super::body::ResponseBody;
use super::key::KeySource;

/// What to do with a request no key can be found for.
///
/// A key goes missing for one of two reasons, and each has its own setting,
/// so that choosing for one never changes the other:
///
/// - **No client address**, for policies keyed on it ([`KeySource::PeerIp`],
///   [`KeySource::ClientIp`]): the server doesn't hand the layer the
///   connection's address (axum's `axum::serve(listener, app)` without
///   `into_make_service_with_connect_info::<SocketAddr>()`, or a hyper
///   loop that inserts no [`PeerAddr`](super::PeerAddr)). That is the
///   server's configuration, and by default ([`Fail`](Self::Fail)) the
///   layer says so loudly instead of counting every client in one shared
///   bucket, where one client could lock everybody out. Choose otherwise
///   with [`on_missing_peer_addr`](super::RateLimitLayer::on_missing_peer_addr)
///   (every rule) or [`RateRule::on_missing_peer_addr`](super::RateRule::on_missing_peer_addr)
///   (one rule).
/// - **No key the client sends**, for policies keyed on it
///   ([`KeySource::Header`], [`KeySource::Custom`]): a client can leave an
///   API key out, which is no server error, and there is no default: choose
///   [`Shared`](Self::Shared), [`Allow`](Self::Allow) or [`Deny`](Self::Deny)
///   with [`on_missing_key`](super::RateLimitLayer::on_missing_key) (every
///   rule) or [`RateRule::on_missing_key`](super::RateRule::on_missing_key)
///   (one rule). A layer with such a policy and no choice panics when it
///   is built.
///
/// A rule's own choice wins over the layer's. A choice that applies to no
/// policy (`on_missing_key` where nothing is keyed on a header or closure,
/// `on_missing_peer_addr` where nothing is keyed on an address) panics when
/// the layer is built, naming the setting it was probably meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// Answer `500 Internal Server Error` with a plain-text body that names
    /// the fix, and log one error (`tracing::error!`, the first time only,
    /// for the whole layer); [`RateLimitStats::missing_key_failures`](super::RateLimitStats::missing_key_failures)
    /// counts them all. The default for a missing client address, and only
    /// for that. In [shadow](super::RateLimitLayer::shadow) mode, which
    /// never rejects, such requests go on uncounted (and are logged and
    /// counted the same way).
    #[default]
    Fail,
    /// Count all such requests of a policy together under one key
    /// (`unknown`): they are limited, and cannot starve identified clients,
    /// but one of them can use up the quota of all the others.
    Shared,
    /// Let them through, not counted by this policy.
    Allow,
    /// Reject them with 429. In [shadow](super::RateLimitLayer::shadow)
    /// mode, which never rejects, they are counted as limited (under the
    /// key `unknown`) and go on.
    Deny,
}

/// The missing-key choices of a layer (the defaults) or of one rule (which
/// win over the layer's); `None` where nothing was chosen.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Choices {
    /// For keys the client sends (a header, a closure).
    pub(super) key: Option<MissingKey>,
    /// For the client's address.
    pub(super) peer_addr: Option<MissingKey>,
}

/// What a policy's key comes from, as far as its absence goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The client's address: missing means the server's set-up.
    Address,
    /// What the client sends: missing is the client's doing.
    Sent,
    /// Never missing ([`KeySource::Global`]).
    Always,
}

fn kind(source: &KeySource) -> Kind {
    match source {
        KeySource::PeerIp | KeySource::ClientIp(_) => Kind::Address,
        KeySource::Header(_) | KeySource::Custom(_) => Kind::Sent,
        KeySource::Global => Kind::Always,
    }
}

/// The mode of every policy, in the order given (the layer numbers its
/// policies in that order): a rule is its name, its own choices and its
/// policies (name and key source).
///
/// # Panics
///
/// When a policy keyed on what clients send has no choice (or
/// [`MissingKey::Fail`], which is about servers), or when a choice applies
/// to no policy.
pub(super) fn resolve<'a, R, P>(layer: Choices, rules: R) -> Vec<MissingKey>
where
    R: IntoIterator<Item = (&'a str, Choices, P)>,
    P: IntoIterator<Item = (&'a str, &'a KeySource)>,
{
    let mut modes = Vec::new();
    let (mut layer_key_used, mut layer_addr_used) = (false, false);
    for (rule, own, policies) in rules {
        let (mut key_used, mut addr_used) = (false, false);
        for (policy, source) in policies {
            let mode = match kind(source) {
                Kind::Address => {
                    addr_used = true;
                    layer_addr_used |= own.peer_addr.is_none();
                    own.peer_addr.or(layer.peer_addr).unwrap_or_default()
                }
                Kind::Sent => {
                    key_used = true;
                    layer_key_used |= own.key.is_none();
                    let mode = own.key.or(layer.key).unwrap_or_default();
                    assert_chosen(mode, policy, source);
                    mode
                }
                // Never read: the key is always there.
                Kind::Always => MissingKey::Allow,
            };
            modes.push(mode);
        }
        assert!(
            own.key.is_none() || key_used,
            "rate limit rule '{rule}' sets `on_missing_key`, which applies to keys a client sends (a header, a closure), \
             but none of its policies is keyed on one; for requests without a client address, use \
             `RateRule::on_missing_peer_addr`"
        );
        assert!(
            own.peer_addr.is_none() || addr_used,
            "rate limit rule '{rule}' sets `on_missing_peer_addr`, but none of its policies is keyed on the client's \
             address (KeySource::PeerIp, KeySource::ClientIp); for a missing header or closure key, use \
             `RateRule::on_missing_key`"
        );
    }
    assert!(
        layer.key.is_none() || layer_key_used,
        "RateLimitLayer::on_missing_key applies to keys a client sends (a header, a closure), and no rule without \
         its own choice is keyed on one; for requests without a client address, use \
         `RateLimitLayer::on_missing_peer_addr`"
    );
    assert!(
        layer.peer_addr.is_none() || layer_addr_used,
        "RateLimitLayer::on_missing_peer_addr applies to policies keyed on the client's address \
         (KeySource::PeerIp, KeySource::ClientIp), and no rule without its own choice is keyed on it; \
         for a missing header or closure key, use `RateLimitLayer::on_missing_key`"
    );
    modes
}

/// The body of the [`MissingKey::Fail`] answer.
pub(super) const FAIL_BODY: &str = "rate limiting is misconfigured: this request carries no client address to count it against. \
Serve the app with `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())` \
(or insert `tower_perf::rate_limit::PeerAddr` in each request), \
or choose `.on_missing_peer_addr(MissingKey::Shared)` or `.on_missing_peer_addr(MissingKey::Allow)` on the RateLimitLayer.\n";

/// The `500` a request without a client address gets under
/// [`MissingKey::Fail`].
pub(super) fn failure_response<B>() -> Response<ResponseBody<B>> {
    let mut res = Response::new(ResponseBody::text(FAIL_BODY));
    *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// Counts a [`MissingKey::Fail`] answer (or, in shadow mode, a request let
/// through instead); the first one of the layer is logged (a log line per
/// request would flood the log at the rate of the traffic, and one says all
/// there is to say).
pub(super) fn record_failure(failures: &AtomicU64, policy: &str, shadow: bool) {
    if failures.fetch_add(1, Relaxed) != 0 {
        return;
    }
    let outcome = if shadow {
        "shadow mode lets every such request through, uncounted (outside shadow mode each would be \
         answered 500)"
    } else {
        "answering 500 to every such request"
    };
    tracing::error!(
        policy,
        "tower_perf rate limit: a request reached the layer without a client address (no axum \
         ConnectInfo<SocketAddr>, no PeerAddr), so it cannot be counted; {outcome}. Serve the app \
         with `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())`, or \
         choose `.on_missing_peer_addr(MissingKey::Shared)` or \
         `.on_missing_peer_addr(MissingKey::Allow)`. Logged once."
    );
}

/// Panics when a policy keyed on what clients send has no mode chosen for
/// requests without it.
fn assert_chosen(mode: MissingKey, policy: &str, source: &KeySource) {
    let what = match source {
        KeySource::Header(name) => format!("the header `{name}`"),
        _ => "a closure (KeySource::Custom)".to_owned(),
    };
    assert!(
        mode != MissingKey::Fail,
        "rate limit policy '{policy}' is keyed on {what}, which a client can leave out: say what such \
         requests get with `.on_missing_key(MissingKey::Shared)` (one shared quota), \
         `MissingKey::Allow` (unlimited) or `MissingKey::Deny` (429), on the rule or on the layer"
    );
}
