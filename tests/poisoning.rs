//! Cache-poisoning attempts over real HTTP (issue 16): each case has a
//! first client choose something (a host, a header, a coding…) and shows
//! that a second client never receives what the first one chose.
//!
//! The origin reflects what it saw into the body (`host=…`, the path, the
//! forwarding fields, the user) and negotiates `br`, `zstd`, `gzip` or
//! identity by `Accept-Encoding` itself. It stands behind
//! `examples/proxy.rs` (the origin negotiates, the cache's default) and
//! behind a bare `CacheLayer` (no proxy rewriting anything).

mod support;

#[allow(dead_code)]
#[path = "../examples/proxy.rs"]
mod proxy;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{TestResponse, TestServer};
use tower::ServiceBuilder;
use tower_perf::cache::CacheLayer;
use tower_perf::headers::{AcceptEncoding, ContentCoding, QValue};

/// The origin: reflects what it saw, negotiates codings itself.
async fn origin(calls: Arc<AtomicUsize>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    let h = req.headers();
    let get = |name: &str| {
        h.get(name)
            .map_or("-", |v| v.to_str().unwrap_or("?"))
            .to_owned()
    };
    let path = req.uri().path().to_owned();
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut resp = Response::builder().header(header::CACHE_CONTROL, "public, max-age=60");
    let scheme = req.uri().scheme_str().unwrap_or("-").to_owned();
    let mut body = format!("#{n} host={} path={pq} scheme={scheme}", get("host"));
    match path.as_str() {
        "/reflect" => {
            // Unkeyed fields a careless origin trusts (no Vary).
            for f in [
                "x-forwarded-host",
                "x-forwarded-proto",
                "x-original-url",
                "x-http-method-override",
                "forwarded",
            ] {
                body.push_str(&format!(" {f}={}", get(f)));
            }
        }
        "/auth" => {
            // The default `max-age` only: not shareable with Authorization.
            resp = Response::builder().header(header::CACHE_CONTROL, "max-age=60");
            body.push_str(&format!(" user={}", get("authorization").replace(' ', "_")));
        }
        "/cookie" => {
            resp = resp.header(header::SET_COOKIE, format!("sid={}", get("x-user")));
            body.push_str(&format!(" user={}", get("x-user")));
        }
        "/star" => {
            resp = resp.header(header::VARY, "*");
            body.push_str(&format!(" user={}", get("x-user")));
        }
        "/long-vary" => {
            // 100 fields, none of them the one reflected: only the cap
            // keeps this from being shared.
            let names: Vec<String> = (0..100).map(|i| format!("x-f{i}")).collect();
            resp = resp.header(header::VARY, names.join(", "));
            body.push_str(&format!(" user={}", get("x-user")));
        }
        "/revalidate" | "/swr" => {
            // Validated on every use (or stale at once with a background
            // refresh), and the 304 carries a field built from the
            // forwarding fields: a shared variant revalidated on an
            // attacker's behalf would take the attacker's link.
            let xfh = h.get("x-forwarded-host").unwrap_or(&h[header::HOST]);
            let link = format!("<http://{}/app.js>", xfh.to_str().unwrap_or("?"));
            let cc = if path == "/swr" {
                "max-age=0, stale-while-revalidate=60"
            } else {
                "no-cache"
            };
            resp = Response::builder()
                .header(header::CACHE_CONTROL, cc)
                .header(header::ETAG, "\"v1\"")
                .header(header::LINK, link);
            if h.get(header::IF_NONE_MATCH).is_some_and(|v| v == "\"v1\"") {
                return resp
                    .status(StatusCode::NOT_MODIFIED)
                    .body(Full::default())
                    .unwrap();
            }
        }
        "/coalesce" => {
            // Slow, stale at once, made fresh by its 304s.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            if h.get(header::IF_NONE_MATCH).is_some_and(|v| v == "\"v2\"") {
                return Response::builder()
                    .status(StatusCode::NOT_MODIFIED)
                    .header(header::CACHE_CONTROL, "max-age=60")
                    .header(header::ETAG, "\"v2\"")
                    .body(Full::default())
                    .unwrap();
            }
            resp = Response::builder()
                .header(header::CACHE_CONTROL, "max-age=0")
                .header(header::ETAG, "\"v2\"");
        }
        "/vary-user" => {
            resp = resp.header(header::VARY, "x-user");
            body.push_str(&format!(" user={}", get("x-user")));
        }
        _ => {}
    }
    if h.contains_key(header::RANGE) {
        return resp
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_RANGE, "bytes 0-3/100")
            .body(Full::from(format!("part {body}")))
            .unwrap();
    }
    // The origin's own negotiation (identity when nothing listed fits).
    let ae = AcceptEncoding::from_headers(h);
    let coding = ae
        .negotiate(&[ContentCoding::Br, ContentCoding::Zstd, ContentCoding::Gzip])
        .unwrap_or(ContentCoding::Identity);
    if coding != ContentCoding::Identity {
        resp = resp.header(header::CONTENT_ENCODING, coding.as_str());
    }
    body.push_str(&format!(" coding={coding}"));
    resp.header(header::VARY, "accept-encoding")
        .body(Full::from(body))
        .unwrap()
}

struct Setup {
    front: TestServer,
    _origin: Option<TestServer>,
    calls: Arc<AtomicUsize>,
}

/// `examples/proxy.rs` with `cache` in front of the reflecting origin.
async fn behind_proxy(cache: CacheLayer) -> Setup {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let origin_server = TestServer::serve(tower::service_fn(move |req| {
        let c = c.clone();
        async move { Ok::<_, Infallible>(origin(c, req).await) }
    }))
    .await;
    let origin_uri = format!("http://{}", origin_server.addr()).parse().unwrap();
    let front = TestServer::serve(proxy::proxy(origin_uri, cache)).await;
    Setup {
        front,
        _origin: Some(origin_server),
        calls,
    }
}

/// A bare `CacheLayer` in front of the origin service, nothing between.
async fn bare_cache(cache: CacheLayer) -> Setup {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let svc = ServiceBuilder::new()
        .layer(cache)
        .service(tower::service_fn(move |req| {
            let c = c.clone();
            async move { Ok::<_, Infallible>(origin(c, req).await) }
        }));
    Setup {
        front: TestServer::serve(svc).await,
        _origin: None,
        calls,
    }
}

fn field<'a>(r: &'a TestResponse, name: &str) -> &'a str {
    let key = format!("{name}=");
    let text = r.text();
    text.split(' ')
        .find_map(|w| w.strip_prefix(key.as_str()))
        .unwrap_or_else(|| panic!("{name} in {text:?}"))
}

async fn get(s: &Setup, path: &str, headers: &[(&str, &str)]) -> TestResponse {
    s.front.get_with(path, headers).await
}

/// The raw response to `raw` on a fresh connection, as text.
async fn raw(s: &Setup, raw: &str) -> String {
    String::from_utf8_lossy(&s.front.send_raw(raw.as_bytes()).await).into_owned()
}

#[tokio::test]
async fn absolute_form_target_wins_over_host_and_is_what_the_origin_sees() {
    for s in [
        behind_proxy(CacheLayer::new()).await,
        bare_cache(CacheLayer::new()).await,
    ] {
        let first = raw(
            &s,
            "GET http://victim.test/x HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        // The origin answered for the authority the cache keyed on.
        assert!(first.contains("host=victim.test "), "{first}");
        assert!(!first.contains("evil.test"), "{first}");
        // A client of victim.test gets that answer; one of evil.test does
        // not.
        let victim = get(&s, "/x", &[("host", "victim.test")]).await;
        assert!(victim.header("cache-status").unwrap().contains("hit"));
        assert_eq!(field(&victim, "host"), "victim.test");
        let evil = get(&s, "/x", &[("host", "evil.test")]).await;
        assert_eq!(field(&evil, "host"), "evil.test");
        assert_eq!(s.calls.load(Ordering::SeqCst), 2);
    }
}

#[tokio::test]
async fn hosts_are_normalized_once_and_keyed_as_forwarded() {
    let s = behind_proxy(CacheLayer::new()).await;
    let a = get(&s, "/n", &[("host", "VICTIM.test:80")]).await;
    assert_eq!(field(&a, "host"), "victim.test");
    for same in [
        "victim.test",
        "Victim.Test",
        "victim.test:080",
        "victim.test:",
    ] {
        let b = get(&s, "/n", &[("host", same)]).await;
        assert_eq!(field(&b, "host"), "victim.test", "{same}");
        assert!(b.header("cache-status").unwrap().contains("hit"), "{same}");
    }
    let other_port = get(&s, "/n", &[("host", "victim.test:8080")]).await;
    assert_eq!(field(&other_port, "host"), "victim.test:8080");
    assert_eq!(s.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn missing_repeated_and_invalid_hosts_get_400_and_reach_nobody() {
    let s = behind_proxy(CacheLayer::new()).await;
    let mut cases: Vec<(String, &str)> = vec![
        ("GET /h HTTP/1.1\r\nConnection: close\r\n\r\n".into(), "missing"),
        (
            "GET /h HTTP/1.1\r\nHost: victim.test\r\nHost: evil.test\r\nConnection: close\r\n\r\n"
                .into(),
            "repeated",
        ),
        (
            "GET /h HTTP/1.1\r\nHost: victim.test\r\nHost: victim.test\r\nConnection: close\r\n\r\n"
                .into(),
            "repeated, same value",
        ),
    ];
    for host in [
        "victim.test/",
        "victim.test?",
        "victim.test#",
        "vic tim.test",
        "victim.test\\",
        "user@victim.test",
        "victim.test:80x",
        "victim.test:99999",
        "[::1",
        "victim.test,evil.test",
        "victim.test;x=1",
    ] {
        cases.push((
            format!("GET /h HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
            "invalid",
        ));
    }
    // The asterisk-form is for OPTIONS only: a GET `*` would be keyed as
    // the path `/*` while the origin answered `*`.
    cases.push((
        "GET * HTTP/1.1\r\nHost: victim.test\r\nConnection: close\r\n\r\n".into(),
        "asterisk-form GET",
    ));
    // A byte no host has (obs-text).
    let mut high = b"GET /h HTTP/1.1\r\nHost: victim.test".to_vec();
    high.extend_from_slice(b"\xff\r\nConnection: close\r\n\r\n");
    for (req, what) in &cases {
        let r = raw(&s, req).await;
        assert!(r.starts_with("HTTP/1.1 400"), "{what}: {req:?} -> {r}");
    }
    let r = String::from_utf8_lossy(&s.front.send_raw(&high).await).into_owned();
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // An absolute-form target with an invalid Host is refused too.
    let r = raw(
        &s,
        "GET http://victim.test/h HTTP/1.1\r\nHost: evil.test/\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert_eq!(
        s.calls.load(Ordering::SeqCst),
        0,
        "no refused request was forwarded"
    );
    // HTTP/1.0 may omit Host.
    let r = raw(&s, "GET /h HTTP/1.0\r\n\r\n").await;
    assert!(
        r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"),
        "{r}"
    );
    let victim = get(&s, "/h", &[("host", "victim.test")]).await;
    assert_eq!(field(&victim, "host"), "victim.test");
}

#[tokio::test]
async fn http2_authority_wins_over_a_conflicting_host() {
    // What reached the cache (before it settled the authority), to be
    // sure the conflicting Host was really sent.
    let arrived: Arc<std::sync::Mutex<Vec<(String, String)>>> = Arc::default();
    let seen = arrived.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let svc = ServiceBuilder::new()
        .map_request(move |req: Request<Incoming>| {
            let host = req
                .headers()
                .get("host")
                .map_or("-".into(), |h| h.to_str().unwrap().to_owned());
            let authority = req.uri().authority().map_or("-".into(), |a| a.to_string());
            seen.lock().unwrap().push((authority, host));
            req
        })
        .layer(CacheLayer::new())
        .service(tower::service_fn(move |req| {
            let c = c.clone();
            async move { Ok::<_, Infallible>(origin(c, req).await) }
        }));
    let s = Setup {
        front: TestServer::serve(svc).await,
        _origin: None,
        calls,
    };
    let stream = tokio::net::TcpStream::connect(s.front.addr())
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://victim.test/h2")
        .version(Version::HTTP_2)
        .header("host", "evil.test")
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let first = TestResponse::collect(resp).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        arrived.lock().unwrap()[0],
        ("victim.test".to_owned(), "evil.test".to_owned()),
        "the request carried both"
    );
    assert_eq!(field(&first, "host"), "victim.test");
    // An invalid Host beside a valid `:authority` is refused over HTTP/2
    // as well (the response's `Connection: close` is dropped by hyper).
    let bad = Request::get("http://victim.test/h2")
        .version(Version::HTTP_2)
        .header("host", "evil.test/")
        .body(Full::<Bytes>::default())
        .unwrap();
    let bad = TestResponse::collect(send.send_request(bad).await.unwrap()).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let victim = get(&s, "/h2", &[("host", "victim.test")]).await;
    assert!(victim.header("cache-status").unwrap().contains("hit"));
    assert_eq!(field(&victim, "host"), "victim.test");
    let evil = get(&s, "/h2", &[("host", "evil.test")]).await;
    assert_eq!(field(&evil, "host"), "evil.test");
    assert_eq!(s.calls.load(Ordering::SeqCst), 2);
}

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

#[tokio::test]
async fn encoded_paths_and_dot_segments_are_distinct_keys() {
    let s = behind_proxy(CacheLayer::new()).await;
    let paths = [
        "/p/a/b",
        "/p/a%2fb",
        "/p/a%2Fb",
        "/p/x/../a/b",
        "/p/./a/b",
        "/p/%61/b",
        "/p/a/b?",
        "/p/a/b?q=%2f",
        "/p/a/b?q=/",
    ];
    for round in 0..2 {
        for p in paths {
            let r = get(&s, p, &[("host", "victim.test")]).await;
            assert_eq!(field(&r, "path"), p, "round {round}");
        }
    }
    // Each path was fetched once and then served from its own entry.
    assert_eq!(s.calls.load(Ordering::SeqCst), paths.len());
}

#[tokio::test]
async fn range_and_head_never_shape_a_later_full_get() {
    let s = behind_proxy(CacheLayer::new()).await;
    let victim = [("host", "victim.test")];
    // A Range request's 206 is not stored...
    let part = get(&s, "/r", &[("host", "victim.test"), ("range", "bytes=0-3")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    let full = get(&s, "/r", &victim).await;
    assert_eq!(full.status, StatusCode::OK);
    assert!(!full.text().starts_with("part"), "{}", full.text());
    // ...and a stored full answer is not handed to a Range request as 206.
    let part2 = get(&s, "/r", &[("host", "victim.test"), ("range", "bytes=0-3")]).await;
    assert_eq!(part2.status, StatusCode::PARTIAL_CONTENT);
    assert!(part2.text().starts_with("part"));
    // HEAD first: the later GET gets the whole body.
    let head = s
        .front
        .send(
            s.front
                .request(Method::HEAD, "/hd")
                .header("host", "victim.test")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.text().is_empty());
    let body = get(&s, "/hd", &victim).await;
    assert!(body.text().contains("path=/hd"), "{:?}", body.text());
    let again = get(&s, "/hd", &victim).await;
    assert_eq!(again.text(), body.text());
}

/// The cache keys exactly what the origin sees: what the origin got as
/// `Host` for each request equals the key's host (read back from purge).
#[tokio::test]
async fn the_key_is_the_host_the_origin_saw() {
    let cache = CacheLayer::new();
    let handle = cache.handle();
    let s = behind_proxy(cache).await;
    let r = get(&s, "/k", &[("host", "Victim.Test:80")]).await;
    assert_eq!(field(&r, "host"), "victim.test");
    // A purge names the URL in any spelling of the host.
    assert_eq!(
        handle.purge_url("http://VICTIM.test:80/k").await.unwrap(),
        1
    );
    let fresh = get(&s, "/k", &[("host", "victim.test")]).await;
    assert!(!fresh.header("cache-status").unwrap().contains("hit"));
}

/// Unsafe methods invalidate by the settled authority: a `Location` on the
/// same host in another spelling drops that URL too, one on another host
/// does not.
#[tokio::test]
async fn invalidation_follows_the_normalized_authority() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let svc = ServiceBuilder::new()
        .layer(CacheLayer::new())
        .service(tower::service_fn(move |req: Request<Incoming>| {
            let c = c.clone();
            async move {
                if req.method() == Method::POST {
                    let loc = req.headers()["x-location"].clone();
                    return Ok::<_, Infallible>(
                        Response::builder()
                            .status(StatusCode::CREATED)
                            .header(header::LOCATION, loc)
                            .body(Full::default())
                            .unwrap(),
                    );
                }
                Ok(origin(c, req).await)
            }
        }));
    let s = Setup {
        front: TestServer::serve(svc).await,
        _origin: None,
        calls,
    };
    let victim = [("host", "victim.test")];
    get(&s, "/loc", &victim).await;
    let post = |loc: &'static str| {
        s.front
            .request(Method::POST, "/items")
            .header("host", "Victim.test")
            .header("x-location", loc)
            .body(Full::default())
            .unwrap()
    };
    s.front.send(post("http://evil.test/loc")).await;
    let still = get(&s, "/loc", &victim).await;
    assert!(still.header("cache-status").unwrap().contains("hit"));
    s.front.send(post("http://VICTIM.test:80/loc")).await;
    let gone = get(&s, "/loc", &victim).await;
    assert!(!gone.header("cache-status").unwrap().contains("hit"));
}

/// Issue 16 review: a request carrying a field of the implicit Vary that
/// the shared variant lacks must not revalidate (or refresh) it, or the
/// origin's 304, answered for that field, would rewrite what everyone is
/// served.
#[tokio::test]
async fn implicit_fields_never_revalidate_a_shared_variant() {
    let s = bare_cache(CacheLayer::new()).await;
    let clean = [("host", "victim.test")];
    let attacker = [("host", "victim.test"), ("x-forwarded-host", "evil.test")];
    for path in ["/revalidate", "/swr"] {
        let first = get(&s, path, &clean).await;
        assert_eq!(first.header("link"), Some("<http://victim.test/app.js>"));
        let evil = get(&s, path, &attacker).await;
        assert_eq!(evil.header("link"), Some("<http://evil.test/app.js>"));
        for _ in 0..3 {
            // Time for a background refresh to land, if one was started.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
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

/// Issue 16 review: the scheme of an absolute-form target is the
/// client's choice and not in the key, so it does not reach the inner
/// service: the target goes inward origin-form.
#[tokio::test]
async fn a_client_chosen_scheme_never_reaches_the_origin() {
    for s in [
        behind_proxy(CacheLayer::new()).await,
        bare_cache(CacheLayer::new()).await,
    ] {
        let first = raw(
            &s,
            "GET https://victim.test:443/s HTTP/1.1\r\nHost: victim.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(first.contains("scheme=- "), "{first}");
        assert!(first.contains("host=victim.test "), "{first}");
        let plain = get(&s, "/s", &[("host", "victim.test")]).await;
        assert!(plain.header("cache-status").unwrap().contains("hit"));
        assert_eq!(field(&plain, "scheme"), "-");
        let other = raw(
            &s,
            "GET ftp://victim.test/s HTTP/1.1\r\nHost: victim.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(other.starts_with("HTTP/1.1 400"), "{other}");
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

/// Issue 16 review: a request without any authority (HTTP/1.0 without
/// Host) is keyed on the empty host, and the inner service sees exactly
/// that (an empty Host), not one a client further in fills in.
#[tokio::test]
async fn no_authority_reaches_the_origin_as_an_empty_host() {
    let s = behind_proxy(CacheLayer::new()).await;
    let r = raw(&s, "GET /none HTTP/1.0\r\n\r\n").await;
    assert!(r.contains("host= "), "{r}");
    let r = raw(
        &s,
        "GET /none HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.contains("host= "), "{r}");
    assert_eq!(
        s.calls.load(Ordering::SeqCst),
        1,
        "one key, one origin answer"
    );
}

/// Issue 16 review: CONNECT names a tunnel's authority, not a stored
/// resource; a 2xx to it must not drop `victim.test/` (its authority-form
/// target, normalized, would otherwise be that very key).
#[tokio::test]
async fn connect_invalidates_nothing() {
    use tower::ServiceExt;
    let svc = ServiceBuilder::new()
        .layer(CacheLayer::new())
        .service(tower::service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(
                Response::builder()
                    .header(header::CACHE_CONTROL, "max-age=60")
                    .body(Full::from("page"))
                    .unwrap(),
            )
        }));
    let get = || {
        Request::get("/")
            .header("host", "victim.test")
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    let status = |r: &Response<_>| r.headers()["cache-status"].to_str().unwrap().to_owned();
    let first = svc.clone().oneshot(get()).await.unwrap();
    assert!(status(&first).contains("stored"));
    // Stored when its body ends.
    http_body_util::BodyExt::collect(first.into_body())
        .await
        .unwrap();
    for target in ["victim.test:443", "victim.test:80"] {
        let connect = Request::connect(target)
            .header("host", target)
            .body(Full::<Bytes>::default())
            .unwrap();
        let r = svc.clone().oneshot(connect).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let again = svc.clone().oneshot(get()).await.unwrap();
        assert!(
            status(&again).contains("hit"),
            "{target}: {}",
            status(&again)
        );
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
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let clients: Vec<_> = (0..5)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { get(&s, "/coalesce", &[("host", "victim.test")]).await })
        })
        .collect();
    for c in clients {
        assert_eq!(c.await.unwrap().status, StatusCode::OK);
    }
    attacker.await.unwrap();
    // The first fetch, the attacker's own, and one revalidation for the
    // five clean clients.
    assert_eq!(s.calls.load(Ordering::SeqCst), 3);
}
