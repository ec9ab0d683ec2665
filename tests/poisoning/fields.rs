//! Request fields a client chooses: forwarding fields an origin reflects,
//! Authorization, Set-Cookie, `Vary: *` and overlong Vary; implicit fields
//! never revalidate a shared variant nor lead its fetch.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::StatusCode;
use tower_perf::cache::CacheLayer;

use crate::support::gate::until;
use crate::{bare_cache, behind_proxy, field, get};

#[tokio::test]
async fn reflected_unkeyed_fields_never_reach_another_client() {
    let attacker: &[(&str, &str)] = &[
        ("host", "victim.test"),
        ("x-forwarded-host", "evil.test"),
        ("x-forwarded-proto", "javascript"),
        ("x-original-url", "/admin"),
        ("x-http-method-override", "DELETE"),
        ("forwarded", "host=evil.test;proto=http"),
    ];
    // Behind the proxy: the proxy makes the forwarding fields its own.
    let s = behind_proxy(CacheLayer::new()).await;
    let first = get(&s, "/reflect", attacker).await;
    assert_eq!(field(&first, "x-forwarded-host"), "victim.test");
    assert_eq!(field(&first, "x-forwarded-proto"), "http");
    let second = get(&s, "/reflect", &[("host", "victim.test")]).await;
    assert!(!second.text().contains("evil.test"), "{}", second.text());
    assert!(!second.text().contains("/admin"), "{}", second.text());
    assert!(!second.text().contains("DELETE"), "{}", second.text());
    // A bare cache layer: the fields become part of the variant.
    let s = bare_cache(CacheLayer::new()).await;
    let first = get(&s, "/reflect", attacker).await;
    assert_eq!(field(&first, "x-forwarded-host"), "evil.test");
    let again = get(&s, "/reflect", attacker).await;
    assert!(again.header("cache-status").unwrap().contains("hit"));
    let second = get(&s, "/reflect", &[("host", "victim.test")]).await;
    assert_eq!(field(&second, "x-forwarded-host"), "-");
    assert_eq!(field(&second, "x-original-url"), "-");
    assert!(!second.text().contains("evil.test"), "{}", second.text());
    // One field alone is enough to separate the variants.
    let one = get(
        &s,
        "/reflect?one",
        &[("host", "victim.test"), ("x-forwarded-host", "other.test")],
    )
    .await;
    assert_eq!(field(&one, "x-forwarded-host"), "other.test");
    let clean = get(&s, "/reflect?one", &[("host", "victim.test")]).await;
    assert_eq!(field(&clean, "x-forwarded-host"), "-");
    // Once a clean answer is stored, it may serve anyone (it depends on
    // nothing the client chose); the attacker's stays with the attacker.
    let again = get(&s, "/reflect?one", &[("host", "victim.test")]).await;
    assert!(again.header("cache-status").unwrap().contains("hit"));
    assert_eq!(field(&again, "x-forwarded-host"), "-");
    assert_eq!(s.calls.load(Ordering::SeqCst), 4);
    // A proxy in front that adds `Forwarded: for=<client>` to every
    // request does not make each client a variant of its own.
    for ip in ["192.0.2.1", "198.51.100.7", "203.0.113.9"] {
        let v = format!("for={ip};proto=https");
        let r = get(
            &s,
            "/reflect?fwd",
            &[("host", "victim.test"), ("forwarded", v.as_str())],
        )
        .await;
        assert!(r.text().contains("forwarded=for="), "{}", r.text());
    }
    assert_eq!(s.calls.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn authorization_set_cookie_vary_star_and_long_vary_are_not_shared() {
    for s in [
        behind_proxy(CacheLayer::new()).await,
        bare_cache(CacheLayer::new()).await,
    ] {
        let h = |k: &'static str, v: &'static str| [("host", "victim.test"), (k, v)];
        let alice = get(&s, "/auth", &h("authorization", "Bearer alice")).await;
        assert_eq!(field(&alice, "user"), "Bearer_alice");
        let anon = get(&s, "/auth", &[("host", "victim.test")]).await;
        assert_eq!(field(&anon, "user"), "-");
        let bob = get(&s, "/auth", &h("authorization", "Bearer bob")).await;
        assert_eq!(field(&bob, "user"), "Bearer_bob");
        assert!(!bob.header("cache-status").unwrap().contains("hit"));

        for path in ["/cookie", "/star", "/long-vary"] {
            let a = get(&s, path, &h("x-user", "alice")).await;
            assert_eq!(field(&a, "user"), "alice", "{path}");
            let status = a.header("cache-status").unwrap();
            assert!(!status.contains("stored"), "{path}: {status}");
            let b = get(&s, path, &h("x-user", "bob")).await;
            assert_eq!(field(&b, "user"), "bob", "{path}");
            assert!(
                b.header("set-cookie").is_none_or(|c| c == "sid=bob"),
                "{path}"
            );
            let none = get(&s, path, &[("host", "victim.test")]).await;
            assert_eq!(field(&none, "user"), "-", "{path}");
        }
        // A Vary the cache can hold is keyed on exactly its field.
        let a = get(&s, "/vary-user", &h("x-user", "alice")).await;
        let b = get(&s, "/vary-user", &h("x-user", "bob")).await;
        let a2 = get(&s, "/vary-user", &h("x-user", "alice")).await;
        assert_eq!(
            (field(&a, "user"), field(&b, "user"), field(&a2, "user")),
            ("alice", "bob", "alice")
        );
        assert!(a2.header("cache-status").unwrap().contains("hit"));
    }
}

/// Issue 16 review: a request carrying a field of the implicit Vary that
/// the shared variant lacks must not revalidate (or refresh) it, or the
/// origin's 304, answered for that field, would rewrite what everyone is
/// served.
#[tokio::test]
async fn implicit_fields_never_revalidate_a_shared_variant() {
    let cache = CacheLayer::new();
    let stats = cache.stats();
    let s = bare_cache(cache).await;
    let clean = [("host", "victim.test")];
    let attacker = [("host", "victim.test"), ("x-forwarded-host", "evil.test")];
    let revalidations =
        |s: &tower_perf::cache::CacheSnapshot| s.revalidated_not_modified + s.revalidated_modified;
    for path in ["/revalidate", "/swr"] {
        let base = stats.snapshot();
        let first = get(&s, path, &clean).await;
        assert_eq!(first.header("link"), Some("<http://victim.test/app.js>"));
        let evil = get(&s, path, &attacker).await;
        assert_eq!(evil.header("link"), Some("<http://evil.test/app.js>"));
        for _ in 0..3 {
            // Every background refresh started for `path` has landed (its
            // revalidation counted; inline ones count too).
            until("the background refreshes landed", || {
                let now = stats.snapshot();
                revalidations(&now) - revalidations(&base)
                    >= now.background_refreshes - base.background_refreshes
            })
            .await;
            let again = get(&s, path, &clean).await;
            assert_eq!(
                again.header("link"),
                Some("<http://victim.test/app.js>"),
                "{path}: {}",
                again.header("cache-status").unwrap_or("-")
            );
        }
    }
}

/// Issue 16 review: a request with implicit fields fetches alone. Had it
/// led the URL's shared fetch, clean requests waiting on it would find the
/// shared variant still stale and each go to the origin: an attacker could
/// switch off coalescing for any stale URL.
#[tokio::test]
async fn implicit_fields_do_not_lead_the_shared_fetch() {
    let s = Arc::new(bare_cache(CacheLayer::new()).await);
    let clean = [("host", "victim.test")];
    get(&s, "/coalesce", &clean).await;
    assert_eq!(s.calls.load(Ordering::SeqCst), 1);
    let attacker = {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            get(
                &s,
                "/coalesce",
                &[("host", "victim.test"), ("x-forwarded-host", "evil.test")],
            )
            .await
        })
    };
    // The attacker's fetch is at the origin (held there) while the clean
    // clients come.
    s.held.arrived(1).await;
    let clients: Vec<_> = (0..5)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { get(&s, "/coalesce", &[("host", "victim.test")]).await })
        })
        .collect();
    for c in clients {
        assert_eq!(c.await.unwrap().status, StatusCode::OK);
    }
    s.held.open();
    attacker.await.unwrap();
    // The first fetch, the attacker's own, and one revalidation for the
    // five clean clients.
    assert_eq!(s.calls.load(Ordering::SeqCst), 3);
}
