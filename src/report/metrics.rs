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

/// One counter family with one label, a value per row.
#[cfg(any(feature = "cache", feature = "redis"))]
fn by_label(out: &mut String, name: &'static str, help: &str, label: &str, rows: &[(&str, u64)]) {
    let mut f = Family::new(out, name, "counter", help);
    for (l, v) in rows {
        f.value(&[(label, l)], *v);
    }
}

/// One family per row, each a single unlabelled value of `kind`.
#[cfg(any(feature = "cache", feature = "compression", feature = "cache-control"))]
fn singles(out: &mut String, kind: &str, rows: &[(&'static str, &str, u64)]) {
    for (name, help, v) in rows {
        Family::new(out, name, kind, help).value(&[], *v);
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
        by_label(
            &mut out,
            "tower_perf_cache_requests_total",
            "GET and HEAD requests by how the cache answered them.",
            "result",
            &[
                ("hit", s.hits),
                ("miss", s.misses),
                ("stale", s.stale_served),
                ("revalidated", s.revalidated_not_modified),
                ("modified", s.revalidated_modified),
                ("bypass", s.bypassed),
                ("gateway_timeout", s.gateway_timeouts),
            ],
        );
        singles(
            &mut out,
            "counter",
            &[
                (
                    "tower_perf_cache_stores_total",
                    "Responses stored.",
                    s.stores,
                ),
                (
                    "tower_perf_cache_rejected_total",
                    "Requests answered 400 for a missing, repeated or invalid Host.",
                    s.rejected,
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
            ],
        );
        singles(
            &mut out,
            "gauge",
            &[
                ("tower_perf_cache_entries", "URLs in the store.", s.entries),
                (
                    "tower_perf_cache_size_bytes",
                    "Bytes in the store.",
                    s.bytes,
                ),
            ],
        );
    }
    #[cfg(feature = "compression")]
    if let Some(c) = &sources.compression {
        let s = c.snapshot();
        let codings = [("gzip", s.gzip), ("deflate", s.deflate)];
        type Pick = fn(&crate::compression::CodingSnapshot) -> u64;
        let per_coding: [(&'static str, &str, Pick); 3] = [
            (
                "tower_perf_compression_responses_total",
                "Responses compressed.",
                |x| x.responses,
            ),
            (
                "tower_perf_compression_input_bytes_total",
                "Bytes before compression.",
                |x| x.bytes_in,
            ),
            (
                "tower_perf_compression_output_bytes_total",
                "Bytes after compression.",
                |x| x.bytes_out,
            ),
        ];
        for (name, help, pick) in per_coding {
            let mut f = Family::new(&mut out, name, "counter", help);
            for (coding, x) in &codings {
                f.value(&[("coding", coding)], pick(x));
            }
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
        singles(
            &mut out,
            "counter",
            &[(
                "tower_perf_compression_not_acceptable_total",
                "406 answers.",
                s.not_acceptable,
            )],
        );
    }
    #[cfg(feature = "cache-control")]
    if let Some(c) = &sources.cache_control {
        let s = c.snapshot();
        singles(
            &mut out,
            "counter",
            &[
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
            ],
        );
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
        Family::new(
            &mut out,
            "tower_perf_rate_limit_missing_key_failures_total",
            "counter",
            "Requests answered 500 because they carried no client address to count them against (the server hands the rate limiter no peer address).",
        )
        .value(&[], r.missing_key_failures());
    }
    #[cfg(feature = "redis")]
    if let Some(s) = &sources.redis_rate_limit {
        let s = s.snapshot();
        by_label(
            &mut out,
            "tower_perf_redis_rate_limit_operations_total",
            "Redis rate-limit store operations by outcome.",
            "outcome",
            &[
                ("checked", s.checks),
                ("denied_locally", s.local_denials),
                ("error", s.errors),
                ("timeout", s.timeouts),
                ("fallback", s.fallbacks),
            ],
        );
    }
    #[cfg(feature = "redis")]
    if let Some(s) = &sources.redis_cache {
        let s = s.snapshot();
        by_label(
            &mut out,
            "tower_perf_redis_cache_operations_total",
            "Redis cache store operations by outcome.",
            "outcome",
            &[
                ("l1_hit", s.l1_hits),
                ("l2_hit", s.l2_hits),
                ("l2_miss", s.l2_misses),
                ("error", s.errors),
                ("timeout", s.timeouts),
                ("fallback", s.fallbacks),
                ("invalidation_published", s.invalidations_published),
                ("invalidation_received", s.invalidations_received),
                ("invalidation_replayed", s.invalidations_replayed),
                ("l1_dropped", s.l1_dropped),
            ],
        );
        Family::new(
            &mut out,
            "tower_perf_redis_cache_invalidations_pending",
            "gauge",
            "Purges and invalidations Redis has not taken yet (replayed when it answers).",
        )
        .value(&[], s.invalidations_pending);
    }
    #[cfg(feature = "redis")]
    breakers(&mut out, sources);
    out
}

/// The Redis stores' circuit breakers: open or not, transitions, calls
/// refused at once, time spent open.
#[cfg(feature = "redis")]
fn breakers(out: &mut String, sources: &Sources) {
    let mut rows: Vec<(&str, crate::breaker::BreakerSnapshot)> = Vec::new();
    if let Some(s) = &sources.redis_rate_limit {
        rows.push(("rate_limit", s.snapshot().breaker));
    }
    if let Some(s) = &sources.redis_cache {
        rows.push(("cache", s.snapshot().breaker));
    }
    if rows.is_empty() {
        return;
    }
    let mut f = Family::new(
        out,
        "tower_perf_redis_breaker_open",
        "gauge",
        "1 while the store's circuit breaker keeps Redis out of the request path.",
    );
    for (store, b) in &rows {
        let open = u64::from(b.state != crate::breaker::BreakerState::Closed);
        f.value(&[("store", store)], open);
    }
    let mut f = Family::new(
        out,
        "tower_perf_redis_breaker_transitions_total",
        "counter",
        "Circuit breaker transitions by the state entered.",
    );
    for (store, b) in &rows {
        f.value(&[("store", store), ("state", "open")], b.opened);
        f.value(&[("store", store), ("state", "closed")], b.closed);
    }
    let mut f = Family::new(
        out,
        "tower_perf_redis_breaker_short_circuited_total",
        "counter",
        "Store operations answered without Redis because the breaker was open.",
    );
    for (store, b) in &rows {
        f.value(&[("store", store)], b.short_circuited);
    }
    let _ = writeln!(
        out,
        "# HELP tower_perf_redis_breaker_open_seconds_total Time the breaker kept Redis out of the request path."
    );
    let _ = writeln!(
        out,
        "# TYPE tower_perf_redis_breaker_open_seconds_total counter"
    );
    for (store, b) in &rows {
        let secs = b.open_ms as f64 / 1000.0;
        let _ = writeln!(
            out,
            "tower_perf_redis_breaker_open_seconds_total{{store=\"{store}\"}} {secs}"
        );
    }
}
