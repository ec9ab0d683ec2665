//! Transfers that stop moving are cut after `--send-timeout` and
//! `--body-read-timeout`; transfers that keep moving, slow handlers and
//! busy HTTP/2 connections are not.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};

use super::{MARGIN, Running, closed_after, get_path, limits, normal_get, read_frame, secs};
use crate::server::serve::{Limits, RequestBody};

/// `total` bytes of `x` in frames of `frame` bytes.
struct Stream {
    left: u64,
    chunk: Bytes,
}

impl Body for Stream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

type AppBody =
    Either<Full<Bytes>, Either<Stream, http_body_util::combinators::BoxBody<Bytes, Infallible>>>;

/// The test app:
/// - `GET /bytes/{total}/{frame}`: `total` bytes in frames of `frame`;
/// - `GET /drip/{frames}/{ms}`: small frames `ms` apart;
/// - `GET /slow/{ms}`: answers after `ms`;
/// - `POST /upload`: reads the body whole: 200 `got N`, or 408 and the
///   error when it fails;
/// - anything else: `ok`.
///
/// Every answer says the peer's port (`x-peer`): which connection.
fn app() -> impl tower::Service<
    Request<RequestBody>,
    Response = Response<AppBody>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|req: Request<RequestBody>| async move {
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(0, |c| c.0.port());
        let path: Vec<String> = req.uri().path().split('/').map(String::from).collect();
        let num = |i: usize| path.get(i).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0);
        let full = |s: String| Either::Left(Full::from(s));
        let (status, body) = match path.get(1).map(String::as_str) {
            Some("bytes") => (
                StatusCode::OK,
                Either::Right(Either::Left(Stream {
                    left: num(2),
                    chunk: Bytes::from(vec![b'x'; num(3).max(1) as usize]),
                })),
            ),
            Some("drip") => {
                let (frames, ms) = (num(2), num(3));
                let s = futures_util::stream::unfold(0, move |i| async move {
                    if i == frames {
                        return None;
                    }
                    // Real time is the point: a response that keeps moving.
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Some((
                        Ok::<_, Infallible>(Frame::data(Bytes::from("drip\n"))),
                        i + 1,
                    ))
                });
                (
                    StatusCode::OK,
                    Either::Right(Either::Right(StreamBody::new(s).boxed())),
                )
            }
            Some("slow") => {
                // Real time is the point: a handler slower than the timeouts.
                tokio::time::sleep(Duration::from_millis(num(2))).await;
                (StatusCode::OK, full("done".into()))
            }
            Some("upload") => match req.into_body().collect().await {
                Ok(c) => (StatusCode::OK, full(format!("got {}", c.to_bytes().len()))),
                Err(e) => (StatusCode::REQUEST_TIMEOUT, full(e.to_string())),
            },
            _ => (StatusCode::OK, full("ok".into())),
        };
        let mut res = Response::new(body);
        *res.status_mut() = status;
        res.headers_mut().insert("x-peer", peer.into());
        Ok::<_, Infallible>(res)
    })
}

/// Limits with `send` and `body` stall timeouts (seconds), header and
/// idle timeouts far beyond the bounds checked.
fn stall_limits(send: f64, body: f64) -> Limits {
    Limits {
        send_timeout: Duration::from_secs_f64(send),
        body_read_timeout: Duration::from_secs_f64(body),
        ..limits(30.0, 60.0)
    }
}

/// A connection whose receive buffer is small, so the server's writes
/// find the socket full soon after the client stops reading.
async fn small_window(addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_after_the_send_timeout_and_frees_its_slot() {
    let send = Duration::from_secs(1);
    let server = Running::start(
        app(),
        Limits {
            max_connections: 1,
            ..stall_limits(1.0, 60.0)
        },
    )
    .await;
    // Before `connect`: the server's stall clock starts later.
    let t0 = Instant::now();
    let mut stuck = small_window(server.addr).await;
    // 1 GiB, never read.
    stuck
        .write_all(b"GET /bytes/1073741824/65536 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The only connection slot is taken: this one waits in the backlog
    // until the stuck one is closed.
    let (status, _) = timeout(send + MARGIN, normal_get(server.addr))
        .await
        .expect("the second client was served");
    let served = t0.elapsed();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(served >= send, "served {served:?} after t0");
    // The stuck connection was closed (what the kernel still holds for it
    // drains, then EOF).
    let drained = Instant::now();
    closed_after(&mut stuck, drained, MARGIN).await;
    eprintln!(
        "client that stopped reading a 1 GiB response: slot freed, next client served {} after it connected (send timeout 1 s)",
        secs(served)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_grants_no_window_is_closed_after_the_send_timeout() {
    let send = Duration::from_secs(1);
    let server = Running::start(app(), stall_limits(1.0, 60.0)).await;
    let t0 = Instant::now();
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let path = b"/bytes/1048576/65536";
    let mut headers = vec![0x82, 0x86, 0x04, path.len() as u8];
    headers.extend_from_slice(path);
    headers.extend_from_slice(&[0x01, 0x01, b'x']);
    let mut out = Vec::new();
    out.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    // SETTINGS: SETTINGS_INITIAL_WINDOW_SIZE = 0.
    out.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
    // HEADERS on stream 1, END_HEADERS | END_STREAM: GET /bytes/….
    out.extend_from_slice(&[0, 0, headers.len() as u8, 1, 5, 0, 0, 0, 1]);
    out.extend_from_slice(&headers);
    s.write_all(&out).await.unwrap();
    let (mut goaway, mut data, mut response) = (false, 0usize, false);
    let at = timeout(send + Duration::from_secs(2) + MARGIN, async {
        // The client reads everything it is sent (acks the server's
        // SETTINGS too); its window stays 0.
        while let Ok((kind, flags, payload)) = read_frame(&mut s).await {
            match kind {
                0 => data += payload.len(),
                1 => response = true,
                4 if flags & 1 == 0 => {
                    let _ = s.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).await;
                }
                7 => goaway = true,
                _ => {}
            }
        }
        t0.elapsed()
    })
    .await
    .expect("closed");
    assert!(response, "the response head came");
    assert_eq!(data, 0, "no window, no data");
    assert!(goaway, "GOAWAY before the close");
    assert!(at >= send, "closed after {at:?}");
    eprintln!(
        "HTTP/2 stream with a zero window: GOAWAY and close {} after connecting (send timeout 1 s, 2 s GOAWAY grace)",
        secs(at)
    );
}

/// Sends a `POST /upload` head announcing `len` bytes, then `chunks` of
/// the body `every` apart, holding the connection open; returns the
/// answer (status line) and when the server closed, from `t0`.
async fn upload(
    addr: std::net::SocketAddr,
    t0: Instant,
    len: usize,
    chunks: Vec<usize>,
    every: Duration,
    limit: Duration,
) -> Option<(String, Duration)> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n"
        );
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for n in chunks {
            if wr.write_all(&vec![b'u'; n]).await.is_err() {
                return;
            }
            // Real time is the point: a body that arrives slowly.
            tokio::time::sleep(every).await;
        }
        // Keep the write half (and the connection) open.
        std::future::pending::<()>().await;
    });
    let mut out = Vec::new();
    let closed = timeout(limit.saturating_sub(t0.elapsed()), async {
        let _ = rd.read_to_end(&mut out).await;
        t0.elapsed()
    })
    .await
    .ok();
    writer.abort();
    let text = String::from_utf8_lossy(&out);
    closed.map(|at| (text.lines().next().unwrap_or("").to_owned(), at))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_that_stall_or_trickle_fail_after_the_body_read_timeout() {
    let body = Duration::from_secs(1);
    let server = Running::start(app(), stall_limits(60.0, 1.0)).await;
    let addr = server.addr;
    let t0 = Instant::now();
    // 10 bytes of 1000, then nothing.
    let stalled = tokio::spawn(upload(addr, t0, 1000, vec![10], body, body + MARGIN));
    // One byte every 200 ms: the body keeps coming, far below 16 KiB per
    // second of waiting.
    let trickle = tokio::spawn(upload(
        addr,
        t0,
        100_000,
        vec![1; 200],
        Duration::from_millis(200),
        body + MARGIN,
    ));
    // An upload that keeps moving is read whole, however long it takes:
    // 16 KiB every 100 ms, 1.6 s in all.
    let moving = tokio::spawn(upload(
        addr,
        t0,
        16 * 16 * 1024,
        vec![16 * 1024; 16],
        Duration::from_millis(100),
        Duration::from_secs(2) + body + MARGIN,
    ));
    for (name, task) in [("stalled", stalled), ("trickle", trickle)] {
        let (status, at) = task
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: still open"));
        assert_eq!(status, "HTTP/1.1 408 Request Timeout", "{name}");
        // A second of waiting on the body, which began after t0.
        assert!(at >= body, "{name}: closed after {at:?}");
        eprintln!(
            "{name} request body: 408 and close {} after connecting (body read timeout 1 s)",
            secs(at)
        );
    }
    let (status, at) = moving.await.unwrap().expect("answered");
    assert_eq!(status, "HTTP/1.1 200 OK");
    eprintln!(
        "256 KiB uploaded 16 KiB per 100 ms: read whole, answered {} after connecting",
        secs(at)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_downloads_that_keep_moving_and_slow_handlers_are_not_cut() {
    // The margin between the client's pauses and the timeouts is 100x.
    let server = Running::start(app(), stall_limits(2.0, 2.0)).await;
    let addr = server.addr;
    // HTTP/1.1: 4 MiB read 16 KiB every 20 ms through a small window.
    let h1 = tokio::spawn(async move {
        let start = Instant::now();
        let mut s = small_window(addr).await;
        s.write_all(b"GET /bytes/4194304/65536 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut all = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
            // Real time is the point: a slow reader that keeps reading.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let head = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head")
            + 4;
        (all.len() - head, start.elapsed())
    });
    // HTTP/2: 4 MiB in two 2 MiB frames, read 16 KiB every 20 ms with
    // 64 KiB windows: each frame takes longer than the send timeout to go
    // out (the loop hands it to hyper in 16 KiB pieces).
    let h2 = tokio::spawn(async move {
        let start = Instant::now();
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .http2_initial_stream_window_size(64 * 1024)
            .http2_initial_connection_window_size(64 * 1024)
            .build_http::<Full<Bytes>>();
        let uri = format!("http://{addr}/bytes/4194304/2097152");
        let res = client.get(uri.parse().unwrap()).await.unwrap();
        assert_eq!(res.version(), http::Version::HTTP_2);
        let mut body = res.into_body();
        let mut got = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("the download completes");
            if let Some(d) = frame.data_ref() {
                got += d.len();
                // hyper hands out what came in one DATA frame (16 KiB).
                // Real time is the point: a slow reader that keeps reading.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        (got, start.elapsed())
    });
    // A handler that takes 3 s, longer than both timeouts.
    let (status, took) = get_path(addr, "/slow/3000").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(took >= Duration::from_secs(3));
    let (got1, took1) = h1.await.unwrap();
    assert_eq!(got1, 4194304, "HTTP/1.1 download complete");
    let (got2, took2) = h2.await.unwrap();
    assert_eq!(got2, 4194304, "HTTP/2 download complete");
    eprintln!(
        "send/body timeouts 2 s: 4 MiB over HTTP/1.1 in {}, 4 MiB over HTTP/2 (2 MiB frames) in {}, a 3 s handler answered after {}",
        secs(took1),
        secs(took2),
        secs(took)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_http2_connection_lives_and_a_stalled_upload_fails_only_its_own_stream() {
    let server = Running::start(app(), stall_limits(1.0, 1.0)).await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Either<Full<Bytes>, StreamBody<tokio_stream_shim::Rx>>>();
    let base = format!("http://{}", server.addr);
    let get = |path: &str| {
        let client = client.clone();
        let uri = format!("{base}{path}");
        async move {
            let res = client
                .request(
                    Request::get(uri)
                        .body(Either::Left(Full::default()))
                        .unwrap(),
                )
                .await
                .unwrap();
            let peer = res.headers()["x-peer"].to_str().unwrap().to_owned();
            let status = res.status();
            let body = res.into_body().collect().await.map(|c| c.to_bytes());
            (status, peer, body.is_ok())
        }
    };
    let (_, first_peer, _) = get("/").await;
    // An upload on the same connection that sends 10 bytes and stops.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(Ok(Frame::data(Bytes::from_static(b"0123456789"))))
        .await
        .unwrap();
    let t0 = Instant::now();
    let up = client.request(
        Request::post(format!("{base}/upload"))
            .body(Either::Right(StreamBody::new(tokio_stream_shim::Rx(rx))))
            .unwrap(),
    );
    let up = tokio::spawn(async move { (up.await, t0.elapsed()) });
    // Meanwhile 4 s of overlapping requests, each 0.3 s in the handler or
    // 0.9 s streaming: some request is always in flight, far longer in
    // all than the 1 s timeouts.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let path = if i % 2 == 0 {
            "/slow/300"
        } else {
            "/drip/3/300"
        };
        tasks.push(tokio::spawn(get(path)));
        // Real time is the point: requests overlap over 4 s, longer than
        // the timeouts.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (up, up_at) = timeout(Duration::from_secs(1) + MARGIN, up)
        .await
        .expect("answered")
        .unwrap();
    let up = up.unwrap();
    assert_eq!(up.status(), StatusCode::REQUEST_TIMEOUT);
    // (The upper bound is the `timeout` above.)
    assert!(up_at >= Duration::from_secs(1), "{up_at:?}");
    for task in tasks {
        let (status, peer, complete) = task.await.unwrap();
        assert_eq!((status, complete), (StatusCode::OK, true));
        assert_eq!(peer, first_peer, "one connection throughout");
    }
    let (_, last_peer, _) = get("/").await;
    assert_eq!(
        last_peer, first_peer,
        "the connection outlived the stalled upload"
    );
    drop(tx);
    eprintln!(
        "HTTP/2: 40 overlapping requests over {} on one connection (1 s timeouts), a stalled upload on it got 408 after {}",
        secs(start.elapsed()),
        secs(up_at)
    );
}

/// A body stream from an mpsc receiver (tokio-stream isn't a dependency).
mod tokio_stream_shim {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http_body::Frame;

    pub(super) struct Rx(pub(super) tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>);

    impl futures_util::Stream for Rx {
        type Item = Result<Frame<Bytes>, Infallible>;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_answers_a_stalled_upload_with_408_not_502() {
    let body = Duration::from_secs(1);
    let origin = crate::support::TestServer::serve(tower::service_fn(
        |req: Request<hyper::body::Incoming>| async move {
            let n = req
                .into_body()
                .collect()
                .await
                .map_or(0, |c| c.to_bytes().len());
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::from(format!("got {n}"))))
        },
    ))
    .await;
    let uri = format!("http://{}", origin.addr()).parse().unwrap();
    // Through the proxy's own copy of the serving loop (the one whose
    // `BodyStalled` it recognizes), as its `main` does.
    use crate::proxy::serve as pserve;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = pserve::Limits {
        body_read_timeout: body,
        ..pserve::Limits::default()
    };
    let svc = crate::proxy::proxy_with::<pserve::RequestBody>(uri, crate::CacheLayer::new(), false);
    let log: pserve::Log = std::sync::Arc::new(|_: &str| {});
    let task = tokio::spawn(pserve::serve(
        listener,
        svc,
        limits,
        log,
        std::future::pending(),
    ));
    let t0 = Instant::now();
    let closed = upload(addr, t0, 1000, vec![10], body, body + MARGIN).await;
    task.abort();
    let (status, at) = closed.expect("closed");
    assert_eq!(status, "HTTP/1.1 408 Request Timeout");
    assert!(at >= body, "{at:?}");
    eprintln!(
        "proxy, stalled upload: 408 and close {} after connecting (body read timeout 1 s)",
        secs(at)
    );
}
