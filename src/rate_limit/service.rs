//! The service: finds the rule a request falls under, its keys, and asks
//! the store, deciding inside `call` when the store can answer at once.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::ResponseBody;
use super::fields::{Fields, too_many};
use super::future::{ResponseFuture, checking};
use super::key::{Key, KeySource};
use super::layer::{Config, RateLimitLayer};
use super::missing_key::{self, MissingKey};
use super::quota::Decision;
use super::rule::RateRule;
use super::stats::{Counters, RateLimitStats};
use super::store::{MemoryStore, PolicyRef, RateLimitStore};

/// What every clone of a [`RateLimit`] service shares: one reference
/// count per request, not three.
pub(super) struct Shared<St> {
    pub(super) store: Arc<St>,
    pub(super) config: Arc<Config>,
    pub(super) stats: Counters,
}

/// The service [`RateLimitLayer`] builds.
pub struct RateLimit<S, St = MemoryStore> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared<St>>,
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

impl<S> RateLimit<S, MemoryStore> {
    /// Wraps `inner` in one rule, counted in memory (a layer with
    /// [`RateLimitLayer::rule`] says the same with more rules and
    /// settings).
    ///
    /// # Panics
    ///
    /// As [`Layer::layer`](tower_layer::Layer::layer) on the layer does: if the rule costs more
    /// than the burst of one of its policies.
    pub fn new(inner: S, rule: RateRule) -> Self {
        tower_layer::Layer::layer(&RateLimitLayer::new().rule(rule), inner)
    }

    /// A [`RateLimitLayer`] counting in memory, with no rules yet.
    pub fn layer() -> RateLimitLayer {
        RateLimitLayer::new()
    }
}

impl<S, St> RateLimit<S, St> {
    /// The statistics this service counts into, shared with every service
    /// its layer built.
    pub fn stats(&self) -> RateLimitStats {
        RateLimitStats::attached(self.shared.stats.clone())
    }

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
                shared.stats.count(policy.index, &key, d.allowed);
                traced(policy, &key, &d, rule.cost, config.shadow);
                if !d.allowed && !config.shadow {
                    let decided = [(policy.index, d)];
                    return ResponseFuture::rejected(Box::new(too_many(
                        config, policy, &key, &d, &decided,
                    )));
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
    /// No key, and [`MissingKey::Allow`] (or [`MissingKey::Fail`] or
    /// [`MissingKey::Deny`] in shadow mode): this policy doesn't apply.
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
            missing_key::record_failure(
                &shared.stats.missing_key_failures,
                &policy.name,
                config.shadow,
            );
            if config.shadow {
                // Shadow mode never rejects: the error log says it all.
                return Extracted::Skip;
            }
            Extracted::Deny(Box::new(missing_key::failure_response()))
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
            shared.stats.count(policy.index, &unknown, false);
            traced(policy, &unknown, &decision, 1, config.shadow);
            if config.shadow {
                // Shadow mode never rejects: counted as limited, let through.
                return Extracted::Skip;
            }
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

/// Tells `tracing` of the deciding policy's decision: the policy and
/// `allowed` or `limited` on the request's span (in shadow mode, `limited`
/// as the statistics count it: it would have been), and a `debug` event
/// when this request left the key fewer than `cost` requests, so the
/// next one is refused: once per exhaustion, not once per 429. A key
/// from a header or a closure (an API key, a user id) is not logged.
pub(super) fn traced(policy: &PolicyRef, key: &Key, d: &Decision, cost: u32, shadow: bool) {
    crate::trace::record(crate::trace::field::RATE_LIMIT_POLICY, &*policy.name);
    crate::trace::record(
        crate::trace::field::RATE_LIMIT_DECISION,
        if d.allowed { "allowed" } else { "limited" },
    );
    if d.allowed && d.remaining < cost {
        let (key, kind) = match key {
            Key::Ip(ip) => (Some(*ip), "address"),
            Key::Text(_) => (None, "text"),
            Key::Global => (None, "global"),
        };
        tracing::debug!(
            policy = &*policy.name,
            key = key.map(tracing::field::display),
            key_kind = kind,
            shadow,
            "rate limit reached: this key's next request is refused until the quota refills \
             (in shadow mode, it would be)"
        );
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
