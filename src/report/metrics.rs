//! Prometheus text (format 0.0.4) for every layer a report reads.

use std::fmt::Write;

use super::Sources;

/// Writes one metric family: HELP, TYPE, then `name{labels} value` lines.
/// (Unused when timing is the only layer compiled in: it writes its own.)
#[cfg_attr(
    not(any(
        feature = "cache",
        feature = "compression",
        feature = "cache-control",
        feature = "rate-limit"
    )),
    allow(dead_code)
)]
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

#[cfg_attr(
    not(any(
        feature = "cache",
        feature = "compression",
        feature = "cache-control",
        feature = "rate-limit"
    )),
    allow(dead_code)
)]
impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Self { out, name }
    }

    fn value(&mut self, labels: &[(&str, &str)], v: u64) {
        let _ = write!(self.out, "{}", self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {v}");
    }
}

#[cfg_attr(
    not(any(
        feature = "cache",
        feature = "compression",
        feature = "cache-control",
        feature = "rate-limit"
    )),
    allow(dead_code)
)]
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[allow(unused_variables, unused_mut)]
pub(super) fn render(sources: &Sources) -> String {
    let mut out = String::new();
    #[cfg(feature = "timing")]
    if let Some(t) = &sources.timing {
        out.push_str(&t.prometheus());
    }
    #[cfg(feature = "cache")]
    if let Some(h) = &sources.cache {
        let s = h.stats().snapshot();
        let mut f = Family::new(
            &mut out,
            "tower_perf_cache_requests_total",
            "counter",
            "GET and HEAD requests by how the cache answered them.",
        );
        for (result, v) in [
            ("hit", s.hits),
            ("miss", s.misses),
            ("stale", s.stale_served),
            ("revalidated", s.revalidated_not_modified),
            ("modified", s.revalidated_modified),
            ("bypass", s.bypassed),
            ("gateway_timeout", s.gateway_timeouts),
        ] {
            f.value(&[("result", result)], v);
        }
        for (name, help, v) in [
            (
                "tower_perf_cache_stores_total",
                "Responses stored.",
                s.stores,
            ),
            (
                "tower_perf_cache_not_stored_total",
                "Responses that could not be stored.",
                s.not_stored,
            ),
            (
                "tower_perf_cache_aborted_total",
                "Bodies that failed or were dropped before their end.",
                s.aborted,
            ),
            (
                "tower_perf_cache_coalesced_total",
                "Requests that waited for another request's fetch.",
                s.coalesced,
            ),
            (
                "tower_perf_cache_invalidations_total",
                "URLs invalidated by unsafe methods.",
                s.invalidations,
            ),
            (
                "tower_perf_cache_purged_total",
                "URLs dropped by purges.",
                s.purged,
            ),
            (
                "tower_perf_cache_evictions_total",
                "Entries evicted to stay within the byte budget.",
                s.evictions,
            ),
            (
                "tower_perf_cache_store_errors_total",
                "Store operations that failed.",
                s.store_errors,
            ),
        ] {
            Family::new(&mut out, name, "counter", help).value(&[], v);
        }
        Family::new(
            &mut out,
            "tower_perf_cache_entries",
            "gauge",
            "URLs in the store.",
        )
        .value(&[], s.entries);
        Family::new(
            &mut out,
            "tower_perf_cache_size_bytes",
            "gauge",
            "Bytes in the store.",
        )
        .value(&[], s.bytes);
    }
    #[cfg(feature = "compression")]
    if let Some(c) = &sources.compression {
        let s = c.snapshot();
        let codings = [("gzip", s.gzip), ("deflate", s.deflate)];
        let mut f = Family::new(
            &mut out,
            "tower_perf_compression_responses_total",
            "counter",
            "Responses compressed.",
        );
        for (name, x) in codings {
            f.value(&[("coding", name)], x.responses);
        }
        let mut f = Family::new(
            &mut out,
            "tower_perf_compression_input_bytes_total",
            "counter",
            "Bytes before compression.",
        );
        for (name, x) in codings {
            f.value(&[("coding", name)], x.bytes_in);
        }
        let mut f = Family::new(
            &mut out,
            "tower_perf_compression_output_bytes_total",
            "counter",
            "Bytes after compression.",
        );
        for (name, x) in codings {
            f.value(&[("coding", name)], x.bytes_out);
        }
        let mut f = Family::new(
            &mut out,
            "tower_perf_compression_skipped_total",
            "counter",
            "Responses not compressed, by reason.",
        );
        for (reason, n) in &s.skipped {
            f.value(&[("reason", reason.as_str())], *n);
        }
        Family::new(
            &mut out,
            "tower_perf_compression_not_acceptable_total",
            "counter",
            "406 answers.",
        )
        .value(&[], s.not_acceptable);
    }
    #[cfg(feature = "cache-control")]
    if let Some(c) = &sources.cache_control {
        let s = c.snapshot();
        for (name, help, v) in [
            (
                "tower_perf_cache_control_etags_total",
                "ETags generated by hashing bodies.",
                s.etags_generated,
            ),
            (
                "tower_perf_cache_control_not_modified_total",
                "304 answers.",
                s.not_modified,
            ),
            (
                "tower_perf_cache_control_precondition_failed_total",
                "412 answers.",
                s.precondition_failed,
            ),
            (
                "tower_perf_cache_control_policies_total",
                "Responses given a Cache-Control by a rule.",
                s.policies_applied,
            ),
        ] {
            Family::new(&mut out, name, "counter", help).value(&[], v);
        }
    }
    #[cfg(feature = "rate-limit")]
    if let Some(r) = &sources.rate_limit {
        let policies = r.snapshot();
        let mut f = Family::new(
            &mut out,
            "tower_perf_rate_limit_requests_total",
            "counter",
            "Requests counted by a rate-limit policy, by decision.",
        );
        for p in &policies {
            f.value(&[("policy", &p.name), ("decision", "allowed")], p.allowed);
            f.value(&[("policy", &p.name), ("decision", "limited")], p.limited);
        }
    }
    #[cfg(feature = "redis")]
    if let Some(s) = &sources.redis_rate_limit {
        let s = s.snapshot();
        let mut f = Family::new(
            &mut out,
            "tower_perf_redis_rate_limit_operations_total",
            "counter",
            "Redis rate-limit store operations by outcome.",
        );
        for (outcome, v) in [
            ("checked", s.checks),
            ("denied_locally", s.local_denials),
            ("error", s.errors),
            ("timeout", s.timeouts),
            ("fallback", s.fallbacks),
        ] {
            f.value(&[("outcome", outcome)], v);
        }
    }
    #[cfg(feature = "redis")]
    if let Some(s) = &sources.redis_cache {
        let s = s.snapshot();
        let mut f = Family::new(
            &mut out,
            "tower_perf_redis_cache_operations_total",
            "counter",
            "Redis cache store operations by outcome.",
        );
        for (outcome, v) in [
            ("l1_hit", s.l1_hits),
            ("l2_hit", s.l2_hits),
            ("l2_miss", s.l2_misses),
            ("error", s.errors),
            ("timeout", s.timeouts),
            ("fallback", s.fallbacks),
            ("invalidation_published", s.invalidations_published),
            ("invalidation_received", s.invalidations_received),
        ] {
            f.value(&[("outcome", outcome)], v);
        }
    }
    out
}
