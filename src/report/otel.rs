//! The layers' counters as OpenTelemetry observable instruments (feature
//! `otel`), read from the same statistics handles as the Prometheus text,
//! when the meter provider collects.

use opentelemetry::metrics::Meter;
#[cfg(any(feature = "cache", feature = "compression", feature = "rate-limit"))]
use opentelemetry::{KeyValue, metrics::AsyncInstrument};

use super::service::Report;

impl Report {
    /// Publishes the counters of the cache, compression and rate-limit
    /// layers this report reads as OpenTelemetry observable instruments
    /// made from `meter` (feature `otel`). Each is read when the meter
    /// provider collects, from the layer's statistics: nothing is added to
    /// a request's path. The HTTP server instruments come from the timing
    /// layer itself ([`TimingLayer::meter`](crate::timing::TimingLayer::meter)).
    ///
    /// | Instrument | Kind, unit | Attributes |
    /// |---|---|---|
    /// | `tower_perf.cache.requests` | counter, `{request}` | `tower_perf.cache.result`: `hit`, `miss`, `stale`, `revalidated`, `modified`, `bypass`, `gateway_timeout` |
    /// | `tower_perf.cache.stores` | counter, `{response}` | |
    /// | `tower_perf.cache.evictions` | counter, `{entry}` | |
    /// | `tower_perf.cache.store_errors` | counter, `{error}` | |
    /// | `tower_perf.cache.entries` | gauge, `{entry}` | |
    /// | `tower_perf.cache.size` | gauge, `By` | |
    /// | `tower_perf.query_cache.lookups` | counter, `{lookup}` | `tower_perf.query_cache.namespace`, `tower_perf.query_cache.result`: `hit`, `stale`, `redis_hit`, `miss` |
    /// | `tower_perf.query_cache.loads` | counter, `{load}` | `tower_perf.query_cache.namespace`, `error.type` (`_OTHER`) on failed loads |
    /// | `tower_perf.query_cache.evictions` | counter, `{entry}` | `tower_perf.query_cache.namespace` |
    /// | `tower_perf.query_cache.size` | gauge, `By` | `tower_perf.query_cache.namespace` |
    /// | `tower_perf.compression.responses` | counter, `{response}` | `tower_perf.compression.coding` (`gzip`, `br`…) |
    /// | `tower_perf.compression.io` | counter, `By` | `tower_perf.compression.coding`, `tower_perf.compression.direction`: `input` (before) or `output` (after) |
    /// | `tower_perf.compression.skipped` | counter, `{response}` | `tower_perf.compression.reason` |
    /// | `tower_perf.rate_limit.requests` | counter, `{request}` | `tower_perf.rate_limit.policy`, `tower_perf.rate_limit.decision`: `allowed` or `limited` |
    ///
    /// A layer the report does not read publishes nothing.
    ///
    /// # Panics
    ///
    /// When called a second time on this report (or a clone of it): every
    /// callback would be registered again and each figure reported twice.
    #[cfg_attr(
        not(any(feature = "cache", feature = "compression", feature = "rate-limit")),
        allow(unused_variables)
    )]
    pub fn register_otel(&self, meter: &Meter) {
        assert!(
            !self
                .inner
                .otel_registered
                .swap(true, std::sync::atomic::Ordering::AcqRel),
            "Report::register_otel called twice: each figure would be reported twice"
        );
        #[cfg(feature = "cache")]
        if let Some(cache) = &self.inner.sources.cache {
            cache_instruments(meter, cache);
        }
        #[cfg(feature = "cache")]
        if let Some(queries) = &self.inner.sources.queries {
            query_cache_instruments(meter, queries);
        }
        #[cfg(feature = "compression")]
        if let Some(stats) = &self.inner.sources.compression {
            compression_instruments(meter, stats);
        }
        #[cfg(feature = "rate-limit")]
        if let Some(stats) = &self.inner.sources.rate_limit {
            rate_limit_instruments(meter, stats);
        }
    }
}

/// An observable counter named `name` whose callback `observe` reads.
#[cfg(any(feature = "cache", feature = "compression", feature = "rate-limit"))]
fn counter(
    meter: &Meter,
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    observe: impl Fn(&dyn AsyncInstrument<u64>) + Send + Sync + 'static,
) {
    meter
        .u64_observable_counter(name)
        .with_unit(unit)
        .with_description(description)
        .with_callback(observe)
        .build();
}

#[cfg(feature = "cache")]
fn cache_instruments(meter: &Meter, cache: &crate::cache::CacheHandle) {
    let h = cache.clone();
    counter(
        meter,
        "tower_perf.cache.requests",
        "{request}",
        "GET and HEAD requests by how the cache answered them.",
        move |o| {
            for (result, v) in h.stats().snapshot().by_result() {
                o.observe(v, &[KeyValue::new("tower_perf.cache.result", result)]);
            }
        },
    );
    type Pick = fn(&crate::cache::CacheSnapshot) -> u64;
    let singles: [(&'static str, &'static str, &'static str, Pick); 3] = [
        (
            "tower_perf.cache.stores",
            "{response}",
            "Responses stored.",
            |s| s.stores,
        ),
        (
            "tower_perf.cache.evictions",
            "{entry}",
            "Entries evicted to stay within the byte budget.",
            |s| s.evictions,
        ),
        (
            "tower_perf.cache.store_errors",
            "{error}",
            "Store operations that failed.",
            |s| s.store_errors,
        ),
    ];
    for (name, unit, description, pick) in singles {
        let h = cache.clone();
        counter(meter, name, unit, description, move |o| {
            o.observe(pick(&h.stats().snapshot()), &[]);
        });
    }
    let gauges: [(&'static str, &'static str, &'static str, Pick); 2] = [
        (
            "tower_perf.cache.entries",
            "{entry}",
            "URLs in the store.",
            |s| s.entries,
        ),
        ("tower_perf.cache.size", "By", "Bytes in the store.", |s| {
            s.bytes
        }),
    ];
    for (name, unit, description, pick) in gauges {
        let h = cache.clone();
        meter
            .u64_observable_gauge(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |o| o.observe(pick(&h.stats().snapshot()), &[]))
            .build();
    }
}

#[cfg(feature = "cache")]
fn query_cache_instruments(meter: &Meter, cache: &crate::query_cache::QueryCache) {
    const NS: &str = "tower_perf.query_cache.namespace";
    let q = cache.clone();
    counter(
        meter,
        "tower_perf.query_cache.lookups",
        "{lookup}",
        "Query cache lookups by namespace and result.",
        move |o| {
            for n in q.stats().namespaces {
                for (result, v) in n.by_result() {
                    o.observe(
                        v,
                        &[
                            KeyValue::new(NS, n.namespace.clone()),
                            KeyValue::new("tower_perf.query_cache.result", result),
                        ],
                    );
                }
            }
        },
    );
    let q = cache.clone();
    counter(
        meter,
        "tower_perf.query_cache.loads",
        "{load}",
        "Loader runs by namespace; failed ones carry error.type.",
        move |o| {
            for n in q.stats().namespaces {
                let ns = KeyValue::new(NS, n.namespace.clone());
                o.observe(n.loaded, std::slice::from_ref(&ns));
                o.observe(n.load_errors, &[ns, KeyValue::new("error.type", "_OTHER")]);
            }
        },
    );
    let q = cache.clone();
    counter(
        meter,
        "tower_perf.query_cache.evictions",
        "{entry}",
        "Entries evicted to stay within the byte bound.",
        move |o| {
            for n in q.stats().namespaces {
                o.observe(n.evictions, &[KeyValue::new(NS, n.namespace.clone())]);
            }
        },
    );
    let q = cache.clone();
    meter
        .u64_observable_gauge("tower_perf.query_cache.size")
        .with_unit("By")
        .with_description("Bytes of the query cache's entries in memory.")
        .with_callback(move |o| {
            for n in q.stats().namespaces {
                o.observe(n.bytes, &[KeyValue::new(NS, n.namespace.clone())]);
            }
        })
        .build();
}

#[cfg(feature = "compression")]
fn compression_instruments(meter: &Meter, stats: &crate::compression::CompressionStats) {
    const CODING: &str = "tower_perf.compression.coding";
    let c = stats.clone();
    counter(
        meter,
        "tower_perf.compression.responses",
        "{response}",
        "Responses compressed, by content coding.",
        move |o| {
            let s = c.snapshot();
            for (coding, x) in s.codings() {
                o.observe(x.responses, &[KeyValue::new(CODING, coding)]);
            }
        },
    );
    let c = stats.clone();
    counter(
        meter,
        "tower_perf.compression.io",
        "By",
        "Bytes through compression: before (input) and after (output), by content coding.",
        move |o| {
            let s = c.snapshot();
            for (coding, x) in s.codings() {
                for (direction, v) in [("input", x.bytes_in), ("output", x.bytes_out)] {
                    o.observe(
                        v,
                        &[
                            KeyValue::new(CODING, coding),
                            KeyValue::new("tower_perf.compression.direction", direction),
                        ],
                    );
                }
            }
        },
    );
    let c = stats.clone();
    counter(
        meter,
        "tower_perf.compression.skipped",
        "{response}",
        "Responses not compressed, by reason.",
        move |o| {
            for (reason, n) in &c.snapshot().skipped {
                o.observe(
                    *n,
                    &[KeyValue::new(
                        "tower_perf.compression.reason",
                        reason.as_str(),
                    )],
                );
            }
        },
    );
}

#[cfg(feature = "rate-limit")]
fn rate_limit_instruments(meter: &Meter, stats: &crate::rate_limit::RateLimitStats) {
    let r = stats.clone();
    counter(
        meter,
        "tower_perf.rate_limit.requests",
        "{request}",
        "Requests counted by a rate-limit policy, by decision.",
        move |o| {
            for p in &r.policies() {
                for (decision, v) in [("allowed", p.allowed), ("limited", p.limited)] {
                    o.observe(
                        v,
                        &[
                            KeyValue::new("tower_perf.rate_limit.policy", p.name.clone()),
                            KeyValue::new("tower_perf.rate_limit.decision", decision),
                        ],
                    );
                }
            }
        },
    );
}
