//! The answers' fields: `RateLimit-Policy` and `RateLimit`
//! (draft-ietf-httpapi-ratelimit-headers-10), the legacy `X-RateLimit-*`
//! trio, `Retry-After`, and the 429 itself (text, problem+json, or the
//! application's own).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Response, StatusCode};

use super::body::ResponseBody;
use super::key::Key;
use super::layer::Config;
use super::quota::Decision;
use super::store::PolicyRef;

/// What a custom rejection sees.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The policy that said no.
    pub policy: String,
    /// The key it counted (an IP, an API key, `global`, `unknown`).
    pub key: String,
    /// Until one request would be allowed.
    pub retry_after: Duration,
    /// The policy's quota (requests at once).
    pub limit: u32,
}

/// Builds the answer to a limited request; the layer adds `Retry-After`
/// (and the RateLimit fields, if on) unless the response has them.
pub type RejectFn = Arc<dyn Fn(&Rejection) -> Response<Bytes> + Send + Sync>;

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `t` of the RateLimit field: until the quota is whole again, or, on a
/// 429, until the next request may go (the same as `Retry-After`).
fn t_secs(d: &Decision) -> u64 {
    if d.allowed {
        ceil_secs(d.reset)
    } else {
        ceil_secs(d.retry_after).max(1)
    }
}

/// The RateLimit fields (Structured Fields lists, one member per policy)
/// and, if asked, the legacy trio for the most constrained policy: worked
/// out when the decision is made, written on the response when it comes.
#[derive(Default)]
pub(super) struct Fields {
    policy: Option<HeaderValue>,
    ratelimit: Option<HeaderValue>,
    legacy: Option<Box<[HeaderValue; 3]>>,
}

impl Fields {
    #[inline]
    pub(super) fn new(config: &Config, decided: &[(u16, Decision)]) -> Self {
        if !config.headers && !config.legacy_headers {
            return Self::default();
        }
        Self::work_out(config, decided)
    }

    fn work_out(config: &Config, decided: &[(u16, Decision)]) -> Self {
        let mut fields = Self::default();
        let Some((first, _)) = decided.first() else {
            return fields;
        };
        if config.headers {
            fields.policy = config
                .policy_fields
                .get(usize::from(*first))
                .and_then(Option::as_ref)
                .cloned();
            let mut v = String::with_capacity(
                decided
                    .iter()
                    .map(|(p, _)| config.policies[usize::from(*p)].name.len() + 34)
                    .sum(),
            );
            for (i, (p, d)) in decided.iter().enumerate() {
                let p = &config.policies[usize::from(*p)];
                if i > 0 {
                    v.push_str(", ");
                }
                v.push('"');
                v.push_str(&p.name);
                v.push_str("\";r=");
                push_num(&mut v, u64::from(d.remaining));
                v.push_str(";t=");
                push_num(&mut v, t_secs(d));
            }
            fields.ratelimit = HeaderValue::from_maybe_shared(Bytes::from(v)).ok();
        }
        if config.legacy_headers {
            let most = decided.iter().min_by_key(|(_, d)| (d.allowed, d.remaining));
            if let Some((p, d)) = most {
                let p = &config.policies[usize::from(*p)];
                fields.legacy = Some(Box::new([
                    HeaderValue::from(p.quota.burst()),
                    HeaderValue::from(d.remaining),
                    HeaderValue::from(t_secs(d)),
                ]));
            }
        }
        fields
    }

    #[inline]
    pub(super) fn write(self, h: &mut HeaderMap) {
        if self.policy.is_none() && self.ratelimit.is_none() && self.legacy.is_none() {
            return;
        }
        self.write_all(h);
    }

    fn write_all(self, h: &mut HeaderMap) {
        if let Some(v) = self.policy {
            h.insert(RATELIMIT_POLICY, v);
        }
        if let Some(v) = self.ratelimit {
            h.insert(RATELIMIT, v);
        }
        if let Some(legacy) = self.legacy {
            let [limit, remaining, reset] = *legacy;
            h.insert(X_LIMIT, limit);
            h.insert(X_REMAINING, remaining);
            h.insert(X_RESET, reset);
        }
    }
}

/// Appends `n` in decimal, without the formatting machinery.
#[inline]
fn push_num(s: &mut String, n: u64) {
    s.push_str(itoa::Buffer::new().format(n));
}

const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The 429 for `policy` (the one that said no), with every policy's fields.
pub(super) fn too_many<B>(
    config: &Config,
    policy: &PolicyRef,
    key: &Key,
    d: &Decision,
    decided: &[(u16, Decision)],
) -> Response<ResponseBody<B>> {
    let retry = ceil_secs(d.retry_after).max(1);
    let mut res = if let Some(f) = &config.reject {
        let rejection = Rejection {
            policy: policy.name.to_string(),
            key: key.to_string(),
            retry_after: d.retry_after,
            limit: policy.quota.burst(),
        };
        f(&rejection).map(ResponseBody::bytes)
    } else if config.problem_json {
        let body = format!(
            "{{\"type\":\"about:blank\",\"title\":\"Too Many Requests\",\"status\":429,\"detail\":\"Quota '{}' exceeded; retry in {} s.\",\"retry_after\":{}}}",
            policy.name, retry, retry
        );
        let mut res = Response::new(ResponseBody::bytes(Bytes::from(body)));
        *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        res.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        res
    } else {
        let mut res = Response::new(ResponseBody::text("rate limit exceeded\n"));
        *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        res.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        res
    };
    let h = res.headers_mut();
    if !h.contains_key(RETRY_AFTER) {
        // Whole seconds, rounded up, never 0.
        h.insert(RETRY_AFTER, HeaderValue::from(retry));
    }
    if !h.contains_key(RATELIMIT) {
        Fields::new(config, decided).write(h);
    }
    res
}

/// The `RateLimit-Policy` value of a rule: one member per policy, the
/// rule's own first.
pub(super) fn policy_field(ps: &[PolicyRef]) -> Option<HeaderValue> {
    let mut v = String::new();
    for (i, p) in ps.iter().enumerate() {
        if i > 0 {
            v.push_str(", ");
        }
        v.push('"');
        v.push_str(&p.name);
        v.push_str("\";q=");
        push_num(&mut v, u64::from(p.quota.burst()));
        v.push_str(";w=");
        push_num(&mut v, p.quota.period().as_secs().max(1));
    }
    HeaderValue::try_from(v).ok()
}
