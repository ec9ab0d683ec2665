//! Shared helpers for the integration tests: serve any tower `Service` or
//! axum `Router` on `127.0.0.1:0` with hyper-util and talk to it with
//! hyper-util's client.
//!
//! ```ignore
//! mod support;
//! let server = support::TestServer::serve(app()).await;
//! let res = server.get("/health").await;
//! assert_eq!(res.status, 200);
//! assert_eq!(res.text(), "ok");
//! ```
#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "cache")]
pub mod cache;
pub mod chromium;
#[cfg(feature = "redis")]
pub mod cluster;
pub mod gate;
pub mod log;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
#[cfg(feature = "redis")]
pub mod redis;
pub mod spans;

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tower::{Service, ServiceExt};
use tower_perf::headers::ContentCoding;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A server on an ephemeral loopback port, stopped when dropped.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    accept: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl TestServer {
    /// Serves `svc` (a tower `Service`, or an axum `Router`) over HTTP/1.1
    /// and HTTP/2. Every request carries the peer address as axum's
    /// `ConnectInfo<SocketAddr>` extension.
    pub async fn serve<S, B>(svc: S) -> Self
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let svc = svc.clone().map_request(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                });
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                        .await;
                });
            }
        });
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            addr,
            client,
            accept,
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An absolute URI for `path_and_query` on this server.
    pub fn uri(&self, path_and_query: &str) -> Uri {
        format!("http://{}{}", self.addr, path_and_query)
            .parse()
            .expect("valid uri")
    }

    /// The pooled hyper-util client the helpers use.
    pub fn client(&self) -> &Client<HttpConnector, Full<Bytes>> {
        &self.client
    }

    /// A request builder for `method` and `path_and_query` on this server.
    pub fn request(&self, method: Method, path_and_query: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(self.uri(path_and_query))
    }

    /// `GET path_and_query`, body collected.
    pub async fn get(&self, path_and_query: &str) -> TestResponse {
        self.get_with(path_and_query, &[]).await
    }

    /// `GET` with extra request headers.
    pub async fn get_with(&self, path_and_query: &str, headers: &[(&str, &str)]) -> TestResponse {
        let mut req = self.request(Method::GET, path_and_query);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Full::default()).expect("valid request"))
            .await
    }

    /// Sends `req` (a relative URI gets this server's authority) and
    /// collects the response.
    pub async fn send(&self, mut req: Request<Full<Bytes>>) -> TestResponse {
        if req.uri().authority().is_none() {
            let pq = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            *req.uri_mut() = self.uri(&pq);
        }
        let res = self.client.request(req).await.expect("request failed");
        TestResponse::collect(res).await
    }

    /// Sends `req` and returns the response with its body unread, to test
    /// streaming.
    pub async fn send_streaming(&self, req: Request<Full<Bytes>>) -> Response<Incoming> {
        self.client.request(req).await.expect("request failed")
    }

    /// Writes `raw` bytes on a fresh TCP connection and reads until the
    /// server closes it; for malformed requests no client would send.
    /// Ask for `Connection: close` in `raw` so the server closes.
    pub async fn send_raw(&self, raw: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        stream.write_all(raw).await.expect("write");
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        out
    }
}

/// A response with its body and trailers collected.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl TestResponse {
    /// Collects any response.
    pub async fn collect<B>(res: Response<B>) -> Self
    where
        B: Body,
        B::Error: std::fmt::Debug,
    {
        let (parts, body) = res.into_parts();
        let collected = body.collect().await.expect("body failed");
        let trailers = collected.trailers().cloned();
        Self {
            status: parts.status,
            headers: parts.headers,
            body: collected.to_bytes(),
            trailers,
        }
    }

    /// The first value of header `name` as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of header `name` as text.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = HeaderName::try_from(name).expect("valid header name");
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("body is UTF-8")
    }

    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }
}

/// Collects any body to bytes (for `oneshot` tests without a server).
pub async fn body_bytes<B>(body: B) -> Bytes
where
    B: Body,
    B::Error: std::fmt::Debug,
{
    body.collect().await.expect("body failed").to_bytes()
}

/// A `service_fn` that answers every request with `res()`; the usual inner
/// service of layer tests.
pub fn respond_with<F>(
    res: F,
) -> impl Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static
where
    F: Fn() -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    tower::service_fn(move |_req: Request<Incoming>| {
        let res = res.clone();
        async move { Ok::<_, Infallible>(res()) }
    })
}

#[path = "decoders.rs"]
mod decoders;
#[allow(unused_imports)]
pub use decoders::{decode, decode_prefix, gunzip, inflate, undictionary, undictionary_prefix};

/// `data` compressed whole in `coding` by the reference libraries (what
/// a client would send).
#[cfg(feature = "compression")]
pub fn encode(coding: tower_perf::headers::ContentCoding, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    use tower_perf::headers::ContentCoding;
    let level = flate2::Compression::default();
    match coding {
        ContentCoding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        ContentCoding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        #[cfg(feature = "compression-br")]
        ContentCoding::Br => {
            let mut out = Vec::new();
            let params = brotli::enc::BrotliEncoderParams::default();
            brotli::BrotliCompress(&mut &data[..], &mut out, &params).unwrap();
            out
        }
        #[cfg(feature = "compression-zstd")]
        ContentCoding::Zstd => zstd::encode_all(data, 3).unwrap(),
        other => panic!("this build cannot encode {other:?}"),
    }
}

/// The codings this build's compression layer produces.
#[cfg(feature = "compression")]
pub fn built_codings() -> Vec<tower_perf::headers::ContentCoding> {
    use tower_perf::headers::ContentCoding;
    let mut v = vec![ContentCoding::Gzip, ContentCoding::Deflate];
    if cfg!(feature = "compression-br") {
        v.push(ContentCoding::Br);
    }
    if cfg!(feature = "compression-zstd") {
        v.push(ContentCoding::Zstd);
    }
    v
}

/// Checks Prometheus text with `promtool check metrics`. `.ci/run`
/// installs promtool (Debian package `prometheus`) and sets
/// TOWER_PERF_REQUIRE_PROMTOOL=1; elsewhere a missing promtool skips the
/// check, saying so.
/// Says on the terminal, past the test harness's output capture, that a
/// check did not run and what to install for it.
pub fn skipped(check: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {check}: {why}");
}

pub fn promtool(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("TOWER_PERF_REQUIRE_PROMTOOL").is_none(),
                "promtool required: {e}"
            );
            skipped(
                "promtool check metrics",
                &format!("promtool is not installed ({e}; Debian package prometheus)"),
            );
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {report}\n{text}");
    assert!(!report.contains("error"), "{report}");
}

/// A socket that accepts connections and never answers (a black hole), on
/// a loopback port; it stops when the returned task is aborted or dropped
/// with the runtime.
pub async fn silent_listener() -> (u16, tokio::task::JoinHandle<()>) {
    let silent = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let port = silent.local_addr().expect("local addr").port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    (port, held)
}

/// Serves `app` with `axum::serve(listener, app)`: no `ConnectInfo`, as a
/// newcomer's first app does.
pub async fn serve_without_connect_info(app: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// `GET path` from the server at `addr` with `headers`, on a new client.
pub async fn get_at(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> TestResponse {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .request(req.body(Full::default()).unwrap())
        .await
        .unwrap();
    TestResponse::collect(res).await
}
