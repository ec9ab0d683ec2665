//! What the rate limiter does with a request that has no key, per reason:
//! a missing client address (the server's set-up, loud by default) and a
//! missing key the client sends (an API key, the rule's choice), and how
//! the report shows the first.

mod support;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderName, Request, StatusCode};
use http_body_util::Full;
use support::log::LogBuffer;
use support::{TestResponse, serve_without_connect_info};
use tower::ServiceExt;
use tower_perf::rate_limit::{KeySource, MissingKey, PeerAddr, Quota, RateLimitLayer, RateRule};

fn api_key() -> KeySource {
    KeySource::Header(HeaderName::from_static("x-api-key"))
}

/// `/api/**` is keyed on an API key, `/login` on the peer IP.
fn two_rules() -> RateLimitLayer {
    RateLimitLayer::new()
        .rule(
            RateRule::new("api", Quota::per_minute(1))
                .path("/api/**")
                .key(api_key()),
        )
        .rule(RateRule::new("login", Quota::per_minute(2)).path("/login"))
}

fn app(layer: RateLimitLayer) -> Router {
    Router::new()
        .route("/api/items", get(|| async { "items" }))
        .route("/login", get(|| async { "form" }))
        .route("/other", get(|| async { "other" }))
        .layer(layer)
}

/// Serves `app` with `axum::serve(listener, app)`: no `ConnectInfo`.
async fn get_from(addr: SocketAddr, path: &str, api_key: Option<&str>) -> TestResponse {
    let key: Vec<(&str, &str)> = api_key.map(|k| ("x-api-key", k)).into_iter().collect();
    support::get_at(addr, path, &key).await
}

/// Calls a service built from `layer` once, in process, with the peer
/// address and API key given.
async fn call(
    layer: &RateLimitLayer,
    path: &str,
    peer: Option<[u8; 4]>,
    api_key: Option<&str>,
) -> StatusCode {
    let svc = tower::ServiceBuilder::new()
        .layer(layer.clone())
        .service(tower::service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::from("ok")))
        }));
    let mut req = Request::get(path).body(Full::default()).unwrap();
    if let Some(ip) = peer {
        req.extensions_mut()
            .insert(PeerAddr(SocketAddr::from((ip, 5000))));
    }
    if let Some(k) = api_key {
        req.headers_mut()
            .insert("x-api-key", http::HeaderValue::from_str(k).unwrap());
    }
    svc.oneshot(req).await.unwrap().status()
}

/// The layer-wide `on_missing_key` an API-key rule needs used to be the
/// choice for the per-IP rules too: behind `axum::serve(listener, app)`
/// they went back to one shared `unknown` bucket, silently. Now it is the
/// API key's choice only, and the per-IP rule still fails loudly.
#[tokio::test]
async fn an_api_key_choice_leaves_the_ip_rules_failing_loudly() {
    let log = LogBuffer::default();
    let _guard = log.capture();
    let layer = two_rules().on_missing_key(MissingKey::Allow);
    let stats = layer.stats();
    let addr = serve_without_connect_info(app(layer)).await;
    // The API-key rule: anonymous requests pass (its choice), keys count.
    for _ in 0..3 {
        assert_eq!(
            get_from(addr, "/api/items", None).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        get_from(addr, "/api/items", Some("a")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_from(addr, "/api/items", Some("a")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The per-IP rule: no address, so every request is a 500 naming the fix.
    for _ in 0..4 {
        let r = get_from(addr, "/login", None).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        let body = r.text();
        assert!(
            body.contains("into_make_service_with_connect_info::<SocketAddr>()"),
            "{body}"
        );
        assert!(
            body.contains(".on_missing_peer_addr(MissingKey::Shared)"),
            "{body}"
        );
    }
    assert_eq!(get_from(addr, "/other", None).await.status, StatusCode::OK);
    let errors = log.errors();
    assert_eq!(errors.len(), 1, "one error for the layer: {errors:#?}");
    assert!(errors[0].contains("policy=\"login\""), "{}", errors[0]);
    assert!(
        errors[0].contains("into_make_service_with_connect_info"),
        "{}",
        errors[0]
    );
    assert_eq!(stats.missing_key_failures(), 4);
    let snap = stats.snapshot().policies;
    assert_eq!((snap[0].name.as_str(), snap[0].allowed), ("api", 1));
    assert_eq!(
        (snap[1].name.as_str(), snap[1].allowed, snap[1].limited),
        ("login", 0, 0)
    );
}

/// A rule's own choices win over the layer's, per reason: one API-key rule
/// denies anonymous requests while another follows the layer and lets them
/// through; one per-IP rule shares a quota among requests without an
/// address as chosen, another keeps the loud default; in one rule, an
/// API key and the client's address each follow their own setting.
#[tokio::test]
async fn each_rule_chooses_for_itself() {
    let log = LogBuffer::default();
    let _guard = log.capture();
    let layer = RateLimitLayer::new()
        .rule(
            RateRule::new("strict", Quota::per_minute(5))
                .path("/strict")
                .key(api_key())
                .on_missing_key(MissingKey::Deny),
        )
        .rule(
            RateRule::new("open", Quota::per_minute(5))
                .path("/open")
                .key(api_key()),
        )
        .rule(
            RateRule::new("shared-ip", Quota::per_minute(2))
                .path("/shared")
                .on_missing_peer_addr(MissingKey::Shared),
        )
        .rule(RateRule::new("ip", Quota::per_minute(5)).path("/ip"))
        .rule(
            RateRule::new("both", Quota::per_minute(5))
                .path("/both")
                .key(api_key())
                .and_policy("both-ip", Quota::per_minute(5), KeySource::PeerIp)
                .on_missing_key(MissingKey::Allow),
        )
        .on_missing_key(MissingKey::Allow);
    let stats = layer.stats();
    let peer = Some([203, 0, 113, 7]);
    assert_eq!(
        call(&layer, "/strict", peer, None).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        call(&layer, "/strict", peer, Some("k")).await,
        StatusCode::OK
    );
    assert_eq!(call(&layer, "/open", peer, None).await, StatusCode::OK);
    assert_eq!(call(&layer, "/shared", None, None).await, StatusCode::OK);
    assert_eq!(call(&layer, "/shared", None, None).await, StatusCode::OK);
    assert_eq!(
        call(&layer, "/shared", None, None).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert!(log.errors().is_empty(), "{:?}", log.errors());
    assert_eq!(stats.missing_key_failures(), 0);
    assert_eq!(
        call(&layer, "/ip", None, None).await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // An API key and an address: the key is there, the address is not.
    assert_eq!(
        call(&layer, "/both", None, Some("k")).await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // The address is there, the key is not: the rule lets it through.
    assert_eq!(call(&layer, "/both", peer, None).await, StatusCode::OK);
    assert_eq!(call(&layer, "/ip", peer, None).await, StatusCode::OK);
    assert_eq!(stats.missing_key_failures(), 2);
    assert_eq!(log.errors().len(), 1, "{:?}", log.errors());
}

/// `on_missing_peer_addr` on the layer is the choice for every per-IP rule
/// that doesn't make its own, and nothing else.
#[tokio::test]
async fn the_layers_peer_addr_choice_is_the_default_of_ip_rules() {
    let layer = two_rules()
        .rule(
            RateRule::new("strict-ip", Quota::per_minute(5))
                .path("/other")
                .on_missing_peer_addr(MissingKey::Deny),
        )
        .on_missing_key(MissingKey::Deny)
        .on_missing_peer_addr(MissingKey::Allow);
    let stats = layer.stats();
    for _ in 0..3 {
        assert_eq!(call(&layer, "/login", None, None).await, StatusCode::OK);
    }
    assert_eq!(
        call(&layer, "/other", None, None).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        call(&layer, "/api/items", None, None).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(stats.missing_key_failures(), 0);
}

/// The failures reach the report: the summary's rate-limit section counts
/// them, a critical recommendation names the fix and comes before the
/// timing layer's generic advice about the same 500s, and the Prometheus
/// text has a counter that promtool accepts.
#[cfg(all(feature = "report", feature = "timing"))]
#[tokio::test]
async fn the_report_names_missing_address_failures() {
    use tower_perf::report::Report;
    use tower_perf::timing::TimingLayer;

    let rate_limit = two_rules().on_missing_key(MissingKey::Allow);
    let timing = TimingLayer::new();
    let report = Report::builder()
        .rate_limit(rate_limit.stats())
        .timing(timing.stats())
        .build();
    let app = app(rate_limit).layer(timing);
    let addr = serve_without_connect_info(app).await;
    // Enough for timing to judge the route (and advise about its 500s).
    for _ in 0..12 {
        let r = get_from(addr, "/login", None).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(
        get_from(addr, "/api/items", None).await.status,
        StatusCode::OK
    );

    let summary = serde_json::to_value(report.summary()).unwrap();
    assert_eq!(
        summary["rate_limit"]["missing_key_failures"], 12,
        "{summary:#}"
    );
    assert_eq!(summary["status"], "critical", "{summary:#}");
    let first = &summary["recommendations"][0];
    assert_eq!(first["level"], "critical", "{summary:#}");
    assert_eq!(first["area"], "rate_limit", "{summary:#}");
    let message = first["message"].as_str().unwrap();
    assert!(message.contains("12 requests"), "{message}");
    let advice = first["recommendation"].as_str().unwrap();
    assert!(
        advice.contains("into_make_service_with_connect_info::<SocketAddr>()"),
        "{advice}"
    );
    assert!(advice.contains("on_missing_peer_addr"), "{advice}");
    let timing_errors = summary["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["area"] == "errors")
        .unwrap_or_else(|| panic!("timing's advice about the 500s: {summary:#}"));
    assert_eq!(timing_errors["level"], "critical", "{summary:#}");

    let text = report.prometheus();
    let family = "tower_perf_rate_limit_missing_key_failures_total";
    assert!(text.contains(&format!("# TYPE {family} counter")), "{text}");
    assert!(text.contains(&format!("\n{family} 12\n")), "{text}");
    support::promtool(&text);
}

/// In shadow mode the requests without an address were let through: the
/// report says so, as a warning, and speaks of no 500s.
#[cfg(feature = "report")]
#[tokio::test]
async fn in_shadow_mode_the_report_says_missing_addresses_were_let_through() {
    use tower_perf::report::Report;

    let rate_limit = two_rules().on_missing_key(MissingKey::Allow).shadow(true);
    let report = Report::builder().rate_limit(rate_limit.stats()).build();
    let addr = serve_without_connect_info(app(rate_limit)).await;
    for _ in 0..3 {
        assert_eq!(get_from(addr, "/login", None).await.status, StatusCode::OK);
    }
    let summary = serde_json::to_value(report.summary()).unwrap();
    assert_eq!(
        summary["rate_limit"]["missing_key_failures"], 3,
        "{summary:#}"
    );
    assert_eq!(summary["status"], "warning", "{summary:#}");
    let first = &summary["recommendations"][0];
    assert_eq!(
        (&first["level"], &first["area"]),
        (&"warning".into(), &"rate_limit".into()),
        "{summary:#}"
    );
    let message = first["message"].as_str().unwrap();
    assert!(
        message.contains("3 requests") && message.contains("let through: shadow mode"),
        "{message}"
    );
    assert!(!message.contains("were answered 500"), "{message}");
}

/// In shadow mode limited requests were let through: the report's share
/// of them speaks of no 429s.
#[cfg(feature = "report")]
#[tokio::test]
async fn in_shadow_mode_the_report_says_limited_requests_were_let_through() {
    use tower_perf::report::Report;

    let layer = two_rules().on_missing_key(MissingKey::Allow).shadow(true);
    let report = Report::builder().rate_limit(layer.stats()).build();
    for _ in 0..60 {
        assert_eq!(
            call(&layer, "/api/items", None, Some("a")).await,
            StatusCode::OK
        );
    }
    let summary = serde_json::to_value(report.summary()).unwrap();
    let info = summary["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["area"] == "rate_limit")
        .unwrap_or_else(|| panic!("the share of limited requests: {summary:#}"));
    let message = info["message"].as_str().unwrap();
    assert!(
        message.contains("let through: shadow mode") && !message.contains("429"),
        "{message}"
    );
}

/// Without failures the report says nothing about them but the zero.
#[cfg(feature = "report")]
#[test]
fn without_failures_the_report_is_quiet() {
    use tower_perf::report::Report;

    let layer = two_rules().on_missing_key(MissingKey::Allow);
    let report = Report::builder().rate_limit(layer.stats()).build();
    let summary = serde_json::to_value(report.summary()).unwrap();
    assert_eq!(summary["rate_limit"]["missing_key_failures"], 0);
    assert_eq!(summary["status"], "healthy", "{summary:#}");
    assert!(
        report
            .prometheus()
            .contains("\ntower_perf_rate_limit_missing_key_failures_total 0\n")
    );
}
