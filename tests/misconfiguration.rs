//! Configurations that cannot work fail at construction, with a message
//! naming the value and why, instead of being rounded to something that
//! does nothing (or something else) silently.

#[cfg(any(feature = "cache", feature = "rate-limit"))]
use std::panic::{AssertUnwindSafe, catch_unwind};
#[cfg(feature = "rate-limit")]
use std::time::Duration;

// Each test needs the features of the layers it configures (gated below);
// a build with none of them has no test here.
#[cfg(feature = "rate-limit")]
use tower::Layer;
#[cfg(feature = "rate-limit")]
use tower::service_fn;
#[cfg(feature = "cache")]
use tower_perf::cache::MemoryStore as CacheMemory;
#[cfg(feature = "rate-limit")]
use tower_perf::rate_limit::{KeySource, Quota, RateLimitLayer, RateRule};

/// The services of `layer`, built (where a configuration that cannot work
/// panics).
#[cfg(feature = "rate-limit")]
fn built(layer: RateLimitLayer) -> impl Sized {
    layer.layer(service_fn(|_: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(()))
    }))
}

/// The panic message of `f`, which must panic.
#[cfg(any(feature = "cache", feature = "rate-limit"))]
fn panic_message<R>(f: impl FnOnce() -> R) -> String {
    let e = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic"),
        Err(e) => e,
    };
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[cfg(feature = "rate-limit")]
#[test]
fn zero_quotas_panic_instead_of_becoming_one_request() {
    let msg = panic_message(|| Quota::per_minute(0));
    assert!(msg.contains("at least one request"), "{msg}");
    let msg = panic_message(|| Quota::per_second(0));
    assert!(msg.contains("Quota::per(1s, 0)"), "{msg}");
    let msg = panic_message(|| Quota::per(Duration::ZERO, 10));
    assert!(msg.contains("period"), "{msg}");
    let msg = panic_message(|| Quota::per_minute(10).with_burst(0));
    assert!(msg.contains("with_burst(0)"), "{msg}");
}

#[cfg(feature = "rate-limit")]
#[test]
fn a_zero_cost_panics_and_a_cost_above_the_burst_panics_when_built() {
    let msg = panic_message(|| RateRule::new("api", Quota::per_minute(10)).cost(0));
    assert!(msg.contains("cost(0) on rule 'api'"), "{msg}");
    // 11 units against a burst of 10: no request could ever pass.
    let layer = RateLimitLayer::new().rule(
        RateRule::new("api", Quota::per_minute(100))
            .and_policy(
                "global",
                Quota::per_minute(100).with_burst(10),
                KeySource::Global,
            )
            .cost(11),
    );
    let msg = panic_message(move || {
        layer.layer(service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        }))
    });
    assert!(
        msg.contains("costs 11") && msg.contains("burst of 10") && msg.contains("'global'"),
        "{msg}"
    );
    // Equal to the burst is fine.
    let layer = RateLimitLayer::new().rule(RateRule::new("api", Quota::per_minute(10)).cost(10));
    let _ = built(layer);
}

#[cfg(feature = "rate-limit")]
#[test]
fn an_ipv6_prefix_over_128_bits_panics() {
    let msg = panic_message(|| RateLimitLayer::new().ipv6_prefix(129));
    assert!(msg.contains("ipv6_prefix(129)"), "{msg}");
    let _ = RateLimitLayer::new().ipv6_prefix(128).ipv6_prefix(0);
}

/// A missing-key choice that applies to no policy does nothing: most
/// likely the other setting was meant (`on_missing_key` used to be the
/// choice for a missing client address too).
#[cfg(feature = "rate-limit")]
#[test]
fn a_missing_key_choice_that_applies_to_no_policy_panics() {
    use tower_perf::rate_limit::MissingKey;
    let ip_rule = || RateRule::new("ip", Quota::per_minute(10));
    let key_rule = || {
        RateRule::new("key", Quota::per_minute(10)).key(KeySource::Header(
            http::HeaderName::from_static("x-api-key"),
        ))
    };
    let msg = panic_message(|| {
        built(
            RateLimitLayer::new()
                .rule(ip_rule())
                .on_missing_key(MissingKey::Shared),
        )
    });
    assert!(
        msg.contains("RateLimitLayer::on_missing_key") && msg.contains("on_missing_peer_addr"),
        "{msg}"
    );
    let msg = panic_message(|| {
        built(
            RateLimitLayer::new()
                .rule(key_rule().on_missing_key(MissingKey::Allow))
                .on_missing_peer_addr(MissingKey::Allow),
        )
    });
    assert!(
        msg.contains("RateLimitLayer::on_missing_peer_addr") && msg.contains("on_missing_key"),
        "{msg}"
    );
    let msg = panic_message(|| {
        built(RateLimitLayer::new().rule(ip_rule().on_missing_key(MissingKey::Allow)))
    });
    assert!(msg.contains("rule 'ip' sets `on_missing_key`"), "{msg}");
    let msg = panic_message(|| {
        built(
            RateLimitLayer::new().rule(
                key_rule()
                    .on_missing_key(MissingKey::Allow)
                    .on_missing_peer_addr(MissingKey::Allow),
            ),
        )
    });
    assert!(
        msg.contains("rule 'key' sets `on_missing_peer_addr`"),
        "{msg}"
    );
    // Fail is about servers, never a choice for what clients leave out.
    let msg = panic_message(|| {
        built(RateLimitLayer::new().rule(key_rule().on_missing_key(MissingKey::Fail)))
    });
    assert!(msg.contains("which a client can leave out"), "{msg}");
    // Each where it applies is fine, and so is the API key's rule choosing
    // for itself and the layer choosing for the address.
    let _ = built(
        RateLimitLayer::new()
            .rule(ip_rule())
            .rule(key_rule())
            .on_missing_key(MissingKey::Deny)
            .on_missing_peer_addr(MissingKey::Fail),
    );
    let _ = built(
        RateLimitLayer::new()
            .rule(ip_rule().on_missing_peer_addr(MissingKey::Shared))
            .rule(key_rule().on_missing_key(MissingKey::Allow)),
    );
}

#[cfg(feature = "rate-limit")]
#[test]
fn a_rate_limit_store_for_zero_keys_panics() {
    use tower_perf::rate_limit::MemoryStore;
    let msg = panic_message(|| MemoryStore::with_max_keys(0));
    assert!(msg.contains("max_keys is 0"), "{msg}");
    let _ = MemoryStore::with_max_keys(1);
}

#[cfg(feature = "cache")]
#[test]
fn a_zero_byte_cache_budget_panics() {
    let msg = panic_message(|| CacheMemory::new(0));
    assert!(msg.contains("MemoryStore::new(0)"), "{msg}");
    let msg = panic_message(|| CacheMemory::new(1024).max_variants(0));
    assert!(msg.contains("max_variants(0)"), "{msg}");
    let _ = CacheMemory::new(1).max_variants(1);
}

/// A store whose shards can't hold a response at the layer's
/// `max_entry_size`: every such response would be read whole and refused.
#[cfg(feature = "cache")]
#[test]
fn a_store_too_small_for_the_largest_entry_panics_when_layered() {
    use tower::Layer;
    use tower_perf::cache::CacheLayer;
    let origin = tower::service_fn(|_: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    });
    // 256 KiB: one shard, entries up to about 248 KiB; the default limit
    // is 1 MiB.
    let small = CacheLayer::new().store(CacheMemory::new(256 << 10));
    let msg = panic_message(|| {
        let _ = small.layer(origin);
    });
    assert!(msg.contains("max_entry_size is 1048576 bytes"), "{msg}");
    assert!(msg.contains("lower max_entry_size to"), "{msg}");
    // Within it, it layers.
    let fits = CacheLayer::new()
        .max_entry_size(128 << 10)
        .store(CacheMemory::new(256 << 10));
    let _ = fits.layer(origin);
}

/// RFC 9213: `Cache-Control` and `Expires` are not targeted fields.
#[cfg(feature = "cache")]
#[test]
fn cache_control_as_a_targeted_field_panics() {
    use http::header::{CACHE_CONTROL, EXPIRES, HeaderName};
    use tower_perf::cache::CacheLayer;
    for name in [CACHE_CONTROL, EXPIRES] {
        let msg = panic_message(|| CacheLayer::new().targeted_cache_control([name.clone()]));
        assert!(msg.contains("not a targeted field"), "{msg}");
    }
    let _ =
        CacheLayer::new().targeted_cache_control([HeaderName::from_static("cdn-cache-control")]);
}

#[cfg(all(feature = "cache-control", feature = "rate-limit"))]
#[test]
fn route_patterns_that_cannot_match_panic() {
    use tower_perf::cache_control::{CacheControlLayer, Policy, Rule};
    for (pattern, why) in [
        ("", "empty"),
        ("[", "must start with `/`"),
        ("/api/{id", "never closed"),
        ("/api/{id}.json", "nothing may follow"),
        ("/files/{*rest}/x", "last segment"),
        ("/a b", "space"),
        ("/a?b=1", "query"),
    ] {
        let msg = panic_message(|| Rule::new(pattern));
        assert!(
            msg.contains(&format!("{pattern:?}")) && msg.contains(why),
            "{pattern:?}: {msg}"
        );
        let msg = panic_message(|| CacheControlLayer::new().route(pattern, Policy::no_store()));
        assert!(msg.contains(why), "{pattern:?}: {msg}");
        let msg = panic_message(|| RateRule::new("r", Quota::per_minute(1)).path(pattern));
        assert!(msg.contains(why), "{pattern:?}: {msg}");
    }
    let msg = panic_message(|| Rule::prefix("/api/{id}"));
    assert!(msg.contains("byte by byte"), "{msg}");
    let msg = panic_message(|| RateRule::new("r", Quota::per_minute(1)).prefix("api"));
    assert!(msg.contains("must start with `/`"), "{msg}");
}
