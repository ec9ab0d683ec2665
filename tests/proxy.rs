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

#[test]
fn args() {
    let parse = |a: &[&str]| proxy::parse_args(a.iter().map(|s| (*s).to_owned()));
    let ok = parse(&["--origin", "http://127.0.0.1:8000"]).unwrap();
    assert_eq!(ok.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(ok.cache_mib, 64);
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
