//! The shared test harness works for a plain tower service and for an axum
//! `Router`, over real HTTP.

mod support;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use support::TestServer;

#[tokio::test]
async fn serves_a_tower_service() {
    let server = TestServer::serve(support::respond_with(|| {
        Response::builder()
            .header("x-test", "1")
            .header("vary", "a")
            .header("vary", "b")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap()
    }))
    .await;
    let res = server.get("/anything?q=1").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("x-test"), Some("1"));
    assert_eq!(res.header_all("vary"), ["a", "b"]);
    assert_eq!(res.text(), "hello");
    assert_eq!(res.header("content-length"), Some("5"));
}

#[tokio::test]
async fn serves_a_router_with_connect_info() {
    let app = Router::new()
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        )
        .route("/echo", post(|body: Bytes| async move { body }));
    let server = TestServer::serve(app).await;
    assert_eq!(server.get("/peer").await.text(), "127.0.0.1");

    let req = server
        .request(Method::POST, "/echo")
        .body(Full::from("ping"))
        .unwrap();
    assert_eq!(server.send(req).await.text(), "ping");

    assert_eq!(server.get("/missing").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn raw_requests_get_an_answer() {
    let server = TestServer::serve(Router::new().route("/", get(|| async { "root" }))).await;
    let raw = server
        .send_raw(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("root"), "{text}");
    // A request hyper can't parse gets a 400, not a hang.
    let raw = server.send_raw(b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n").await;
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 400"));
}
