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
//!   server is closing. While the end of a response is still going out,
//!   the connection is not idle (the send timeout applies).
//! - **`--send-timeout SECS`** (default 60, nginx's `send_timeout`): a
//!   connection whose client takes no response data for this long is
//!   closed, measured on lack of progress, never on total time: a
//!   download of any length lives as long as data keeps moving. Stalled
//!   means the socket stayed full (a write found no room and none went
//!   through since: a client that stopped reading, TCP zero window), or,
//!   on HTTP/2, that some response had data waiting and no response on
//!   the connection got a piece out nor became ready (a client that grants
//!   no flow-control window; responses go to hyper in 16 KiB pieces, so
//!   progress is 16 KiB through the window). Counted for the connection as
//!   a whole, so a busy HTTP/2 connection is never closed for one stream's
//!   age, and an HTTP/2 connection closed this way gets GOAWAY and 2 s.
//! - **`--body-read-timeout SECS`** (default 60, nginx's
//!   `client_body_timeout`, with a minimum rate): while a handler waits
//!   for a request body, the client must deliver 16 KiB (or the rest of
//!   the body) within every SECS of waiting; otherwise the body returns an
//!   error to the handler ([`BodyStalled`]; axum's extractors answer 400,
//!   the proxy 408).
//!   Time the handler spends elsewhere is not counted. Per request: on
//!   HTTP/2 the other streams carry on; on HTTP/1.1 hyper closes the
//!   connection after the answer (the body was not read to its end).
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
//! A slow handler is never timed out here (it decides how long it works),
//! and neither is a request as a whole: a total lifetime cap (Go's
//! `WriteTimeout`) would cut long downloads on slow links. What bounds the
//! time a client can hold a connection is that it must keep data moving.

#[path = "activity.rs"]
mod activity;
#[path = "limits.rs"]
mod limits;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

#[allow(unused_imports)] // the proxy's
pub(crate) use activity::BodyStalled;
pub(crate) use activity::RequestBody;
use activity::{Activity, InFlight, Tracked, Watched};
pub(crate) use limits::{Limits, USAGE};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where the loop's log lines go (stderr in the examples; tests collect
/// them).
pub(crate) type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// Log lines to stderr.
pub(crate) fn stderr_log() -> Log {
    Arc::new(|line: &str| eprintln!("{line}"))
}

/// How long an HTTP/2 connection closed by a deadline gets to send its
/// GOAWAY before it is dropped.
const H2_GOAWAY_GRACE: Duration = Duration::from_secs(2);

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
/// request carries the peer address as axum's `ConnectInfo<SocketAddr>`,
/// and its body is a [`RequestBody`] (`--body-read-timeout`).
pub(crate) async fn serve<S, B>(
    listener: TcpListener,
    svc: S,
    limits: Limits,
    log: Log,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
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
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let activity = Arc::new(Activity::new(limits.clone()));
    let io = TokioIo::new(Watched::new(stream, activity.clone()));
    let tracked = {
        let activity = activity.clone();
        let body_timeout = limits.body_read_timeout;
        tower::service_fn(move |req: Request<Incoming>| {
            let guard = InFlight::start(&activity);
            let mut req = req.map(|body| RequestBody::new(body, body_timeout));
            req.extensions_mut().insert(ConnectInfo(peer));
            let call = svc.clone().oneshot(req);
            async move {
                call.await
                    .map(|res| res.map(|body| Tracked::new(body, guard)))
            }
        })
    };
    let conn = builder.serve_connection(io, TowerToHyperService::new(tracked));
    tokio::pin!(conn);
    // Set once an HTTP/2 connection was sent GOAWAY: dropped then.
    let mut close_by: Option<Instant> = None;
    match *phase.borrow_and_update() {
        Phase::Serving => {}
        Phase::Draining => conn.as_mut().graceful_shutdown(),
        Phase::Closed => return,
    }
    // One timer, reset only when the deadline comes earlier than the one
    // it is set for; when it fires early (the deadline moved later, or
    // went away while a request is in flight) the deadline is computed
    // again. Events that bring the deadline forward wake the task.
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    loop {
        activity.disarm();
        if let Some(next) = close_by.or_else(|| activity.deadline()) {
            if armed.is_none_or(|t| next < t) {
                timer.as_mut().reset(next);
                armed = Some(next);
            }
        }
        activity.arm(armed);
        tokio::select! {
            _ = conn.as_mut() => return,
            () = &mut timer, if armed.is_some() => {
                armed = None;
                let now = Instant::now();
                match close_by {
                    Some(t) if t <= now => return,
                    Some(_) => {}
                    None if activity.deadline().is_some_and(|t| t <= now) => {
                        // An HTTP/1.1 connection is just dropped (a slow
                        // head gets no answer, a stalled response has its
                        // client gone); HTTP/2 says GOAWAY first.
                        if !activity.is_h2() {
                            return;
                        }
                        conn.as_mut().graceful_shutdown();
                        close_by = Some(now + H2_GOAWAY_GRACE);
                    }
                    None => {}
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
