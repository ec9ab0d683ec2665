//! Route rules: path patterns, and the Cache-Control policies they assign.

use std::time::Duration;

use http::{HeaderValue, Method, StatusCode};

use crate::headers::CacheControl;
use crate::route_pattern::Pattern;

/// A Cache-Control value to assign, with the presets for common routes.
///
/// ```
/// use std::time::Duration;
/// use tower_perf::cache_control::Policy;
///
/// assert_eq!(Policy::static_assets().to_string(), "public, max-age=31536000, immutable");
/// assert_eq!(Policy::api(Duration::from_secs(300)).to_string(), "public, max-age=300");
/// assert_eq!(Policy::monitoring().to_string(), "max-age=60");
/// assert_eq!(Policy::no_cache().to_string(), "no-cache");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    value: CacheControl,
    header: HeaderValue,
    private_header: Option<HeaderValue>,
}

impl Policy {
    /// Any Cache-Control value.
    pub fn new(value: CacheControl) -> Self {
        let header = value.to_header_value();
        Self {
            value,
            header,
            private_header: None,
        }
    }

    /// Fingerprinted static files: `public, max-age=31536000, immutable`
    /// (one year, never revalidated while fresh).
    pub fn static_assets() -> Self {
        Self::new(
            CacheControl::new()
                .with_public()
                .with_max_age(Duration::from_secs(31_536_000))
                .with_immutable(),
        )
    }

    /// API responses fresh for `ttl`: `public, max-age=N`. A request that
    /// carries `Authorization` gets `private, max-age=N` instead, so a shared
    /// cache never hands one user's answer to another (RFC 9111 §3.5).
    pub fn api(ttl: Duration) -> Self {
        let public = Self::new(CacheControl::new().with_public().with_max_age(ttl));
        let private = CacheControl::new().with_private().with_max_age(ttl);
        Self {
            private_header: Some(private.to_header_value()),
            ..public
        }
    }

    /// Monitoring data: `max-age=60`.
    pub fn monitoring() -> Self {
        Self::new(CacheControl::new().with_max_age(Duration::from_secs(60)))
    }

    /// Health checks and anything that must be revalidated on every use:
    /// `no-cache`.
    pub fn no_cache() -> Self {
        Self::new(CacheControl::new().with_no_cache())
    }

    /// Never stored anywhere: `no-store`.
    pub fn no_store() -> Self {
        Self::new(CacheControl::new().with_no_store())
    }

    /// The Cache-Control this policy writes.
    pub fn value(&self) -> &CacheControl {
        &self.value
    }

    pub(crate) fn header_for(&self, authorized: bool) -> &HeaderValue {
        match (&self.private_header, authorized) {
            (Some(private), true) => private,
            _ => &self.header,
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value.fmt(f)
    }
}

/// One line of the rule table: which requests and responses, and what
/// Cache-Control they get.
///
/// ```
/// use http::Method;
/// use tower_perf::cache_control::{Policy, Rule};
///
/// let rule = Rule::new("/static/**")
///     .methods([Method::GET, Method::HEAD])
///     .policy(Policy::static_assets())
///     .on_error(Policy::no_store());
/// # let _ = rule;
/// ```
#[derive(Debug, Clone)]
pub struct Rule {
    pattern: Pattern,
    methods: Option<Vec<Method>>,
    statuses: Option<(u16, u16)>,
    policy: Option<Policy>,
    error_policy: Option<Policy>,
    override_handler: bool,
}

impl Rule {
    /// A rule for paths matching `pattern`: an exact path (`/health`), a
    /// glob where `*` matches within one segment (`/assets/*.js`) and `**`
    /// any number of segments (`/static/**`), or a route as axum writes it:
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
    pub fn new(pattern: &str) -> Self {
        Self::with_pattern(Pattern::parse(pattern))
    }

    /// A rule for every path that starts with `prefix` (byte-wise).
    ///
    /// # Panics
    ///
    /// When `prefix` can never match a request path (empty, not starting
    /// with `/`, a character no request path holds) or holds a brace
    /// (axum's `{param}` segments belong in [`new`](Self::new)).
    pub fn prefix(prefix: &str) -> Self {
        Self::with_pattern(Pattern::prefix(prefix))
    }

    fn with_pattern(pattern: Pattern) -> Self {
        Self {
            pattern,
            methods: None,
            statuses: None,
            policy: None,
            error_policy: None,
            override_handler: false,
        }
    }

    /// Only for these methods (default: any).
    pub fn methods<I: IntoIterator<Item = Method>>(mut self, methods: I) -> Self {
        self.methods = Some(methods.into_iter().collect());
        self
    }

    /// Only for statuses in `first..=last` (default: every status below 400;
    /// see [`on_error`](Self::on_error) for errors).
    pub fn statuses(mut self, first: u16, last: u16) -> Self {
        self.statuses = Some((first, last));
        self
    }

    /// The policy for matching successful (and 3xx) responses.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The policy for matching 4xx/5xx responses. Without one they get no
    /// Cache-Control from this rule: a year-long `static_assets()` policy
    /// must never stick to a 404.
    pub fn on_error(mut self, policy: Policy) -> Self {
        self.error_policy = Some(policy);
        self
    }

    /// Replace a Cache-Control the handler set itself (by default the
    /// handler's wins).
    pub fn override_handler(mut self) -> Self {
        self.override_handler = true;
        self
    }

    pub(crate) fn matches_request(&self, method: &Method, path: &str) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method)) && self.pattern.matches(path)
    }

    /// The policy for a response status, if this rule gives one.
    pub(crate) fn policy_for(&self, status: StatusCode) -> Option<&Policy> {
        let code = status.as_u16();
        let error = status.is_client_error() || status.is_server_error();
        match self.statuses {
            Some((first, last)) if (first..=last).contains(&code) => {
                if error {
                    self.error_policy.as_ref().or(self.policy.as_ref())
                } else {
                    self.policy.as_ref()
                }
            }
            Some(_) => None,
            None if error => self.error_policy.as_ref(),
            None => self.policy.as_ref(),
        }
    }

    pub(crate) const fn overrides_handler(&self) -> bool {
        self.override_handler
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_get_no_policy_unless_given_one() {
        let r = Rule::new("/static/**").policy(Policy::static_assets());
        assert!(r.policy_for(StatusCode::OK).is_some());
        assert!(r.policy_for(StatusCode::NOT_MODIFIED).is_some());
        assert!(r.policy_for(StatusCode::NOT_FOUND).is_none());
        assert!(r.policy_for(StatusCode::INTERNAL_SERVER_ERROR).is_none());
        let r = r.on_error(Policy::no_store());
        assert_eq!(
            r.policy_for(StatusCode::NOT_FOUND),
            Some(&Policy::no_store())
        );
        let only_200 = Rule::new("/x")
            .policy(Policy::monitoring())
            .statuses(200, 200);
        assert!(only_200.policy_for(StatusCode::OK).is_some());
        assert!(only_200.policy_for(StatusCode::CREATED).is_none());
    }

    #[test]
    fn api_goes_private_with_authorization() {
        let p = Policy::api(Duration::from_secs(300));
        assert_eq!(p.header_for(false), "public, max-age=300");
        assert_eq!(p.header_for(true), "private, max-age=300");
        assert_eq!(
            Policy::static_assets().header_for(true),
            "public, max-age=31536000, immutable"
        );
    }
}
