//! Prometheus text (format 0.0.4) for every layer a report reads.

#[cfg(any(
    feature = "cache",
    feature = "compression",
    feature = "cache-control",
    feature = "rate-limit",
    feature = "tasks"
))]
use std::fmt::Write;

use super::builder::Sources;
#[cfg(any(
    feature = "cache",
    feature = "compression",
    feature = "cache-control",
    feature = "rate-limit",
    feature = "tasks"
))]
use crate::prometheus::escape;

/// Writes one metric family: HELP, TYPE, then `name{labels} value` lines.
/// (Timing writes its own.)
#[cfg(any(
    feature = "cache",
    feature = "compression",
    feature = "cache-control",
    feature = "rate-limit",
    feature = "tasks"
))]
pub(super) struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

#[cfg(any(
    feature = "cache",
    feature = "compression",
    feature = "cache-control",
    feature = "rate-limit",
    feature = "tasks"
))]
impl<'a> Family<'a> {
    pub(super) fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Self { out, name }
    }

    pub(super) fn value(&mut self, labels: &[(&str, &str)], v: u64) {
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
#[cfg(any(feature = "cache", feature = "redis", feature = "tasks"))]
pub(super) fn by_label(
    out: &mut String,
    name: &'static str,
    help: &str,
    label: &str,
    rows: &[(&str, u64)],
) {
    let mut f = Family::new(out, name, "counter", help);
    for (l, v) in rows {
        f.value(&[(label, l)], *v);
    }
}

/// One family per row, each a single unlabelled value of `kind`.
#[cfg(any(
    feature = "cache",
    feature = "compression",
    feature = "cache-control",
    feature = "tasks"
))]
pub(super) fn singles(out: &mut String, kind: &str, rows: &[(&'static str, &str, u64)]) {
    for (name, help, v) in rows {
        Family::new(out, name, kind, help).value(&[], *v);
    }
}

/// Each layer's families, in the order they are written; a layer whose
/// feature is off has no section.
const SECTIONS: &[fn(&mut String, &Sources)] = &[
    #[cfg(feature = "timing")]
    timing,
    #[cfg(feature = "cache")]
    cache,
    #[cfg(feature = "cache")]
    query_cache,
    #[cfg(feature = "compression")]
    compression,
    #[cfg(feature = "compression")]
    decompression,
    #[cfg(feature = "cache-control")]
    cache_control,
    #[cfg(feature = "rate-limit")]
    rate_limit,
    #[cfg(feature = "tasks")]
    super::tasks::metrics,
    #[cfg(feature = "redis")]
    redis_rate_limit,
    #[cfg(feature = "redis")]
    redis_cache,
    #[cfg(feature = "redis")]
    breakers,
];

/// The Prometheus text of every layer the report reads.
pub(super) fn render(sources: &Sources) -> String {
    let mut out = String::new();
    for section in SECTIONS {
        section(&mut out, sources);
    }
    out
}

#[cfg(feature = "timing")]
fn timing(out: &mut String, sources: &Sources) {
    if let Some(t) = &sources.timing {
        out.push_str(&t.prometheus());
    }
}

#[cfg(feature = "cache")]
fn cache(out: &mut String, sources: &Sources) {
    if let Some(h) = &sources.cache {
        let s = h.stats().snapshot();
        by_label(
            out,
            "tower_perf_cache_requests_total",
            "GET and HEAD requests by how the cache answered them.",
            "result",
            &s.by_result(),
        );
        singles(
            out,
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
            out,
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
        let routes = h.stats().routes();
        if !routes.is_empty() {
            let mut f = Family::new(
                out,
                "tower_perf_cache_route_requests_total",
                "counter",
                "Cacheable GET requests by route template (`http_route`, at most 256, then `(other)`) and how the cache answered them (`revalidated`: a 304 or a new 200).",
            );
            for r in &routes {
                for (result, v) in [
                    ("hit", r.hits),
                    ("stale", r.stale_served),
                    ("miss", r.misses),
                    ("revalidated", r.revalidated),
                ] {
                    f.value(&[("http_route", &r.route), ("result", result)], v);
                }
            }
        }
    }
}

/// The query cache's families, a series per namespace.
#[cfg(feature = "cache")]
fn query_cache(out: &mut String, sources: &Sources) {
    let Some(q) = &sources.queries else { return };
    let s = q.stats();
    let mut f = Family::new(
        out,
        "tower_perf_query_cache_lookups_total",
        "counter",
        "Query cache lookups by namespace and result (`hit` from memory, `stale` served past its TTL while refreshed, `redis_hit` from the Redis tier, `miss` loaded).",
    );
    for n in &s.namespaces {
        for (result, v) in n.by_result() {
            f.value(&[("namespace", &n.namespace), ("result", result)], v);
        }
    }
    type Pick = fn(&crate::query_cache::NamespaceStats) -> u64;
    let families: [(&'static str, &str, &str, Pick); 8] = [
        (
            "tower_perf_query_cache_not_stored_total",
            "counter",
            "Loads not stored because an invalidation ran while they loaded.",
            |n| n.not_stored,
        ),
        (
            "tower_perf_query_cache_loads_total",
            "counter",
            "Loader runs (one per key however many callers waited).",
            |n| n.loads,
        ),
        (
            "tower_perf_query_cache_load_errors_total",
            "counter",
            "Loader runs that failed (nothing stored).",
            |n| n.load_errors,
        ),
        (
            "tower_perf_query_cache_evictions_total",
            "counter",
            "Entries evicted to stay within the byte bound.",
            |n| n.evictions,
        ),
        (
            "tower_perf_query_cache_invalidated_total",
            "counter",
            "Entries dropped by invalidations.",
            |n| n.invalidated,
        ),
        (
            "tower_perf_query_cache_redis_errors_total",
            "counter",
            "Redis calls that failed or that the open breaker skipped.",
            |n| n.redis_errors,
        ),
        (
            "tower_perf_query_cache_entries",
            "gauge",
            "Entries in memory.",
            |n| n.entries,
        ),
        (
            "tower_perf_query_cache_size_bytes",
            "gauge",
            "Bytes of the entries in memory.",
            |n| n.bytes,
        ),
    ];
    for (name, kind, help, pick) in families {
        let mut f = Family::new(out, name, kind, help);
        for n in &s.namespaces {
            f.value(&[("namespace", &n.namespace)], pick(n));
        }
    }
    let name = "tower_perf_query_cache_load_duration_seconds_total";
    let _ = writeln!(out, "# HELP {name} Time spent in loader runs.");
    let _ = writeln!(out, "# TYPE {name} counter");
    for n in &s.namespaces {
        let secs = n.load_seconds;
        let _ = writeln!(
            out,
            "{name}{{namespace=\"{}\"}} {secs}",
            escape(&n.namespace)
        );
    }
}

#[cfg(feature = "compression")]
fn compression(out: &mut String, sources: &Sources) {
    if let Some(c) = &sources.compression {
        let s = c.snapshot();
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
        let codings: Vec<_> = s.codings().collect();
        per_coding_families(out, &per_coding, &codings);
        let mut f = Family::new(
            out,
            "tower_perf_compression_skipped_total",
            "counter",
            "Responses not compressed, by reason.",
        );
        for (reason, n) in &s.skipped {
            f.value(&[("reason", reason.as_str())], *n);
        }
        singles(
            out,
            "counter",
            &[(
                "tower_perf_compression_not_acceptable_total",
                "406 answers.",
                s.not_acceptable,
            )],
        );
    }
}

/// Counter families with one line per content coding (labelled `coding`):
/// the compression layer's and request decompression's.
#[cfg(feature = "compression")]
fn per_coding_families<T>(
    out: &mut String,
    families: &[(&'static str, &str, fn(&T) -> u64)],
    codings: &[(&'static str, &T)],
) {
    for (name, help, pick) in families {
        let mut f = Family::new(out, name, "counter", help);
        for (coding, x) in codings {
            f.value(&[("coding", coding)], pick(x));
        }
    }
}

#[cfg(feature = "compression")]
fn decompression(out: &mut String, sources: &Sources) {
    if let Some(d) = &sources.decompression {
        let s = d.snapshot();
        type Pick = fn(&crate::decompression::DecodedSnapshot) -> u64;
        let per_coding: [(&'static str, &str, Pick); 3] = [
            (
                "tower_perf_decompression_requests_total",
                "Request bodies that came encoded, by coding.",
                |x| x.requests,
            ),
            (
                "tower_perf_decompression_input_bytes_total",
                "Encoded request body bytes decoded.",
                |x| x.bytes_in,
            ),
            (
                "tower_perf_decompression_output_bytes_total",
                "Decoded request body bytes.",
                |x| x.bytes_out,
            ),
        ];
        let codings: Vec<_> = s.codings().collect();
        per_coding_families(out, &per_coding, &codings);
        let mut f = Family::new(
            out,
            "tower_perf_decompression_rejected_total",
            "counter",
            "Requests the layer answered itself: 415 (unsupported), 413 (too_large), 400 (malformed).",
        );
        for (reason, n) in [
            ("unsupported", s.unsupported),
            ("too_large", s.too_large),
            ("malformed", s.malformed),
        ] {
            f.value(&[("reason", reason)], n);
        }
    }
}

#[cfg(feature = "cache-control")]
fn cache_control(out: &mut String, sources: &Sources) {
    if let Some(c) = &sources.cache_control {
        let s = c.snapshot();
        singles(
            out,
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
}

#[cfg(feature = "rate-limit")]
fn rate_limit(out: &mut String, sources: &Sources) {
    if let Some(r) = &sources.rate_limit {
        let mut f = Family::new(
            out,
            "tower_perf_rate_limit_requests_total",
            "counter",
            "Requests counted by a rate-limit policy, by decision.",
        );
        for p in &r.policies() {
            f.value(&[("policy", &p.name), ("decision", "allowed")], p.allowed);
            f.value(&[("policy", &p.name), ("decision", "limited")], p.limited);
        }
        Family::new(
            out,
            "tower_perf_rate_limit_missing_key_failures_total",
            "counter",
            "Requests answered 500 because they carried no client address to count them against (the server hands the rate limiter no peer address).",
        )
        .value(&[], r.missing_key_failures());
    }
}

#[cfg(feature = "redis")]
fn redis_rate_limit(out: &mut String, sources: &Sources) {
    if let Some(s) = &sources.redis_rate_limit {
        let s = s.snapshot();
        by_label(
            out,
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
}

#[cfg(feature = "redis")]
fn redis_cache(out: &mut String, sources: &Sources) {
    if let Some(s) = &sources.redis_cache {
        let s = s.snapshot();
        by_label(
            out,
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
            out,
            "tower_perf_redis_cache_invalidations_pending",
            "gauge",
            "Purges and invalidations Redis has not taken yet (replayed when it answers).",
        )
        .value(&[], s.invalidations_pending);
    }
    if let Some(s) = sources.queries.as_ref().and_then(|q| q.stats().redis) {
        by_label(
            out,
            "tower_perf_redis_query_cache_operations_total",
            "The query cache's Redis tier operations by outcome.",
            "outcome",
            &[
                ("error", s.errors),
                ("timeout", s.timeouts),
                ("undecodable", s.undecodable),
                ("write_fenced", s.writes_fenced),
                ("invalidation_published", s.invalidations_published),
                ("invalidation_received", s.invalidations_received),
                ("invalidation_replayed", s.invalidations_replayed),
                ("l1_dropped", s.l1_dropped),
            ],
        );
        Family::new(
            out,
            "tower_perf_redis_query_cache_invalidations_pending",
            "gauge",
            "Query cache invalidations Redis has not taken yet (replayed when it answers).",
        )
        .value(&[], s.invalidations_pending);
    }
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
    if let Some(r) = sources.queries.as_ref().and_then(|q| q.stats().redis) {
        rows.push(("query_cache", r.breaker));
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
