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

    async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        match self {
            Sender::H1(s) => s.send_request(req).await,
            Sender::H2(s) => s.send_request(req).await,
        }
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
    /// host, made first if there is none or the last one failed; over
    /// HTTP/1.1 the request goes out in origin form with a `Host` field.
    pub(crate) async fn send(
        &mut self,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, TransportError> {
        let Some(authority) = req.uri().authority().map(|a| a.as_str().to_owned()) else {
            return Err(TransportError::Other);
        };
        if !self.http2 {
            if !req.headers().contains_key(HOST) {
                let host = HeaderValue::from_str(&authority).map_err(|_| TransportError::Other)?;
                req.headers_mut().insert(HOST, host);
            }
            let origin: Uri = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .parse()
                .map_err(|_| TransportError::Other)?;
            *req.uri_mut() = origin;
        }
        let http2 = self.http2;
        let at = match self.open.iter().position(|(a, _)| *a == authority) {
            Some(i) if !self.open[i].1.is_closed() => i,
            Some(i) => {
                self.open[i].1 = connect(&authority, http2).await?;
                i
            }
            None => {
                let sender = connect(&authority, http2).await?;
                self.open.push((authority.clone(), sender));
                self.open.len() - 1
            }
        };
        let sender = &mut self.open[at].1;
        if sender.ready().await.is_err() {
            // The server closed it since the last answer: a new one.
            *sender = connect(&authority, http2).await?;
            sender.ready().await.map_err(|e| TransportError::of(&e))?;
        }
        match sender.send(req).await {
            Ok(resp) => Ok(resp),
            Err(e) => {
                let kind = TransportError::of(&e);
                // Never reused: the next request makes a new one.
                self.open.swap_remove(at);
                Err(kind)
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
