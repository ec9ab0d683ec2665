//! Route rules: path patterns, and the Cache-Control policies they assign.

use std::time::Duration;

use http::{HeaderValue, Method, StatusCode};

use crate::headers::CacheControl;
use crate::route_pattern::Pattern;

/// A Cache-Control value to assign, with the presets for common routes.
///
/// The presets that make a response storable ([`static_assets`](Self::static_assets),
/// [`api`](Self::api), [`monitoring`](Self::monitoring)) apply only where
/// a cache could reuse the answer: to `GET` and `HEAD` requests, and to the
/// statuses in [`Policy::CACHEABLE_STATUSES`]. A `201` answering a `POST`
/// on an `api` route gets no `max-age`. They write no `public`: `max-age`
/// already lets any cache store the response (RFC 9111 §3), and without
/// `public` a shared cache keeps its default of not storing answers to
/// requests that carry `Authorization` (§3.5). [`no_cache`](Self::no_cache),
/// [`no_store`](Self::no_store) and [`Policy::new`] apply to every request
/// and status their rule matches.
///
/// ```
/// use std::time::Duration;
/// use http::{Method, StatusCode};
/// use tower_perf::cache_control::Policy;
///
/// assert_eq!(Policy::static_assets().to_string(), "max-age=31536000, immutable");
/// let api = Policy::api(Duration::from_secs(300));
/// assert_eq!(api.to_string(), "max-age=300");
/// assert!(api.applies_to(&Method::GET, StatusCode::OK));
/// assert!(!api.applies_to(&Method::POST, StatusCode::CREATED));
/// assert!(!api.applies_to(&Method::GET, StatusCode::FOUND));
/// assert_eq!(Policy::monitoring().to_string(), "max-age=60");
/// assert_eq!(Policy::no_cache().to_string(), "no-cache");
/// assert!(Policy::no_store().applies_to(&Method::POST, StatusCode::CREATED));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    value: CacheControl,
    header: HeaderValue,
    private_header: Option<HeaderValue>,
    /// Only GET and HEAD, and only [`Policy::CACHEABLE_STATUSES`].
    cacheable_only: bool,
}

impl Policy {
    /// The statuses the storable presets apply to: those RFC 9110 §15.1
    /// lets a cache reuse without explicit freshness (200, 203, 204, 206,
    /// 300, 301, 308, 404, 405, 410, 414, 501), and 304, which refreshes a
    /// stored 200 (RFC 9111 §4.3.4) and so must carry its policy. Errors
    /// among them still get a rule's policy only through
    /// [`Rule::on_error`]; 302, 303, 307 and 201, say, never get one.
    pub const CACHEABLE_STATUSES: [u16; 13] = [
        200, 203, 204, 206, 300, 301, 304, 308, 404, 405, 410, 414, 501,
    ];

    /// Any Cache-Control value, for every request and status its rule
    /// matches (narrow them with [`Rule::methods`] and [`Rule::statuses`]).
    pub fn new(value: CacheControl) -> Self {
        let header = value.to_header_value();
        Self {
            value,
            header,
            private_header: None,
            cacheable_only: false,
        }
    }

    /// A storable preset: GET and HEAD, cacheable statuses only.
    fn storable(value: CacheControl) -> Self {
        Self {
            cacheable_only: true,
            ..Self::new(value)
        }
    }

    /// Fingerprinted static files: `max-age=31536000, immutable` (one
    /// year, never revalidated while fresh), on GET and HEAD answers with a
    /// [cacheable status](Self::CACHEABLE_STATUSES).
    ///
    /// No `public`: a shared cache then doesn't store answers to requests
    /// with `Authorization`. If your assets are the same for everyone and
    /// such requests should be shared, write the value yourself with
    /// [`Policy::new`].
    pub fn static_assets() -> Self {
        Self::storable(
            CacheControl::new()
                .with_max_age(Duration::from_secs(31_536_000))
                .with_immutable(),
        )
    }

    /// API responses fresh for `ttl`: `max-age=N`, on GET and HEAD answers
    /// with a [cacheable status](Self::CACHEABLE_STATUSES) (never on the
    /// `201` to a `POST`). A request that carries `Authorization` gets
    /// `private, max-age=N` instead, so a shared cache never hands one
    /// user's answer to another (RFC 9111 §3.5).
    pub fn api(ttl: Duration) -> Self {
        let private = CacheControl::new().with_private().with_max_age(ttl);
        Self {
            private_header: Some(private.to_header_value()),
            ..Self::storable(CacheControl::new().with_max_age(ttl))
        }
    }

    /// Monitoring data: `max-age=60`, on GET and HEAD answers with a
    /// [cacheable status](Self::CACHEABLE_STATUSES).
    pub fn monitoring() -> Self {
        Self::storable(CacheControl::new().with_max_age(Duration::from_secs(60)))
    }

    /// Health checks and anything that must be revalidated on every use:
    /// `no-cache`, on every answer its rule matches.
    pub fn no_cache() -> Self {
        Self::new(CacheControl::new().with_no_cache())
    }

    /// Never stored anywhere: `no-store`, on every answer its rule matches.
    pub fn no_store() -> Self {
        Self::new(CacheControl::new().with_no_store())
    }

    /// The Cache-Control this policy writes.
    pub fn value(&self) -> &CacheControl {
        &self.value
    }

    /// Whether this policy goes on the answer with `status` to a `method`
    /// request (a rule's own methods and statuses aside).
    pub fn applies_to(&self, method: &Method, status: StatusCode) -> bool {
        !self.cacheable_only
            || ((method == Method::GET || method == Method::HEAD)
                && Self::CACHEABLE_STATUSES.contains(&status.as_u16()))
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
    ///
    /// # Panics
    ///
    /// When the range holds no HTTP status (`first` above `last`, or
    /// outside 100..=999): the rule would never apply.
    pub fn statuses(mut self, first: u16, last: u16) -> Self {
        assert!(
            first <= last && first <= 999 && last >= 100,
            "cache-control Rule::statuses({first}, {last}): the range holds no HTTP status (100 to 999), so the rule would never apply"
        );
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

    /// Panics when a storable preset could never apply under this rule's
    /// methods or statuses: the rule would silently do nothing.
    pub(crate) fn assert_can_apply(&self) {
        for p in [&self.policy, &self.error_policy].into_iter().flatten() {
            if !p.cacheable_only {
                continue;
            }
            if let Some(methods) = &self.methods {
                assert!(
                    methods
                        .iter()
                        .any(|m| m == Method::GET || m == Method::HEAD),
                    "cache-control rule for {:?}: the policy `{p}` applies only to GET and HEAD, \
                     and the rule matches only {methods:?}, so it would never apply \
                     (write the value with Policy::new to put it on other methods)",
                    self.pattern
                );
            }
            if let Some((first, last)) = self.statuses {
                assert!(
                    Policy::CACHEABLE_STATUSES
                        .iter()
                        .any(|s| (first..=last).contains(s)),
                    "cache-control rule for {:?}: the policy `{p}` applies only to the statuses \
                     in Policy::CACHEABLE_STATUSES, none of which is in {first}..={last}, so it \
                     would never apply (write the value with Policy::new)",
                    self.pattern
                );
            }
        }
    }

    /// The policy for the answer with `status` to a `method` request, if
    /// this rule gives one.
    pub(crate) fn policy_for(&self, method: &Method, status: StatusCode) -> Option<&Policy> {
        self.policy_by_status(status)
            .filter(|p| p.applies_to(method, status))
    }

    fn policy_by_status(&self, status: StatusCode) -> Option<&Policy> {
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
        assert!(r.policy_for(&Method::GET, StatusCode::OK).is_some());
        assert!(
            r.policy_for(&Method::GET, StatusCode::NOT_MODIFIED)
                .is_some()
        );
        assert!(r.policy_for(&Method::GET, StatusCode::NOT_FOUND).is_none());
        assert!(
            r.policy_for(&Method::GET, StatusCode::INTERNAL_SERVER_ERROR)
                .is_none()
        );
        let r = r.on_error(Policy::no_store());
        assert_eq!(
            r.policy_for(&Method::GET, StatusCode::NOT_FOUND),
            Some(&Policy::no_store())
        );
        let only_200 = Rule::new("/x")
            .policy(Policy::monitoring())
            .statuses(200, 200);
        assert!(only_200.policy_for(&Method::GET, StatusCode::OK).is_some());
        assert!(
            only_200
                .policy_for(&Method::GET, StatusCode::CREATED)
                .is_none()
        );
    }

    #[test]
    fn api_goes_private_with_authorization() {
        let p = Policy::api(Duration::from_secs(300));
        assert_eq!(p.header_for(false), "max-age=300");
        assert_eq!(p.header_for(true), "private, max-age=300");
        assert_eq!(
            Policy::static_assets().header_for(true),
            "max-age=31536000, immutable"
        );
    }

    #[test]
    fn storable_presets_only_on_safe_methods_and_cacheable_statuses() {
        let r = Rule::new("/api/**").policy(Policy::api(Duration::from_secs(300)));
        assert!(r.policy_for(&Method::GET, StatusCode::OK).is_some());
        assert!(r.policy_for(&Method::HEAD, StatusCode::OK).is_some());
        assert!(
            r.policy_for(&Method::GET, StatusCode::NOT_MODIFIED)
                .is_some()
        );
        assert!(
            r.policy_for(&Method::GET, StatusCode::MOVED_PERMANENTLY)
                .is_some()
        );
        for (method, status) in [
            (Method::POST, StatusCode::CREATED),
            (Method::POST, StatusCode::OK),
            (Method::PUT, StatusCode::OK),
            (Method::DELETE, StatusCode::NO_CONTENT),
            (Method::OPTIONS, StatusCode::OK),
            (Method::GET, StatusCode::CREATED),
            (Method::GET, StatusCode::ACCEPTED),
            (Method::GET, StatusCode::FOUND),
            (Method::GET, StatusCode::SEE_OTHER),
            (Method::GET, StatusCode::TEMPORARY_REDIRECT),
        ] {
            assert!(r.policy_for(&method, status).is_none(), "{method} {status}");
        }
        // Errors: only through on_error, and only the cacheable ones.
        let r = r.on_error(Policy::monitoring());
        assert!(r.policy_for(&Method::GET, StatusCode::NOT_FOUND).is_some());
        assert!(
            r.policy_for(&Method::GET, StatusCode::SERVICE_UNAVAILABLE)
                .is_none()
        );
        // no-store and no-cache go everywhere their rule matches.
        let r = Rule::new("/x").policy(Policy::no_store());
        assert!(r.policy_for(&Method::POST, StatusCode::CREATED).is_some());
    }

    #[test]
    #[should_panic(expected = "Rule::statuses(400, 200)")]
    fn an_empty_status_range_panics() {
        let _ = Rule::new("/x").statuses(400, 200);
    }

    #[test]
    #[should_panic(expected = "applies only to GET and HEAD")]
    fn a_preset_on_unsafe_methods_only_panics() {
        Rule::new("/api/**")
            .methods([Method::POST])
            .policy(Policy::api(Duration::from_secs(60)))
            .assert_can_apply();
    }

    #[test]
    #[should_panic(expected = "none of which is in 502..=599")]
    fn a_preset_on_uncacheable_statuses_only_panics() {
        Rule::new("/api/**")
            .statuses(502, 599)
            .on_error(Policy::monitoring())
            .assert_can_apply();
    }
}
