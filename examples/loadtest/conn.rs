//! Each user's own HTTP/1.1 connections (one per host), kept alive and
//! made again when one fails, as oha and wrk hold theirs: no pool shared
//! by every user, so no user waits on another's lock.

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::record::TransportError;

/// One user's connections, by `host:port`.
#[derive(Default)]
pub(crate) struct Conns {
    open: Vec<(String, SendRequest<Full<Bytes>>)>,
}

impl Conns {
    /// Sends `req` (its URI absolute) on this user's connection to its
    /// host, made first if there is none or the last one failed; the
    /// request goes out in origin form with a `Host` field.
    pub(crate) async fn send(
        &mut self,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, TransportError> {
        let Some(authority) = req.uri().authority().map(|a| a.as_str().to_owned()) else {
            return Err(TransportError::Other);
        };
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
        let at = match self.open.iter().position(|(a, _)| *a == authority) {
            Some(i) if !self.open[i].1.is_closed() => i,
            Some(i) => {
                self.open[i].1 = connect(&authority).await?;
                i
            }
            None => {
                let sender = connect(&authority).await?;
                self.open.push((authority.clone(), sender));
                self.open.len() - 1
            }
        };
        let sender = &mut self.open[at].1;
        if sender.ready().await.is_err() {
            // The server closed it since the last answer: a new one.
            *sender = connect(&authority).await?;
            sender.ready().await.map_err(|e| TransportError::of(&e))?;
        }
        match sender.send_request(req).await {
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

async fn connect(authority: &str) -> Result<SendRequest<Full<Bytes>>, TransportError> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| TransportError::of(&e))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| TransportError::of(&e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
