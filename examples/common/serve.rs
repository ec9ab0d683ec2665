//! The serving loop of the example server and proxy: hyper-util's auto
//! builder (HTTP/1.1 and HTTP/2 on one port) with the limits a server that
//! faces the internet needs, so slow or abusive clients can't hold it
//! hostage.
//!
//! - **`--header-read-timeout SECS`** (default 10): a connection must
//!   deliver its first complete request head (HTTP/1.1 or HTTP/2) within
//!   this time of being accepted, protocol detection included: a client
//!   that connects and sends nothing, half a request line or half the
//!   HTTP/2 preface is closed. On a keep-alive HTTP/1.1 connection, each
//!   later head must be complete within this time of its first byte.
//! - **`--idle-timeout SECS`** (default 75): a connection with no request
//!   in flight is closed after this long (HTTP/1.1 keep-alive, and HTTP/2
//!   connections without open streams; pings don't count as activity).
//!   Longer than the 60 s idle timeout of common load balancers, so the
//!   balancer closes an idle connection first and never reuses one the
//!   server is closing.
//! - **`--max-connections N`** (default 1024): at most N connections are
//!   open; the loop stops accepting until one closes, so new clients wait
//!   in the kernel's accept backlog instead of taking file descriptors and
//!   memory. One log line when the limit is first reached.
//! - **`--h2-max-streams N`** (default 100, RFC 9113's recommended
//!   minimum): concurrent streams per HTTP/2 connection.
//! - **`--h2-max-header-list KIB`** (default 16): the largest HTTP/2 header
//!   list (`SETTINGS_MAX_HEADER_LIST_SIZE`).
//! - **`--h1-max-head KIB`** (default 64, at least 8): hyper's HTTP/1.1
//!   read buffer, which bounds a request head; a larger head gets 431.
//! - **`--shutdown-timeout SECS`** (default 10): on Ctrl-C or SIGTERM the
//!   loop stops accepting, lets in-flight requests finish for at most this
//!   long, then closes what is left.
//!
//! Why not hyper's own `http1().header_read_timeout`: hyper restarts that
//! timer as soon as it waits for the next request on a keep-alive
//! connection, so it also cuts keep-alive idle time to the header timeout,
//! and it does not run while the auto builder reads the first bytes to
//! tell HTTP/1.1 from HTTP/2 (a client that sends nothing is never timed
//! out). The loop keeps its own deadlines per connection instead; hyper's
//! timer (`TokioTimer`) drives HTTP/2 keep-alive pings, which close
//! connections to peers that stopped answering.
//!
//! Request bodies are not timed here: a handler that reads a body decides
//! how long it waits for it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where the loop's log lines go (stderr in the examples; tests collect
/// them).
pub(crate) type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// Log lines to stderr.
pub(crate) fn stderr_log() -> Log {
    Arc::new(|line: &str| eprintln!("{line}"))
}

/// The flags of [`Limits`], for the examples' usage text.
pub(crate) const USAGE: &str = "\nconnection limits (both protocols unless named):\n  \
--header-read-timeout SECS  a request head must arrive within SECS (default 10)\n  \
--idle-timeout SECS         close connections idle for SECS between requests (default 75)\n  \
--max-connections N         open connections at most; more wait in the backlog (default 1024)\n  \
--h2-max-streams N          concurrent HTTP/2 streams per connection (default 100)\n  \
--h2-max-header-list KIB    largest HTTP/2 header list (default 16)\n  \
--h1-max-head KIB           largest HTTP/1.1 request head, at least 8 (default 64)\n  \
--shutdown-timeout SECS     on Ctrl-C/SIGTERM, wait this long for requests in flight (default 10)\n";

/// HTTP/2 keep-alive pings: one after this much silence from the peer…
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// …and the connection is closed when the ack takes longer than this.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an HTTP/2 connection closed for idleness gets to send its
/// GOAWAY before it is dropped.
const H2_GOAWAY_GRACE: Duration = Duration::from_secs(2);

/// The limits of the serving loop (see the module docs for each).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) h2_max_streams: u32,
    /// Bytes.
    pub(crate) h2_max_header_list: u32,
    /// Bytes, at least 8192 (hyper's minimum).
    pub(crate) h1_max_head: usize,
    pub(crate) shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 1024,
            h2_max_streams: 100,
            h2_max_header_list: 16 * 1024,
            h1_max_head: 64 * 1024,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// Whether `flag` is one of the limit flags.
    pub(crate) fn is_flag(flag: &str) -> bool {
        matches!(
            flag,
            "--header-read-timeout"
                | "--idle-timeout"
                | "--max-connections"
                | "--h2-max-streams"
                | "--h2-max-header-list"
                | "--h1-max-head"
                | "--shutdown-timeout"
        )
    }

    /// Sets the limit of `flag` from `value`.
    pub(crate) fn set(&mut self, flag: &str, value: &str) -> Result<(), String> {
        let bad = |why: &str| format!("{flag} {value}: {why}");
        let int = |lo: u64, hi: u64| -> Result<u64, String> {
            let n: u64 = value.parse().map_err(|e| bad(&format!("{e}")))?;
            if (lo..=hi).contains(&n) {
                Ok(n)
            } else {
                Err(bad(&format!("between {lo} and {hi}")))
            }
        };
        let secs = || -> Result<Duration, String> {
            let s: f64 = value.parse().map_err(|e| bad(&format!("{e}")))?;
            // Positive and at most a day, so deadlines never overflow.
            if s > 0.0 && s <= 86_400.0 {
                Ok(Duration::from_secs_f64(s))
            } else {
                Err(bad("seconds, more than 0 and at most 86400"))
            }
        };
        match flag {
            "--header-read-timeout" => self.header_read_timeout = secs()?,
            "--idle-timeout" => self.idle_timeout = secs()?,
            "--shutdown-timeout" => self.shutdown_timeout = secs()?,
            // Bounded so a permit count always fits the semaphore's u32.
            "--max-connections" => self.max_connections = int(1, 1_000_000)? as usize,
            "--h2-max-streams" => self.h2_max_streams = int(1, 10_000)? as u32,
            "--h2-max-header-list" => self.h2_max_header_list = int(1, 16 * 1024)? as u32 * 1024,
            "--h1-max-head" => self.h1_max_head = int(8, 16 * 1024)? as usize * 1024,
            _ => return Err(format!("unknown argument {flag}")),
        }
        Ok(())
    }

    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            // The loop's own deadlines replace hyper's (module docs).
            .header_read_timeout(None)
            .max_buf_size(self.h1_max_head.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_TIMEOUT)
            .max_concurrent_streams(self.h2_max_streams)
            .max_header_list_size(self.h2_max_header_list);
        builder
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// What the connections are told: keep serving, finish what is in flight,
/// or stop now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    Draining,
    Closed,
}

/// Serves `svc` on `listener` within `limits` until `shutdown` resolves,
/// then drains (at most `limits.shutdown_timeout`) and returns. Every
/// request carries the peer address as axum's `ConnectInfo<SocketAddr>`.
pub(crate) async fn serve<S, B>(
    listener: TcpListener,
    svc: S,
    limits: Limits,
    log: Log,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let limits = Arc::new(limits);
    let builder = Arc::new(limits.builder());
    let max = limits.max_connections.clamp(1, 1_000_000);
    let permits = Arc::new(Semaphore::new(max));
    let (phase, watch_phase) = watch::channel(Phase::Serving);
    let mut limit_logged = false;
    let mut accept_error_logged: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        // A permit first: at the limit, connections wait in the backlog.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !limit_logged {
                    limit_logged = true;
                    log(&format!(
                        "connection limit reached: {max} open; new connections wait in the \
                         backlog until one closes (--max-connections)"
                    ));
                }
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: back off instead
                    // of spinning, and say so at most every 10 s.
                    if accept_error_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        accept_error_logged = Some(Instant::now());
                        log(&format!("accept failed: {e} (retrying; check `ulimit -n` against --max-connections)"));
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            peer,
            svc.clone(),
            builder.clone(),
            limits.clone(),
            watch_phase.clone(),
            permit,
        ));
    }
    // Stop accepting: new connections are refused from here on.
    drop(listener);
    let open = max - permits.available_permits();
    log(&format!(
        "shutting down: {open} connections open, waiting up to {:?}",
        limits.shutdown_timeout
    ));
    let _ = phase.send(Phase::Draining);
    // Every connection holds a permit until it ends.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    match tokio::time::timeout(limits.shutdown_timeout, permits.acquire_many(all)).await {
        Ok(_) => log("all connections closed"),
        Err(_) => {
            let open = max - permits.available_permits();
            log(&format!(
                "{open} connections still open after {:?}; closing them",
                limits.shutdown_timeout
            ));
            let _ = phase.send(Phase::Closed);
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One connection: hyper serves it while this task enforces the
/// deadlines, the shutdown phases, and holds the connection's permit.
async fn connection<S, B>(
    stream: TcpStream,
    peer: SocketAddr,
    svc: S,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Arc<Limits>,
    mut phase: watch::Receiver<Phase>,
    _permit: OwnedSemaphorePermit,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let tracked = {
        let activity = activity.clone();
        tower::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let guard = InFlight::start(&activity);
            let call = svc.clone().oneshot(req);
            async move {
                call.await.map(|res| {
                    res.map(|body| Tracked {
                        body,
                        _guard: guard,
                    })
                })
            }
        })
    };
    let conn = builder.serve_connection(io, TowerToHyperService::new(tracked));
    tokio::pin!(conn);
    // Set once an idle HTTP/2 connection was sent GOAWAY: dropped then.
    let mut close_by: Option<Instant> = None;
    match *phase.borrow_and_update() {
        Phase::Serving => {}
        Phase::Draining => conn.as_mut().graceful_shutdown(),
        Phase::Closed => return,
    }
    loop {
        let next = close_by.or_else(|| activity.deadline(&limits));
        tokio::select! {
            _ = conn.as_mut() => return,
            () = sleep_until(next) => {
                if close_by.is_some() {
                    return;
                }
                let now = Instant::now();
                if activity.deadline(&limits).is_some_and(|t| t <= now) {
                    // Nothing in flight: an HTTP/1.1 connection is just
                    // dropped (a slow head gets no answer); HTTP/2 says
                    // GOAWAY first.
                    if !activity.is_h2() {
                        return;
                    }
                    conn.as_mut().graceful_shutdown();
                    close_by = Some(now + H2_GOAWAY_GRACE);
                }
            }
            () = activity.wake.notified() => {}
            changed = phase.changed() => match changed.map(|()| *phase.borrow_and_update()) {
                Ok(Phase::Serving) => {}
                Ok(Phase::Draining) => {
                    // Idle connections close now, busy ones after their
                    // request; the loop's shutdown timeout bounds the rest.
                    conn.as_mut().graceful_shutdown();
                }
                Ok(Phase::Closed) | Err(_) => return,
            },
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Unknown,
    H1,
    H2,
}

/// What a connection is doing, from its reads and its requests.
#[derive(Debug)]
struct State {
    accepted: Instant,
    /// Requests whose head has arrived.
    requests: u64,
    /// Requests whose response body hasn't ended.
    in_flight: usize,
    /// When the last request in flight ended.
    idle_since: Instant,
    /// The first byte read with nothing in flight (HTTP/1.1: the start of
    /// the next head).
    head_started: Option<Instant>,
    proto: Proto,
    /// Bytes of the HTTP/2 preface seen so far.
    sniffed: usize,
}

#[derive(Debug)]
struct Activity {
    state: Mutex<State>,
    /// Woken when the deadline may have moved earlier or appeared.
    wake: Notify,
}

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            state: Mutex::new(State {
                accepted: now,
                requests: 0,
                in_flight: 0,
                idle_since: now,
                head_started: None,
                proto: Proto::Unknown,
                sniffed: 0,
            }),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_h2(&self) -> bool {
        self.lock().proto == Proto::H2
    }

    /// When the connection is to be closed if nothing else happens; none
    /// while a request is in flight.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let s = self.lock();
        if s.in_flight > 0 {
            None
        } else if s.requests == 0 {
            Some(s.accepted + limits.header_read_timeout)
        } else if let (Some(t), false) = (s.head_started, s.proto == Proto::H2) {
            Some(t + limits.header_read_timeout)
        } else {
            Some(s.idle_since + limits.idle_timeout)
        }
    }

    fn on_read(&self, bytes: &[u8]) {
        let mut s = self.lock();
        if s.proto == Proto::Unknown {
            for &b in bytes {
                if b != H2_PREFACE[s.sniffed] {
                    s.proto = Proto::H1;
                    break;
                }
                s.sniffed += 1;
                if s.sniffed == H2_PREFACE.len() {
                    s.proto = Proto::H2;
                    break;
                }
            }
        }
        if s.in_flight == 0 && s.requests > 0 && s.head_started.is_none() {
            s.head_started = Some(Instant::now());
            drop(s);
            self.wake.notify_one();
        }
    }
}

/// A request from its head to the end of its response body.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        let mut s = activity.lock();
        s.requests += 1;
        s.in_flight += 1;
        s.head_started = None;
        drop(s);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
            s.head_started = None;
        }
        drop(s);
        self.0.wake.notify_one();
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight.
    struct Tracked<B> {
        #[pin]
        body: B,
        _guard: InFlight,
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The TCP stream, telling [`Activity`] what it reads.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if buf.filled().len() > before {
                self.activity.on_read(&buf.filled()[before..]);
            }
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
