//! The authority: an absolute-form target wins over Host, hosts are
//! normalized once, missing, repeated and invalid hosts are refused,
//! HTTP/2's `:authority` wins, a client-chosen scheme and a missing
//! authority never reach the origin as the client put them.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::ServiceBuilder;
use tower_perf::cache::CacheLayer;

use crate::support::gate::Gate;
use crate::support::{TestResponse, TestServer};
use crate::{Setup, bare_cache, behind_proxy, field, get, origin, raw};

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
    let held = Gate::new();
    let (c, h) = (calls.clone(), held.clone());
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
            let (c, h) = (c.clone(), h.clone());
            async move { Ok::<_, Infallible>(origin(c, h, req).await) }
        }));
    let s = Setup {
        front: TestServer::serve(svc).await,
        _origin: None,
        calls,
        held,
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
