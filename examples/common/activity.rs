//! What a connection is doing, as the serving loop's deadlines need it:
//! what its socket reads and whether its writes go through ([`Watched`]),
//! which requests are in flight ([`InFlight`]), whether a response has
//! data its client hasn't taken ([`Tracked`]), and how a request body
//! arrives ([`RequestBody`], which times itself).
//!
//! The state is atomics, written where things happen (hyper's reads and
//! writes, the response bodies of HTTP/2 streams on other tasks) and read
//! by the connection's task when it computes its next deadline. The hot
//! paths touch a few atomics and no lock: a read with nothing to report
//! loads two, a write that goes through after one that didn't stores two.
//! Events that can bring the deadline forward wake the connection's task
//! only when they do.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::{BoxError, Limits};

/// Progress for the stall timeouts: a request body must deliver this much
/// (or end) in every `--body-read-timeout` it keeps a handler waiting, and
/// HTTP/2 response data is handed to hyper in pieces of at most this size,
/// so a stream that gets one out has moved this much.
pub(crate) const PROGRESS_BYTES: usize = 16 * 1024;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const UNKNOWN: u8 = 0;
const H1: u8 = 1;
const H2: u8 = 2;

/// No deadline armed.
const NEVER: u64 = u64::MAX;

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(NEVER / 2)
}

/// What a connection is doing. Times are microseconds since the accept,
/// rounded up (a deadline is never earlier than its event), 0 for none.
#[derive(Debug)]
pub(super) struct Activity {
    limits: Arc<Limits>,
    base: Instant,
    proto: AtomicU8,
    /// Requests whose head has arrived.
    requests: AtomicU64,
    /// Requests whose response body hasn't ended.
    in_flight: AtomicUsize,
    /// When the last request in flight ended.
    idle_since: AtomicU64,
    /// HTTP/1.1: the first byte read with nothing in flight (the start of
    /// the next head).
    head_started: AtomicU64,
    /// When a write to the socket first found it full, since the last
    /// write that went through; 0 while writes go through.
    write_blocked: AtomicU64,
    /// When a blocked write last went through.
    write_unblocked: AtomicU64,
    /// HTTP/2: responses holding a frame hyper hasn't taken (or not yet
    /// polled at all).
    waiting: AtomicUsize,
    /// HTTP/2: when hyper last took a response frame or a response began
    /// waiting.
    taken: AtomicU64,
    /// The deadline the connection's task sleeps until; events that bring
    /// the deadline before it wake the task.
    armed: AtomicU64,
    /// Wakes the connection's task.
    pub(super) wake: Notify,
}

impl Activity {
    pub(super) fn new(limits: Arc<Limits>) -> Self {
        Self {
            limits,
            base: Instant::now(),
            proto: AtomicU8::new(UNKNOWN),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            write_blocked: AtomicU64::new(0),
            write_unblocked: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            taken: AtomicU64::new(0),
            armed: AtomicU64::new(NEVER),
            wake: Notify::new(),
        }
    }

    fn stamp(&self) -> u64 {
        micros(self.base.elapsed()).saturating_add(1)
    }

    pub(super) fn is_h2(&self) -> bool {
        self.proto.load(SeqCst) == H2
    }

    /// When the connection is to be closed if nothing else happens.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline_micros()
            .map(|t| self.base + Duration::from_micros(t))
    }

    fn deadline_micros(&self) -> Option<u64> {
        let l = &self.limits;
        let mut next: Option<u64> = None;
        let mut consider = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        // A client that takes nothing: its socket stays full (either
        // protocol, in flight or not)…
        let blocked = self.write_blocked.load(SeqCst);
        if blocked != 0 {
            consider(blocked.saturating_add(micros(l.send_timeout)));
        }
        // …or, on HTTP/2, it grants no flow-control window: responses
        // wait and none of them gets a piece out.
        let h2 = self.is_h2();
        if h2 && self.waiting.load(SeqCst) > 0 {
            let taken = self.taken.load(SeqCst);
            consider(taken.saturating_add(micros(l.send_timeout)));
        }
        if self.in_flight.load(SeqCst) == 0 {
            let head = self.head_started.load(SeqCst);
            if self.requests.load(SeqCst) == 0 {
                consider(micros(l.header_read_timeout));
            } else if !h2 && head != 0 {
                consider(head.saturating_add(micros(l.header_read_timeout)));
            } else if blocked == 0 {
                // (While blocked, the end of a response is still going
                // out: the connection is not idle.)
                let since = self
                    .idle_since
                    .load(SeqCst)
                    .max(self.write_unblocked.load(SeqCst));
                consider(since.saturating_add(micros(l.idle_timeout)));
            }
        }
        next
    }

    /// The connection's task computes its deadline: any event from here
    /// on wakes it.
    pub(super) fn disarm(&self) {
        self.armed.store(NEVER, SeqCst);
    }

    /// The connection's task sleeps until `at`.
    pub(super) fn arm(&self, at: Option<Instant>) {
        let t = at.map_or(NEVER, |t| micros(t.saturating_duration_since(self.base)));
        self.armed.store(t, SeqCst);
    }

    /// Wakes the connection's task if the deadline is now before the one
    /// it sleeps until.
    fn nudge(&self) {
        if self
            .deadline_micros()
            .is_some_and(|t| t < self.armed.load(SeqCst))
        {
            self.wake.notify_one();
        }
    }

    /// An HTTP/1.1 read with nothing in flight starts the next head.
    fn on_h1_read(&self) {
        if self.in_flight.load(SeqCst) == 0
            && self.head_started.load(SeqCst) == 0
            && self.requests.load(SeqCst) > 0
        {
            self.head_started.store(self.stamp(), SeqCst);
            self.nudge();
        }
    }

    fn on_write_blocked(&self) {
        self.write_blocked.store(self.stamp(), SeqCst);
        self.nudge();
    }

    fn on_write_unblocked(&self) {
        // Later deadlines only: the task's timer fires and finds them.
        self.write_unblocked.store(self.stamp(), SeqCst);
        self.write_blocked.store(0, SeqCst);
    }

    /// A response starts waiting for hyper to take its next frame.
    fn wait(&self) {
        self.taken.store(self.stamp(), SeqCst);
        self.waiting.fetch_add(1, SeqCst);
        self.nudge();
    }

    /// Hyper came back for the next frame: the last one went out.
    fn take(&self) {
        self.taken.store(self.stamp(), SeqCst);
        self.waiting.fetch_sub(1, SeqCst);
    }
}

/// A request from its head to the end of its response body.
#[derive(Debug)]
pub(super) struct InFlight {
    activity: Arc<Activity>,
    /// HTTP/2: the response's data waiting is counted.
    h2: bool,
    /// The response holds a frame hyper hasn't taken.
    waiting: bool,
}

impl InFlight {
    pub(super) fn start(activity: &Arc<Activity>) -> Self {
        activity.requests.fetch_add(1, SeqCst);
        activity.in_flight.fetch_add(1, SeqCst);
        activity.head_started.store(0, SeqCst);
        Self {
            activity: activity.clone(),
            h2: activity.is_h2(),
            waiting: false,
        }
    }

    fn wait(&mut self) {
        if self.h2 && !self.waiting {
            self.waiting = true;
            self.activity.wait();
        }
    }

    fn take(&mut self) {
        if self.waiting {
            self.waiting = false;
            self.activity.take();
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.activity;
        if self.waiting {
            a.waiting.fetch_sub(1, SeqCst);
        }
        if a.in_flight.fetch_sub(1, SeqCst) == 1 {
            a.idle_since.store(a.stamp(), SeqCst);
            a.head_started.store(0, SeqCst);
            a.nudge();
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight and,
    /// on HTTP/2, tells the connection when it has data its client hasn't
    /// taken. HTTP/2 data goes to hyper in pieces of at most
    /// [`PROGRESS_BYTES`]: hyper asks for the next piece once the last
    /// one is on its way, however large the body's own frames are.
    pub(super) struct Tracked<B> {
        #[pin]
        body: B,
        // The rest of a large frame, handed out next.
        rest: Bytes,
        guard: InFlight,
    }
}

impl<B> Tracked<B> {
    /// The response is ready: until hyper first polls its body, it waits.
    pub(super) fn new(body: B, mut guard: InFlight) -> Self {
        guard.wait();
        Self {
            body,
            rest: Bytes::new(),
            guard,
        }
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        this.guard.take();
        if !this.rest.is_empty() {
            let n = this.rest.len().min(PROGRESS_BYTES);
            let piece = this.rest.split_to(n);
            this.guard.wait();
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        let frame = match ready!(this.body.poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other.map(|r| r.map(|f| f.map_data(to_bytes)))),
        };
        let mut frame = frame.map_data(to_bytes);
        if this.guard.h2 {
            if let Some(data) = frame.data_mut() {
                if data.len() > PROGRESS_BYTES {
                    *this.rest = data.split_off(PROGRESS_BYTES);
                }
            }
        }
        this.guard.wait();
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.body.size_hint();
        if self.rest.is_empty() {
            return inner;
        }
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(rest));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint
    }
}

/// Without a copy when the data is `Bytes` already.
fn to_bytes<D: Buf>(mut data: D) -> Bytes {
    data.copy_to_bytes(data.remaining())
}

/// A request body that gives up when its client stalls: while the handler
/// waits for it, it must deliver [`PROGRESS_BYTES`] (or end) within every
/// `timeout` of waiting, or the handler gets an error ([`BodyStalled`]).
/// Time the handler spends elsewhere is not counted.
#[derive(Debug)]
pub(crate) struct RequestBody {
    inner: Incoming,
    timeout: Duration,
    /// Since when the handler has been waiting, if it is.
    waiting_since: Option<Instant>,
    /// Waiting time since the last progress, before `waiting_since`.
    stalled: Duration,
    /// Bytes since the last progress.
    bytes: usize,
    /// Fires at or before the deadline; reset only when it fired early.
    timer: Option<Pin<Box<Sleep>>>,
    failed: bool,
}

impl RequestBody {
    pub(super) fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            waiting_since: None,
            stalled: Duration::ZERO,
            bytes: 0,
            timer: None,
            failed: false,
        }
    }
}

/// The error a handler gets from a [`RequestBody`] whose client stalled.
#[derive(Debug)]
pub(crate) struct BodyStalled(Duration);

impl fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request body stalled: less than {} KiB in {:?} (--body-read-timeout)",
            PROGRESS_BYTES / 1024,
            self.0
        )
    }
}

impl Error for BodyStalled {}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Some(Err(BodyStalled(this.timeout).into())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(since) = this.waiting_since.take() {
                    this.stalled += since.elapsed();
                }
                this.bytes += frame.data_ref().map_or(0, Bytes::len);
                if this.bytes >= PROGRESS_BYTES || frame.is_trailers() {
                    this.bytes = 0;
                    this.stalled = Duration::ZERO;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let now = Instant::now();
                let since = *this.waiting_since.get_or_insert(now);
                let deadline = since + this.timeout.saturating_sub(this.stalled);
                // Deadlines only move later between waits: a timer armed
                // for an earlier one fires, and is reset then.
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() > deadline {
                    timer.as_mut().reset(deadline);
                }
                loop {
                    if Instant::now() >= deadline {
                        this.failed = true;
                        return Poll::Ready(Some(Err(BodyStalled(this.timeout).into())));
                    }
                    ready!(timer.as_mut().poll(cx));
                    timer.as_mut().reset(deadline);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.failed && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The TCP stream, telling [`Activity`] what it reads and whether its
/// writes go through.
pub(super) struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    proto: u8,
    /// Bytes of the HTTP/2 preface seen so far.
    sniffed: usize,
    /// The last write found the socket full.
    blocked: bool,
}

impl Watched {
    pub(super) fn new(inner: TcpStream, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            proto: UNKNOWN,
            sniffed: 0,
            blocked: false,
        }
    }

    fn on_read(&mut self, bytes: &[u8]) {
        if self.proto == UNKNOWN {
            for &b in bytes {
                if b != H2_PREFACE[self.sniffed] {
                    self.proto = H1;
                    break;
                }
                self.sniffed += 1;
                if self.sniffed == H2_PREFACE.len() {
                    self.proto = H2;
                    break;
                }
            }
            if self.proto != UNKNOWN {
                self.activity.proto.store(self.proto, SeqCst);
            }
        }
        if self.proto == H1 {
            self.activity.on_h1_read();
        }
    }

    fn on_write(&mut self, polled: &Poll<io::Result<usize>>) {
        match polled {
            Poll::Pending if !self.blocked => {
                self.blocked = true;
                self.activity.on_write_blocked();
            }
            Poll::Ready(Ok(n)) if *n > 0 && self.blocked => {
                self.blocked = false;
                self.activity.on_write_unblocked();
            }
            _ => {}
        }
    }
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
                self.on_read(&buf.filled()[before..]);
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
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.on_write(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.on_write(&polled);
        polled
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
