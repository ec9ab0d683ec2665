//! A caching reverse proxy: tower-perf's [`CacheLayer`] in front of any
//! HTTP service.
//!
//! ```text
//! cargo run --release --example proxy -- --listen 127.0.0.1:8080 --origin http://127.0.0.1:8000
//! ```
//!
//! It forwards every method (extension methods included) and every
//! end-to-end header to the origin, drops hop-by-hop fields in both
//! directions (RFC 9110 §7.6.1: `Connection` and the fields it names,
//! `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`,
//! `Upgrade`, `Proxy-Authorization`, `Proxy-Authenticate`), keeps `Host`
//! as the client sent it, and adds `Via` (§7.6.3). Only the cache sits in
//! front: the origin's own Cache-Control decides what is stored; the proxy
//! adds no policy and no compression. An unreachable origin gets 502 (or a
//! stale response, where `stale-if-error` allows).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_perf::BoxError;
use tower_perf::cache::{CacheBody, CacheLayer};

/// The proxy's response body: the cache's, or a 502 of its own.
pub(crate) type ProxyBody = Either<CacheBody<Incoming>, Full<Bytes>>;

/// Hop-by-hop fields, always dropped (RFC 9110 §7.6.1, plus the
/// `Proxy-*` credentials meant for this hop).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Drops hop-by-hop fields, including the ones `Connection` names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|n| HeaderName::from_bytes(n.trim_ascii()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
}

/// Forwards requests to `origin` (scheme and authority; its path is
/// ignored): the inner service of the proxy.
#[derive(Clone)]
pub(crate) struct Forward {
    origin: Uri,
    client: Client<HttpConnector, Incoming>,
}

impl Forward {
    pub(crate) fn new(origin: Uri) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { origin, client }
    }
}

impl Service<Request<Incoming>> for Forward {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Incoming>, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let pq = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut target = self.origin.clone().into_parts();
        let client = self.client.clone();
        Box::pin(async move {
            target.path_and_query = Some(pq.parse()?);
            parts.uri = Uri::from_parts(target)?;
            // An HTTP/2 client sends no Host; the origin still needs one.
            if !parts.headers.contains_key(header::HOST) {
                if let Some(a) = parts.uri.authority() {
                    parts
                        .headers
                        .insert(header::HOST, HeaderValue::from_str(a.as_str())?);
                }
            }
            strip_hop_by_hop(&mut parts.headers);
            parts
                .headers
                .append(header::VIA, HeaderValue::from_static("1.1 tower-perf"));
            parts.version = http::Version::HTTP_11;
            let mut resp = client.request(Request::from_parts(parts, body)).await?;
            strip_hop_by_hop(resp.headers_mut());
            resp.headers_mut()
                .append(header::VIA, HeaderValue::from_static("1.1 tower-perf"));
            Ok(resp)
        })
    }
}

/// The whole proxy: the cache in front of [`Forward`], origin failures
/// answered with 502.
pub(crate) fn proxy(
    origin: Uri,
    cache: CacheLayer,
) -> impl Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    let cached = ServiceBuilder::new()
        .layer(cache)
        .service(Forward::new(origin));
    tower::service_fn(move |req: Request<Incoming>| {
        let svc = cached.clone();
        async move {
            match svc.oneshot(req).await {
                Ok(resp) => Ok(resp.map(Either::Left)),
                Err(e) => {
                    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(format!(
                        "bad gateway: {e}\n"
                    )))));
                    *resp.status_mut() = StatusCode::BAD_GATEWAY;
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    );
                    Ok(resp)
                }
            }
        }
    })
}

const USAGE: &str = "usage: proxy --origin http://HOST:PORT [--listen HOST:PORT] [--cache-mib N]\n\n  \
--origin URL     the service to put the cache in front of (http only)\n  \
--listen ADDR    listen address (default 127.0.0.1:8080)\n  \
--cache-mib N    memory for cached responses (default 64)\n";

/// What the command line says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProxyArgs {
    pub(crate) listen: SocketAddr,
    pub(crate) origin: Uri,
    pub(crate) cache_mib: u64,
}

pub(crate) fn parse_args(args: impl Iterator<Item = String>) -> Result<ProxyArgs, String> {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 8080).into();
    let mut origin: Option<Uri> = None;
    let mut cache_mib = 64;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or(format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--listen" => {
                let v = value("--listen")?;
                listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?;
            }
            "--origin" => {
                let v = value("--origin")?;
                let uri: Uri = v.parse().map_err(|e| format!("--origin {v}: {e}"))?;
                if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                    return Err(format!("--origin {v}: an http://host:port URL"));
                }
                origin = Some(uri);
            }
            "--cache-mib" => {
                let v = value("--cache-mib")?;
                cache_mib = v.parse().map_err(|e| format!("--cache-mib {v}: {e}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let origin = origin.ok_or("--origin is required")?;
    Ok(ProxyArgs {
        listen,
        origin,
        cache_mib,
    })
}

#[allow(dead_code)]
#[tokio::main]
async fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) if msg.is_empty() => {
            print!("{USAGE}");
            return;
        }
        Err(msg) => {
            eprint!("error: {msg}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let cache = CacheLayer::new().store(tower_perf::cache::MemoryStore::new(
        args.cache_mib.saturating_mul(1024 * 1024),
    ));
    let stats = cache.stats();
    let svc = proxy(args.origin.clone(), cache);
    eprintln!(
        "caching proxy on http://{} in front of {}",
        args.listen, args.origin
    );
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let svc = svc.clone();
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                        .await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    let s = stats.snapshot();
    eprintln!(
        "shutting down: {} hits, {} misses, {} stored, hit rate {:.1}%",
        s.hits,
        s.misses,
        s.stores,
        s.hit_rate * 100.0
    );
}
