//! The rule table's entries: which requests a rule counts (path pattern,
//! methods), against which policies (name, quota, key source) and at what
//! cost, and what its policies do without a key.

use std::sync::Arc;

use http::Method;

use super::key::KeySource;
use super::missing_key::{self, MissingKey};
use super::quota::Quota;
use crate::route_pattern::Pattern;

/// One entry of the rule table: which requests, counted how, against what
/// quota.
///
/// ```
/// use http::Method;
/// use tower_perf::rate_limit::{KeySource, Quota, RateRule};
///
/// let writes = RateRule::new("writes", Quota::per_minute(10))
///     .path("/api/**")
///     .methods([Method::POST, Method::PUT, Method::DELETE])
///     .key(KeySource::PeerIp);
/// # let _ = writes;
/// ```
#[derive(Debug, Clone)]
pub struct RateRule {
    pub(super) name: Arc<str>,
    pub(super) quota: Quota,
    pub(super) pattern: Option<Pattern>,
    pub(super) methods: Option<Vec<Method>>,
    pub(super) key: KeySource,
    pub(super) cost: u32,
    /// More policies counted on the same requests (a daily cap beside a
    /// per-minute one, a global one beside a per-client one).
    pub(super) extra: Vec<(Arc<str>, Quota, KeySource)>,
    pub(super) missing: missing_key::Choices,
}

impl RateRule {
    /// A rule named `name` (shown in the `RateLimit` fields) with `quota`,
    /// for every path and method, keyed by the peer IP.
    pub fn new(name: &str, quota: Quota) -> Self {
        Self {
            name: sf_name(name).into(),
            quota,
            pattern: None,
            methods: None,
            key: KeySource::PeerIp,
            cost: 1,
            extra: Vec::new(),
            missing: missing_key::Choices::default(),
        }
    }

    /// Counts the same requests against another policy too: a request goes
    /// on only when every policy of the rule allows it, and then counts in
    /// all of them.
    pub fn and_policy(mut self, name: &str, quota: Quota, key: KeySource) -> Self {
        self.extra.push((sf_name(name).into(), quota, key));
        self
    }

    pub(super) fn policies(&self) -> impl Iterator<Item = (&Arc<str>, &Quota, &KeySource)> {
        std::iter::once((&self.name, &self.quota, &self.key))
            .chain(self.extra.iter().map(|(n, q, k)| (n, q, k)))
    }

    /// Only for paths matching `pattern`: an exact path (`/health`), a glob
    /// where `*` matches within one segment (`/assets/*.js`) and `**` any
    /// number of segments (`/api/**`), or a route as axum writes it:
    /// `{param}` is one segment (`/api/items/{id}`), `{*rest}` the rest of
    /// the path, at least one character (`/files/{*rest}` doesn't match
    /// `/files` or `/files/`, as in axum); `{{` and `}}` are literal braces.
    ///
    /// # Panics
    ///
    /// When `pattern` can never match a request path: empty, not starting
    /// with `/`, holding a character no request path holds (a space, `?`,
    /// `#`…), with malformed or unbalanced braces, or with `{*rest}`
    /// before the last segment. The message names the pattern and why.
    pub fn path(mut self, pattern: &str) -> Self {
        self.pattern = Some(Pattern::parse(pattern));
        self
    }

    /// Only for paths starting with `prefix` (byte-wise).
    ///
    /// # Panics
    ///
    /// When `prefix` can never match a request path (empty, not starting
    /// with `/`, a character no request path holds) or holds a brace
    /// (axum's `{param}` segments belong in [`path`](Self::path)).
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.pattern = Some(Pattern::prefix(prefix));
        self
    }

    /// Only for these methods.
    pub fn methods<I: IntoIterator<Item = Method>>(mut self, methods: I) -> Self {
        self.methods = Some(methods.into_iter().collect());
        self
    }

    /// How the key is found (default: the peer IP).
    pub fn key(mut self, key: KeySource) -> Self {
        self.key = key;
        self
    }

    /// What this rule's policies keyed on a header or a closure do with a
    /// request that lacks the key (wins over
    /// [`RateLimitLayer::on_missing_key`](super::RateLimitLayer::on_missing_key); see [`MissingKey`]).
    pub fn on_missing_key(mut self, m: MissingKey) -> Self {
        self.missing.key = Some(m);
        self
    }

    /// What this rule's policies keyed on the client's address do with a
    /// request that carries none (wins over
    /// [`RateLimitLayer::on_missing_peer_addr`](super::RateLimitLayer::on_missing_peer_addr); default
    /// [`MissingKey::Fail`]).
    pub fn on_missing_peer_addr(mut self, m: MissingKey) -> Self {
        self.missing.peer_addr = Some(m);
        self
    }

    /// Units one request costs (default 1).
    ///
    /// # Panics
    ///
    /// When `cost` is 0 (it was once rounded up to 1 silently; requests
    /// that should not count need no rule). A cost above a policy's burst,
    /// which no request could ever pay, panics when the layer is built.
    pub fn cost(mut self, cost: u32) -> Self {
        assert!(
            cost > 0,
            "RateRule::cost(0) on rule '{}': a request must cost at least 1 (requests that should not count need no rule)",
            self.name
        );
        self.cost = cost;
        self
    }

    pub(super) fn matches(&self, method: &Method, path: &str) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
            && self.pattern.as_ref().is_none_or(|p| p.matches(path))
    }
}

/// A policy name fit for a Structured Fields string: printable ASCII, no
/// quote or backslash.
fn sf_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .collect();
    if cleaned.is_empty() {
        "default".to_owned()
    } else {
        cleaned
    }
}
