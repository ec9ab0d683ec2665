//! examples/proxy.rs: the caching reverse proxy in front of a real origin.

mod support;

#[allow(dead_code)]
#[path = "../examples/proxy.rs"]
mod proxy;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::any;
use http_body_util::Full;
use support::TestServer;
use tower_perf::cache::CacheLayer;

/// What the origin saw: method, path, headers, body.
type Seen = Arc<Mutex<Vec<(Method, String, HeaderMap, Bytes)>>>;

async fn origin() -> (TestServer, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/{*path}",
            any(
                |State(seen): State<Seen>,
                 method: Method,
                 uri: axum::http::Uri,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let n = {
                        let mut s = seen.lock().unwrap();
                        s.push((method.clone(), uri.to_string(), headers, body.clone()));
                        s.len()
                    };
                    let cc = if uri.path().starts_with("/cached") {
                        "public, max-age=60"
                    } else {
                        "no-store"
                    };
                    (
                        [
                            (header::CACHE_CONTROL, cc.to_owned()),
                            (header::CONNECTION, "x-hop".to_owned()),
                            (
                                header::HeaderName::from_static("x-hop"),
                                "secret".to_owned(),
                            ),
                            (header::HeaderName::from_static("x-end"), "kept".to_owned()),
                        ],
                        format!("{method} {uri} #{n} body={}", body.len()),
                    )
                        .into_response()
                },
            ),
        )
        .with_state(seen.clone());
    (TestServer::serve(app).await, seen)
}

async fn start() -> (TestServer, TestServer, Seen) {
    let (origin, seen) = origin().await;
    let origin_uri = format!("http://{}", origin.addr()).parse().unwrap();
    let proxy = TestServer::serve(proxy::proxy(origin_uri, CacheLayer::new())).await;
    (proxy, origin, seen)
}

#[tokio::test]
async fn caches_what_the_origin_allows() {
    let (proxy, _origin, seen) = start().await;
    let a = proxy.get("/cached/a?x=1").await;
    let b = proxy.get("/cached/a?x=1").await;
    assert_eq!(a.text(), b.text());
    assert!(b.header("cache-status").unwrap().contains("hit"));
    assert_eq!(seen.lock().unwrap().len(), 1);
    proxy.get("/fresh").await;
    proxy.get("/fresh").await;
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn forwards_every_method_and_end_to_end_headers_but_no_hop_by_hop() {
    let (proxy, _origin, seen) = start().await;
    for m in [
        "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE", "X-CUSTOM",
    ] {
        let method = Method::from_bytes(m.as_bytes()).unwrap();
        let r = proxy
            .send(
                proxy
                    .request(method.clone(), "/things/1")
                    .header("x-request-id", "abc")
                    .header("connection", "x-private")
                    .header("x-private", "hop")
                    .header("keep-alive", "timeout=5")
                    .header("te", "trailers")
                    .body(Full::from("payload"))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{m}");
        assert!(
            r.text().starts_with(&format!("{m} /things/1")),
            "{m}: {}",
            r.text()
        );
        assert!(r.text().ends_with("body=7"), "{m}: the body is forwarded");
        // Hop-by-hop fields of the origin's answer don't reach the client.
        assert!(r.header("x-hop").is_none());
        assert_eq!(r.header("x-end"), Some("kept"));
        assert_eq!(r.header("via"), Some("1.1 tower-perf"));
        let seen = seen.lock().unwrap();
        let (got, _, headers, _) = seen.last().unwrap();
        assert_eq!(got, &method);
        assert_eq!(headers["x-request-id"], "abc");
        assert_eq!(headers["via"], "1.1 tower-perf");
        for hop in ["x-private", "keep-alive", "te"] {
            assert!(headers.get(hop).is_none(), "{m}: {hop} forwarded");
        }
    }
}

#[tokio::test]
async fn an_unreachable_origin_gets_502() {
    // A port nothing listens on: bind, note it, and close it only once the
    // proxy has its own port (closed first, the port could be handed to
    // the proxy itself, which would then forward to itself forever).
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let origin = format!("http://127.0.0.1:{port}").parse().unwrap();
    let proxy = TestServer::serve(proxy::proxy(origin, CacheLayer::new())).await;
    assert_ne!(proxy.addr().port(), port);
    drop(held);
    let r = proxy.get("/x").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
}

/// An origin that accepts and never answers: 504 after
/// `--upstream-timeout`, or the stale copy where `stale-if-error` allows;
/// the client's connection is not held forever.
#[tokio::test]
async fn a_silent_origin_gets_504_after_the_upstream_timeout() {
    // Accepts, reads nothing, answers nothing.
    let (port, held) = support::silent_listener().await;
    let origin = format!("http://127.0.0.1:{port}").parse().unwrap();
    let timeout = std::time::Duration::from_millis(300);
    let proxy = TestServer::serve(proxy::proxy_full::<hyper::body::Incoming>(
        origin,
        CacheLayer::new(),
        false,
        timeout,
    ))
    .await;
    let start = std::time::Instant::now();
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), proxy.get("/x"))
        .await
        .expect("answered long before 10 s");
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(start.elapsed() >= timeout, "{:?}", start.elapsed());
    assert!(r.text().contains("gateway timeout"), "{}", r.text());
    held.abort();
}

/// Forwarding fields a client sends to pose as an earlier proxy, or to
/// name another host, scheme, URL or method (the first three are the ones
/// the proxy sets itself).
const SPOOFED: [(&str, &str); 22] = [
    ("x-forwarded-for", "6.6.6.6"),
    ("x-forwarded-host", "evil.test"),
    ("x-forwarded-proto", "https"),
    ("forwarded", "for=6.6.6.6;host=evil.test;proto=https"),
    ("x-forwarded-server", "evil.test"),
    ("x-forwarded-port", "443"),
    ("x-forwarded-prefix", "/evil"),
    ("x-host", "evil.test"),
    ("x-real-ip", "6.6.6.6"),
    ("x-original-url", "/admin"),
    ("x-rewrite-url", "/admin"),
    ("x-forwarded-scheme", "https"),
    ("x-forwarded-ssl", "on"),
    ("front-end-https", "on"),
    ("x-url-scheme", "https"),
    ("x-original-host", "evil.test"),
    ("x-forwarded-uri", "/admin"),
    ("x-forwarded-path", "/admin"),
    ("x-original-uri", "/admin"),
    ("x-http-method-override", "DELETE"),
    ("x-http-method", "DELETE"),
    ("x-method-override", "DELETE"),
];

/// The values of `name` the origin saw on its last request.
fn seen_all(seen: &Seen, name: &str) -> Vec<String> {
    let seen = seen.lock().unwrap();
    let (_, _, headers, _) = seen.last().unwrap();
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_origin_sees_the_proxys_forwarding_fields_not_the_clients() {
    let (proxy, _origin, seen) = start().await;
    let r = proxy.get_with("/things/1", &SPOOFED).await;
    assert_eq!(r.status, StatusCode::OK);
    let host = proxy.addr().to_string();
    // Overwritten, one value each: the peer, the Host, plain http.
    assert_eq!(seen_all(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen_all(&seen, "x-forwarded-host"), [host.as_str()]);
    assert_eq!(seen_all(&seen, "x-forwarded-proto"), ["http"]);
    assert_eq!(seen_all(&seen, "host"), [host.as_str()]);
    for (name, _) in &SPOOFED[3..] {
        assert!(seen_all(&seen, name).is_empty(), "{name} forwarded");
    }
    // Two X-Forwarded-For lines are still replaced by the peer.
    proxy
        .get_with(
            "/things/2",
            &[
                ("x-forwarded-for", "1.1.1.1"),
                ("x-forwarded-for", "2.2.2.2"),
            ],
        )
        .await;
    assert_eq!(seen_all(&seen, "x-forwarded-for"), ["127.0.0.1"]);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_chain_grows_and_its_fields_are_kept() {
    let (origin, seen) = origin().await;
    let uri = format!("http://{}", origin.addr()).parse().unwrap();
    let proxy = TestServer::serve(proxy::proxy_with(uri, CacheLayer::new(), true)).await;
    let mut sent = SPOOFED.to_vec();
    sent.push(("x-forwarded-for", "7.7.7.7"));
    assert_eq!(
        proxy.get_with("/things/1", &sent).await.status,
        StatusCode::OK
    );
    assert_eq!(
        seen_all(&seen, "x-forwarded-for"),
        ["6.6.6.6, 7.7.7.7, 127.0.0.1"]
    );
    // The host is still what this proxy saw; the scheme is the trusted
    // proxy's (a TLS-terminating balancer says https)…
    let host = proxy.addr().to_string();
    assert_eq!(seen_all(&seen, "x-forwarded-host"), [host.as_str()]);
    assert_eq!(seen_all(&seen, "x-forwarded-proto"), ["https"]);
    for (name, value) in &SPOOFED[3..] {
        assert_eq!(seen_all(&seen, name), [*value], "{name}");
    }
    // …and http when it names none.
    proxy
        .get_with("/things/2", &[("x-forwarded-ssl", "on")])
        .await;
    assert_eq!(seen_all(&seen, "x-forwarded-proto"), ["http"]);
    assert_eq!(seen_all(&seen, "x-forwarded-ssl"), ["on"]);
}

#[tokio::test]
async fn an_absolute_form_target_never_picks_the_upstream() {
    let (proxy, _origin, seen) = start().await;
    let out = proxy
        .send_raw(
            b"GET http://evil.test/things/3?q=1 HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
        )
        .await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // Our origin answered, for the path and query only; the Host is the
    // one the cache settled on, and X-Forwarded-Host says the same.
    assert!(text.ends_with("GET /things/3?q=1 #1 body=0"), "{text}");
    assert_eq!(seen_all(&seen, "host"), ["evil.test"]);
    assert_eq!(seen_all(&seen, "x-forwarded-host"), ["evil.test"]);
}

#[test]
fn forwarding_fields_without_a_peer_or_host() {
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
    h.insert("x-forwarded-host", "evil.test".parse().unwrap());
    proxy::set_forwarding(&mut h, None, false);
    assert!(h.get("x-forwarded-for").is_none());
    assert!(h.get("x-forwarded-host").is_none());
    assert_eq!(h["x-forwarded-proto"], "http");
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
    proxy::set_forwarding(&mut h, Some("::1".parse().unwrap()), true);
    assert_eq!(h["x-forwarded-for"], "6.6.6.6, ::1");
    assert_eq!(
        h["x-forwarded-proto"], "http",
        "none from the trusted proxy"
    );
}

#[test]
fn x_forwarded_proto_is_kept_only_from_a_trusted_proxy() {
    for (trust, want) in [(false, "http"), (true, "https")] {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        proxy::set_forwarding(&mut h, None, trust);
        assert_eq!(h["x-forwarded-proto"], want, "trust {trust}");
    }
}

#[test]
fn every_spoofable_field_is_dropped_unless_trusted() {
    // The proxy's own list and the tests' agree…
    for (name, _) in &SPOOFED[3..] {
        assert!(proxy::client_forwarding().any(|n| n == *name), "{name}");
    }
    for (trust, kept) in [(false, 0), (true, 1)] {
        let mut h = HeaderMap::new();
        for (name, value) in &SPOOFED[3..] {
            h.insert(*name, value.parse().unwrap());
        }
        proxy::set_forwarding(&mut h, None, trust);
        for (name, _) in &SPOOFED[3..] {
            assert_eq!(
                h.get_all(*name).iter().count(),
                kept,
                "{name}, trust {trust}"
            );
        }
    }
}

#[test]
fn args() {
    let parse = |a: &[&str]| proxy::parse_args(a.iter().map(|s| (*s).to_owned()));
    let ok = parse(&["--origin", "http://127.0.0.1:8000"]).unwrap();
    assert_eq!(ok.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(ok.cache_mib, 64);
    assert!(!ok.trust_forwarded);
    let trusting = parse(&["--origin", "http://o:1", "--trust-forwarded"]).unwrap();
    assert!(trusting.trust_forwarded);
    let limited = parse(&[
        "--origin",
        "http://o:1",
        "--max-connections",
        "64",
        "--header-read-timeout=2",
    ])
    .unwrap();
    assert_eq!(limited.limits.max_connections, 64);
    assert_eq!(
        limited.limits.header_read_timeout,
        std::time::Duration::from_secs(2)
    );
    assert!(parse(&["--origin", "http://o:1", "--max-connections", "0"]).is_err());
    assert_eq!(ok.upstream_timeout, proxy::DEFAULT_UPSTREAM_TIMEOUT);
    let quick = parse(&["--origin", "http://o:1", "--upstream-timeout", "2.5"]).unwrap();
    assert_eq!(
        quick.upstream_timeout,
        std::time::Duration::from_millis(2500)
    );
    for bad in ["0", "-1", "x", "100000"] {
        assert!(parse(&["--origin", "http://o:1", "--upstream-timeout", bad]).is_err());
    }
    let all = parse(&[
        "--listen=0.0.0.0:9000",
        "--origin=http://o:1",
        "--cache-mib",
        "8",
    ])
    .unwrap();
    assert_eq!((all.listen.port(), all.cache_mib), (9000, 8));
    assert!(parse(&[]).is_err());
    assert!(parse(&["--origin", "https://secure"]).is_err());
    assert!(parse(&["--origin", "/path"]).is_err());
    assert!(parse(&["--origin", "http://o:1", "--bogus"]).is_err());
}
