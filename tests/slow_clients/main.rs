//! The serving loop of examples/server.rs and examples/proxy.rs
//! (`examples/common/serve.rs`) against slow and abusive clients: slow
//! request heads are closed after the header-read timeout while normal
//! clients are served, idle keep-alive connections after the idle timeout,
//! open connections are capped (one log line), HTTP/2 advertises its
//! limits, oversized heads get 431, and shutdown drains with a bound.
//! `stalls.rs`: transfers that stop moving (a client that stops reading,
//! an HTTP/2 client that grants no window, a request body that stops
//! arriving) are cut after the stall timeouts, and slow transfers that
//! keep moving, slow handlers and busy HTTP/2 connections are not.
//!
//! Every time bound here is either a lower bound the server cannot beat
//! (a deadline counted from its accept or later, and every client clock
//! starts before its `connect`) or an upper bound with a 10 s margin over
//! the timeout. Measured numbers are printed (`--nocapture`).

#[path = "../support/mod.rs"]
mod support;

#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/server.rs"]
mod server;

// Both examples bring their own copy of examples/common/serve.rs; the
// tests serve through the server's.
#[allow(dead_code, unreachable_pub, clippy::duplicate_mod)]
#[path = "../../examples/proxy.rs"]
mod proxy;

mod stalls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use server::DemoConfig;
use server::serve::{self, Limits};
use support::gate::Gate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tower_perf::cache::CacheLayer;

/// The margin every upper bound gets over the timeout it checks.
const MARGIN: Duration = Duration::from_secs(10);

/// A serving loop on 127.0.0.1:0 with its log lines collected.
struct Running {
    addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    async fn start<S, B>(svc: S, limits: Limits) -> Self
    where
        S: tower::Service<Request<serve::RequestBody>, Response = Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = logs.clone();
        let log: serve::Log =
            Arc::new(move |line: &str| sink.lock().unwrap().push(line.to_owned()));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve::serve(listener, svc, limits, log, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            logs,
            stop: Some(stop),
            task,
        }
    }

    async fn demo(limits: Limits) -> Self {
        let config = DemoConfig {
            rate_limit_per_min: None,
            ..DemoConfig::default()
        };
        Self::start(server::app_with(config), limits).await
    }

    fn lines(&self, containing: &str) -> usize {
        let logs = self.logs.lock().unwrap();
        logs.iter().filter(|l| l.contains(containing)).count()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Header-read and idle timeouts in seconds; the rest default.
fn limits(header_read: f64, idle: f64) -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs_f64(header_read),
        idle_timeout: Duration::from_secs_f64(idle),
        ..Limits::default()
    }
}

/// How a slow client misbehaves.
#[derive(Debug, Clone, Copy)]
enum Slow {
    /// Connects and sends nothing.
    Silent,
    /// Sends the first byte of a request line, then nothing.
    OneByte,
    /// Sends a request head one byte every 300 ms, never ending it.
    Trickle,
    /// Sends the HTTP/2 preface one byte every 300 ms (the auto builder is
    /// still telling HTTP/1.1 from HTTP/2).
    H2Preface,
}

/// Opens a slow connection (after `t0`) and waits until the server closes
/// it; the time from `t0` to the close, or `None` if it stayed open
/// `limit` after `t0`.
async fn slow_client(
    addr: SocketAddr,
    how: Slow,
    t0: Instant,
    limit: Duration,
) -> Option<Duration> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let bytes: &[u8] = match how {
            // Holding the write half: dropping it would send FIN.
            Slow::Silent => b"",
            Slow::OneByte => b"G",
            Slow::Trickle => b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            Slow::H2Preface => b"PRI * HTTP/2.0\r\n\r\nSM\r\n",
        };
        for b in bytes {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            if matches!(how, Slow::OneByte) {
                break;
            }
            // Real time is the point: a head slower than the header timeout.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Keep the write half (and the connection) open.
        std::future::pending::<()>().await;
    });
    let mut buf = [0u8; 256];
    let closed = timeout(limit.saturating_sub(t0.elapsed()), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return t0.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok();
    writer.abort();
    closed
}

/// One `GET /health` on a fresh connection: status line and latency.
async fn normal_get(addr: SocketAddr) -> (String, Duration) {
    get_path(addr, "/health").await
}

/// One `GET path` on a fresh connection: status line and latency.
async fn get_path(addr: SocketAddr, path: &str) -> (String, Duration) {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    (
        text.lines().next().unwrap_or("").to_owned(),
        start.elapsed(),
    )
}

/// Reads one response whose length is known (`Content-Length`) and
/// returns its status line.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                return head.lines().next().unwrap_or("").to_owned();
            }
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Waits until the server closes `s`; the time from `since`.
async fn closed_after(s: &mut TcpStream, since: Instant, limit: Duration) -> Duration {
    let mut buf = [0u8; 1024];
    timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closed the connection")
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_are_closed_after_the_header_timeout_while_normal_clients_are_served() {
    let hrt = Duration::from_secs(1);
    let server = Running::demo(limits(1.0, 60.0)).await;
    let addr = server.addr;
    let kinds = [Slow::Silent, Slow::OneByte, Slow::Trickle, Slow::H2Preface];
    let t0 = Instant::now();
    let slow: Vec<_> = (0..50)
        .map(|i| {
            let how = kinds[i % kinds.len()];
            tokio::spawn(async move { (how, slow_client(addr, how, t0, hrt + MARGIN).await) })
        })
        .collect();
    // Normal clients, on fresh connections, while the slow ones are held.
    let mut latencies = Vec::new();
    for _ in 0..5 {
        let (status, took) = normal_get(addr).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        latencies.push(took);
        // Real time is the point: the normal GETs spread over the second
        // the slow heads are held.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut closed = Vec::new();
    for task in slow {
        let (how, at) = task.await.unwrap();
        let at = at.unwrap_or_else(|| panic!("{how:?}: still open {MARGIN:?} after the timeout"));
        // The deadline runs from the server's accept, after t0.
        assert!(
            at >= hrt,
            "{how:?}: closed after {at:?}, before the timeout"
        );
        closed.push(at);
    }
    closed.sort();
    eprintln!(
        "50 slow heads closed between {} and {} (timeout 1 s); normal GETs while held: {:?}",
        secs(closed[0]),
        secs(closed[49]),
        latencies
            .iter()
            .map(|d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
    );
    // And the server still serves afterwards.
    assert_eq!(normal_get(addr).await.0, "HTTP/1.1 200 OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_close_after_the_idle_timeout_not_the_header_timeout() {
    let idle = Duration::from_secs(3);
    let server = Running::demo(limits(1.0, 3.0)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let sent = Instant::now();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await, "http/1.1 200 ok");
    let at = closed_after(&mut s, sent, idle + MARGIN).await;
    // Idle counts from the end of the response, after `sent`.
    assert!(
        at >= idle,
        "closed {at:?} after the request, idle timeout 3 s"
    );
    eprintln!(
        "idle keep-alive connection closed {} after its request (idle timeout 3 s, header timeout 1 s)",
        secs(at)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_second_head_on_a_keep_alive_connection_gets_the_header_timeout() {
    let hrt = Duration::from_secs(1);
    // The idle timeout is far beyond the bound checked: only the header
    // timeout can close this connection in time.
    let server = Running::demo(limits(1.0, 60.0)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await, "http/1.1 200 ok");
    // Real time is the point: the connection idles half the header
    // timeout before the second head starts, which gets all of it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    s.write_all(b"GET /he").await.unwrap();
    let at = closed_after(&mut s, started, hrt + MARGIN).await;
    assert!(at >= hrt, "closed {at:?} after the first byte of the head");
    eprintln!(
        "second head closed {} after its first byte (header timeout 1 s, idle 60 s)",
        secs(at)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_holds_new_clients_in_the_backlog_and_logs_once() {
    let hrt = Duration::from_secs(1);
    let server = Running::demo(Limits {
        max_connections: 8,
        ..limits(1.0, 60.0)
    })
    .await;
    let addr = server.addr;
    for round in 1..=2 {
        let t0 = Instant::now();
        let mut held = Vec::new();
        for _ in 0..8 {
            // Connected in order: the kernel's accept queue is FIFO, so
            // these take the 8 places before the ninth client.
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"G").await.unwrap();
            held.push(s);
        }
        let (status, took) = normal_get(addr).await;
        let since_t0 = t0.elapsed();
        assert_eq!(status, "HTTP/1.1 200 OK");
        // Served only once a held connection timed out (1 s after its
        // accept, which came after t0).
        assert!(
            since_t0 >= hrt,
            "round {round}: the ninth client was served after {since_t0:?}"
        );
        assert!(since_t0 <= hrt + MARGIN, "round {round}: {since_t0:?}");
        for s in &mut held {
            closed_after(s, t0, hrt + MARGIN).await;
        }
        eprintln!(
            "round {round}: ninth client served {} after the 8 held connections opened (its request took {})",
            secs(since_t0),
            secs(took)
        );
    }
    assert_eq!(
        server.lines("connection limit reached"),
        1,
        "{:?}",
        server.logs.lock().unwrap()
    );
}

/// Reads one HTTP/2 frame: (type, flags, payload).
async fn read_frame(s: &mut TcpStream) -> std::io::Result<(u8, u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await?;
    Ok((head[3], head[4], payload))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_advertises_its_limits_serves_and_closes_connections_without_requests() {
    let hrt = Duration::from_secs(1);
    let server = Running::demo(limits(1.0, 60.0)).await;
    // A real HTTP/2 client is served.
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let res = client
        .get(format!("http://{}/health", server.addr).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        (res.version(), res.status()),
        (http::Version::HTTP_2, StatusCode::OK)
    );

    // A connection that says hello and never asks anything. The clock
    // starts before `connect`: the server's deadline runs from its accept,
    // which can come before `connect` returns.
    let t0 = Instant::now();
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let (kind, _, settings) = read_frame(&mut s).await.unwrap();
    assert_eq!(kind, 4, "the server's SETTINGS first");
    let setting = |id: u16| {
        settings.chunks(6).find_map(|c| {
            (u16::from_be_bytes([c[0], c[1]]) == id)
                .then(|| u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
        })
    };
    assert_eq!(setting(0x3), Some(100), "SETTINGS_MAX_CONCURRENT_STREAMS");
    assert_eq!(
        setting(0x6),
        Some(16 * 1024),
        "SETTINGS_MAX_HEADER_LIST_SIZE"
    );
    let mut goaway = false;
    let at = timeout(hrt + MARGIN, async {
        while let Ok((kind, _, _)) = read_frame(&mut s).await {
            goaway |= kind == 7;
        }
        t0.elapsed()
    })
    .await
    .expect("closed");
    assert!(goaway, "GOAWAY before the close");
    assert!(at >= hrt, "closed after {at:?}");
    eprintln!(
        "HTTP/2 connection without a request: GOAWAY and close after {}",
        secs(at)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_http1_head_gets_431() {
    let server = Running::demo(Limits {
        h1_max_head: 8 * 1024,
        ..Limits::default()
    })
    .await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let big = "a".repeat(20 * 1024);
    let req = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    // The server may close before taking all of it.
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let _ = timeout(MARGIN, s.read_to_end(&mut out)).await;
    assert!(
        out.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&out[..out.len().min(100)])
    );
    // A head within the limit is served.
    assert_eq!(normal_get(server.addr).await.0, "HTTP/1.1 200 OK");
}

/// A service whose requests for `/held` wait at `gate` until the test
/// opens it (a request certainly in flight); the others answer at once.
fn held(
    gate: Gate,
) -> impl tower::Service<
    Request<serve::RequestBody>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |req: Request<serve::RequestBody>| {
        let gate = gate.clone();
        async move {
            if req.uri().path() == "/held" {
                gate.pass().await;
            }
            Ok::<_, Infallible>(Response::new(Full::from("done")))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_lets_requests_in_flight_finish() {
    let gate = Gate::new();
    let mut server = Running::start(held(gate.clone()), Limits::default()).await;
    let addr = server.addr;
    // An idle keep-alive connection and a request in flight.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut idle).await, "http/1.1 200 ok");
    let mut busy = TcpStream::connect(addr).await.unwrap();
    busy.write_all(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    gate.arrived(1).await;

    let stop = Instant::now();
    let _ = server.stop.take().unwrap().send(());
    // The idle connection closes at once; the request stays in flight
    // until the test lets it finish.
    let idle_closed = closed_after(&mut idle, stop, MARGIN).await;
    gate.open();
    assert_eq!(
        read_response(&mut busy).await,
        "http/1.1 200 ok",
        "in flight: finished"
    );
    closed_after(&mut busy, stop, MARGIN).await;
    timeout(MARGIN, &mut server.task)
        .await
        .expect("serve returned")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
    assert_eq!(server.lines("all connections closed"), 1);
    eprintln!(
        "shutdown: idle connection closed after {}, serve returned after {}",
        secs(idle_closed),
        secs(stop.elapsed())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_requests_that_outlast_its_timeout() {
    // A gate never opened: the request is stuck for good.
    let gate = Gate::new();
    let grace = Duration::from_secs(1);
    let mut server = Running::start(
        held(gate.clone()),
        Limits {
            shutdown_timeout: grace,
            ..Limits::default()
        },
    )
    .await;
    let mut stuck = TcpStream::connect(server.addr).await.unwrap();
    stuck
        .write_all(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    gate.arrived(1).await;
    let stop = Instant::now();
    let _ = server.stop.take().unwrap().send(());
    timeout(grace + MARGIN, &mut server.task)
        .await
        .expect("serve returned")
        .unwrap();
    let returned = stop.elapsed();
    assert!(returned >= grace, "{returned:?}");
    closed_after(&mut stuck, stop, MARGIN).await;
    assert_eq!(
        server.lines("still open after"),
        1,
        "{:?}",
        server.logs.lock().unwrap()
    );
    eprintln!(
        "shutdown with a stuck request returned after {}",
        secs(returned)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_closes_slow_heads_and_forwards_normal_requests() {
    let hrt = Duration::from_secs(1);
    let origin =
        support::TestServer::serve(tower::service_fn(|req: Request<Incoming>| async move {
            let xff = req
                .headers()
                .get("x-forwarded-for")
                .map(|v| v.to_str().unwrap_or("").to_owned())
                .unwrap_or_default();
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::from(format!("xff={xff}"))))
        }))
        .await;
    let uri = format!("http://{}", origin.addr()).parse().unwrap();
    let proxy = Running::start(
        proxy::proxy_with::<serve::RequestBody>(uri, CacheLayer::new(), false),
        limits(1.0, 60.0),
    )
    .await;
    let addr = proxy.addr;
    let t0 = Instant::now();
    let slow: Vec<_> = (0..20)
        .map(|i| {
            let how = [Slow::Silent, Slow::OneByte, Slow::Trickle, Slow::H2Preface][i % 4];
            tokio::spawn(slow_client(addr, how, t0, hrt + MARGIN))
        })
        .collect();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // The peer address reaches the proxy through the serving loop.
    assert!(text.ends_with("xff=127.0.0.1"), "{text}");
    for task in slow {
        let at = task.await.unwrap().expect("slow head closed");
        assert!(at >= hrt, "{at:?}");
    }
}

#[test]
fn limit_flags() {
    let d = Limits::default();
    assert_eq!(d.header_read_timeout, Duration::from_secs(10));
    assert_eq!(d.idle_timeout, Duration::from_secs(75));
    assert_eq!(d.send_timeout, Duration::from_secs(60));
    assert_eq!(d.body_read_timeout, Duration::from_secs(60));
    assert_eq!(d.max_connections, 1024);
    assert_eq!((d.h2_max_streams, d.h2_max_header_list), (100, 16 * 1024));
    assert_eq!(d.h1_max_head, 64 * 1024);
    assert_eq!(d.shutdown_timeout, Duration::from_secs(10));
    let mut l = Limits::default();
    for (flag, value) in [
        ("--header-read-timeout", "2.5"),
        ("--idle-timeout", "30"),
        ("--send-timeout", "45"),
        ("--body-read-timeout", "0.5"),
        ("--max-connections", "8"),
        ("--h2-max-streams", "50"),
        ("--h2-max-header-list", "32"),
        ("--h1-max-head", "16"),
        ("--shutdown-timeout", "3"),
    ] {
        assert!(Limits::is_flag(flag));
        l.set(flag, value).unwrap();
    }
    assert_eq!(l.header_read_timeout, Duration::from_millis(2500));
    assert_eq!(l.idle_timeout, Duration::from_secs(30));
    assert_eq!(l.send_timeout, Duration::from_secs(45));
    assert_eq!(l.body_read_timeout, Duration::from_millis(500));
    assert_eq!(l.max_connections, 8);
    assert_eq!((l.h2_max_streams, l.h2_max_header_list), (50, 32 * 1024));
    assert_eq!(l.h1_max_head, 16 * 1024);
    assert_eq!(l.shutdown_timeout, Duration::from_secs(3));
    for (flag, value) in [
        ("--header-read-timeout", "0"),
        ("--header-read-timeout", "-1"),
        ("--idle-timeout", "1e9"),
        ("--idle-timeout", "NaN"),
        ("--send-timeout", "0"),
        ("--body-read-timeout", "90000"),
        ("--max-connections", "0"),
        ("--max-connections", "lots"),
        ("--h2-max-streams", "0"),
        ("--h1-max-head", "7"),
    ] {
        assert!(l.set(flag, value).is_err(), "{flag} {value}");
    }
    assert!(!Limits::is_flag("--addr"));
    // Both examples take them.
    let s = server::parse_args(["--max-connections", "9"].map(String::from).into_iter()).unwrap();
    assert_eq!(s.limits.max_connections, 9);
    let p = proxy::parse_args(
        ["--origin", "http://o:1", "--idle-timeout=5"]
            .map(String::from)
            .into_iter(),
    )
    .unwrap();
    assert_eq!(p.limits.idle_timeout, Duration::from_secs(5));
}
