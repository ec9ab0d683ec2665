//! Codings: whatever the cache holds, each client gets a coding it
//! accepts, with or without the reduction to the codings a compression
//! layer would make, and a client without Accept-Encoding pins nobody to
//! identity.

use std::sync::atomic::Ordering;

use tower_perf::cache::CacheLayer;
use tower_perf::headers::{AcceptEncoding, ContentCoding, QValue};

use crate::{Setup, behind_proxy, field, get};

/// A coding acceptable to `ae` (as the request sent it, `None` for no
/// field): what every response must carry.
fn acceptable(ae: Option<&str>, coding: Option<&str>) -> bool {
    let coding = coding.unwrap_or("identity");
    let Some(ae) = ae else {
        return coding == "identity";
    };
    let parsed = AcceptEncoding::parse(ae.as_bytes());
    let c = ContentCoding::from_token(coding.as_bytes()).unwrap();
    parsed.quality(c) > QValue::ZERO
}

/// The origin negotiates; whatever the cache holds, each client gets a
/// coding it accepts.
async fn codings_are_only_served_to_requests_that_accept_them(s: Setup) {
    let clients: [Option<&str>; 10] = [
        Some("gzip, deflate, br"),
        Some("gzip"),
        Some("identity"),
        None,
        Some("br;q=0, *"),
        Some("zstd"),
        Some("gzip, identity;q=0"),
        Some("gzip, deflate, br"),
        Some("deflate"),
        Some("br, gzip"),
    ];
    for round in 0..2 {
        for ae in clients {
            let headers: Vec<(&str, &str)> =
                ae.map(|v| ("accept-encoding", v)).into_iter().collect();
            let r = get(&s, "/enc", &headers).await;
            let coding = r.header("content-encoding");
            assert!(
                acceptable(ae, coding),
                "round {round}: {ae:?} was served {coding:?} ({})",
                r.header("cache-status").unwrap_or("-")
            );
            assert_eq!(field(&r, "coding"), coding.unwrap_or("identity"));
        }
    }
    // The second round was served from the cache, one variant per coding.
    let calls = s.calls.load(Ordering::SeqCst);
    assert!(calls <= 5, "{calls} origin calls for 5 codings");
}

#[tokio::test]
async fn origin_negotiated_codings_behind_the_proxy() {
    codings_are_only_served_to_requests_that_accept_them(behind_proxy(CacheLayer::new()).await)
        .await;
}

/// Even configured as if a gzip/deflate compression layer were inside (it
/// is not: the origin negotiates br and zstd too), no client gets a coding
/// it refused.
#[tokio::test]
async fn origin_negotiated_codings_with_the_reduction_configured() {
    let cache = CacheLayer::new().codings([ContentCoding::Gzip, ContentCoding::Deflate]);
    let s = behind_proxy(cache).await;
    let clients = [
        Some("gzip, deflate, br"),
        Some("gzip"),
        Some("identity"),
        None,
        Some("gzip, deflate"),
        Some("gzip, br;q=0"),
    ];
    for _ in 0..2 {
        for ae in clients {
            let headers: Vec<(&str, &str)> =
                ae.map(|v| ("accept-encoding", v)).into_iter().collect();
            let r = get(&s, "/enc", &headers).await;
            let coding = r.header("content-encoding");
            assert!(acceptable(ae, coding), "{ae:?} was served {coding:?}");
        }
    }
}

/// Issue 16 review: behind a negotiating origin, a client without
/// Accept-Encoding (curl, a probe) must not pin every browser to an
/// uncompressed body, and a browser's body never reaches curl.
#[tokio::test]
async fn a_plain_client_does_not_pin_browsers_to_identity() {
    let s = behind_proxy(CacheLayer::new()).await;
    let plain = get(&s, "/pin", &[("host", "victim.test")]).await;
    assert_eq!(plain.header("content-encoding"), None);
    let browser = [
        ("host", "victim.test"),
        ("accept-encoding", "gzip, deflate, br"),
    ];
    let first = get(&s, "/pin", &browser).await;
    assert_eq!(first.header("content-encoding"), Some("br"));
    let second = get(&s, "/pin", &browser).await;
    assert_eq!(second.header("content-encoding"), Some("br"));
    assert!(second.header("cache-status").unwrap().contains("hit"));
    let plain_again = get(&s, "/pin", &[("host", "victim.test")]).await;
    assert_eq!(plain_again.header("content-encoding"), None);
    assert!(plain_again.header("cache-status").unwrap().contains("hit"));
    assert_eq!(s.calls.load(Ordering::SeqCst), 2);
}
