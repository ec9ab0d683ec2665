//! The layer: the builder of the rule table and its settings, and the
//! table it builds once for every service it makes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::Response;
use http::header::HeaderValue;
use tower_layer::Layer;

use super::fields::{RejectFn, Rejection, policy_field};
use super::missing_key::{self, MissingKey};
use super::rule::RateRule;
use super::service::{RateLimit, Shared};
use super::stats::{Counters, RateLimitStats};
use super::store::{MemoryStore, PolicyRef, RateLimitStore};

/// The rule table a layer builds once, and every service it makes reads.
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

/// The table of one layer and its clones, built once.
#[derive(Default)]
struct Built {
    table: OnceLock<(Arc<Config>, Counters)>,
    /// Whether a service was made with the table: from then on its
    /// counters are the running services', and the handles taken so far
    /// must stay with them.
    layered: AtomicBool,
}

/// Rate limiting per route and key with GCRA, answering 429 with
/// `Retry-After` and the IETF `RateLimit` fields.
///
/// See the [module docs](crate::rate_limit).
///
/// # Clones share the store
///
/// A clone, and every layer made from it by builder calls, counts in the
/// same store as the original: the quotas' state is shared, even between
/// layers with different rules. The [`MemoryStore`] tells policies apart
/// by their place in the rule table (the first policy of one layer and the
/// first of another share each key's bucket), a Redis store by their name.
/// For layers that limit apart, give each its own store with
/// [`with_store`](Self::with_store). (The [statistics](Self::stats) are
/// another matter: a layer changed by a builder call counts them apart.)
///
/// # Panics
///
/// Building the services ([`Layer::layer`]) panics, with a message naming
/// the rule, when a rule could never work: it costs more than a policy's burst, or it is
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
    /// The table, built once for this layer and its clones (a builder
    /// call starts a new one).
    built: Arc<Built>,
    /// What [`stats`](Self::stats) hands out: kept through builder calls,
    /// pointed at each new table's counters when it is built.
    stats: RateLimitStats,
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
            stats: self.stats.clone(),
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
    /// No rules yet, counting in `store`. Clones of the layer, and layers
    /// made from them, count in the same store (see
    /// [Clones share the store](Self#clones-share-the-store)).
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
            built: Arc::default(),
            stats: RateLimitStats::new(),
        }
    }

    fn changed(mut self) -> Self {
        // Services made already, or a clone that lives on, keep the handles
        // taken so far; this layer, now a different one, counts apart. (The
        // clone count errs on the safe side: a clone dropped meanwhile on
        // another thread only makes this layer count apart.)
        if self.built.layered.load(Ordering::Acquire) || Arc::strong_count(&self.built) > 1 {
            self.stats = RateLimitStats::new();
        }
        self.built = Arc::default();
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

    fn build(&self) -> &(Arc<Config>, Counters) {
        self.built.table.get_or_init(|| {
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
            let counters = Counters::new(
                all.iter().map(|p| p.name.clone()).collect(),
                self.shadow,
            );
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
            self.stats.attach(counters.clone());
            (Arc::new(config), counters)
        })
    }

    /// A handle to the counters (per policy, in rule order, a rule's own
    /// policy before its [`and_policy`](RateRule::and_policy) ones).
    ///
    /// A handle follows the layer until the layer wraps a service; builder
    /// calls after that start new statistics for the new layer. So a handle
    /// taken before the last rule is added still reads what the finished
    /// layer's services count, and a handle taken from a layer that already
    /// serves stays with those services whatever the layer becomes next.
    /// A clone changed by a builder call while the original lives on is a
    /// different layer too: it counts apart.
    ///
    /// Taking it builds nothing (the layer may not be finished yet): it
    /// reads an empty table until [`Layer::layer`] builds the services.
    pub fn stats(&self) -> RateLimitStats {
        self.stats.clone()
    }
}

impl<S, St: RateLimitStore> Layer<S> for RateLimitLayer<St> {
    type Service = RateLimit<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        let (config, stats) = self.build().clone();
        self.built.layered.store(true, Ordering::Release);
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
