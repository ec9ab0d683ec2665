use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::body::ResponseBody;
use super::fields::{Fields, RejectFn, Rejection, policy_field, too_many};
use super::future::{ResponseFuture, checking};
use super::key::{Key, KeySource};
use super::missing_key::{self, MissingKey};
use super::quota::{Decision, Quota};
use super::stats::RateLimitStats;
use super::store::{MemoryStore, PolicyRef, RateLimitStore};
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
    name: Arc<str>,
    quota: Quota,
    pattern: Option<Pattern>,
    methods: Option<Vec<Method>>,
    key: KeySource,
    cost: u32,
    /// More policies counted on the same requests (a daily cap beside a
    /// per-minute one, a global one beside a per-client one).
    extra: Vec<(Arc<str>, Quota, KeySource)>,
    missing: missing_key::Choices,
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

    fn policies(&self) -> impl Iterator<Item = (&Arc<str>, &Quota, &KeySource)> {
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
    /// [`RateLimitLayer::on_missing_key`]; see [`MissingKey`]).
    pub fn on_missing_key(mut self, m: MissingKey) -> Self {
        self.missing.key = Some(m);
        self
    }

    /// What this rule's policies keyed on the client's address do with a
    /// request that carries none (wins over
    /// [`RateLimitLayer::on_missing_peer_addr`]; default
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

    fn matches(&self, method: &Method, path: &str) -> bool {
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

pub(super) struct Config {
    /// Each rule with its policies (the rule's own first).
    pub(super) rules: Vec<(RateRule, Vec<PolicyRef>)>,
    /// Every policy, by its index (requests carry indices, not clones).
    pub(super) policies: Vec<PolicyRef>,
    /// The `RateLimit-Policy` value of each rule, written once, found by
    /// the index of the rule's first policy.
    pub(super) policy_fields: Vec<Option<HeaderValue>>,
    pub(super) ipv6_prefix: u8,
    /// What each policy does without a key, by policy index.
    pub(super) missing_key: Box<[MissingKey]>,
    pub(super) headers: bool,
    pub(super) legacy_headers: bool,
    pub(super) problem_json: bool,
    pub(super) reject: Option<RejectFn>,
    pub(super) shadow: bool,
}

/// Rate limiting per route and key with GCRA, answering 429 with
/// `Retry-After` and the IETF `RateLimit` fields.
///
/// See the [module docs](crate::rate_limit).
///
/// # Panics
///
/// Building the services ([`Layer::layer`]) or the statistics
/// ([`stats`](Self::stats)) panics, with a message naming the rule, when a
/// rule could never work: it costs more than a policy's burst, or it is
/// keyed on a header or a closure and no [`on_missing_key`](Self::on_missing_key)
/// was chosen for it, or a missing-key choice applies to no policy (see
/// [`MissingKey`]).
pub struct RateLimitLayer<St = MemoryStore> {
    store: Arc<St>,
    rules: Vec<RateRule>,
    ipv6_prefix: u8,
    missing: missing_key::Choices,
    headers: bool,
    legacy_headers: bool,
    problem_json: bool,
    reject: Option<RejectFn>,
    shadow: bool,
    built: std::sync::OnceLock<(Arc<Config>, RateLimitStats)>,
}

impl<St> std::fmt::Debug for RateLimitLayer<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl<St> Clone for RateLimitLayer<St> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            rules: self.rules.clone(),
            ipv6_prefix: self.ipv6_prefix,
            missing: self.missing,
            headers: self.headers,
            legacy_headers: self.legacy_headers,
            problem_json: self.problem_json,
            reject: self.reject.clone(),
            shadow: self.shadow,
            built: self.built.clone(),
        }
    }
}

impl Default for RateLimitLayer<MemoryStore> {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimitLayer<MemoryStore> {
    /// No rules yet, an in-memory store.
    pub fn new() -> Self {
        Self::with_store(MemoryStore::new())
    }
}

impl<St: RateLimitStore> RateLimitLayer<St> {
    /// No rules yet, counting in `store`.
    pub fn with_store(store: St) -> Self {
        Self {
            store: Arc::new(store),
            rules: Vec::new(),
            ipv6_prefix: 64,
            missing: missing_key::Choices::default(),
            headers: true,
            legacy_headers: false,
            problem_json: false,
            reject: None,
            shadow: false,
            built: std::sync::OnceLock::new(),
        }
    }

    fn changed(mut self) -> Self {
        self.built = std::sync::OnceLock::new();
        self
    }

    /// Adds a rule; the first rule that matches a request applies.
    pub fn rule(mut self, rule: RateRule) -> Self {
        self.rules.push(rule);
        self.changed()
    }

    /// IPv6 clients are grouped by this prefix (default /64; 128 keys
    /// each address apart, 0 puts every IPv6 client in one key).
    ///
    /// # Panics
    ///
    /// When `bits` is above 128 (it was once taken as 128 silently).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        assert!(
            bits <= 128,
            "RateLimitLayer::ipv6_prefix({bits}): an IPv6 prefix has at most 128 bits"
        );
        self.ipv6_prefix = bits;
        self.changed()
    }

    /// What policies keyed on a header or a closure do with a request that
    /// lacks the key, for rules that don't choose
    /// ([`RateRule::on_missing_key`]). No default: see [`MissingKey`].
    /// Requests without a client address are never this setting's business.
    pub fn on_missing_key(mut self, m: MissingKey) -> Self {
        self.missing.key = Some(m);
        self.changed()
    }

    /// What policies keyed on the client's address do with a request that
    /// carries none, for rules that don't choose
    /// ([`RateRule::on_missing_peer_addr`]). Default: [`MissingKey::Fail`],
    /// a 500 naming the fix.
    pub fn on_missing_peer_addr(mut self, m: MissingKey) -> Self {
        self.missing.peer_addr = Some(m);
        self.changed()
    }

    /// Whether to send `RateLimit-Policy` and `RateLimit` (on by default),
    /// on allowed and limited responses.
    pub fn headers(mut self, on: bool) -> Self {
        self.headers = on;
        self.changed()
    }

    /// Also send the legacy `X-RateLimit-Limit`, `X-RateLimit-Remaining`
    /// and `X-RateLimit-Reset` (seconds) fields.
    pub fn legacy_headers(mut self, on: bool) -> Self {
        self.legacy_headers = on;
        self.changed()
    }

    /// Answer 429 with an RFC 9457 `application/problem+json` body instead
    /// of a line of text.
    pub fn problem_json(mut self, on: bool) -> Self {
        self.problem_json = on;
        self.changed()
    }

    /// Build the 429 yourself (status, headers, body). `Retry-After` and
    /// the RateLimit fields are added unless your response has them.
    pub fn on_reject<F>(mut self, f: F) -> Self
    where
        F: Fn(&Rejection) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.reject = Some(Arc::new(f));
        self.changed()
    }

    /// Count, never reject: limited requests go through and are counted as
    /// limited.
    pub fn shadow(mut self, on: bool) -> Self {
        self.shadow = on;
        self.changed()
    }

    fn build(&self) -> &(Arc<Config>, RateLimitStats) {
        self.built.get_or_init(|| {
            let missing = missing_key::resolve(
                self.missing,
                self.rules.iter().map(|r| {
                    let policies = r.policies().map(|(name, _, source)| (&**name, source));
                    (&*r.name, r.missing, policies)
                }),
            );
            for rule in &self.rules {
                for (name, quota, _) in rule.policies() {
                    assert!(
                        rule.cost <= quota.burst(),
                        "rate limit rule '{}' costs {} a request, more than the burst of {} of its policy '{name}': no request could ever pass",
                        rule.name,
                        rule.cost,
                        quota.burst()
                    );
                }
            }
            let mut next = 0u16;
            let rules: Vec<(RateRule, Vec<PolicyRef>)> = self
                .rules
                .iter()
                .map(|r| {
                    let policies = r
                        .policies()
                        .map(|(name, quota, _)| {
                            let p = PolicyRef {
                                index: next,
                                name: name.clone(),
                                quota: *quota,
                            };
                            next = next.saturating_add(1);
                            p
                        })
                        .collect();
                    (r.clone(), policies)
                })
                .collect();
            let all: Vec<&PolicyRef> = rules.iter().flat_map(|(_, ps)| ps.iter()).collect();
            let stats = RateLimitStats::new(all.iter().map(|p| p.name.clone()).collect());
            let mut policy_fields = vec![None; all.len()];
            for (_, ps) in &rules {
                if let (Some(first), Some(hv)) = (ps.first(), policy_field(ps)) {
                    if let Some(slot) = policy_fields.get_mut(usize::from(first.index)) {
                        *slot = Some(hv);
                    }
                }
            }
            let policies: Vec<PolicyRef> = rules
                .iter()
                .flat_map(|(_, ps)| ps.iter().cloned())
                .collect();
            let config = Config {
                rules,
                policies,
                policy_fields,
                ipv6_prefix: self.ipv6_prefix,
                missing_key: missing.into(),
                headers: self.headers,
                legacy_headers: self.legacy_headers,
                problem_json: self.problem_json,
                reject: self.reject.clone(),
                shadow: self.shadow,
            };
            (Arc::new(config), stats)
        })
    }

    /// A handle to the counters (per policy, in rule order, a rule's own
    /// policy before its [`and_policy`](RateRule::and_policy) ones).
    pub fn stats(&self) -> RateLimitStats {
        self.build().1.clone()
    }
}

impl<S, St: RateLimitStore> Layer<S> for RateLimitLayer<St> {
    type Service = RateLimit<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        let (config, stats) = self.build().clone();
        RateLimit {
            inner,
            shared: Arc::new(Shared {
                store: self.store.clone(),
                config,
                stats,
            }),
        }
    }
}

/// What every clone of a [`RateLimit`] service shares: one reference
/// count per request, not three.
pub(super) struct Shared<St> {
    pub(super) store: Arc<St>,
    pub(super) config: Arc<Config>,
    pub(super) stats: RateLimitStats,
}

/// The service [`RateLimitLayer`] builds.
pub struct RateLimit<S, St = MemoryStore> {
    inner: S,
    shared: Arc<Shared<St>>,
}

impl<S: Clone, St> Clone for RateLimit<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug, St> std::fmt::Debug for RateLimit<S, St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, St> RateLimit<S, St> {
    crate::macros::define_inner_service_accessors!();
}

impl<S, St, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    St: RateLimitStore,
    St::Future: Unpin,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, St, S, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let config = &*shared.config;
        let found = config
            .rules
            .iter()
            .position(|(r, _)| r.matches(req.method(), req.uri().path()));
        let Some(i) = found else {
            return ResponseFuture::inner(self.inner.call(req), Fields::default());
        };
        let (rule, policies) = &config.rules[i];
        // The common case, one policy and a store that answers at once (the
        // memory store): decide here, no state kept for later.
        if let ([policy], Some((_, _, source))) = (policies.as_slice(), rule.policies().next()) {
            let key = match extract(shared, &req, source, policy) {
                Extracted::Key(k) => k,
                Extracted::Skip => {
                    return ResponseFuture::inner(self.inner.call(req), Fields::default());
                }
                Extracted::Deny(res) => return ResponseFuture::rejected(res),
            };
            if let Some(answer) = shared.store.check_at_once(policy, &key, rule.cost) {
                let d = answer.unwrap_or_else(|_| fail_open(policy));
                let c = &shared.stats.counters[usize::from(policy.index)];
                if d.allowed {
                    c.allowed.fetch_add(1, Relaxed);
                } else {
                    c.limited.fetch_add(1, Relaxed);
                    shared.stats.record_limited(usize::from(policy.index), &key);
                    if !config.shadow {
                        let decided = [(policy.index, d)];
                        return ResponseFuture::rejected(Box::new(too_many(
                            config, policy, &key, &d, &decided,
                        )));
                    }
                }
                let fields = Fields::new(config, &[(policy.index, d)]);
                return ResponseFuture::inner(self.inner.call(req), fields);
            }
            let checks = vec![shared.store.check(policy, &key, rule.cost)];
            let keys = vec![(policy.index, key)];
            return checking(
                &mut self.inner,
                &self.shared,
                req,
                checks,
                keys,
                false,
                rule.cost,
            );
        }
        let mut keys = Vec::with_capacity(policies.len());
        for ((_, _, source), policy) in rule.policies().zip(policies) {
            match extract(shared, &req, source, policy) {
                Extracted::Key(k) => keys.push((policy.index, k)),
                Extracted::Skip => {}
                Extracted::Deny(res) => return ResponseFuture::rejected(res),
            }
        }
        if keys.is_empty() {
            return ResponseFuture::inner(self.inner.call(req), Fields::default());
        }
        // One policy: count it at once. Several: look first, and count in
        // all of them only when all allow the request.
        let peek = keys.len() > 1;
        let checks: Vec<St::Future> = keys
            .iter()
            .map(|(i, k)| {
                let p = &config.policies[usize::from(*i)];
                if peek {
                    shared.store.peek(p, k, rule.cost)
                } else {
                    shared.store.check(p, k, rule.cost)
                }
            })
            .collect();
        checking(
            &mut self.inner,
            &self.shared,
            req,
            checks,
            keys,
            peek,
            rule.cost,
        )
    }
}

/// A rule's key for one request.
enum Extracted {
    Key(Key),
    /// No key, and [`MissingKey::Allow`] (or [`MissingKey::Fail`] in
    /// shadow mode): this policy doesn't apply.
    Skip,
    /// No key: the answer instead, the 500 of [`MissingKey::Fail`] or the
    /// 429 of [`MissingKey::Deny`].
    Deny(Box<Response<ResponseBody<()>>>),
}

fn extract<St, B>(
    shared: &Shared<St>,
    req: &Request<B>,
    source: &KeySource,
    policy: &PolicyRef,
) -> Extracted {
    let config = &*shared.config;
    if let Some(k) = source.extract(req, config.ipv6_prefix) {
        return Extracted::Key(k);
    }
    match config.missing_key[usize::from(policy.index)] {
        MissingKey::Fail => {
            missing_key::record_failure(&shared.stats.missing_key_failures, &policy.name);
            if config.shadow {
                // Shadow mode never rejects: the error log says it all.
                return Extracted::Skip;
            }
            let mut res = Response::new(ResponseBody::text(missing_key::FAIL_BODY));
            *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            res.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Extracted::Deny(Box::new(res))
        }
        MissingKey::Shared => Extracted::Key(Key::Text("unknown".into())),
        MissingKey::Allow => Extracted::Skip,
        MissingKey::Deny => {
            let decision = Decision {
                allowed: false,
                remaining: 0,
                reset: Duration::ZERO,
                retry_after: Duration::from_secs(1),
            };
            let unknown = Key::Text("unknown".into());
            shared.stats.counters[usize::from(policy.index)]
                .limited
                .fetch_add(1, Relaxed);
            shared
                .stats
                .record_limited(usize::from(policy.index), &unknown);
            Extracted::Deny(Box::new(too_many(
                config,
                policy,
                &unknown,
                &decision,
                &[(policy.index, decision)],
            )))
        }
    }
}

/// What a policy says when its store failed: go on (fail open; rate
/// limiting must not take the service down).
pub(super) fn fail_open(policy: &PolicyRef) -> Decision {
    Decision {
        allowed: true,
        remaining: policy.quota.burst(),
        reset: Duration::ZERO,
        retry_after: Duration::ZERO,
    }
}
