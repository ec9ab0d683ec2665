//! Each user's own connections (one per host; HTTP/1.1, or HTTP/2 with
//! prior knowledge under `--http2`), kept alive and made again when one
//! fails, as oha and wrk hold theirs: no pool shared by every user, so no
//! user waits on another's lock.

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::record::TransportError;

/// A connection's sending half.
enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// A request, unless the connection gave it back unsent.
type Sent = Result<Response<Incoming>, (hyper::Error, Option<Request<Full<Bytes>>>)>;

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    async fn ready(&mut self) -> Result<(), hyper::Error> {
        match self {
            Sender::H1(s) => s.ready().await,
            Sender::H2(s) => s.ready().await,
        }
    }

    /// Sends `req`; when the connection turned out closed before the
    /// request was written, hands the request back to be sent again.
    async fn try_send(&mut self, req: Request<Full<Bytes>>) -> Sent {
        let r = match self {
            Sender::H1(s) => s.try_send_request(req).await,
            Sender::H2(s) => s.try_send_request(req).await,
        };
        r.map_err(|mut e| {
            let req = e.take_message();
            (e.into_error(), req)
        })
    }
}

/// One user's connections, by `host:port`.
#[derive(Default)]
pub(crate) struct Conns {
    http2: bool,
    open: Vec<(String, Sender)>,
}

impl Conns {
    /// Connections of HTTP/2 (prior knowledge, `h2c` on `http://`) when
    /// `http2`, else HTTP/1.1.
    pub(crate) fn new(http2: bool) -> Self {
        Self {
            http2,
            open: Vec::new(),
        }
    }

    /// Sends `req` (its URI absolute) on this user's connection to its
    /// host (port 80 when the URL names none), made first if there is none
    /// or the last one failed. Over HTTP/1.1 the request goes out in
    /// origin form with a `Host` field (no userinfo; a `Host` given with
    /// `--header` wins); over HTTP/2 that host is the `:authority`.
    pub(crate) async fn send(
        &mut self,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, TransportError> {
        let uri = req.uri().clone();
        let Some(host) = uri.host() else {
            return Err(TransportError::Other);
        };
        let target = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        let host_field = match uri.port_u16() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        if self.http2 {
            let authority = match req.headers_mut().remove(HOST) {
                Some(h) => h.to_str().map_err(|_| TransportError::Other)?.to_owned(),
                None => host_field,
            };
            *req.uri_mut() = format!("http://{authority}{path}")
                .parse()
                .map_err(|_| TransportError::Other)?;
        } else {
            if !req.headers().contains_key(HOST) {
                let v = HeaderValue::from_str(&host_field).map_err(|_| TransportError::Other)?;
                req.headers_mut().insert(HOST, v);
            }
            let origin: Uri = path.parse().map_err(|_| TransportError::Other)?;
            *req.uri_mut() = origin;
        }
        // Twice at most: a connection the server closed while it idled is
        // found out only when the request is handed to it, unsent.
        for attempt in 0..2 {
            let at = self.connected(&target).await?;
            let sender = &mut self.open[at].1;
            if sender.ready().await.is_err() {
                *sender = connect(&target, self.http2).await?;
                sender.ready().await.map_err(|e| TransportError::of(&e))?;
            }
            match sender.try_send(req).await {
                Ok(resp) => return Ok(resp),
                Err((e, unsent)) => {
                    let kind = TransportError::of(&e);
                    // Never reused: the next request makes a new one.
                    self.open.swap_remove(at);
                    match unsent {
                        Some(r) if attempt == 0 => req = r,
                        _ => return Err(kind),
                    }
                }
            }
        }
        Err(TransportError::Reset)
    }

    /// The index of an open connection to `target`, made if needed.
    async fn connected(&mut self, target: &str) -> Result<usize, TransportError> {
        match self.open.iter().position(|(a, _)| a == target) {
            Some(i) if !self.open[i].1.is_closed() => Ok(i),
            Some(i) => {
                self.open[i].1 = connect(target, self.http2).await?;
                Ok(i)
            }
            None => {
                let sender = connect(target, self.http2).await?;
                self.open.push((target.to_owned(), sender));
                Ok(self.open.len() - 1)
            }
        }
    }
}

async fn connect(authority: &str, http2: bool) -> Result<Sender, TransportError> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| TransportError::of(&e))?;
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    if http2 {
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| TransportError::of(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        return Ok(Sender::H2(sender));
    }
    let (sender, conn) = http1::handshake(io)
        .await
        .map_err(|e| TransportError::of(&e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Sender::H1(sender))
}
